"""The Device Authorization Grant (RFC 8628): user codes, device authorizations and their storage Protocol.

A device authorization is created at ``/device_authorization`` (RFC 8628 §3.1), decided by a signed-in
user on the verification page (§3.3) and redeemed once at the token endpoint (§3.4, §3.5). The device
code is stored only as its keyed hash; the user code is stored normalised (it is short-lived, typed by
people, and protected by attempt limits rather than by entropy alone, §5.1).

Poll timing (``slow_down``, §3.5) is kept outside the database by a :class:`PollTracker`, so a poll
that finds nothing new writes nothing.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field
from typing import Literal, Protocol

__all__ = [
    "GRANT_DEVICE_CODE",
    "USER_CODE_ALPHABET",
    "USER_CODE_ENTROPY_BITS",
    "USER_CODE_LENGTH",
    "DeviceAuthorization",
    "DeviceAuthorizationRepository",
    "DeviceStatus",
    "PollResult",
    "PollTracker",
    "format_user_code",
    "new_user_code",
    "normalise_user_code",
    "poll_decision",
    "poll_leeway",
    "user_code_locator",
]

GRANT_DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"

#: RFC 8628 §6.1: base-20 without vowels (no words) and without look-alikes (0/O, 1/I/L, 5/S are absent
#: or unambiguous once upper-cased: no digits at all).
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE_LENGTH = 8
#: log2(20^8) ≈ 34.6 bits.
USER_CODE_ENTROPY_BITS = USER_CODE_LENGTH * math.log2(len(USER_CODE_ALPHABET))
#: The first half locates a live authorization; the second half is checked in constant time, and wrong
#: second halves count against that authorization (it locks after ``max_attempts_per_code``).
LOCATOR_LENGTH = 4

DeviceStatus = Literal["pending", "approved", "denied", "consumed"]
PollResult = Literal["ok", "slow_down"]


def new_user_code() -> str:
    """A fresh user code, normalised (``WDJBMJHT``); show it with :func:`format_user_code`."""
    return "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))


def format_user_code(code: str) -> str:
    """``WDJBMJHT`` → ``WDJB-MJHT`` (RFC 8628 §6.1: easier to read and type)."""
    half = len(code) // 2
    return f"{code[:half]}-{code[half:]}"


def normalise_user_code(typed: str) -> str | None:
    """RFC 8628 §6.1: case-insensitive, dashes and spaces ignored. ``None`` if it cannot be a user code."""
    cleaned = "".join(c for c in typed.upper() if c not in "- \t")
    if len(cleaned) != USER_CODE_LENGTH or any(c not in USER_CODE_ALPHABET for c in cleaned):
        return None
    return cleaned


def user_code_locator(code: str) -> str:
    return code[:LOCATOR_LENGTH]


@dataclass(frozen=True, slots=True)
class DeviceAuthorization:
    """One device flow (RFC 8628 §3.2). ``status``: pending → approved | denied; approved → consumed."""

    device_code_hash: str = field(repr=False)
    user_code: str = field(repr=False)
    client_id: str
    scopes: frozenset[str]
    audience: tuple[str, ...]
    created_at: float
    expires_at: float
    interval: int
    status: DeviceStatus = "pending"
    user_id: str | None = None
    session_id: str | None = None
    auth_time: float | None = None
    amr: tuple[str, ...] = ()
    decided_at: float | None = None
    failed_attempts: int = 0

    def expired(self, now: float) -> bool:
        return now >= self.expires_at

    @property
    def wants_id_token(self) -> bool:
        return "openid" in self.scopes


class DeviceAuthorizationRepository(Protocol):
    async def add_device_authorization(self, auth: DeviceAuthorization) -> None:
        """Raise ``ValueError`` when the user code is taken (the caller draws another)."""
        ...

    async def get_device_authorization(self, device_code_hash: str) -> DeviceAuthorization | None: ...

    async def find_device_authorizations(self, locator: str, now: float) -> list[DeviceAuthorization]:
        """Pending, unexpired authorizations whose user code starts with ``locator``."""
        ...

    async def record_user_code_failure(self, device_code_hash: str, max_attempts: int, now: float) -> int:
        """Count a wrong user code against this authorization; at ``max_attempts`` it is denied (locked).
        Returns the new count."""
        ...

    async def decide_device_authorization(self, device_code_hash: str, approve: bool, user_id: str,
                                          session_id: str | None, auth_time: float, amr: tuple[str, ...],
                                          now: float) -> bool:
        """Approve or deny: True for exactly one caller, only while pending and unexpired
        (``UPDATE … WHERE status = 'pending' AND expires_at > now``)."""
        ...

    async def consume_device_authorization(self, device_code_hash: str, now: float) -> bool:
        """approved → consumed: True for exactly one caller (``UPDATE … WHERE status = 'approved'``)."""
        ...

    async def purge_device_authorizations(self, now: float) -> int:
        """Delete authorizations that expired (kept a while after expiry to answer ``expired_token``)."""
        ...


#: A tracker that answers pending polls re-reads the row at least this often (seconds), in case a decision's
#: notice (``PollTracker.decided``) was lost.
PENDING_RECHECK = 60.0


class PollTracker(Protocol):
    """When each device last polled and at which interval (RFC 8628 §3.5 ``slow_down``), outside the
    database: a poll that finds nothing new must not write. A tracker shared by every process (Redis) also
    remembers which authorizations are still pending, so a pending poll need not read the database either."""

    async def poll(self, device_code_hash: str, interval: int, now: float, expires_at: float,
                   client_id: str = "") -> PollResult:
        """Record a poll of an authorization just read as pending (for ``client_id``). ``slow_down`` when it
        came sooner than the device's current interval after the previous one; the interval then grows by
        5 seconds for this and every later poll."""
        ...

    async def poll_pending(self, device_code_hash: str, client_id: str, now: float) -> PollResult | None:
        """Answer a poll without the database, if possible: when this tracker read the authorization as
        pending for ``client_id`` less than ``PENDING_RECHECK`` seconds ago, nobody decided it since, and it
        has not expired, record the poll and return its result. Otherwise ``None``: the caller reads the row
        (and then calls ``poll``)."""
        ...

    async def decided(self, device_code_hash: str, expires_at: float) -> None:
        """The user approved or denied it, or it locked: later polls must read the database. Called after
        the decision is stored."""
        ...

    async def interval(self, device_code_hash: str, default: int) -> int:
        """The device's current interval (``default`` until it was told to slow down)."""
        ...

    async def forget(self, device_code_hash: str) -> None: ...


#: A poll may arrive a little early (network jitter) without being told to slow down.
def poll_leeway(interval: int) -> float:
    return min(1.0, interval * 0.2)


def poll_decision(last_poll: float | None, current_interval: int, now: float) -> tuple[PollResult, int]:
    """RFC 8628 §3.5: the result of a poll at ``now`` and the interval from now on."""
    if last_poll is not None and now - last_poll < current_interval - poll_leeway(current_interval):
        return "slow_down", current_interval + 5
    return "ok", current_interval
