"""Rate limits as the server asks for them: token buckets, lock-outs after failures,
and attempts reserved before a password or code is checked, behind one :class:`RateLimiter` Protocol.

``ostiary.store`` implements it: in process memory (:mod:`ostiary.store.memory_ratelimit`) and in Redis, shared
by every process (:mod:`ostiary.store.redis.ratelimit`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

__all__ = ["Attempt", "AttemptLimiter", "Bucket", "Lockout", "RateLimiter", "Refusal", "client_network"]


@dataclass(frozen=True, slots=True)
class Bucket:
    """A token bucket: ``rate`` tokens per second, at most ``burst``; a request takes one."""

    scope: str  # named in the refusal (and the metric): "ip", "client"
    key: str
    rate: float
    burst: int


@dataclass(frozen=True, slots=True)
class Lockout:
    """Refuses while ``key``'s failure count (``record_failure``) is at least ``max``; retry after ``window``."""

    scope: str
    key: str
    max: int
    window: int


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt counted on ``key`` (the same counter as ``record_failure``): refused when ``max`` attempts
    are already counted; the count lasts ``window`` seconds after the last attempt."""

    scope: str
    key: str
    max: int
    window: int


#: Which step refused, and the seconds to wait.
Refusal = tuple[str, float]


class AttemptLimiter(Protocol):
    """The attempt counters alone: what sign-in (:mod:`ostiary.signin`) and user-code checks need."""

    async def reserve(self, attempts: Sequence[Attempt]) -> Refusal | None:
        """Atomically: refuse if any counter is at its maximum (counting nothing), else count one attempt on
        each. Reserve before checking a password or code, :meth:`release` when it was right."""
        ...

    async def release(self, attempts: Sequence[Attempt]) -> None:
        """Take back a reserved attempt that succeeded."""
        ...


class RateLimiter(AttemptLimiter, Protocol):
    """Attempt counters, token buckets and lock-outs (the token endpoints)."""

    async def admit(self, steps: Sequence[Bucket | Lockout]) -> Refusal | None:
        """Run ``steps`` in order and stop at the first that refuses (the buckets before it have given their
        token; the ones after it are untouched). One Redis round trip for all of them. None = admitted."""
        ...

    async def failures(self, key: str) -> int: ...
    async def record_failure(self, key: str, window: int) -> int: ...
    async def close(self) -> None: ...


@lru_cache(maxsize=8192)
def client_network(ip: str) -> str:
    """The unit a per-address limit counts: the address for IPv4, its /64 for IPv6 (one subscriber usually
    holds a whole /64, so counting single IPv6 addresses would give an attacker 2⁶⁴ budgets)."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return ip
