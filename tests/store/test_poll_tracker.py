"""The two poll trackers (process memory, Redis) follow the same RFC 8628 §3.5 rule."""

from __future__ import annotations

import asyncio
import secrets
import time

import pytest

from ostiary.core.device import PENDING_RECHECK
from ostiary.store.memory_device import MemoryPollTracker
from ostiary.store.redis.device_poll import RedisPollTracker
from ostiary.store.redis.guard import RedisGuard

REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture(params=["memory", "redis"])
async def tracker(request: pytest.FixtureRequest):
    t = (MemoryPollTracker(answers_pending=True) if request.param == "memory"
         else RedisPollTracker(REDIS, prefix="ost-test:"))
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


async def test_a_pending_poll_is_answered_without_the_database_until_something_changes(tracker) -> None:
    h = secrets.token_hex(8)
    now, exp = 1_800_000_000.0, 1_800_000_600.0
    assert await tracker.poll_pending(h, "cli", now) is None  # never read: the caller reads the row
    assert await tracker.poll(h, 5, now, exp, "cli") == "ok"  # the row was read as pending for "cli"
    assert await tracker.poll_pending(h, "cli", now + 5) == "ok"
    assert await tracker.poll_pending(h, "cli", now + 7) == "slow_down"  # timing still enforced
    assert await tracker.interval(h, 5) == 10
    assert await tracker.poll_pending(h, "other-client", now + 20) is None  # another client's code
    assert await tracker.poll_pending(h, "cli", now + PENDING_RECHECK + 1) is None  # read too long ago
    assert await tracker.poll(h, 5, now + 70, exp, "cli") == "ok"
    assert await tracker.poll_pending(h, "cli", now + 80) == "ok"
    assert await tracker.poll_pending(h, "cli", exp) is None  # expired: the row says expired_token


async def test_after_a_decision_every_poll_reads_the_database(tracker) -> None:
    h = secrets.token_hex(8)
    now, exp = 1_800_000_000.0, 1_800_000_600.0
    assert await tracker.poll(h, 5, now, exp, "cli") == "ok"
    await tracker.decided(h, exp)
    assert await tracker.poll_pending(h, "cli", now + 5) is None
    # a poll that read the row just before the decision was stored records its poll afterwards:
    # that must not make the authorization look pending again
    assert await tracker.poll(h, 5, now + 10, exp, "cli") == "ok"
    assert await tracker.poll_pending(h, "cli", now + 15) is None
    # a decision on a device this tracker never saw
    other = secrets.token_hex(8)
    await tracker.decided(other, exp)
    assert await tracker.poll(other, 5, now, exp, "cli") == "ok"
    assert await tracker.poll_pending(other, "cli", now + 5) is None


async def test_the_servers_memory_tracker_never_answers_for_the_database() -> None:
    # several workers: a decision taken in another process would go unseen, so every poll reads the row
    t = MemoryPollTracker()
    assert await t.poll("h", 5, 0.0, 600.0, "cli") == "ok"
    assert await t.poll_pending("h", "cli", 5.0) is None


async def test_redis_unreachable_falls_back_to_process_memory() -> None:
    t = RedisPollTracker("redis://127.0.0.1:1/0")
    try:
        assert await t.poll("h", 5, 0.0, 600.0) == "ok"
        assert await t.poll("h", 5, 0.1, 600.0) == "slow_down"  # still enforced, by this process
        assert await t.interval("h", 5) == 10
        assert await t.poll_pending("h", "cli", 0.2) is None  # the database answers
        await t.decided("h", 600.0)  # logged, not raised
    finally:
        await t.close()


async def test_after_an_outage_redis_pending_marks_are_read_again() -> None:
    """A decision taken while Redis was away went to the fallback only: Redis's older "pending" mark must not
    hide it once Redis is back."""
    guard = RedisGuard(REDIS, retry_interval=0.05)
    t = RedisPollTracker(guard, prefix=f"ost-test-{secrets.token_hex(4)}:")
    try:
        h, now = secrets.token_hex(8), time.time()
        assert await t.poll(h, 5, now, now + 600, "cli") == "ok"  # the row was read as pending
        assert await t.poll_pending(h, "cli", now + 6) == "ok"  # answered from Redis
        guard._trip(ConnectionError("test"))  # Redis goes away…
        await t.decided(h, now + 600)  # …while the user decides
        await asyncio.sleep(0.1)
        assert await t.poll_pending(h, "cli", now + 12) is None  # Redis is back: the row is read again
        assert guard.available
    finally:
        await t.close()
