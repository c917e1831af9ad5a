"""Pushed authorization requests (RFC 9126) for the SQL store. Every state change is one conditional statement."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from ...core.pushed import PushedRequest
from .tables_pushed import pushed_requests as pr
from .unit_of_work import SqlUnitOfWork

__all__ = ["SqlPushedMixin"]


def _pushed(row: Any) -> PushedRequest:
    m = row._mapping
    return PushedRequest(
        request_id=m["request_id"], client_id=m["client_id"],
        params=tuple((str(k), str(v)) for k, v in m["params"]), created_at=m["created_at"],
        expires_at=m["expires_at"], claimed_at=m["claimed_at"], browser_hash=m["browser_hash"])


class SqlPushedMixin(SqlUnitOfWork):
    """Mixed into :class:`~ostiary.store.sql.SqlStore`; implements ``PushedRequestRepository``."""

    async def add_pushed_request(self, request: PushedRequest) -> None:
        try:
            async with self._begin() as conn:
                await conn.execute(pr.insert().values(
                    request_id=request.request_id, client_id=request.client_id,
                    params=[list(p) for p in request.params], created_at=request.created_at,
                    expires_at=request.expires_at, claimed_at=request.claimed_at,
                    browser_hash=request.browser_hash))
        except IntegrityError as exc:
            raise ValueError("request_uri taken") from exc

    async def get_pushed_request(self, request_id: str) -> PushedRequest | None:
        async with self._read() as conn:
            row = (await conn.execute(sa.select(pr).where(pr.c.request_id == request_id))).first()
        return _pushed(row) if row else None

    async def claim_pushed_request(self, request_id: str, client_id: str, browser_hash: str | None, now: float,
                                   until: float) -> bool:
        async with self._begin() as conn:
            result = await conn.execute(
                pr.update().where(pr.c.request_id == request_id, pr.c.client_id == client_id,
                                  pr.c.claimed_at.is_(None), pr.c.expires_at > now)
                .values(claimed_at=now, expires_at=until, browser_hash=browser_hash))
        return bool(result.rowcount == 1)

    async def update_pushed_params(self, request_id: str, params: tuple[tuple[str, str], ...]) -> None:
        async with self._begin() as conn:
            await conn.execute(pr.update().where(pr.c.request_id == request_id)
                               .values(params=[list(p) for p in params]))

    async def spend_pushed_request(self, request_id: str) -> bool:
        async with self._begin() as conn:
            result = await conn.execute(pr.delete().where(pr.c.request_id == request_id))
        return bool(result.rowcount == 1)

    async def purge_pushed_requests(self, now: float) -> int:
        async with self._begin() as conn:
            result = await conn.execute(pr.delete().where(pr.c.expires_at <= now))
        return int(result.rowcount or 0)
