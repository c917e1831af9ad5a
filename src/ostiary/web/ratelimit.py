"""Rate limits: token buckets per client and per IP, lock-out counters for failed client authentication, and
attempt counters for sign-in and user codes (reserved before the check, so parallel attempts cannot overrun).

Backed by Redis when ``redis_url`` is set (shared by every process), by process memory otherwise (each worker
then enforces the limit on its own share of the traffic). While Redis is unavailable the Redis limiter answers
from its own process memory: protection degrades to per-process limits, never to none.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cachetools import Cache, LFUCache

from ..core.throttling import Attempt, AttemptLimiter, Refusal, client_network
from .redis_guard import RedisGuard, RedisUnavailable

__all__ = ["Attempt", "Bucket", "Lockout", "MemoryLimiter", "RateLimiter", "RedisLimiter", "Refusal",
           "client_network", "retry_after"]


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


class RateLimiter(AttemptLimiter, Protocol):
    """Attempt counters (sign-in, user codes), token buckets and lock-outs (the token endpoints)."""

    async def admit(self, steps: Sequence[Bucket | Lockout]) -> Refusal | None:
        """Run ``steps`` in order and stop at the first that refuses (the buckets before it have given their
        token; the ones after it are untouched). One Redis round trip for all of them. None = admitted."""
        ...

    # reserve() and release(): the attempt counters of core.throttling.AttemptLimiter
    async def failures(self, key: str) -> int: ...
    async def record_failure(self, key: str, window: int) -> int: ...
    async def close(self) -> None: ...


class _Table:
    """At most ``size`` entries ``key → (value, expires_at)``. When full, expired entries go first, then the
    least used: a spray of new keys evicts its own kind, never a counter that has been hit again and again
    (clearing everything, or evicting the least *recently* used, would let a spray reset a lock-out)."""

    def __init__(self, size: int) -> None:
        self._data: LFUCache[str, tuple[Any, float]] = LFUCache(size)
        self._purged = -math.inf

    def get(self, key: str, now: float) -> Any | None:
        hit = self._data.get(key)
        if hit is None:
            return None
        if hit[1] <= now:
            del self._data[key]
            return None
        return hit[0]

    def set(self, key: str, value: Any, expires_at: float, now: float) -> None:
        if key not in self._data and len(self._data) >= self._data.maxsize and now - self._purged >= 1.0:
            self._purged = now  # at most one sweep a second (a sweep walks every entry)
            expired = [k for k in list(self._data) if Cache.__getitem__(self._data, k)[1] <= now]
            for k in expired:
                del self._data[k]
        self._data[key] = (value, expires_at)

    def pop(self, key: str) -> None:
        self._data.pop(key, None)

    def expires_at(self, key: str) -> float:
        hit = self._data.get(key)
        return hit[1] if hit is not None else 0.0

    def __len__(self) -> int:
        return len(self._data)


class MemoryLimiter:
    def __init__(self, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._buckets = _Table(max_keys)  # key -> (tokens, at); expires when full again
        self._counts = _Table(max_keys)  # key -> count; expires ``window`` after the last failure
        self._now = clock

    def _take(self, key: str, rate: float, burst: int, now: float) -> float:
        """Take one token; 0 if allowed, else the seconds to wait."""
        tokens, last = self._buckets.get(key, now) or (float(burst), now)
        tokens = min(float(burst), tokens + (now - last) * rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / rate
        self._buckets.set(key, (tokens, now), now + (burst - tokens) / rate, now)
        return wait

    async def failures(self, key: str) -> int:
        count: int = self._counts.get(key, self._now()) or 0
        return count

    async def admit(self, steps: Sequence[Bucket | Lockout]) -> Refusal | None:
        now = self._now()
        for step in steps:
            if isinstance(step, Bucket):
                wait = self._take(step.key, step.rate, step.burst, now)
                if wait:
                    return step.scope, wait
            elif (self._counts.get(step.key, now) or 0) >= step.max:
                return step.scope, float(step.window)
        return None

    def _count(self, key: str, window: int, now: float) -> int:
        count: int = (self._counts.get(key, now) or 0) + 1
        self._counts.set(key, count, now + window, now)
        return count

    async def record_failure(self, key: str, window: int) -> int:
        return self._count(key, window, self._now())

    def refusal(self, steps: Sequence[Attempt | Lockout]) -> Refusal | None:
        """The first counter at its maximum (nothing counted), or None."""
        now = self._now()
        for a in steps:
            if (self._counts.get(a.key, now) or 0) >= a.max:
                wait = self._counts.expires_at(a.key) - now if isinstance(a, Attempt) else a.window
                return a.scope, max(1.0, wait)
        return None

    def count(self, attempts: Sequence[Attempt]) -> None:
        now = self._now()
        for a in attempts:
            self._count(a.key, a.window, now)

    async def reserve(self, attempts: Sequence[Attempt]) -> Refusal | None:
        # no await between the check and the count: atomic within the event loop
        refused = self.refusal(attempts)
        if refused is None:
            self.count(attempts)
        return refused

    async def release(self, attempts: Sequence[Attempt]) -> None:
        now = self._now()
        for a in attempts:
            count = self._counts.get(a.key, now) or 0
            if count <= 1:
                self._counts.pop(a.key)
            else:
                self._counts.set(a.key, count - 1, self._counts.expires_at(a.key), now)

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

# KEYS[i] = attempt i's counter; ARGV[2i-1], ARGV[2i] = its max, window. Returns {0, 0} when counted, else
# {i, seconds until that counter expires} (nothing counted).
_RESERVE_LUA = """
for i = 1, #KEYS do
  if tonumber(redis.call('GET', KEYS[i]) or '0') >= tonumber(ARGV[2 * i - 1]) then
    return {i, redis.call('TTL', KEYS[i])}
  end
