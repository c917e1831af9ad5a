"""The resource registry (RFC 8707) for the SQL store."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from ...core.resources import Resource
from .tables_resources import resources as rs
from .unit_of_work import SqlUnitOfWork

__all__ = ["SqlResourcesMixin"]

_MAX_URI = 512


def _resource(row: Any) -> Resource:
    m = row._mapping
    return Resource(uri=m["uri"], scopes=frozenset(str(s) for s in m["scopes"]), created_at=m["created_at"])


class SqlResourcesMixin(SqlUnitOfWork):
    """Mixed into :class:`~ostiary.store.sql.SqlStore`; implements ``ResourceRepository``."""

    async def add_resource(self, resource: Resource) -> None:
        if len(resource.uri) > _MAX_URI:
            raise ValueError(f"a resource URI is at most {_MAX_URI} characters")
        try:
            async with self._begin() as conn:
                await conn.execute(rs.insert().values(uri=resource.uri, scopes=sorted(resource.scopes),
                                                      created_at=resource.created_at))
        except IntegrityError as exc:
            raise ValueError(f"resource {resource.uri!r} exists") from exc

    async def get_resource(self, uri: str) -> Resource | None:
        if len(uri) > _MAX_URI:
            return None
        async with self._read() as conn:
            row = (await conn.execute(sa.select(rs).where(rs.c.uri == uri))).first()
        return _resource(row) if row else None

    async def list_resources(self) -> list[Resource]:
        async with self._read() as conn:
            return [_resource(r) for r in await conn.execute(sa.select(rs).order_by(rs.c.uri))]

    async def remove_resource(self, uri: str) -> bool:
        if len(uri) > _MAX_URI:
            return False
        async with self._begin() as conn:
            res = await conn.execute(rs.delete().where(rs.c.uri == uri))
        return bool(res.rowcount)
