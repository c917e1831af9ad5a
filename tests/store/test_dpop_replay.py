"""The two DPoP replay caches (process memory, Redis) follow the same rule (RFC 9449 §11.1): a proof id is
accepted once until its window closes, by exactly one of concurrent callers; Redis down: memory answers."""

from __future__ import annotations

import asyncio
import secrets
import time

import pytest

from ostiary.core.ratelimit import Bucket, Lockout
from ostiary.store.memory_dpop import MemoryDPoPReplayCache
from ostiary.store.redis.dpop import RedisDPoPReplayCache
from ostiary.store.redis.guard import RedisGuard
from ostiary.store.redis.ratelimit import RedisLimiter

REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture(params=["memory", "redis"])
async def cache(request: pytest.FixtureRequest):
    c = MemoryDPoPReplayCache() if request.param == "memory" else RedisDPoPReplayCache(
        REDIS, prefix=f"ost-test-dpop-{secrets.token_hex(4)}:")
    yield c
    if isinstance(c, RedisDPoPReplayCache):
        await c.close()


async def test_a_proof_id_is_accepted_once(cache) -> None:
    key, until = secrets.token_hex(16), time.time() + 60
    assert await cache.seen_first(key, until) is True
    assert await cache.seen_first(key, until) is False
    assert await cache.seen_first(secrets.token_hex(16), until) is True  # another proof


async def test_of_concurrent_callers_one_wins(cache) -> None:
    key, until = secrets.token_hex(16), time.time() + 60
    results = await asyncio.gather(*(cache.seen_first(key, until) for _ in range(20)))
    assert results.count(True) == 1


async def test_an_id_is_forgotten_once_its_window_closed(cache) -> None:
    key = secrets.token_hex(16)
    assert await cache.seen_first(key, time.time() + 0.2) is True
    await asyncio.sleep(0.4)
    assert await cache.seen_first(key, time.time() + 60) is True


def test_the_memory_cache_is_bounded() -> None:
    clock = [1000.0]
    cache = MemoryDPoPReplayCache(max_keys=3, clock=lambda: clock[0])
    for i in range(5):
        assert asyncio.run(cache.seen_first(f"k{i}", 1000.0 + 60 + i)) is True
    assert len(cache) == 3
    clock[0] = 2000.0  # every window closed: everything goes
    assert asyncio.run(cache.seen_first("k9", 2060.0)) is True and len(cache) == 1


async def test_redis_down_falls_back_to_memory_and_still_refuses_replays() -> None:
    guard = RedisGuard("redis://127.0.0.1:1/0", timeout=0.2, retry_interval=60)
    cache = RedisDPoPReplayCache(guard, prefix="ost-test-dpop-down:")
    key, until = secrets.token_hex(16), time.time() + 60
    assert await cache.seen_first(key, until) is True
    assert await cache.seen_first(key, until) is False  # never "no replay check"
    await cache.close()


class _CountingGuard(RedisGuard):
    """The real guard over the real Redis, counting round trips."""

    calls = 0

    async def run(self, op, component):  # type: ignore[no-untyped-def]
        self.calls += 1
        return await super().run(op, component)


async def test_a_proof_id_is_recorded_in_the_rate_limits_round_trip() -> None:
    """With Redis, a DPoP request's rate limits and its proof id cost one round trip together (issue 12's
    benchmark goal), and keep their meaning: first use True, a replay False, a refused request records nothing."""
    guard = _CountingGuard(REDIS)
    prefix = f"ost-test-dpop-{secrets.token_hex(4)}:"
    limiter = RedisLimiter(guard, prefix=prefix + "rl:")
    cache = RedisDPoPReplayCache(guard, prefix=prefix + "dpop:")
    steps = [Bucket("ip", "ip:a", 1000, 1000), Lockout("failed_auth", "c|a", 5, 60), Bucket("client", "c", 1000, 1000)]
    key, until = secrets.token_hex(16), time.time() + 60
    assert await cache.admit_and_record(limiter, steps, key, until) == (None, True)
    assert guard.calls == 1
    assert await cache.admit_and_record(limiter, steps, key, until) == (None, False)
    assert await cache.seen_first(key, until) is False  # the same record as seen_first's

    empty = [Bucket("ip", "ip:b", 0.001, 1)]
    other = secrets.token_hex(16)
    assert await cache.admit_and_record(limiter, empty, other, until) == (None, True)
    refused, first = await cache.admit_and_record(limiter, empty, secrets.token_hex(16), until)
    assert refused is not None and refused[0] == "ip" and first is None  # rate-limited: nothing recorded
    for _ in range(5):
        await limiter.record_failure("c|a", 60)
    refused, first = await cache.admit_and_record(limiter, steps, secrets.token_hex(16), until)
    assert refused is not None and refused[0] == "failed_auth" and first is None
    await guard.close()


async def test_redis_down_then_back_the_early_record_still_refuses_outage_proofs() -> None:
    """Redis unavailable: the rate limits come from memory and the proof id is left to ``seen_first`` (memory);
    once Redis is back, an id first seen during the outage is still refused by the early record."""
    guard = RedisGuard(REDIS, retry_interval=0.2)
    prefix = f"ost-test-dpop-{secrets.token_hex(4)}:"
    limiter = RedisLimiter(guard, prefix=prefix + "rl:")
    cache = RedisDPoPReplayCache(guard, prefix=prefix + "dpop:")
    key, until = secrets.token_hex(16), time.time() + 60
    guard._trip(ConnectionError("simulated outage"))  # the breaker opens, as after a failed call
    refused, first = await cache.admit_and_record(limiter, [Bucket("ip", "ip:x", 1000, 1000)], key, until)
    assert refused is None and first is None
    assert await cache.seen_first(key, until) is True  # recorded in this process's memory
    await asyncio.sleep(0.3)  # the breaker half-opens: Redis answers again
    assert await cache.admit_and_record(limiter, [], key, until) == (None, False)
    assert guard.available
    await guard.close()
