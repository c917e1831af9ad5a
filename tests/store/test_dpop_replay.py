"""The two DPoP replay caches (process memory, Redis) follow the same rule (RFC 9449 §11.1): a proof id is
accepted once until its window closes, by exactly one of concurrent callers; Redis down: memory answers."""

from __future__ import annotations

import asyncio
import secrets
import time

import pytest

from ostiary.store.memory_dpop import MemoryDPoPReplayCache
from ostiary.store.redis.dpop import RedisDPoPReplayCache
from ostiary.store.redis.guard import RedisGuard

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
