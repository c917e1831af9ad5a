"""The two poll trackers (process memory, Redis) follow the same RFC 8628 §3.5 rule."""

from __future__ import annotations

import secrets

import pytest

from ostiary.web.device_poll import MemoryPollTracker, RedisPollTracker

REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture(params=["memory", "redis"])
async def tracker(request: pytest.FixtureRequest):
    t = MemoryPollTracker() if request.param == "memory" else RedisPollTracker(REDIS, prefix="ost-test:")
    yield t
    if isinstance(t, RedisPollTracker):
        await t.close()


async def test_slow_down_and_the_growing_interval(tracker) -> None:
    h = secrets.token_hex(8)
    now, exp = 1_800_000_000.0, 1_800_000_600.0
    assert await tracker.poll(h, 5, now, exp) == "ok"
    assert await tracker.poll(h, 5, now + 5, exp) == "ok"
    assert await tracker.poll(h, 5, now + 9.5, exp) == "ok"  # 4.5 s: within the 1 s leeway
    assert await tracker.poll(h, 5, now + 11, exp) == "slow_down"  # 1.5 s after the previous poll
    assert await tracker.interval(h, 5) == 10
    assert await tracker.poll(h, 5, now + 17, exp) == "slow_down"  # 6 s < 10 s
    assert await tracker.interval(h, 5) == 15
    assert await tracker.poll(h, 5, now + 32, exp) == "ok"
    assert await tracker.interval(h, 5) == 15
    await tracker.forget(h)
    assert await tracker.interval(h, 5) == 5
    other = secrets.token_hex(8)
    assert await tracker.poll(other, 5, now, exp) == "ok"  # devices are tracked separately


async def test_redis_unreachable_fails_open() -> None:
    t = RedisPollTracker("redis://127.0.0.1:1/0")
    try:
        assert await t.poll("h", 5, 0.0, 600.0) == "ok"
        assert await t.poll("h", 5, 0.1, 600.0) == "ok"
        assert await t.interval("h", 5) == 5
    finally:
        await t.close()
