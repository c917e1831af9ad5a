from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from .support import LiveServer, create_pg_database, drop_pg_database, ensure_services, start_server


@pytest.fixture(scope="session", autouse=True)
def _services() -> None:
    ensure_services()


@pytest.fixture(scope="session")
def pg_url_factory() -> Iterator[object]:
    created: list[str] = []

    def make() -> str:
        name, url = create_pg_database()
        created.append(name)
        return url

    yield make
    for name in created:
        drop_pg_database(name)


def db_url_for(backend: str, tmp: Path, pg_url_factory: object) -> str:
    if backend == "postgres":
        return pg_url_factory()  # type: ignore[operator,no-any-return]
    return f"sqlite+aiosqlite:///{tmp / ('ost-' + secrets.token_hex(4) + '.db')}"


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           pg_url_factory: object) -> Iterator[LiveServer]:
    """A live server process per storage backend, shared by the session."""
    tmp = tmp_path_factory.mktemp(f"server-{request.param}")
    srv = start_server(db_url_for(request.param, tmp, pg_url_factory), tmp)
    yield srv
    srv.stop()


@pytest.fixture
def make_server(tmp_path: Path, pg_url_factory: object) -> Iterator[object]:
    """Start servers with special settings; stopped at the end of the test."""
    started: list[LiveServer] = []

    def make(backend: str = "sqlite", **kwargs: object) -> LiveServer:
        srv = start_server(db_url_for(backend, tmp_path, pg_url_factory), tmp_path, **kwargs)  # type: ignore[arg-type]
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()
