"""Rate limits, wired for a server process: the limiter (Redis when ``redis_url`` is set, shared by every process;
process memory otherwise) and the ``Retry-After`` seconds of a refusal.

The limiter's protocol and steps are in :mod:`ostiary.core.ratelimit`, its two implementations in
:mod:`ostiary.store.memory_ratelimit` and :mod:`ostiary.store.redis.ratelimit`.
"""

from __future__ import annotations

import math

from ..core.ratelimit import RateLimiter
from ..store.memory_ratelimit import MemoryLimiter
from ..store.redis.guard import RedisGuard
from ..store.redis.ratelimit import RedisLimiter

__all__ = ["make_limiter", "retry_after"]


def make_limiter(redis: RedisGuard | None, prefix: str = "ostiary:") -> RateLimiter:
    """Redis when the process has a Redis connection (keys under ``{prefix}rl:``), process memory otherwise."""
    return RedisLimiter(redis, prefix=prefix + "rl:") if redis is not None else MemoryLimiter()


def retry_after(wait: float) -> int:
    """The ``Retry-After`` header's whole seconds (at least 1) for a refusal's ``wait``."""
    return max(1, math.ceil(wait))
