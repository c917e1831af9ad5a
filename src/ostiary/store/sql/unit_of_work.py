"""One transaction mechanism for the SQL store (the ``UnitOfWork`` protocol of :mod:`ostiary.core.storage`).

``async with store.transaction():`` opens one transaction and puts its connection in a context variable; every
store call made inside the block, by the task that opened it, runs on that connection (fosite's
``MaybeTransaction``). Leaving the block commits; an exception rolls every write back. A ``transaction()``
inside another joins it. Outside a transaction each call runs as before: a single-statement read on an
AUTOCOMMIT connection, a write in its own short transaction.

Only the task that opened the transaction uses its connection: a task spawned inside the block (an audit
flush, say) inherits the context variable but runs on its own connections, since one connection cannot serve
two tasks at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ...core.errors import StoreUnavailable
from .availability import Availability, unavailable_cause

__all__ = ["SqlUnitOfWork", "dialect_insert"]

# (store, task, connection) of the transaction in progress in this context, if any
_CURRENT: ContextVar[tuple[object, asyncio.Task[object] | None, AsyncConnection] | None] = ContextVar(
    "ostiary_sql_transaction", default=None)


def dialect_insert(conn: AsyncConnection, table: sa.Table) -> Any:
    """``INSERT`` with ``ON CONFLICT`` (PostgreSQL and SQLite spell it alike): no exception to catch, so it
    can run inside a transaction."""
    return (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(table)


class SqlUnitOfWork:
    """Base of the SQL store and its aggregate mixins: where a statement gets its connection."""

    engine: AsyncEngine
    reader: AsyncEngine
    availability: Availability

    def _current(self) -> AsyncConnection | None:
        current = _CURRENT.get()
        if current is None or current[0] is not self or current[1] is not asyncio.current_task():
            return None
        return current[2]

    @asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncConnection]:
        """A connection to write on: the enclosing transaction's, else a new transaction committed on exit."""
        conn = self._current()
        if conn is not None:
            yield conn
            return
        async with self.engine.begin() as own:
            yield own

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        """A connection to read on: the enclosing transaction's (it sees its own writes), else AUTOCOMMIT."""
        conn = self._current()
        if conn is not None:
            yield conn
            return
        async with self.reader.connect() as own:
            yield own

    # one statement, on the connection _read/_begin give: the first row, every row, the rows written
    async def _one(self, query: Any) -> Any:
        async with self._read() as conn:
            return (await conn.execute(query)).first()

    async def _all(self, query: Any) -> list[Any]:
        async with self._read() as conn:
            return list(await conn.execute(query))

    async def _write(self, stmt: Any) -> int:
        async with self._begin() as conn:
            res = await conn.execute(stmt)
        return int(res.rowcount or 0)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """Every store call in the block is one unit of work: all committed, or (on an exception) none."""
        if self._current() is not None:
            yield  # joins the enclosing transaction
            return
        epoch = self.availability.epoch
        try:
            async with self.engine.begin() as conn:
                token = _CURRENT.set((self, asyncio.current_task(), conn))
                try:
                    yield
                finally:
                    _CURRENT.reset(token)
        except StoreUnavailable:
            raise
        except Exception as exc:  # BEGIN, COMMIT or ROLLBACK could not reach the database
            cause = unavailable_cause(exc)
            if cause is None:
                raise
            self.availability.failed(epoch, cause)
            raise StoreUnavailable(cause) from None
