"""Rate limits in Redis, shared by every process (``redis_url``): one Lua script per call, so a request costs one
round trip. While Redis is unavailable the limiter answers from its own process memory (a
:class:`~ostiary.store.memory_ratelimit.MemoryLimiter`): protection degrades to per-process limits, never to none.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from ...core.ratelimit import Attempt, Bucket, Lockout, Refusal
from ..memory_ratelimit import MemoryLimiter
from .guard import RedisGuard, RedisUnavailable

__all__ = ["RedisLimiter"]

# KEYS[i] = step i's key; ARGV[3i-2 .. 3i] = 'b', rate, burst (a bucket), 'f', max, window (a lockout), or, last,
# 'o', milliseconds, 0: a key to record once (SET NX PX) when every step before it admitted.
# Returns {0, '0'} when admitted (with a third member for an 'o' step: 1 recorded first, 0 already there), else
# {i, seconds to wait}. (All keys in one call: a Redis Cluster would need
# them in one hash slot; Ostiary talks to a single Redis.)
_ADMIT_LUA = """
local t = redis.call('TIME'); local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
for i = 1, #KEYS do
  local key = KEYS[i]; local kind = ARGV[3 * i - 2]
  local a = tonumber(ARGV[3 * i - 1]); local b = tonumber(ARGV[3 * i])
  if kind == 'o' then
    if redis.call('SET', key, '1', 'NX', 'PX', a) then return {0, '0', 1} end
    return {0, '0', 0}
  elseif kind == 'b' then
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
    see :mod:`.guard`) every call is answered by an in-process :class:`MemoryLimiter` instead.

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

    def _script(self, steps: Sequence[Bucket | Lockout]) -> tuple[list[str], list[Any]]:
        """The admit script's KEYS and ARGV for ``steps`` (see ``_ADMIT_LUA``)."""
        keys: list[str] = []
        args: list[Any] = []
        for step in steps:
            if isinstance(step, Bucket):
                keys.append(self._prefix + "b:" + step.key)
                args += ["b", step.rate, step.burst]
            else:
                keys.append(self._prefix + "f:" + step.key)
                args += ["f", step.max, step.window]
        return keys, args

    async def admit(self, steps: Sequence[Bucket | Lockout]) -> Refusal | None:
        if not steps:
            return None
        keys, args = self._script(steps)
        locked = self.fallback.refusal([s for s in steps if isinstance(s, Lockout)])
        if locked is not None:
            return locked
        try:
            index, wait = await self._guard.run(lambda r: self._admit(keys=keys, args=args, client=r), "ratelimit")
        except RedisUnavailable:
            return await self.fallback.admit(steps)
        index = int(index)
        return (steps[index - 1].scope, float(wait)) if index else None

    async def admit_once(self, steps: Sequence[Bucket | Lockout], key: str,
                         ttl_ms: int) -> tuple[Refusal | None, bool | None]:
        """:meth:`admit`, and in the same round trip, when admitted, ``SET key NX PX ttl_ms``: True when this
        call recorded the key, False when it was there. None for the key while Redis is unavailable (the
        steps are then answered by the fallback; the caller records the key its own way) or when refused."""
        keys, args = self._script(steps)
        keys.append(key)
        args += ["o", ttl_ms, 0]
        locked = self.fallback.refusal([s for s in steps if isinstance(s, Lockout)])
        if locked is not None:
            return locked, None
        try:
            answer = await self._guard.run(lambda r: self._admit(keys=keys, args=args, client=r), "ratelimit")
        except RedisUnavailable:
            return await self.fallback.admit(steps), None
        index = int(answer[0])
        if index:
            return (steps[index - 1].scope, float(answer[1])), None
        return None, bool(int(answer[2]))

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
