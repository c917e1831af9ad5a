"""SQLAlchemy 2 (async) store: SQLite by default, PostgreSQL in production; Alembic migrations."""

from .migrate import SchemaStatus, check_schema, upgrade
from .store import SqlStore, create_engine

__all__ = ["SchemaStatus", "SqlStore", "check_schema", "create_engine", "upgrade"]
