"""The DPoP replay cache (RFC 9449 §11.1) in Redis, shared by every worker and host (``redis_url``): one
``SET key 1 NX PX ttl`` per proof. While Redis is unavailable (down or hung: short timeouts and a circuit breaker,
see :mod:`.guard`) a per-process :class:`~ostiary.store.memory_dpop.MemoryDPoPReplayCache` answers instead: a
replay is then refused by the process that saw the proof, never let through unchecked."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from ...core.ratelimit import Bucket, Lockout, Refusal
from ..memory_dpop import MemoryDPoPReplayCache
from .guard import RedisGuard, RedisUnavailable
from .ratelimit import RedisLimiter

__all__ = ["RedisDPoPReplayCache"]


class RedisDPoPReplayCache:
    def __init__(self, redis: str | RedisGuard, prefix: str = "ostiary:dpop:") -> None:
        self._guard = RedisGuard(redis) if isinstance(redis, str) else redis
        self._prefix = prefix
        self.fallback = MemoryDPoPReplayCache()

    async def seen_first(self, key: str, until: float) -> bool:
        ttl_ms = max(1, math.ceil((until - time.time()) * 1000))
        name = self._prefix + key
        try:
            created = await self._guard.run(lambda r: r.set(name, b"1", nx=True, px=ttl_ms), "dpop")
        except RedisUnavailable:
            return await self.fallback.seen_first(key, until)
        if created and len(self.fallback):
            # proofs seen during an outage are still refused once Redis is back
            return await self.fallback.seen_first(key, until)
        return bool(created)

    async def admit_and_record(self, limiter: RedisLimiter, steps: Sequence[Bucket | Lockout], key: str,
                               until: float) -> tuple[Refusal | None, bool | None]:
        """The rate limits' ``steps`` and, once they admit, :meth:`seen_first` for ``key``, in **one** Redis round
        trip (the limiter's script). The second member is None when the key was not recorded (refused, or Redis
        unavailable): the caller then calls :meth:`seen_first` as usual."""
        ttl_ms = max(1, math.ceil((until - time.time()) * 1000))
        refused, created = await limiter.admit_once(steps, self._prefix + key, ttl_ms)
        if created and len(self.fallback):
            created = await self.fallback.seen_first(key, until)
        return refused, created

    async def close(self) -> None:
        await self._guard.close()
