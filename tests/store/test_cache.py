"""The per-process client cache: single flight on expiry, answers from the cache while refreshing."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from ostiary._clock import FixedClock
from ostiary.core.clients import Client
from ostiary.store.cache import CachedStore
from ostiary.store.memory import MemoryStore


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def get_client(self, client_id: str) -> Client | None:
        self.lookups += 1
        await self.gate.wait()
        return await super().get_client(client_id)


def _client(name: str = "n") -> Client:
    return Client(client_id="c1", name=name, client_type="confidential",
                  token_endpoint_auth_method="client_secret_basic", grant_types=frozenset(), scopes=frozenset())


async def test_concurrent_misses_cause_one_lookup() -> None:
    inner, clock = CountingStore(), FixedClock()
    await inner.add_client(_client())
    cache = CachedStore(inner, clock, ttl=5)
    inner.gate.clear()
    waiters = [asyncio.create_task(cache.get_client("c1")) for _ in range(50)]
    await asyncio.sleep(0)
    inner.gate.set()
    results = await asyncio.gather(*waiters)
    assert inner.lookups == 1
    assert all(r is not None and r.name == "n" for r in results)


async def test_expired_entry_is_served_while_one_refresh_runs_then_replaced() -> None:
    inner, clock = CountingStore(), FixedClock()
    await inner.add_client(_client("old"))
    cache = CachedStore(inner, clock, ttl=5)
    assert (await cache.get_client("c1")).name == "old"  # type: ignore[union-attr]
    await inner.update_client(replace(_client("new")))  # changed by another process
    clock.advance(6)
    inner.gate.clear()
    stale = await asyncio.gather(*(cache.get_client("c1") for _ in range(20)))
    assert [c.name for c in stale if c] == ["old"] * 20  # nobody waited on the database
    assert inner.lookups == 2  # the first load and one refresh
    inner.gate.set()
    await asyncio.sleep(0.01)
    assert (await cache.get_client("c1")).name == "new"  # type: ignore[union-attr]


async def test_an_entry_older_than_two_ttls_is_not_served() -> None:
    inner, clock = CountingStore(), FixedClock()
    await inner.add_client(_client("old"))
    cache = CachedStore(inner, clock, ttl=5)
    await cache.get_client("c1")
    await inner.delete_client("c1")
    clock.advance(11)
    assert await cache.get_client("c1") is None  # a deleted client stops working within 2 x ttl


async def test_a_spray_of_unknown_client_ids_does_not_flush_the_clients_in_use() -> None:
    """Full cache: expired entries go first, then the least recently used; never everything at once."""
    inner, clock = CountingStore(), FixedClock()
    await inner.add_client(_client())
    cache = CachedStore(inner, clock, ttl=5, max_entries=100)
    assert await cache.get_client("c1") is not None
    for i in range(1000):
        assert await cache.get_client(f"unknown-{i}") is None
        if i % 10 == 0:
            assert await cache.get_client("c1") is not None  # a client in use
    assert inner.lookups == 1 + 1000  # c1 was read from the database once


async def test_a_failed_refresh_behind_a_stale_answer_is_not_left_unretrieved() -> None:
    """A refresh that fails (the database away) while requests are answered from the stale entry must not end
    as asyncio's "Task exception was never retrieved" (a plain-text line outside the JSON logs)."""

    class FailingStore(CountingStore):
        fail = False

        async def get_client(self, client_id: str) -> Client | None:
            if self.fail:
                raise ConnectionError("database away")
            return await super().get_client(client_id)

    inner, clock = FailingStore(), FixedClock()
    await inner.add_client(_client("old"))
    cache = CachedStore(inner, clock, ttl=5)
    await cache.get_client("c1")
    clock.advance(6)
    inner.fail = True
    unretrieved: list[dict[str, object]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: unretrieved.append(context))
    try:
        assert (await cache.get_client("c1")).name == "old"  # type: ignore[union-attr]
        await asyncio.sleep(0.01)  # the refresh fails
        import gc

        gc.collect()  # a never-retrieved exception is reported when its future is collected
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(None)
    assert unretrieved == []