end
for i = 1, #KEYS do
  redis.call('INCR', KEYS[i]); redis.call('EXPIRE', KEYS[i], ARGV[2 * i])
end
return {0, 0}
"""

_RELEASE_LUA = """
for i = 1, #KEYS do
  if tonumber(redis.call('GET', KEYS[i]) or '0') <= 1 then redis.call('DEL', KEYS[i])
  else redis.call('DECR', KEYS[i]) end
end
return 0
"""


class RedisLimiter:
    """Shared limits in Redis. While Redis is unavailable (down, or hung: short timeouts and a circuit breaker,
    see :mod:`.redis_guard`) every call is answered by an in-process :class:`MemoryLimiter` instead.

    That fallback also mirrors, at all times, the failures and attempts this process counted in Redis, and is
    consulted first: so an outage (or a spurious timeout under load) continues from this process's own counts
    instead of from zero, and what it counted during an outage still refuses after Redis is back. Protection
    never drops below the per-process limits."""

    def __init__(self, redis: str | RedisGuard, prefix: str = "ostiary:rl:",
                 fallback: MemoryLimiter | None = None) -> None:
        self._guard = RedisGuard(redis) if isinstance(redis, str) else redis
        self._prefix = prefix
        self._admit: Any = self._guard.redis.register_script(_ADMIT_LUA)
        self._reserve: Any = self._guard.redis.register_script(_RESERVE_LUA)
        self._release: Any = self._guard.redis.register_script(_RELEASE_LUA)
        self.fallback = fallback or MemoryLimiter()

    @property
    def guard(self) -> RedisGuard:
        return self._guard

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
        locked = self.fallback.refusal([s for s in steps if isinstance(s, Lockout)])
        if locked is not None:
            return locked
        try:
            index, wait = await self._guard.run(lambda r: self._admit(keys=keys, args=args, client=r), "ratelimit")
        except RedisUnavailable:
            return await self.fallback.admit(steps)
        index = int(index)
        return (steps[index - 1].scope, float(wait)) if index else None

    async def reserve(self, attempts: Sequence[Attempt]) -> Refusal | None:
        if not attempts:
            return None
        keys = [self._prefix + "f:" + a.key for a in attempts]
        args: list[Any] = [v for a in attempts for v in (a.max, a.window)]
        refused = self.fallback.refusal(attempts)
        if refused is not None:
            return refused
        try:
            index, ttl = await self._guard.run(lambda r: self._reserve(keys=keys, args=args, client=r), "ratelimit")
        except RedisUnavailable:
            return await self.fallback.reserve(attempts)
        index = int(index)
        if index:
            return attempts[index - 1].scope, float(max(1, int(ttl)))
        self.fallback.count(attempts)
        return None

    async def release(self, attempts: Sequence[Attempt]) -> None:
        if not attempts:
            return
        keys = [self._prefix + "f:" + a.key for a in attempts]
        await self.fallback.release(attempts)
        with contextlib.suppress(RedisUnavailable):
            await self._guard.run(lambda r: self._release(keys=keys, args=[], client=r), "ratelimit")

    async def failures(self, key: str) -> int:
        try:
            v = await self._guard.run(lambda r: r.get(self._prefix + "f:" + key), "ratelimit")
        except RedisUnavailable:
            return await self.fallback.failures(key)
        return max(int(v or 0), await self.fallback.failures(key))

    async def record_failure(self, key: str, window: int) -> int:
        k = self._prefix + "f:" + key

        async def incr(r: Any) -> int:
            pipe = r.pipeline()
            pipe.incr(k)
            pipe.expire(k, window)
            count, _ = await pipe.execute()
            return int(count)

        local = await self.fallback.record_failure(key, window)
        try:
            return max(local, await self._guard.run(incr, "ratelimit"))
        except RedisUnavailable:
            return local

    async def close(self) -> None:
        await self._guard.close()


def retry_after(wait: float) -> int:
    return max(1, math.ceil(wait))
