"""The device flow's pieces a server process holds, and its poll tracker (RFC 8628 §3.5 ``slow_down``, kept out
of the database).

The tracker is in Redis when ``redis_url`` is set (:class:`~ostiary.store.redis.device_poll.RedisPollTracker`,
shared by every worker and host), in process memory otherwise
(:class:`~ostiary.store.memory_device.MemoryPollTracker`: each worker tracks the devices whose polls it serves,
and a pending poll then reads the row, because a decision made by another worker would go unseen).
"""

from __future__ import annotations

from ..config import Settings
from ..core.context import EngineContext
from ..core.device import PollTracker
from ..core.endpoints.device_authorization import DeviceAuthorizationEndpoint, DevicePolicy, DeviceVerification
from ..store.memory_device import MemoryPollTracker
from ..store.redis.device_poll import RedisPollTracker
from ..store.redis.guard import RedisGuard

__all__ = ["DeviceEndpoints", "device_endpoints", "make_poll_tracker"]


def make_poll_tracker(redis: RedisGuard | None, prefix: str = "ostiary:") -> PollTracker:
    """Redis when the process has a Redis connection (keys under ``{prefix}poll:``), process memory otherwise."""
    return RedisPollTracker(redis, prefix=prefix + "poll:") if redis is not None else MemoryPollTracker()


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
