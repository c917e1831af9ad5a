"""SQL storage for people: users, their recovery codes, login sessions and consents (mixed into
:class:`SqlStore`). Authorization codes and refresh-token families: ``tokens.py``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from ...core.users import Consent, LoginSession, User
from . import tables_users as tu
from .unit_of_work import SqlUnitOfWork

__all__ = ["SqlUsersMixin"]


def _user_row(u: User) -> dict[str, Any]:
    return {"user_id": u.user_id, "username": u.username, "email": u.email, "name": u.name,
            "email_verified": u.email_verified, "disabled": u.disabled, "password_hash": u.password_hash,
            "totp_secret": u.totp_secret, "created_at": u.created_at, "updated_at": u.updated_at}


def _user(row: Any) -> User:
    m = row._mapping
    return User(user_id=m["user_id"], username=m["username"], email=m["email"], name=m["name"],
                email_verified=bool(m["email_verified"]), disabled=bool(m["disabled"]),
                password_hash=m["password_hash"],
                totp_secret=bytes(m["totp_secret"]) if m["totp_secret"] is not None else None,
                created_at=m["created_at"], updated_at=m["updated_at"])


def _session_row(s: LoginSession) -> dict[str, Any]:
    return {"token_hash": s.token_hash, "session_id": s.session_id, "user_id": s.user_id,
            "created_at": s.created_at, "last_seen": s.last_seen, "expires_at": s.expires_at,
            "auth_time": s.auth_time, "amr": list(s.amr), "mfa_pending": s.mfa_pending, "ip": s.ip,
            "user_agent": s.user_agent}


def _session(row: Any) -> LoginSession:
    m = row._mapping
    return LoginSession(session_id=m["session_id"], token_hash=m["token_hash"], user_id=m["user_id"],
                        created_at=m["created_at"], last_seen=m["last_seen"], expires_at=m["expires_at"],
                        auth_time=m["auth_time"], amr=tuple(m["amr"]), mfa_pending=bool(m["mfa_pending"]),
                        ip=m["ip"], user_agent=m["user_agent"])


def _consent(row: Any) -> Consent:
    m = row._mapping
    return Consent(user_id=m["user_id"], client_id=m["client_id"], scopes=frozenset(m["scopes"]),
                   granted_at=m["granted_at"], updated_at=m["updated_at"])


class SqlUsersMixin(SqlUnitOfWork):
    """Mixed into :class:`~ostiary.store.sql.SqlStore`; implements ``UserRepository``, ``SessionRepository`` and
    ``ConsentRepository``."""

    # users
    async def add_user(self, user: User) -> None:
        try:
            await self._write(tu.users.insert().values(**_user_row(user)))
        except IntegrityError as exc:
            raise ValueError("username or email taken") from exc

    async def get_user(self, user_id: str) -> User | None:
        row = await self._one(sa.select(tu.users).where(tu.users.c.user_id == user_id))
        return _user(row) if row else None

    async def find_user(self, login: str) -> User | None:
        key = login.strip().lower()
        row = await self._one(sa.select(tu.users).where(sa.or_(tu.users.c.username == key, tu.users.c.email == key)))
        return _user(row) if row else None

    async def update_user(self, user: User) -> None:
        try:
            n = await self._write(tu.users.update().where(tu.users.c.user_id == user.user_id)
                                  .values(**_user_row(user)))
        except IntegrityError as exc:
            raise ValueError("username or email taken") from exc
        if n != 1:
            raise KeyError(user.user_id)

    async def delete_user(self, user_id: str) -> bool:
        async with self._begin() as conn:
            for table in (tu.recovery_codes, tu.login_sessions, tu.consents):
                await conn.execute(table.delete().where(table.c.user_id == user_id))
            res = await conn.execute(tu.users.delete().where(tu.users.c.user_id == user_id))
        return bool(res.rowcount)

    async def list_users(self) -> list[User]:
        return [_user(r) for r in await self._all(sa.select(tu.users).order_by(tu.users.c.created_at,
                                                                                tu.users.c.username))]

    async def set_recovery_codes(self, user_id: str, code_hashes: Sequence[str]) -> None:
        async with self._begin() as conn:
            await conn.execute(tu.recovery_codes.delete().where(tu.recovery_codes.c.user_id == user_id))
            if code_hashes:
                await conn.execute(tu.recovery_codes.insert(),
                                   [{"user_id": user_id, "code_hash": h, "used_at": None} for h in code_hashes])

    async def use_recovery_code(self, user_id: str, code_hash: str, now: float) -> bool:
        rc = tu.recovery_codes
        n = await self._write(rc.update().where(rc.c.user_id == user_id, rc.c.code_hash == code_hash,
                                                rc.c.used_at.is_(None)).values(used_at=now))
        return n == 1

    async def count_recovery_codes(self, user_id: str) -> int:
        rc = tu.recovery_codes
        row = await self._one(sa.select(sa.func.count()).select_from(rc)
                              .where(rc.c.user_id == user_id, rc.c.used_at.is_(None)))
        return int(row[0]) if row else 0

    # sessions
    async def add_session(self, session: LoginSession) -> None:
        await self._write(tu.login_sessions.insert().values(**_session_row(session)))

    async def get_session(self, token_hash: str) -> LoginSession | None:
        row = await self._one(sa.select(tu.login_sessions).where(tu.login_sessions.c.token_hash == token_hash))
        return _session(row) if row else None

    async def update_session(self, session: LoginSession) -> None:
        await self._write(tu.login_sessions.update().where(tu.login_sessions.c.token_hash == session.token_hash)
                          .values(**_session_row(session)))

    async def end_session(self, session_id: str) -> bool:
        return bool(await self._write(tu.login_sessions.delete()
                                      .where(tu.login_sessions.c.session_id == session_id)))

    async def list_sessions(self, user_id: str) -> list[LoginSession]:
        ls = tu.login_sessions
        return [_session(r) for r in await self._all(sa.select(ls).where(ls.c.user_id == user_id)
                                                      .order_by(ls.c.last_seen.desc()))]

    async def end_user_sessions(self, user_id: str) -> int:
        return await self._write(tu.login_sessions.delete().where(tu.login_sessions.c.user_id == user_id))

    # consents
    async def get_consent(self, user_id: str, client_id: str) -> Consent | None:
        c = tu.consents
        row = await self._one(sa.select(c).where(c.c.user_id == user_id, c.c.client_id == client_id))
        return _consent(row) if row else None

    async def save_consent(self, consent: Consent) -> None:
        c = tu.consents
        values = {"scopes": sorted(consent.scopes), "granted_at": consent.granted_at,
                  "updated_at": consent.updated_at}
        async with self._begin() as conn:
            res = await conn.execute(c.update().where(c.c.user_id == consent.user_id,
                                                      c.c.client_id == consent.client_id).values(**values))
            if not res.rowcount:
                await conn.execute(c.insert().values(user_id=consent.user_id, client_id=consent.client_id, **values))

    async def delete_consent(self, user_id: str, client_id: str) -> bool:
        c = tu.consents
        return bool(await self._write(c.delete().where(c.c.user_id == user_id, c.c.client_id == client_id)))

    async def list_consents(self, user_id: str) -> list[Consent]:
        c = tu.consents
        return [_consent(r) for r in await self._all(sa.select(c).where(c.c.user_id == user_id)
                                                      .order_by(c.c.client_id))]

    async def _purge_sessions(self, cutoff: float) -> int:
        """Delete the login sessions that expired before ``cutoff`` (part of ``purge_user_flows``)."""
        async with self._begin() as conn:
            res = await conn.execute(tu.login_sessions.delete().where(tu.login_sessions.c.expires_at <= cutoff))
        return int(res.rowcount or 0)
