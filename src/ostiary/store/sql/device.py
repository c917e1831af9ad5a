"""Device authorizations (RFC 8628) for the SQL store. Every state change is one conditional UPDATE."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from ...core.device import DeviceAuthorization, user_code_locator
from ..memory_device import EXPIRED_KEEP
from .tables_device import device_authorizations as da
from .unit_of_work import SqlUnitOfWork

__all__ = ["SqlDeviceMixin"]


def _auth(row: Any) -> DeviceAuthorization:
    m = row._mapping
    return DeviceAuthorization(
        device_code_hash=m["device_code_hash"], user_code=m["user_code"], client_id=m["client_id"],
        scopes=frozenset(m["scopes"]), audience=tuple(m["audience"]), created_at=m["created_at"],
        expires_at=m["expires_at"], interval=int(m["interval"]), status=m["status"], user_id=m["user_id"],
        session_id=m["session_id"], auth_time=m["auth_time"], amr=tuple(m["amr"]), decided_at=m["decided_at"],
        failed_attempts=int(m["failed_attempts"]))


class SqlDeviceMixin(SqlUnitOfWork):
    """Mixed into :class:`~ostiary.store.sql.SqlStore`; implements ``DeviceAuthorizationRepository``."""


    async def add_device_authorization(self, auth: DeviceAuthorization) -> None:
        try:
            async with self._begin() as conn:
                await conn.execute(da.insert().values(
                    device_code_hash=auth.device_code_hash, user_code=auth.user_code,
                    locator=user_code_locator(auth.user_code), client_id=auth.client_id,
                    scopes=sorted(auth.scopes), audience=list(auth.audience), created_at=auth.created_at,
                    expires_at=auth.expires_at, interval=auth.interval, status=auth.status, user_id=auth.user_id,
                    session_id=auth.session_id, auth_time=auth.auth_time, amr=list(auth.amr),
                    decided_at=auth.decided_at, failed_attempts=auth.failed_attempts))
        except IntegrityError as exc:
            raise ValueError("user code taken") from exc

    async def get_device_authorization(self, device_code_hash: str) -> DeviceAuthorization | None:
        async with self._read() as conn:
            row = (await conn.execute(sa.select(da).where(da.c.device_code_hash == device_code_hash))).first()
        return _auth(row) if row else None

    async def find_device_authorizations(self, locator: str, now: float) -> list[DeviceAuthorization]:
        async with self._read() as conn:
            rows = await conn.execute(sa.select(da).where(da.c.locator == locator, da.c.status == "pending",
                                                          da.c.expires_at > now))
            return [_auth(r) for r in rows]

    async def record_user_code_failure(self, device_code_hash: str, max_attempts: int, now: float) -> int:
        key = da.c.device_code_hash == device_code_hash
        async with self._begin() as conn:
            await conn.execute(da.update().where(key).values(failed_attempts=da.c.failed_attempts + 1))
            await conn.execute(da.update().where(key, da.c.status == "pending",
                                                 da.c.failed_attempts >= max_attempts)
                               .values(status="denied", decided_at=now))
            row = (await conn.execute(sa.select(da.c.failed_attempts).where(key))).first()
        return int(row[0]) if row else 0

    async def decide_device_authorization(self, device_code_hash: str, approve: bool, user_id: str,
                                          session_id: str | None, auth_time: float, amr: tuple[str, ...],
                                          now: float) -> bool:
        async with self._begin() as conn:
            res = await conn.execute(
                da.update()
                .where(da.c.device_code_hash == device_code_hash, da.c.status == "pending", da.c.expires_at > now)
                .values(status="approved" if approve else "denied", user_id=user_id, session_id=session_id,
                        auth_time=auth_time, amr=list(amr), decided_at=now))
        return bool(res.rowcount == 1)

    async def consume_device_authorization(self, device_code_hash: str, now: float) -> bool:
        async with self._begin() as conn:
            res = await conn.execute(da.update()
                                     .where(da.c.device_code_hash == device_code_hash, da.c.status == "approved")
                                     .values(status="consumed"))
        return bool(res.rowcount == 1)

    async def purge_device_authorizations(self, now: float) -> int:
        async with self._begin() as conn:
            res = await conn.execute(da.delete().where(da.c.expires_at <= now - EXPIRED_KEEP))
        return int(res.rowcount or 0)
