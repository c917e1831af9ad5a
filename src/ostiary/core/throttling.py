"""Attempt counters, as the server's rules use them: a password or code guess (sign-in), a typed user code
(RFC 8628 §5.1). The :class:`AttemptLimiter` Protocol is implemented in memory and in Redis (``web.ratelimit``).

A counter is reserved *before* the check and given back when the check passed, so parallel attempts cannot all
pass a check made before any of them failed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

__all__ = ["Attempt", "AttemptLimiter", "Refusal", "client_network"]


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
    async def reserve(self, attempts: Sequence[Attempt]) -> Refusal | None:
        """Atomically: refuse if any counter is at its maximum (counting nothing), else count one attempt on
        each. Reserve before checking a password or code, :meth:`release` when it was right."""
        ...

    async def release(self, attempts: Sequence[Attempt]) -> None:
        """Take back a reserved attempt that succeeded."""
        ...


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
