"""SQLAlchemy 2 (async) store: SQLite by default, PostgreSQL in production; Alembic migrations.

The migration helpers load Alembic, which is slow to import, so they are imported on first use: every
CLI command starts faster.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .store import SqlStore, create_engine

if TYPE_CHECKING:
    from .migrate import SchemaStatus, check_schema, upgrade

__all__ = ["SchemaStatus", "SqlStore", "check_schema", "create_engine", "upgrade"]


def __getattr__(name: str) -> Any:
    if name in ("SchemaStatus", "check_schema", "upgrade"):
        from . import migrate

        return getattr(migrate, name)
    raise AttributeError(name)
