"""Who is signing in: the password, the second factor (TOTP, RFC 6238, or a recovery code) and the throttle
on guesses. Framework-free: the routes turn a form into a call here and a :class:`SignInResult` into a page;
templates, CSRF, cookies, audit events and metrics stay with them.

Every guess takes a slot on two counters before it is checked (:class:`~ostiary.core.ratelimit.Attempt`): its
account, keyed on the resolved user id (so the username and the email address share one counter; an unknown
name is counted under the name as typed), and its address (IPv6: the /64). A right guess gives its slot back;
a wrong one keeps it; a guess that could not be checked (every hashing thread busy) gives it back too.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from .._clock import Clock
from .._passwords import HasherBusy, PasswordCheck, new_recovery_codes, verify_totp
from .._secrets import token_hash
from ..core.ratelimit import Attempt, AttemptLimiter, client_network
from ..core.sealing import SealError, seal, unseal
from ..core.storage import ReplayRepository
from ..core.users import User, UserRepository

__all__ = ["Authenticator", "Outcome", "PasswordVerifier", "SignInLimits", "SignInResult", "SignInStore"]

MAX_LOGIN_LENGTH = 320  # a username or an email address (RFC 5321 §4.5.3.1: 64 + 1 + 255)
MAX_CODE_LENGTH = 40
MAX_PROOF_LENGTH = 1024
#: a TOTP step is remembered this long after it was used (it is valid for at most 90 s: one step either way)
TOTP_REPLAY_WINDOW = 120.0


class SignInStore(UserRepository, ReplayRepository, Protocol):
    """What sign-in reads and writes: users, their recovery codes, and used TOTP steps."""


class PasswordVerifier(Protocol):
    """:class:`ostiary._passwords.PasswordHashPool`: argon2 off the event loop, bounded."""

    async def verify(self, stored_hash: str | None, password: str) -> PasswordCheck:
        """Raise :class:`~ostiary._passwords.HasherBusy` when no hashing thread is free and the queue is full."""
        ...


@dataclass(frozen=True, slots=True)
class SignInLimits:
    """Guesses allowed per account and per address within ``failure_window`` seconds of the last one."""

    max_failures_per_account: int
    max_failures_per_ip: int
    failure_window: int


class Outcome(enum.Enum):
    OK = "ok"
    #: wrong password or code, unknown or disabled account: counted
    WRONG = "wrong"
    #: refused before anything was checked: too many guesses on the account or from the address
    THROTTLED = "throttled"
    #: not checked (every password-hashing thread busy, the queue full): not counted
    BUSY = "busy"


@dataclass(frozen=True, slots=True)
class SignInResult:
    outcome: Outcome
    #: the account, when the outcome is OK
    user: User | None = None
    #: when THROTTLED: the counter that refused ("login_account" or "login_ip") and the seconds it still runs
    throttled_by: str | None = None
    retry_after: float = 0.0

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK


_WRONG = SignInResult(Outcome.WRONG)
_BUSY = SignInResult(Outcome.BUSY)


@dataclass(frozen=True, slots=True)
class Authenticator:
    store: SignInStore
    limiter: AttemptLimiter
    hasher: PasswordVerifier
    clock: Clock
    limits: SignInLimits
    #: seals TOTP secrets at rest (bound to the user id)
    totp_key: bytes = field(repr=False)
    #: keys the stored hashes of recovery codes
    recovery_key: bytes = field(repr=False)

    # -- throttling -------------------------------------------------------------------------------

    @staticmethod
    def account_key(user: User | None, login: str) -> str:
        """The account counter's key: the resolved user id; for an unknown name, the name as typed."""
        return "user:" + user.user_id if user is not None else "name:" + login.strip().lower()[:200]

    def attempts(self, account: str, ip: str | None) -> list[Attempt]:
        """The counters one guess (password or second factor) takes a slot on: its account and its address."""
        cfg = self.limits
        out = [Attempt("login_account", "login:acct:" + account, cfg.max_failures_per_account, cfg.failure_window)]
        if ip:
            out.append(Attempt("login_ip", "login:ip:" + client_network(ip), cfg.max_failures_per_ip,
                               cfg.failure_window))
        return out

    async def _reserve(self, attempts: Sequence[Attempt]) -> SignInResult | None:
        refused = await self.limiter.reserve(attempts)
        if refused is None:
            return None
        return SignInResult(Outcome.THROTTLED, throttled_by=refused[0], retry_after=refused[1])

    # -- password ---------------------------------------------------------------------------------

    async def check_password(self, login: str, password: str, ip: str | None) -> SignInResult:
        """The same answer, and about the same time, whether or not the account exists (an unknown name is
        checked against a dummy hash). A stored hash made with older argon2 parameters is upgraded."""
        user = await self.store.find_user(login) if 0 < len(login) <= MAX_LOGIN_LENGTH else None
        attempts = self.attempts(self.account_key(user, login), ip)
        if refused := await self._reserve(attempts):
            return refused
        try:
            check = await self.hasher.verify(user.password_hash if user is not None else None, password)
        except HasherBusy:
            await self.limiter.release(attempts)  # not checked: not counted
            return _BUSY
        if user is None or not check.ok or user.disabled:
            return _WRONG
        await self.limiter.release(attempts)
        if check.new_hash is not None:  # argon2 parameters changed since this hash was made
            user = replace(user, password_hash=check.new_hash)
            await self.store.update_user(user)
        return SignInResult(Outcome.OK, user)

    # -- second factor ----------------------------------------------------------------------------

    def recovery_code_hash(self, code: str) -> str:
        return token_hash("recovery:" + code, self.recovery_key)

    async def _second_factor_ok(self, user: User, code: str) -> bool:
        """A current TOTP code, each time step accepted once (RFC 6238 §5.2), or an unused recovery code
        (spent by this call)."""
        now = self.clock.now()
        if user.totp_secret is None:
            return False
        try:
            secret = unseal(user.totp_secret, self.totp_key, user.user_id).decode()
        except SealError:
            return False
        step = verify_totp(secret, code, now)
        if step is not None:
            return await self.store.use_once("totp:" + user.user_id, str(step), now + TOTP_REPLAY_WINDOW, now)
        cleaned = code.strip().lower()
        if len(cleaned) == 11 and cleaned[5] == "-":
            return await self.store.use_recovery_code(user.user_id, self.recovery_code_hash(cleaned), now)
        return False

    async def check_second_factor(self, user: User, code: str, ip: str | None) -> SignInResult:
        """The second sign-in step (the password was right): a TOTP code or a recovery code, throttled on the
        same counters as the password."""
        attempts = self.attempts(self.account_key(user, ""), ip)
        if refused := await self._reserve(attempts):
            return refused
        if not await self._second_factor_ok(user, code[:MAX_CODE_LENGTH]):
            return _WRONG
        await self.limiter.release(attempts)
        return SignInResult(Outcome.OK, user)

    async def reauthenticate(self, user: User, proof: str, ip: str | None) -> SignInResult:
        """A signed-in user proves it is them before changing the second factor: a current code (TOTP or
        recovery) or the password. Throttled on the sign-in counters."""
        attempts = self.attempts(self.account_key(user, ""), ip)
        if refused := await self._reserve(attempts):
            return refused
        proof = proof[:MAX_PROOF_LENGTH]
        try:
            proven = bool(proof) and (await self._second_factor_ok(user, proof[:MAX_CODE_LENGTH])
                                      or (await self.hasher.verify(user.password_hash, proof)).ok)
        except HasherBusy:
            await self.limiter.release(attempts)  # not checked: not counted
            return _BUSY
        if not proven:
            return _WRONG
        await self.limiter.release(attempts)
        return SignInResult(Outcome.OK, user)

    # -- enrolment --------------------------------------------------------------------------------

    def totp_code_matches(self, secret: str, code: str) -> bool:
        """Enrolment: the code shows the authenticator app holds ``secret`` (not yet stored, so no replay
        record)."""
        return verify_totp(secret, code, self.clock.now()) is not None

    async def enable_totp(self, user: User, secret: str) -> list[str]:
        """Store ``secret`` (sealed) as the user's second factor, replacing any, with new recovery codes:
        returned to be shown once, stored as keyed hashes."""
        await self.store.update_user(replace(user, totp_secret=seal(secret.encode(), self.totp_key, user.user_id),
                                             updated_at=self.clock.now()))
        codes = new_recovery_codes()
        await self.store.set_recovery_codes(user.user_id, [self.recovery_code_hash(c) for c in codes])
        return codes

    async def disable_totp(self, user: User) -> None:
        await self.store.update_user(replace(user, totp_secret=None, updated_at=self.clock.now()))
        await self.store.set_recovery_codes(user.user_id, [])
