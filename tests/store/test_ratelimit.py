"""Both rate limiters (process memory, Redis) admit and refuse alike: buckets in order, then a lock-out; attempts
are reserved atomically; the memory limiter survives a key spray; without Redis the limits fall back to memory."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from ostiary.core.ratelimit import Attempt, Bucket, Lockout, client_network
from ostiary.store.memory_ratelimit import MemoryLimiter
from ostiary.store.redis.guard import RedisGuard
from ostiary.store.redis.ratelimit import RedisLimiter
from ostiary.web.metrics import REDIS_FALLBACK, redis_fallback

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


async def test_attempts_are_reserved_atomically_and_released_on_success(limiter) -> None:
    """Sign-in and user-code checks reserve their attempt first: 40 at once against a limit of 5 admit 5."""
    key = "login:acct:" + secrets.token_hex(4)
    acct, ip = Attempt("login_account", key, 5, 300), Attempt("login_ip", "login:ip:" + key, 50, 300)
    results = await asyncio.gather(*(limiter.reserve([acct, ip]) for _ in range(40)))
    assert sum(r is None for r in results) == 5
    assert {r[0] for r in results if r is not None} == {"login_account"}
    assert await limiter.failures(key) == 5 and await limiter.failures(ip.key) == 5  # refusals count nothing
    await limiter.release([acct, ip])  # one of them was right: its attempt is given back
    assert await limiter.failures(key) == 4
    assert await limiter.reserve([acct, ip]) is None
    scope, wait = await limiter.reserve([acct, ip])
    assert scope == "login_account" and 0 < wait <= 300
    await limiter.release([Attempt("x", "never-counted-" + key, 5, 300)])  # nothing to take back: harmless
    assert await limiter.failures("never-counted-" + key) == 0


async def test_a_spray_of_new_keys_does_not_reset_a_lockout() -> None:
    """The memory limiter is bounded; when full it drops expired, then least-used entries, never all of them."""
    lim = MemoryLimiter(max_keys=1000)
    lock = Lockout("failed_auth", "victim|1.2.3.4", 5, 300)
    acct = Attempt("login_account", "login:acct:user:victim", 5, 300)
    for _ in range(5):
        await lim.record_failure(lock.key, 300)
        assert await lim.reserve([acct]) is None
    for i in range(150_000):  # far more distinct keys than the limiter holds
        await lim.record_failure(f"spray-{i}", 300)
        await lim.admit([Bucket("ip", f"ip:spray-{i}", 1.0, 5)])
    assert await lim.admit([lock]) == ("failed_auth", 300.0)
    assert (await lim.reserve([acct]))[0] == "login_account"
    assert await lim.failures("spray-149999") == 1  # new keys are still counted


async def test_expired_entries_make_room_first() -> None:
    now = [0.0]
    lim = MemoryLimiter(max_keys=10, clock=lambda: now[0])
    for i in range(10):
        await lim.record_failure(f"old-{i}", 60)
    for _ in range(3):
        await lim.record_failure("old-0", 60)  # the most used, but expired below
    now[0] = 100.0
    await lim.record_failure("hot", 60)
    for _ in range(5):
        await lim.record_failure("hot", 60)
    for i in range(30):
        await lim.record_failure(f"new-{i}", 60)
    assert await lim.failures("hot") == 6 and await lim.failures("old-0") == 0


def test_per_address_limits_count_an_ipv6_slash_64_as_one_address() -> None:
    assert client_network("2001:db8:1:2:aaaa::1") == client_network("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert client_network("2001:db8:1:3::1") != client_network("2001:db8:1:2::1")
    assert client_network("203.0.113.7") == "203.0.113.7"
    assert client_network("::ffff:203.0.113.7") == "203.0.113.7"
    assert client_network("testclient") == "testclient"


class HungRedis:
    """A 'Redis' that accepts connections and never answers."""

    async def __aenter__(self) -> str:
        self.conns: list[asyncio.StreamWriter] = []

        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.conns.append(writer)
            await reader.read()  # until the client gives up

        self.server = await asyncio.start_server(hold, "127.0.0.1", 0)
        return f"redis://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/0"

    async def __aexit__(self, *exc: object) -> None:
        for w in self.conns:
            w.close()
        self.server.close()


@pytest.mark.parametrize("where", ["unreachable", "hung"])
async def test_without_redis_the_limits_fall_back_to_process_memory(where: str) -> None:
    """Redis down or hung: the limits still hold (per process), and the breaker stops waiting for Redis."""
    async with HungRedis() as hung_url:
        url = "redis://127.0.0.1:1/0" if where == "unreachable" else hung_url
        guard = RedisGuard(url, timeout=0.2, retry_interval=60, on_fallback=redis_fallback)  # as the server wires it
        lim = RedisLimiter(guard)
        try:
            before = REDIS_FALLBACK.labels("ratelimit")._value.get()
            assert await lim.admit([Bucket("ip", "ip:x", 0.001, 0)]) == ("ip", 1000.0)
            assert not guard.available
            lock = Lockout("failed_auth", "k", 2, 300)
            await lim.record_failure("k", 300)
            await lim.record_failure("k", 300)
            assert await lim.admit([lock]) == ("failed_auth", 300.0)
            acct = Attempt("login_account", "a", 1, 300)
            assert await lim.reserve([acct]) is None and (await lim.reserve([acct]))[0] == "login_account"
            # with the breaker open nothing waits for Redis: many calls finish well within the test's timeout
            await asyncio.wait_for(asyncio.gather(*(lim.failures("k") for _ in range(200))), 10)
            assert REDIS_FALLBACK.labels("ratelimit")._value.get() - before >= 200
            assert not await guard.ping()
        finally:
            await lim.close()


async def test_the_breaker_closes_again_when_redis_answers() -> None:
    guard = RedisGuard(REDIS, timeout=0.2, retry_interval=0.1)
    lim = RedisLimiter(guard, prefix=f"ost-test-{secrets.token_hex(4)}:")
    try:
        guard._trip(ConnectionError("test"))  # as after a failure
        assert not guard.available
        await lim.record_failure("k", 60)  # the fallback counts it
        await asyncio.sleep(0.15)
        assert await guard.ping() and guard.available  # the probe found Redis: closed again
        prefix = lim._prefix
        assert await guard.redis.get(prefix + "f:k") is None  # counted during the outage: not in Redis…
        assert await lim.failures("k") == 1  # …but this process remembers it
        await lim.record_failure("k", 60)
        assert int(await guard.redis.get(prefix + "f:k")) == 1 and await lim.failures("k") == 2
    finally:
        await lim.close()
