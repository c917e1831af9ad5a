"""Rate limits: token buckets per client and per IP, and a lock-out counter for failed client authentication.

Backed by Redis when ``redis_url`` is set (shared by every process), by process memory otherwise
(each worker then enforces the limit on its own share of the traffic).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["Bucket", "Lockout", "MemoryLimiter", "RateLimiter", "RedisLimiter", "Refusal"]

log = logging.getLogger("ostiary.ratelimit")


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


#: Which step refused, and the seconds to wait.
Refusal = tuple[str, float]


class RateLimiter(Protocol):
    async def admit(self, steps: Sequence[Bucket | Lockout]) -> Refusal | None:
        """Run ``steps`` in order and stop at the first that refuses (the buckets before it have given their
        token; the ones after it are untouched). One Redis round trip for all of them. None = admitted."""
        ...

    async def failures(self, key: str) -> int: ...
    async def record_failure(self, key: str, window: int) -> int: ...
    async def close(self) -> None: ...


class MemoryLimiter:
    def __init__(self, max_keys: int = 100_000) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}
        self._fails: dict[str, tuple[int, float]] = {}
        self._max = max_keys

    def _take(self, key: str, rate: float, burst: int) -> float:
        """Take one token; 0 if allowed, else the seconds to wait."""
        now = time.monotonic()
        tokens, last = self._buckets.get(key, (float(burst), now))
        tokens = min(float(burst), tokens + (now - last) * rate)
        if tokens >= 1.0:
            if len(self._buckets) >= self._max:
                self._buckets.clear()
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / rate

    async def failures(self, key: str) -> int:
        count, until = self._fails.get(key, (0, 0.0))
        return count if until > time.monotonic() else 0

    async def admit(self, steps: Sequence[Bucket | Lockout]) -> Refusal | None:
        for step in steps:
            if isinstance(step, Bucket):
                wait = self._take(step.key, step.rate, step.burst)
                if wait:
                    return step.scope, wait
            elif await self.failures(step.key) >= step.max:
                return step.scope, float(step.window)
        return None

    async def record_failure(self, key: str, window: int) -> int:
        now = time.monotonic()
        count, until = self._fails.get(key, (0, 0.0))
        count = count + 1 if until > now else 1
        if len(self._fails) >= self._max:
            self._fails.clear()
        self._fails[key] = (count, now + window)
        return count

    async def close(self) -> None:
        return None


# KEYS[i] = step i's key; ARGV[3i-2 .. 3i] = 'b', rate, burst (a bucket) or 'f', max, window (a lockout).
# Returns {0, '0'} when admitted, else {i, seconds to wait}. (All keys in one call: a Redis Cluster would need
# them in one hash slot; Ostiary talks to a single Redis.)
_ADMIT_LUA = """
local t = redis.call('TIME'); local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
for i = 1, #KEYS do
  local key = KEYS[i]; local kind = ARGV[3 * i - 2]
  local a = tonumber(ARGV[3 * i - 1]); local b = tonumber(ARGV[3 * i])
  if kind == 'b' then
    local v = redis.call('HMGET', key, 'tokens', 'ts')
    local tokens = tonumber(v[1]) or b; local ts = tonumber(v[2]) or now
    tokens = math.min(b, tokens + (now - ts) * a)
    local wait = 0
    if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / a end
    redis.call('HSET', key, 'tokens', tokens, 'ts', now)
    redis.call('EXPIRE', key, math.ceil(b / a) + 1)
    if wait > 0 then return {i, tostring(wait)} end
  elseif tonumber(redis.call('GET', key) or '0') >= a then
    return {i, tostring(b)}
  end
end
return {0, '0'}
"""


class RedisLimiter:
    """Shared limits in Redis. If Redis is unreachable the limiter fails open (logged): an outage of the
    limiter's store must not take the token endpoint down with it."""

    def __init__(self, url: str, prefix: str = "ostiary:rl:") -> None:
        import redis.asyncio as aioredis

        self._redis: Any = aioredis.from_url(url)
        self._prefix = prefix
        self._admit: Any = self._redis.register_script(_ADMIT_LUA)
        self._last_error = -1e9

    def _failed(self) -> None:
        now = time.monotonic()
        if now - self._last_error > 60:
            self._last_error = now
            log.exception("rate limiter: Redis unavailable; limits are not enforced until it is back")

    async def admit(self, steps: Sequence[Bucket | Lockout]) -> Refusal | None:
        if not steps:
            return None
        keys: list[str] = []
        args: list[Any] = []
        for step in steps:
            if isinstance(step, Bucket):
                keys.append(self._prefix + "b:" + step.key)
                args += ["b", step.rate, step.burst]
            else:
                keys.append(self._prefix + "f:" + step.key)
                args += ["f", step.max, step.window]
        try:
            index, wait = await self._admit(keys=keys, args=args)
        except Exception:
            self._failed()
            return None
        index = int(index)
        return (steps[index - 1].scope, float(wait)) if index else None

    async def failures(self, key: str) -> int:
        try:
            v = await self._redis.get(self._prefix + "f:" + key)
        except Exception:
            self._failed()
            return 0
        return int(v or 0)

    async def record_failure(self, key: str, window: int) -> int:
        k = self._prefix + "f:" + key
        try:
            pipe = self._redis.pipeline()
            pipe.incr(k)
            pipe.expire(k, window)
            count, _ = await pipe.execute()
        except Exception:
            self._failed()
            return 0
        return int(count)

    async def close(self) -> None:
        await self._redis.aclose()


def retry_after(wait: float) -> int:
    return max(1, math.ceil(wait))
