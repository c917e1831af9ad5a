"""Fixtures every storage contract shares: the same tests on the memory store, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from ostiary.store.memory import MemoryStore
from ostiary.store.sql import SqlStore, upgrade

from ..support import create_pg_database, drop_pg_database


@pytest.fixture(scope="module")
def sql_urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A migrated SQLite file and PostgreSQL database per test module (created and dropped here)."""
    sqlite = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('store') / 'contract.db'}"
    name, pg = create_pg_database()
    for url in (sqlite, pg):
        upgrade(url)
    yield {"sqlite": sqlite, "postgres": pg}
    drop_pg_database(name)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, sql_urls: dict[str, str]) -> AsyncIterator[object]:
    if request.param == "memory":
        yield MemoryStore()
        return
    s = SqlStore.from_url(sql_urls[request.param])
    yield s
    await s.close()
