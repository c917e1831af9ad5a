"""A per-process cache in front of client look-ups, the hottest read on the token endpoint.

Entries live ``ttl`` seconds, then are refreshed by one look-up while requests keep being answered from the
entry for at most another ``ttl``; a change made through this process (admin API) invalidates at once,
other processes see it within twice ``ttl``. When full, expired entries go first, then the least recently
used (a spray of unknown client ids evicts its own kind, not the clients in use).
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from typing import Any

from cachetools import TTLCache

from .._clock import Clock
from ..core.clients import Client
from ..core.storage import Store

__all__ = ["CachedStore"]


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class CachedStore:
    def __init__(self, inner: Store, clock: Clock, ttl: float, max_entries: int = 10_000) -> None:
        self.inner = inner
        self._clock = clock
        self._ttl = ttl
        self._clients: TTLCache[str, tuple[float, Client | None]] = TTLCache(
            max_entries, max(ttl, 0.001) * 2, timer=clock.now)
        self._inflight: dict[str, asyncio.Future[Client | None]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def transaction(self) -> AbstractAsyncContextManager[None]:
        """The inner store's: every call made through this cache inside it reaches the inner store's
        transaction (client reads may still be answered from the cache)."""
        return self.inner.transaction()

    async def get_client(self, client_id: str) -> Client | None:
        if self._ttl <= 0:
            return await self.inner.get_client(client_id)
        now = self._clock.now()
        hit = self._clients.get(client_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        # Single flight: when an entry expires under load, one look-up serves every request (otherwise
        # each of them checks out a database connection at the same moment: measured as a 200 ms p99).
        pending = self._inflight.get(client_id)
        if pending is None:
            pending = asyncio.ensure_future(self._load(client_id, now))
            # A request answered from the stale entry does not await the look-up: its failure (the database
            # away) is seen by whoever awaits, or else here, never as "Task exception was never retrieved".
            pending.add_done_callback(_retrieve)
            self._inflight[client_id] = pending
        if hit is not None and hit[0] + self._ttl > now:
            return hit[1]  # just expired: answer from the cache while the look-up runs
        return await asyncio.shield(pending)

    async def _load(self, client_id: str, now: float) -> Client | None:
        try:
            client = await self.inner.get_client(client_id)
        finally:
            self._inflight.pop(client_id, None)
        self._clients[client_id] = (now + self._ttl, client)
        return client

    async def add_client(self, client: Client) -> None:
        self._clients.pop(client.client_id, None)
        await self.inner.add_client(client)

    async def update_client(self, client: Client) -> None:
        self._clients.pop(client.client_id, None)
        await self.inner.update_client(client)

    async def delete_client(self, client_id: str) -> bool:
        self._clients.pop(client_id, None)
        return await self.inner.delete_client(client_id)
