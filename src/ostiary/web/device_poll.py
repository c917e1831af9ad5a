"""Poll timing for the device flow (RFC 8628 §3.5 ``slow_down``), kept out of the database.

In Redis when ``redis_url`` is set (shared by every worker and host): a poll that finds its authorization still
pending then costs one Redis round trip and no database access at all (the row is re-read at most every
``PENDING_RECHECK`` seconds, and at once after a decision). In process memory otherwise (each worker tracks the
devices whose polls it serves): a pending poll then reads the row, because a decision made by another worker
would go unseen, and writes nothing.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ..config import Settings
from ..core.context import EngineContext
from ..core.device import PENDING_RECHECK, PollResult, PollTracker, poll_leeway
from ..core.endpoints.device_authorization import DeviceAuthorizationEndpoint, DevicePolicy, DeviceVerification
from ..store.memory_device import MemoryPollTracker

__all__ = ["DeviceEndpoints", "MemoryPollTracker", "RedisPollTracker", "device_endpoints", "make_poll_tracker"]

log = logging.getLogger("ostiary.device")

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
    """Shared poll timing. If Redis is unreachable the tracker fails open (logged): devices are then not
    told to slow down, and nothing else changes."""

    def __init__(self, url: str, prefix: str = "ostiary:poll:") -> None:
        import redis.asyncio as aioredis

        self._redis: Any = aioredis.from_url(url)
        self._prefix = prefix
        self._script: Any = self._redis.register_script(_POLL_LUA)
        self._pending: Any = self._redis.register_script(_PENDING_LUA)
        self._decided: Any = self._redis.register_script(_DECIDED_LUA)
        self._last_error = -1e9
        assert poll_leeway(5) == 1.0  # the Lua script mirrors core.device.poll_decision

    def _failed(self) -> None:
        now = time.monotonic()
        if now - self._last_error > 60:
            self._last_error = now
            log.exception("device poll tracker: Redis unavailable; slow_down is not enforced until it is back")

    async def poll(self, device_code_hash: str, interval: int, now: float, expires_at: float,
                   client_id: str = "") -> PollResult:
        try:
            out = await self._script(keys=[self._prefix + device_code_hash],
                                     args=[repr(now), interval, repr(expires_at), client_id])
        except Exception:
            self._failed()
            return "ok"
        return "slow_down" if out in (b"slow_down", "slow_down") else "ok"

    async def poll_pending(self, device_code_hash: str, client_id: str, now: float) -> PollResult | None:
        try:
            out = await self._pending(keys=[self._prefix + device_code_hash],
                                      args=[repr(now), client_id, repr(PENDING_RECHECK)])
        except Exception:
            self._failed()
            return None  # the database answers instead
        if out in (b"ok", "ok"):
            return "ok"
        return "slow_down" if out in (b"slow_down", "slow_down") else None

    async def decided(self, device_code_hash: str, expires_at: float) -> None:
        try:
            await self._decided(keys=[self._prefix + device_code_hash], args=[repr(expires_at)])
        except Exception:  # polls then keep answering "pending" from Redis until PENDING_RECHECK
            self._failed()

    async def interval(self, device_code_hash: str, default: int) -> int:
        try:
            v = await self._redis.hget(self._prefix + device_code_hash, "interval")
        except Exception:
            self._failed()
            return default
        return max(default, int(v)) if v is not None else default

    async def forget(self, device_code_hash: str) -> None:
        try:
            await self._redis.delete(self._prefix + device_code_hash)
        except Exception:
            self._failed()

    async def close(self) -> None:
        await self._redis.aclose()


def make_poll_tracker(redis_url: str | None) -> PollTracker:
    return RedisPollTracker(redis_url) if redis_url else MemoryPollTracker()


class DeviceEndpoints:
    """The device flow's pieces a server process holds."""

    def __init__(self, ctx: EngineContext, policy: DevicePolicy) -> None:
        self.ctx = ctx
        self.policy = policy
        self.authorization = DeviceAuthorizationEndpoint(ctx, policy)
        self.verification = DeviceVerification(ctx, policy)

    async def close(self) -> None:
        tracker = self.ctx.poll_tracker
        if isinstance(tracker, RedisPollTracker):
            await tracker.close()


def device_endpoints(ctx: EngineContext, settings: Settings) -> DeviceEndpoints:
    d = settings.device
    policy = DevicePolicy(verification_uri=ctx.policy.issuer + "/device", expires_in=d.expires_in,
                          interval=d.interval, max_attempts_per_code=d.max_attempts_per_code)
    return DeviceEndpoints(ctx, policy)
