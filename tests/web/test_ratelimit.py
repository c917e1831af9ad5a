"""Both rate limiters (process memory, Redis) admit and refuse alike: buckets in order, then a lock-out."""

from __future__ import annotations

import secrets

import pytest

from ostiary.web.ratelimit import Bucket, Lockout, MemoryLimiter, RedisLimiter

REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest):
    lim = MemoryLimiter() if request.param == "memory" else RedisLimiter(REDIS, prefix=f"ost-test-{secrets.token_hex(4)}:")
    yield lim
    await lim.close()


async def test_buckets_are_taken_in_order_and_the_first_refusal_wins(limiter) -> None:
    ip, client = Bucket("ip", "ip:1", 0.001, 3), Bucket("client", "client:c", 0.001, 2)
    assert await limiter.admit([ip, client]) is None
    assert await limiter.admit([ip, client]) is None
    scope, wait = await limiter.admit([ip, client])  # the client's burst of 2 is spent
    assert scope == "client" and wait > 100  # 0.001 tokens/s: a token is back in ~1000 s
    scope, _ = await limiter.admit([ip, client])  # the IP's burst of 3 is spent by now
    assert scope == "ip"
    assert await limiter.admit([Bucket("ip", "ip:2", 0.001, 3)]) is None  # other keys are separate
    assert await limiter.admit([]) is None


async def test_a_lockout_refuses_at_its_maximum_and_spares_the_buckets_after_it(limiter) -> None:
    lock = Lockout("failed_auth", "c|1.2.3.4", 2, 300)
    client = Bucket("client", "client:" + secrets.token_hex(4), 0.001, 1)
    await limiter.record_failure(lock.key, 300)
    assert await limiter.admit([lock]) is None  # one failure: below the maximum
    await limiter.record_failure(lock.key, 300)
    assert await limiter.admit([lock, client]) == ("failed_auth", 300.0)
    assert await limiter.admit([client]) is None  # the refused call did not take the client's only token


async def test_redis_down_admits_everything() -> None:
    lim = RedisLimiter("redis://127.0.0.1:1/0")
    try:
        assert await lim.admit([Bucket("ip", "ip:x", 0.001, 0), Lockout("failed_auth", "k", 0, 1)]) is None
    finally:
        await lim.close()
