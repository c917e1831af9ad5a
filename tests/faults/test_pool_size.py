"""``database_pool_size`` and ``database_max_overflow`` bound the PostgreSQL connections a worker opens
(README "PostgreSQL sizing": nodes × workers × (pool + overflow)), and requests beyond the pool wait for a
connection instead of failing."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import asyncpg
import httpx

from ..support import PG_ADMIN_DSN
from .conftest import FaultServer


async def _connections(db_name: str) -> int:
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = $1", db_name))
    finally:
        await conn.close()


def test_a_worker_never_opens_more_connections_than_its_pool(pg_server: Callable[..., FaultServer]) -> None:
    fs = pg_server(workers=1, extra_env={"OSTIARY_DATABASE_POOL_SIZE": "2", "OSTIARY_DATABASE_MAX_OVERFLOW": "0"})
    client = fs.srv.create_client(grant_types=["client_credentials"], scopes=["api:read"])
    auth = (client["client_id"], client["client_secret"])
    seen: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            seen.append(asyncio.run(_connections(fs.db_name)))
            stop.wait(0.02)

    async def load() -> list[int]:
        async with httpx.AsyncClient(base_url=fs.base_url, timeout=30,
                                     limits=httpx.Limits(max_connections=48)) as c:
            async def one() -> int:
                r = await c.post("/token", data={"grant_type": "client_credentials", "scope": "api:read"}, auth=auth)
                return r.status_code
            return list(await asyncio.gather(*(one() for _ in range(400))))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        statuses = asyncio.run(load())
    finally:
        stop.set()
        sampler.join()
    assert statuses == [200] * 400  # 48 requests at a time over 2 connections: they wait, none is refused
    assert seen and max(seen) <= 2, f"connections seen on the server's database: {max(seen)}"
