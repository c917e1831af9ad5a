"""Alembic, driven from code: ``ostiary migrate`` upgrades; the server refuses a schema it does not match."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from .store import create_engine

__all__ = ["SchemaStatus", "alembic_config", "check_schema", "upgrade"]

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    state: Literal["current", "unmigrated", "behind", "newer"]
    current: str | None
    head: str

    @property
    def message(self) -> str:
        if self.state == "current":
            return f"database schema is current ({self.head})"
        if self.state == "unmigrated":
            return "the database has no Ostiary schema yet: run `ostiary migrate` first"
        if self.state == "behind":
            return (f"the database schema ({self.current}) is older than this version of Ostiary "
                    f"({self.head}): run `ostiary migrate`")
        return (f"the database schema ({self.current}) is newer than this version of Ostiary knows "
                f"({self.head}): upgrade Ostiary, or restore a matching backup")


def upgrade(url: str, revision: str = "head") -> None:
    """Upgrade the schema. Alembic's env.py runs its own event loop, so from async code this runs in a thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        command.upgrade(alembic_config(url), revision)
        return
    import threading

    errors: list[BaseException] = []

    def work() -> None:
        try:
            command.upgrade(alembic_config(url), revision)
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    t = threading.Thread(target=work)
    t.start()
    t.join()
    if errors:
        raise errors[0]


async def check_schema(url: str) -> SchemaStatus:
    script = ScriptDirectory.from_config(alembic_config(url))
    head = script.get_current_head()
    assert head is not None
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            current = await conn.run_sync(_current_revision)
    finally:
        await engine.dispose()
    if current is None:
        return SchemaStatus("unmigrated", None, head)
    if current == head:
        return SchemaStatus("current", current, head)
    try:
        known = script.get_revision(current) is not None
    except Exception:  # alembic raises several types for unknown revisions
        known = False
    return SchemaStatus("behind" if known else "newer", current, head)


def _current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def check_schema_sync(url: str) -> SchemaStatus:
    return asyncio.run(check_schema(url))
