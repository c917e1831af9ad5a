"""Poll timing for the device flow (RFC 8628 §3.5 ``slow_down``) in Redis, shared by every worker and host
(``redis_url``): a poll that finds its authorization still pending then costs one Redis round trip and no database
access at all (the row is re-read at most every ``PENDING_RECHECK`` seconds, and at once after a decision).

Its twin in process memory is :class:`~ostiary.store.memory_device.MemoryPollTracker`; the Protocol both
implement is :class:`~ostiary.core.device.PollTracker`.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

from ...core.device import PENDING_RECHECK, PollResult, poll_leeway
from ..memory_device import MemoryPollTracker
from .guard import RedisGuard, RedisUnavailable

__all__ = ["RedisPollTracker"]

# KEYS[1] = the device's key. Fields: last (poll), interval, client + exp + read (read from the database as
# pending for this client at "read"), decided (set by a decision; never cleared by a poll).
_TIMING_LUA = """
local leeway = math.min(1.0, interval * 0.2)
local result = 'ok'
if last and (now - last) < (interval - leeway) then
  result = 'slow_down'; interval = interval + 5
end
"""

# ARGV = now, base interval, expires_at, client_id: a poll of a row just read as pending
_POLL_LUA = """
local key = KEYS[1]
local now = tonumber(ARGV[1]); local base = tonumber(ARGV[2]); local exp = tonumber(ARGV[3])
local v = redis.call('HMGET', key, 'last', 'interval')
local last = tonumber(v[1]); local interval = math.max(tonumber(v[2]) or base, base)
""" + _TIMING_LUA + """
redis.call('HSET', key, 'last', ARGV[1], 'interval', interval, 'client', ARGV[4], 'exp', ARGV[3], 'read', ARGV[1])
redis.call('EXPIREAT', key, math.ceil(exp) + 60)
return result
"""

# ARGV = now, client_id, recheck: answer a poll from Redis alone, or 'unknown'
_PENDING_LUA = """
local key = KEYS[1]
local now = tonumber(ARGV[1])
local v = redis.call('HMGET', key, 'last', 'interval', 'client', 'exp', 'read', 'decided')
if v[6] or not v[3] or v[3] ~= ARGV[2] or now >= tonumber(v[4]) or now - tonumber(v[5]) > tonumber(ARGV[3]) then
  return 'unknown'
end
local last = tonumber(v[1]); local interval = tonumber(v[2])
""" + _TIMING_LUA + """
redis.call('HSET', key, 'last', ARGV[1], 'interval', interval)
return result
"""

# ARGV = expires_at
_DECIDED_LUA = """
redis.call('HSET', KEYS[1], 'decided', '1')
redis.call('EXPIREAT', KEYS[1], math.ceil(tonumber(ARGV[1])) + 60)
return 1
"""


class RedisPollTracker:
    """Shared poll timing. While Redis is unavailable (down, or hung: short timeouts and a circuit breaker, see
    :mod:`.guard`) a per-process :class:`MemoryPollTracker` answers instead: ``slow_down`` is then
    enforced per worker, and every poll reads its row."""

    def __init__(self, redis: str | RedisGuard, prefix: str = "ostiary:poll:") -> None:
        self._guard = RedisGuard(redis) if isinstance(redis, str) else redis
        r = self._guard.redis
        self._prefix = prefix
        self._script: Any = r.register_script(_POLL_LUA)
        self._pending: Any = r.register_script(_PENDING_LUA)
        self._decided: Any = r.register_script(_DECIDED_LUA)
        self.fallback = MemoryPollTracker()
        # Redis's "read as pending" marks made before an outage are not trusted after it (a decision taken
        # meanwhile went to the fallback only): such a mark older than this is re-read from the database.
        self._distrust_before = -math.inf
        self._outage = False
        assert poll_leeway(5) == 1.0  # the Lua script mirrors core.device.poll_decision

    def _down(self, now: float | None = None) -> None:
        self._outage = True
        if now is not None:
            self._distrust_before = max(self._distrust_before, now)

    async def poll(self, device_code_hash: str, interval: int, now: float, expires_at: float,
                   client_id: str = "") -> PollResult:
        key = self._prefix + device_code_hash
        args = [repr(now), interval, repr(expires_at), client_id]
        try:
            out = await self._guard.run(lambda r: self._script(keys=[key], args=args, client=r), "device_poll")
        except RedisUnavailable:
            self._down(now)
            return await self.fallback.poll(device_code_hash, interval, now, expires_at, client_id)
        return "slow_down" if out in (b"slow_down", "slow_down") else "ok"

    async def poll_pending(self, device_code_hash: str, client_id: str, now: float) -> PollResult | None:
        if self._outage:  # the first poll after an outage: anything marked before now is re-read
            self._outage = False
            self._distrust_before = max(self._distrust_before, now)
        recheck = min(float(PENDING_RECHECK), now - self._distrust_before)
        key = self._prefix + device_code_hash
        args = [repr(now), client_id, repr(recheck)]
        try:
            out = await self._guard.run(lambda r: self._pending(keys=[key], args=args, client=r), "device_poll")
        except RedisUnavailable:
            self._down(now)
            return None  # the database answers instead
        if out in (b"ok", "ok"):
            return "ok"
        return "slow_down" if out in (b"slow_down", "slow_down") else None

    async def decided(self, device_code_hash: str, expires_at: float) -> None:
        key = self._prefix + device_code_hash
        try:
            await self._guard.run(lambda r: self._decided(keys=[key], args=[repr(expires_at)], client=r),
                                  "device_poll")
        except RedisUnavailable:
            self._down()
            await self.fallback.decided(device_code_hash, expires_at)

    async def interval(self, device_code_hash: str, default: int) -> int:
        try:
            v = await self._guard.run(lambda r: r.hget(self._prefix + device_code_hash, "interval"), "device_poll")
        except RedisUnavailable:
            return await self.fallback.interval(device_code_hash, default)
        return max(default, int(v)) if v is not None else default

    async def forget(self, device_code_hash: str) -> None:
        with contextlib.suppress(RedisUnavailable):  # else the entry expires with its authorization
            await self._guard.run(lambda r: r.delete(self._prefix + device_code_hash), "device_poll")
        await self.fallback.forget(device_code_hash)

    async def close(self) -> None:
        await self._guard.close()
