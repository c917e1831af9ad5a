"""Password hashing (argon2id, RFC 9106) and TOTP (RFC 6238): the only module that touches passwords
or second-factor secrets.

argon2-cffi's ``PasswordHasher`` defaults are RFC 9106's second recommended option (argon2id, t=3,
m=64 MiB, p=4). A hash made with other parameters is upgraded on the next successful login.

A server checks passwords in a :class:`PasswordHashPool`: argon2 runs in a few threads (argon2-cffi releases
the GIL), never on the event loop, and a sign-in finding every thread busy and the queue full is refused at
once instead of queueing without bound.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = ["HasherBusy", "PasswordCheck", "PasswordHashPool", "argon2_parameters", "hash_password",
           "new_recovery_codes", "new_totp_secret",
           "totp_uri", "verify_password", "verify_totp"]

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
TOTP_DIGITS = 6
TOTP_PERIOD = 30


@lru_cache(maxsize=1)
def _hasher() -> PasswordHasher:
    return PasswordHasher()


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _hasher().hash(secrets.token_urlsafe(16))


def argon2_parameters() -> dict[str, int | str]:
    h = _hasher()
    return {"type": "argon2id", "time_cost": h.time_cost, "memory_cost_kib": h.memory_cost,
            "parallelism": h.parallelism, "hash_len": h.hash_len, "salt_len": h.salt_len}


def check_password_policy(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValueError("the password is too long")


def hash_password(password: str) -> str:
    check_password_policy(password)
    return _hasher().hash(password)


class PasswordCheck:
    """The outcome of a check: ``ok``, and ``new_hash`` when the stored hash should be upgraded."""

    __slots__ = ("new_hash", "ok")

    def __init__(self, ok: bool, new_hash: str | None = None) -> None:
        self.ok = ok
        self.new_hash = new_hash


def verify_password(stored_hash: str | None, password: str) -> PasswordCheck:
    """Verify in roughly constant time: with no stored hash (unknown user) a dummy hash is checked, so the
    answer takes as long as for a real account."""
    hasher = _hasher()
    if len(password) > MAX_PASSWORD_LENGTH:
        password = password[:MAX_PASSWORD_LENGTH]
    target = stored_hash or _dummy_hash()
    try:
        hasher.verify(target, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return PasswordCheck(False)
    if stored_hash is None:
        return PasswordCheck(False)
    return PasswordCheck(True, hasher.hash(password) if hasher.check_needs_rehash(stored_hash) else None)


class HasherBusy(Exception):
    """Every hashing thread is busy and the queue is full: refuse the sign-in (HTTP 429)."""


class PasswordHashPool:
    """argon2 off the event loop: at most ``workers`` checks run at once (each in its own thread), at most
    ``queue`` more wait; beyond that :class:`HasherBusy` is raised without waiting."""

    def __init__(self, workers: int, queue: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ostiary-argon2")
        self._limit = workers + queue
        self._in_flight = 0  # counted until the thread finishes, even when the awaiting request is gone
        self._lock = threading.Lock()

    def _done(self, _: object) -> None:
        with self._lock:
            self._in_flight -= 1

    async def verify(self, stored_hash: str | None, password: str) -> PasswordCheck:
        """:func:`verify_password` in a hashing thread."""
        with self._lock:
            if self._in_flight >= self._limit:
                raise HasherBusy
            self._in_flight += 1
        try:
            future = self._executor.submit(verify_password, stored_hash, password)
        except BaseException:
            self._done(None)
            raise
        future.add_done_callback(self._done)
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def new_totp_secret() -> str:
    return pyotp.random_base32(32)


def totp_uri(secret: str, account: str, issuer_name: str) -> str:
    return pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_PERIOD).provisioning_uri(
        name=account, issuer_name=issuer_name)


def verify_totp(secret: str, code: str, now: float) -> int | None:
    """RFC 6238 with one step of clock drift either way. Returns the matching time step (for replay
    protection: a step is accepted once), or None."""
    code = code.strip().replace(" ", "")
    if len(code) != TOTP_DIGITS or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_PERIOD)
    step = int(now // TOTP_PERIOD)
    found = None
    for s in (step - 1, step, step + 1):
        if secrets.compare_digest(totp.at(s * TOTP_PERIOD), code):
            found = s
    return found


def new_recovery_codes(n: int = 10) -> list[str]:
    """Ten single-use codes of 50 bits each, grouped for reading: ``xxxxx-xxxxx``."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    out = []
    for _ in range(n):
        raw = "".join(secrets.choice(alphabet) for _ in range(10))
        out.append(raw[:5] + "-" + raw[5:])
    return out
