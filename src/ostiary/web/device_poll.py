"""Poll timing for the device flow (RFC 8628 §3.5 ``slow_down``), kept out of the database.

In Redis when ``redis_url`` is set (shared by every worker, one round trip per poll), in process memory
otherwise (each worker then tracks the devices whose polls it serves). Either way, a poll that finds its
authorization still pending costs one read of the row and no database write.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ..config import Settings
from ..core.context import EngineContext
from ..core.device import PollResult, PollTracker, poll_leeway
from ..core.endpoints.device_authorization import DeviceAuthorizationEndpoint, DevicePolicy, DeviceVerification
from ..store.memory_device import MemoryPollTracker

__all__ = ["DeviceEndpoints", "MemoryPollTracker", "RedisPollTracker", "device_endpoints", "make_poll_tracker"]

log = logging.getLogger("ostiary.device")

# KEYS[1] = the device's key; ARGV = now, base interval, expires_at, leeway factor cap (1 s), step (5 s)
_POLL_LUA = """
local key = KEYS[1]
local now = tonumber(ARGV[1]); local base = tonumber(ARGV[2]); local exp = tonumber(ARGV[3])
local v = redis.call('HMGET', key, 'last', 'interval')
local last = tonumber(v[1]); local interval = math.max(tonumber(v[2]) or base, base)
local leeway = math.min(1.0, interval * 0.2)
local result = 'ok'
if last and (now - last) < (interval - leeway) then
  result = 'slow_down'; interval = interval + 5
end
redis.call('HSET', key, 'last', tostring(now), 'interval', interval)
redis.call('EXPIREAT', key, math.ceil(exp) + 60)
return result
"""


class RedisPollTracker:
    """Shared poll timing. If Redis is unreachable the tracker fails open (logged): devices are then not
    told to slow down, and nothing else changes."""

    def __init__(self, url: str, prefix: str = "ostiary:poll:") -> None:
        import redis.asyncio as aioredis

        self._redis: Any = aioredis.from_url(url)
        self._prefix = prefix
        self._script: Any = self._redis.register_script(_POLL_LUA)
        self._last_error = -1e9
        assert poll_leeway(5) == 1.0  # the Lua script mirrors core.device.poll_decision

    def _failed(self) -> None:
        now = time.monotonic()
        if now - self._last_error > 60:
            self._last_error = now
            log.exception("device poll tracker: Redis unavailable; slow_down is not enforced until it is back")

    async def poll(self, device_code_hash: str, interval: int, now: float, expires_at: float) -> PollResult:
        try:
            out = await self._script(keys=[self._prefix + device_code_hash], args=[repr(now), interval,
                                                                                   repr(expires_at)])
        except Exception:
            self._failed()
            return "ok"
        return "slow_down" if out in (b"slow_down", "slow_down") else "ok"

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
