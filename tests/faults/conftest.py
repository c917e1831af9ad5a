"""Shared fixtures of the fault tests: live servers on their own PostgreSQL database, a database outage on that
database only (never the machine's PostgreSQL or Redis), raw sockets, and worker processes seen through /proc."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ..support import (
    PG_ADMIN_DSN,
    LiveServer,
    create_pg_database,
    drop_pg_database,
    start_server,
)


@dataclass
class FaultServer:
    """A live server and the database it alone uses."""

    srv: LiveServer
    db_name: str

    @property
    def base_url(self) -> str:
        return self.srv.base_url

    @property
    def port(self) -> int:
        return int(self.srv.base_url.rsplit(":", 1)[1])

    def log(self) -> str:
        return self.srv.log()


@pytest.fixture
def pg_server(tmp_path: Path) -> Iterator[Callable[..., FaultServer]]:
    """``pg_server(workers=1, extra_env=None)``: a server on a fresh PostgreSQL database; stopped and dropped
    at the end of the test."""
    started: list[FaultServer] = []

    def make(workers: int = 1, extra_env: dict[str, str] | None = None) -> FaultServer:
        name, url = create_pg_database()
        try:
            srv = start_server(url, tmp_path / name, workers=workers, extra_env=extra_env)
        except BaseException:
            drop_pg_database(name)
            raise
        started.append(FaultServer(srv, name))
        return started[-1]

    yield make
    for fs in started:
        fs.srv.stop()
        allow_connections(fs.db_name, True)
        drop_pg_database(fs.db_name)


async def _admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def allow_connections(db_name: str, allow: bool) -> None:
    """``ALTER DATABASE … ALLOW_CONNECTIONS``; refusing also ends every session already open on it."""
    asyncio.run(_admin(f'ALTER DATABASE "{db_name}" ALLOW_CONNECTIONS {"true" if allow else "false"}'))
    if not allow:
        asyncio.run(_admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db_name}' "
                           "AND pid <> pg_backend_pid()"))


@contextlib.contextmanager
def database_outage(db_name: str) -> Iterator[None]:
    """The server's own database refuses connections (and its open ones are cut) inside the block."""
    allow_connections(db_name, False)
    try:
        yield
    finally:
        allow_connections(db_name, True)


def wait_until(check: Callable[[], bool], timeout: float = 30.0, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return check()


def raw_connect(port: int, timeout: float = 30.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def read_response(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or the socket's timeout)."""
    chunks = []
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def no_traceback(text: str) -> bool:
    return "Traceback" not in text and 'File "' not in text


def token_for(srv: LiveServer, client: dict[str, str]) -> str:
    r = httpx.post(srv.base_url + "/token", data={"grant_type": "client_credentials"},
                   auth=(client["client_id"], client["client_secret"]))
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])
