"""SQL storage for users, sessions, consents, authorization codes and refresh-token families
(mixed into :class:`SqlStore`). Single use is ``UPDATE … WHERE used_at IS NULL``: rowcount 1 wins."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from ...core.storage import RevokedUserTokens
from ...core.tokens import AuthorizationCode, RefreshToken, TokenFamily
from ...core.users import Consent, LoginSession, User
from . import tables as t
from . import tables_users as tu
from .unit_of_work import SqlUnitOfWork, dialect_insert

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


def _code(row: Any) -> AuthorizationCode:
    m = row._mapping
    return AuthorizationCode(
        code_hash=m["code_hash"], client_id=m["client_id"], redirect_uri=m["redirect_uri"],
        code_challenge=m["code_challenge"], scopes=frozenset(m["scopes"]), user_id=m["user_id"],
        session_id=m["session_id"], auth_time=m["auth_time"], amr=tuple(m["amr"]), family_id=m["family_id"],
        created_at=m["created_at"], expires_at=m["expires_at"], nonce=m["nonce"], acr=m["acr"],
        audience=tuple(m["audience"]), used_at=m["used_at"])


def _family(row: Any) -> TokenFamily:
    m = row._mapping
    return TokenFamily(
        family_id=m["family_id"], client_id=m["client_id"], user_id=m["user_id"], scopes=frozenset(m["scopes"]),
        audience=tuple(m["audience"]), created_at=m["created_at"], expires_at=m["expires_at"],
        auth_time=m["auth_time"], amr=tuple(m["amr"]), acr=m["acr"], session_id=m["session_id"],
        revoked_at=m["revoked_at"], dpop_jkt=m["dpop_jkt"])


def _refresh(row: Any) -> RefreshToken:
    m = row._mapping
    sealed = m["successor_sealed"]
    return RefreshToken(
        token_hash=m["token_hash"], family_id=m["family_id"], client_id=m["client_id"], user_id=m["user_id"],
        scopes=frozenset(m["scopes"]), created_at=m["created_at"], expires_at=m["expires_at"],
        parent_hash=m["parent_hash"], used_at=m["used_at"], request_fp=m["request_fp"],
        successor_sealed=bytes(sealed) if sealed is not None else None, dpop_jkt=m["dpop_jkt"])


def _refresh_row(token: RefreshToken) -> dict[str, Any]:
    return {"token_hash": token.token_hash, "family_id": token.family_id, "client_id": token.client_id,
            "user_id": token.user_id, "scopes": sorted(token.scopes), "created_at": token.created_at,
            "expires_at": token.expires_at, "parent_hash": token.parent_hash, "used_at": token.used_at,
            "request_fp": token.request_fp, "successor_sealed": token.successor_sealed,
            "dpop_jkt": token.dpop_jkt}


class SqlUsersMixin(SqlUnitOfWork):

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

    # authorization codes
    async def add_code(self, code: AuthorizationCode) -> None:
        await self._write(tu.authorization_codes.insert().values(
            code_hash=code.code_hash, client_id=code.client_id, redirect_uri=code.redirect_uri,
            code_challenge=code.code_challenge, scopes=sorted(code.scopes), user_id=code.user_id,
            session_id=code.session_id, auth_time=code.auth_time, amr=list(code.amr), family_id=code.family_id,
            created_at=code.created_at, expires_at=code.expires_at, nonce=code.nonce, acr=code.acr,
            audience=list(code.audience), used_at=code.used_at))

    async def get_code(self, code_hash: str) -> AuthorizationCode | None:
        ac = tu.authorization_codes
        row = await self._one(sa.select(ac).where(ac.c.code_hash == code_hash))
        return _code(row) if row else None

    async def use_code(self, code_hash: str, now: float) -> bool:
        ac = tu.authorization_codes
        return await self._write(ac.update().where(ac.c.code_hash == code_hash, ac.c.used_at.is_(None))
                                 .values(used_at=now)) == 1

    # refresh-token families
    async def add_family(self, family: TokenFamily) -> None:
        await self._write(tu.token_families.insert().values(
            family_id=family.family_id, client_id=family.client_id, user_id=family.user_id,
            scopes=sorted(family.scopes), audience=list(family.audience), created_at=family.created_at,
            expires_at=family.expires_at, auth_time=family.auth_time, amr=list(family.amr), acr=family.acr,
            session_id=family.session_id, revoked_at=family.revoked_at, dpop_jkt=family.dpop_jkt))

    async def get_family(self, family_id: str) -> TokenFamily | None:
        tf = tu.token_families
        row = await self._one(sa.select(tf).where(tf.c.family_id == family_id))
        return _family(row) if row else None

    async def revoke_family(self, family_id: str, now: float) -> bool:
        tf = tu.token_families
        return await self._write(tf.update().where(tf.c.family_id == family_id, tf.c.revoked_at.is_(None))
                                 .values(revoked_at=now)) == 1

    async def list_families(self, user_id: str) -> list[TokenFamily]:
        tf = tu.token_families
        return [_family(r) for r in await self._all(sa.select(tf).where(tf.c.user_id == user_id,
                                                                         tf.c.revoked_at.is_(None))
                                                     .order_by(tf.c.created_at))]

    async def revoke_user_tokens(self, user_id: str, now: float, client_id: str | None = None) -> RevokedUserTokens:
        tf, ft = tu.token_families, tu.family_tokens
        live = [tf.c.user_id == user_id, tf.c.revoked_at.is_(None)]
        if client_id is not None:
            live.append(tf.c.client_id == client_id)
        async with self._begin() as conn:
            # write first: the families stay locked until commit, so a refresh rotating one of them either
            # finished before (its access-token id is read below) or finds the family revoked
            families = {r[0]: r[1] for r in await conn.execute(
                tf.update().where(*live).values(revoked_at=now).returning(tf.c.family_id, tf.c.client_id))}
            if not families:
                return RevokedUserTokens(0, 0)
            jtis = [(r[0], r[1], float(r[2])) for r in await conn.execute(
                sa.select(ft.c.jti, ft.c.family_id, ft.c.expires_at)
                .where(ft.c.family_id.in_(families), ft.c.expires_at > now))]
            if jtis:
                insert = dialect_insert(conn, t.revoked_tokens)
                await conn.execute(insert.on_conflict_do_nothing(index_elements=["jti"]),
                                   [{"jti": jti, "client_id": families[fid], "expires_at": exp}
                                    for jti, fid, exp in jtis])
        return RevokedUserTokens(len(families), len(jtis))

    async def add_family_jti(self, family_id: str, jti: str, expires_at: float) -> None:
        await self._write(tu.family_tokens.insert().values(family_id=family_id, jti=jti, expires_at=expires_at))

    async def family_jtis(self, family_id: str) -> list[tuple[str, float]]:
        ft = tu.family_tokens
        rows = await self._all(sa.select(ft.c.jti, ft.c.expires_at).where(ft.c.family_id == family_id)
                               .order_by(ft.c.jti))
        return [(r[0], float(r[1])) for r in rows]

    async def add_refresh_token(self, token: RefreshToken) -> None:
        await self._write(tu.refresh_tokens.insert().values(**_refresh_row(token)))

    async def get_refresh_token(self, token_hash: str) -> RefreshToken | None:
        rt = tu.refresh_tokens
        row = await self._one(sa.select(rt).where(rt.c.token_hash == token_hash))
        return _refresh(row) if row else None

    async def use_refresh_token(self, token_hash: str, now: float, request_fp: str,
                                successor_sealed: bytes | None) -> bool:
        rt = tu.refresh_tokens
        return await self._write(rt.update().where(rt.c.token_hash == token_hash, rt.c.used_at.is_(None))
                                 .values(used_at=now, request_fp=request_fp,
                                         successor_sealed=successor_sealed)) == 1

    async def purge_user_flows(self, now: float, grace: float) -> int:
        cutoff, tf = now - grace, tu.token_families
        gone = sa.select(tf.c.family_id).where(tf.c.expires_at <= cutoff)
        n = 0
        async with self._begin() as conn:
            for stmt in (
                tu.login_sessions.delete().where(tu.login_sessions.c.expires_at <= cutoff),
                tu.authorization_codes.delete().where(tu.authorization_codes.c.expires_at <= cutoff),
                tu.family_tokens.delete().where(tu.family_tokens.c.expires_at <= now),
                tu.family_tokens.delete().where(tu.family_tokens.c.family_id.in_(gone)),
                tu.refresh_tokens.delete().where(tu.refresh_tokens.c.family_id.in_(gone)),
                tf.delete().where(tf.c.expires_at <= cutoff),
            ):
                n += int((await conn.execute(stmt)).rowcount or 0)
        return n

    async def rotate_refresh_token(self, token_hash: str, now: float, request_fp: str,
                                   successor_sealed: bytes | None, family_id: str, jti: str,
                                   access_expires_at: float, successor: RefreshToken | None) -> bool:
        # its own transaction, always: the loser's rollback below must not undo an enclosing unit of work
        rt, tf = tu.refresh_tokens, tu.token_families
        try:
            async with self.engine.begin() as conn:
                res = await conn.execute(rt.update().where(rt.c.token_hash == token_hash, rt.c.used_at.is_(None))
                                         .values(used_at=now, request_fp=request_fp,
                                                 successor_sealed=successor_sealed))
                if res.rowcount != 1:
                    return False
                # the family must still be live, and stays so until this commits (a concurrent revocation
                # waits, then sees the new access token's id)
                live = (await conn.execute(sa.select(tf.c.family_id).where(tf.c.family_id == family_id,
                                                                             tf.c.revoked_at.is_(None))
                                           .with_for_update(read=True))).first()
                if live is None:
                    raise _FamilyRevoked
                await conn.execute(tu.family_tokens.insert().values(family_id=family_id, jti=jti,
                                                                    expires_at=access_expires_at))
                if successor is not None:
                    await conn.execute(rt.insert().values(**_refresh_row(successor)))
        except _FamilyRevoked:
            return False  # rolled back: the token stays unspent, its family revoked
        return True


class _FamilyRevoked(Exception):
    pass
