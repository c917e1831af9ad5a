"""SQL storage for authorization codes and refresh-token families (mixed into :class:`SqlStore`). Single use is
``UPDATE … WHERE used_at IS NULL``: rowcount 1 wins."""

from __future__ import annotations

from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY

from ...core.storage import RevokedUserTokens
from ...core.tokens import (
    AuthorizationCode,
    RefreshRotation,
    RefreshToken,
    RotationOutcome,
    TokenFamily,
    rotation_refusal,
    successor_of,
)
from . import tables as t
from . import tables_tokens as tt
from . import tables_users as tu
from .unit_of_work import SqlUnitOfWork, dialect_insert

__all__ = ["SqlTokensMixin"]


def _code(row: Any) -> AuthorizationCode:
    m = row._mapping
    return AuthorizationCode(
        code_hash=m["code_hash"], client_id=m["client_id"], redirect_uri=m["redirect_uri"],
        code_challenge=m["code_challenge"], scopes=frozenset(m["scopes"]), user_id=m["user_id"],
        session_id=m["session_id"], auth_time=m["auth_time"], amr=tuple(m["amr"]), family_id=m["family_id"],
        created_at=m["created_at"], expires_at=m["expires_at"], nonce=m["nonce"], acr=m["acr"],
        audience=tuple(m["audience"]), used_at=m["used_at"], dpop_jkt=m["dpop_jkt"])


def _family(row: Any) -> TokenFamily:
    m = row._mapping
    return TokenFamily(
        family_id=m["family_id"], client_id=m["client_id"], user_id=m["user_id"], scopes=frozenset(m["scopes"]),
        audience=tuple(m["audience"]), created_at=m["created_at"], expires_at=m["expires_at"],
        auth_time=m["auth_time"], amr=tuple(m["amr"]), acr=m["acr"], session_id=m["session_id"],
        revoked_at=m["revoked_at"], dpop_jkt=m["dpop_jkt"], x5t_s256=m["x5t_s256"])


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


class SqlTokensMixin(SqlUnitOfWork):
    """Mixed into :class:`~ostiary.store.sql.SqlStore`; implements ``AuthorizationCodeRepository``,
    ``RefreshTokenRepository`` (but ``purge_user_flows``, which the store composes) and ``UserTokenRevocation``."""

    # authorization codes
    async def add_code(self, code: AuthorizationCode) -> None:
        await self._write(tt.authorization_codes.insert().values(
            code_hash=code.code_hash, client_id=code.client_id, redirect_uri=code.redirect_uri,
            code_challenge=code.code_challenge, scopes=sorted(code.scopes), user_id=code.user_id,
            session_id=code.session_id, auth_time=code.auth_time, amr=list(code.amr), family_id=code.family_id,
            created_at=code.created_at, expires_at=code.expires_at, nonce=code.nonce, acr=code.acr,
            audience=list(code.audience), used_at=code.used_at, dpop_jkt=code.dpop_jkt))

    async def get_code(self, code_hash: str) -> AuthorizationCode | None:
        ac = tt.authorization_codes
        row = await self._one(sa.select(ac).where(ac.c.code_hash == code_hash))
        return _code(row) if row else None

    async def use_code(self, code_hash: str, now: float) -> bool:
        ac = tt.authorization_codes
        return await self._write(ac.update().where(ac.c.code_hash == code_hash, ac.c.used_at.is_(None))
                                 .values(used_at=now)) == 1

    # refresh-token families
    async def add_family(self, family: TokenFamily) -> None:
        await self._write(tt.token_families.insert().values(
            family_id=family.family_id, client_id=family.client_id, user_id=family.user_id,
            scopes=sorted(family.scopes), audience=list(family.audience), created_at=family.created_at,
            expires_at=family.expires_at, auth_time=family.auth_time, amr=list(family.amr), acr=family.acr,
            session_id=family.session_id, revoked_at=family.revoked_at, dpop_jkt=family.dpop_jkt,
            x5t_s256=family.x5t_s256))

    async def get_family(self, family_id: str) -> TokenFamily | None:
        tf = tt.token_families
        row = await self._one(sa.select(tf).where(tf.c.family_id == family_id))
        return _family(row) if row else None

    async def revoke_family(self, family_id: str, now: float) -> bool:
        tf = tt.token_families
        return await self._write(tf.update().where(tf.c.family_id == family_id, tf.c.revoked_at.is_(None))
                                 .values(revoked_at=now)) == 1

    async def list_families(self, user_id: str) -> list[TokenFamily]:
        tf = tt.token_families
        return [_family(r) for r in await self._all(sa.select(tf).where(tf.c.user_id == user_id,
                                                                         tf.c.revoked_at.is_(None))
                                                     .order_by(tf.c.created_at))]

    async def revoke_user_tokens(self, user_id: str, now: float, client_id: str | None = None) -> RevokedUserTokens:
        tf, ft = tt.token_families, tt.family_tokens
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
        await self._write(tt.family_tokens.insert().values(family_id=family_id, jti=jti, expires_at=expires_at))

    async def family_jtis(self, family_id: str) -> list[tuple[str, float]]:
        ft = tt.family_tokens
        rows = await self._all(sa.select(ft.c.jti, ft.c.expires_at).where(ft.c.family_id == family_id)
                               .order_by(ft.c.jti))
        return [(r[0], float(r[1])) for r in rows]

    async def add_refresh_token(self, token: RefreshToken) -> None:
        await self._write(tt.refresh_tokens.insert().values(**_refresh_row(token)))

    async def get_refresh_token(self, token_hash: str) -> RefreshToken | None:
        rt = tt.refresh_tokens
        row = await self._one(sa.select(rt).where(rt.c.token_hash == token_hash))
        return _refresh(row) if row else None

    async def use_refresh_token(self, token_hash: str, now: float, request_fp: str,
                                successor_sealed: bytes | None) -> bool:
        rt = tt.refresh_tokens
        return await self._write(rt.update().where(rt.c.token_hash == token_hash, rt.c.used_at.is_(None))
                                 .values(used_at=now, request_fp=request_fp,
                                         successor_sealed=successor_sealed)) == 1

    async def _purge_tokens(self, now: float, cutoff: float) -> int:
        """Delete the codes and families that expired before ``cutoff`` and the ids of expired access tokens
        (part of ``purge_user_flows``)."""
        tf = tt.token_families
        gone = sa.select(tf.c.family_id).where(tf.c.expires_at <= cutoff)
        n = 0
        async with self._begin() as conn:
            for stmt in (
                tt.authorization_codes.delete().where(tt.authorization_codes.c.expires_at <= cutoff),
                tt.family_tokens.delete().where(tt.family_tokens.c.expires_at <= now),
                tt.family_tokens.delete().where(tt.family_tokens.c.family_id.in_(gone)),
                tt.refresh_tokens.delete().where(tt.refresh_tokens.c.family_id.in_(gone)),
                tf.delete().where(tf.c.expires_at <= cutoff),
            ):
                n += int((await conn.execute(stmt)).rowcount or 0)
        return n

    async def rotate_refresh_token(self, token_hash: str, now: float, request_fp: str,
                                   successor_sealed: bytes | None, family_id: str, jti: str,
                                   access_expires_at: float, successor: RefreshToken | None) -> bool:
        # its own transaction, always: the loser's rollback below must not undo an enclosing unit of work
        rt, tf = tt.refresh_tokens, tt.token_families
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
                await conn.execute(tt.family_tokens.insert().values(family_id=family_id, jti=jti,
                                                                    expires_at=access_expires_at))
                if successor is not None:
                    await conn.execute(rt.insert().values(**_refresh_row(successor)))
        except _FamilyRevoked:
            return False  # rolled back: the token stays unspent, its family revoked
        return True


    async def rotate_refresh_token_once(self, rotation: RefreshRotation) -> RotationOutcome:
        current = self._current()
        if current is not None:  # inside a unit of work: its connection, whatever the dialect
            return await _rotate_on(current, rotation)
        if self.engine.dialect.name == "postgresql":
            # one statement on an AUTOCOMMIT connection: one round trip, no BEGIN/COMMIT around it
            async with self.reader.connect() as conn:
                return await _rotate_pg(conn, rotation)
        async with self.engine.begin() as conn:
            return await _rotate_on(conn, rotation)


class _FamilyRevoked(Exception):
    pass


async def _rotate_on(conn: Any, r: RefreshRotation) -> RotationOutcome:
    """``rotate_refresh_token_once`` as several statements in the caller's transaction (SQLite; or PostgreSQL
    inside a unit of work, where the one statement is used as well)."""
    if conn.dialect.name == "postgresql":
        return await _rotate_pg(conn, r)
    rt, tf = tt.refresh_tokens, tt.token_families
    # the write first: SQLite then holds its write lock, so nothing changes under the reads that follow
    claimed = (await conn.execute(rt.update().where(rt.c.token_hash == r.token_hash)
                                  .values(used_at=rt.c.used_at))).rowcount == 1
    row = (await conn.execute(sa.select(rt).where(rt.c.token_hash == r.token_hash))).first() if claimed else None
    token = _refresh(row) if row is not None else None
    family = None
    enabled = False
    if token is not None:
        frow = (await conn.execute(sa.select(tf).where(tf.c.family_id == token.family_id))).first()
        family = _family(frow) if frow is not None else None
        enabled = (await conn.execute(sa.select(tu.users.c.disabled)
                                      .where(tu.users.c.user_id == token.user_id))).scalar() is False
    if token is None or family is None or rotation_refusal(token, family, enabled, r) is not None:
        return RotationOutcome(token, family, enabled, rotated=False)
    if (await conn.execute(rt.update().where(rt.c.token_hash == r.token_hash, rt.c.used_at.is_(None))
                           .values(used_at=r.now))).rowcount != 1:
        return RotationOutcome(token, family, enabled, rotated=False)  # not reached while the lock is held
    await conn.execute(tt.family_tokens.insert().values(family_id=family.family_id, jti=r.jti,
                                                        expires_at=r.access_expires_at))
    successor = successor_of(token, family, r)
    if successor is not None:
        await conn.execute(rt.insert().values(**_refresh_row(successor)))
    return RotationOutcome(token, family, enabled, rotated=True, successor=successor)


# ``rotate_refresh_token_once`` on PostgreSQL: one statement. ``tok`` locks the token row (a concurrent rotation
# of the same token waits here and then sees it spent), ``fam`` share-locks its family (a concurrent revocation
# waits for this statement and then sees the new jti), ``ok`` is ``rotation_refusal`` in SQL, and the three
# writes happen only when ``ok`` has its row. What the statement found comes back whatever it did.
_ROTATE_PG = sa.text("""
WITH tok AS (
    SELECT * FROM refresh_tokens WHERE token_hash = :token_hash FOR UPDATE
), fam AS (
    SELECT f.* FROM token_families f JOIN tok ON f.family_id = tok.family_id FOR SHARE OF f
), usr AS (
    SELECT u.disabled FROM users u JOIN tok ON u.user_id = tok.user_id
), reg AS (
    SELECT ARRAY(SELECT json_array_elements_text(fam.scopes)) AS granted,
           ARRAY(SELECT s FROM json_array_elements_text(fam.scopes) AS s
                 WHERE s = ANY(:client_scopes) ORDER BY s COLLATE "C") AS scopes,
           ARRAY(SELECT json_array_elements_text(fam.audience)) AS audience
    FROM fam
), ok AS (
    SELECT reg.scopes FROM tok, fam, usr, reg
    WHERE tok.client_id = :client_id
      AND fam.revoked_at IS NULL
      AND (fam.x5t_s256 IS NULL OR fam.x5t_s256 = :x5t_s256)
      AND (fam.dpop_jkt IS NULL OR fam.dpop_jkt = :dpop_jkt)
      AND :requested <@ reg.granted
      AND tok.used_at IS NULL
      AND :now < tok.expires_at AND :now < fam.expires_at
      AND :requested <@ :client_scopes
      AND cardinality(reg.scopes) > 0
      AND reg.audience && (:client_audiences
                           || CASE WHEN 'openid' = ANY(reg.scopes) THEN ARRAY[:userinfo] ELSE '{}' END)
      AND NOT usr.disabled
), spent AS (
    UPDATE refresh_tokens SET used_at = :now
    FROM ok WHERE refresh_tokens.token_hash = :token_hash AND refresh_tokens.used_at IS NULL
    RETURNING ok.scopes
), jti AS (
    INSERT INTO family_tokens (family_id, jti, expires_at)
    SELECT tok.family_id, :jti, :access_expires_at FROM spent, tok
    RETURNING jti
), successor AS (
    INSERT INTO refresh_tokens (token_hash, family_id, client_id, user_id, scopes, created_at, expires_at,
                                parent_hash, dpop_jkt)
    SELECT :successor_hash, fam.family_id, tok.client_id, tok.user_id, array_to_json(spent.scopes), :now,
           least(fam.expires_at, :now + :idle_ttl), tok.token_hash, fam.dpop_jkt
    FROM spent, tok, fam
    WHERE :refresh_allowed AND ('offline_access' = ANY(spent.scopes) OR NOT 'openid' = ANY(spent.scopes))
    RETURNING *
)
SELECT tok.*, fam.client_id AS f_client_id, fam.user_id AS f_user_id, fam.scopes AS f_scopes,
       fam.audience AS f_audience, fam.created_at AS f_created_at, fam.expires_at AS f_expires_at,
       fam.auth_time AS f_auth_time, fam.amr AS f_amr, fam.acr AS f_acr, fam.session_id AS f_session_id,
       fam.revoked_at AS f_revoked_at, fam.dpop_jkt AS f_dpop_jkt, fam.x5t_s256 AS f_x5t_s256,
       fam.family_id AS f_family_id,
       usr.disabled AS u_disabled, (SELECT count(*) FROM jti) AS rotated,
       successor.token_hash AS s_token_hash, successor.scopes AS s_scopes, successor.created_at AS s_created_at,
       successor.expires_at AS s_expires_at
FROM tok LEFT JOIN fam ON true LEFT JOIN usr ON true LEFT JOIN successor ON true
""").bindparams(
    sa.bindparam("token_hash", type_=sa.String), sa.bindparam("client_id", type_=sa.String),
    sa.bindparam("now", type_=sa.Double), sa.bindparam("requested", type_=ARRAY(sa.Text)),
    sa.bindparam("client_scopes", type_=ARRAY(sa.Text)), sa.bindparam("client_audiences", type_=ARRAY(sa.Text)),
    sa.bindparam("userinfo", type_=sa.Text), sa.bindparam("refresh_allowed", type_=sa.Boolean),
    sa.bindparam("jti", type_=sa.String), sa.bindparam("access_expires_at", type_=sa.Double),
    sa.bindparam("successor_hash", type_=sa.String), sa.bindparam("idle_ttl", type_=sa.Double),
    sa.bindparam("x5t_s256", type_=sa.String), sa.bindparam("dpop_jkt", type_=sa.String),
)  # the parameters' types give the driver's casts; the result is read as the driver returns it


# ``_ROTATE_PG`` as the driver takes it, per dialect: (SQL, parameter order or None for named parameters). The
# statement is sent with ``exec_driver_sql``: with a textual statement SQLAlchemy would match its 33 result columns
# by name on every execution (that result metadata is not cacheable), a measurable share of a rotation's CPU.
# Events (statement counting), error wrapping and connection invalidation are those of any other statement.
_DRIVER_SQL: dict[tuple[str, str], tuple[str, tuple[str, ...] | None]] = {}


def _driver_sql(dialect: Any) -> tuple[str, tuple[str, ...] | None]:
    key = (dialect.name, dialect.driver)
    found = _DRIVER_SQL.get(key)
    if found is None:
        compiled = _ROTATE_PG.compile(dialect=dialect)
        order = getattr(compiled, "positiontup", None)
        found = _DRIVER_SQL[key] = (str(compiled), tuple(order) if order else None)
    return found


def _json(value: Any) -> Any:
    """A JSON column as the driver returned it: text (asyncpg, with SQLAlchemy's codec) or already decoded."""
    return orjson.loads(value) if isinstance(value, str | bytes) else value


async def _rotate_pg(conn: Any, r: RefreshRotation) -> RotationOutcome:
    sql, order = _driver_sql(conn.dialect)
    params: dict[str, Any] = {
        "token_hash": r.token_hash, "client_id": r.client_id, "now": r.now, "requested": sorted(r.requested),
        "client_scopes": sorted(r.client_scopes), "client_audiences": sorted(r.client_audiences),
        "userinfo": r.userinfo_audience, "refresh_allowed": r.refresh_allowed, "jti": r.jti,
        "access_expires_at": r.access_expires_at, "successor_hash": r.successor_hash, "idle_ttl": r.idle_ttl,
        "x5t_s256": r.x5t_s256, "dpop_jkt": r.dpop_jkt,
    }
    row = (await conn.exec_driver_sql(sql, tuple(params[k] for k in order) if order else params)).first()
    if row is None:
        return RotationOutcome(None, None, user_enabled=False, rotated=False)
    m = row._mapping
    sealed = m["successor_sealed"]
    token = RefreshToken(
        token_hash=m["token_hash"], family_id=m["family_id"], client_id=m["client_id"], user_id=m["user_id"],
        scopes=frozenset(_json(m["scopes"])), created_at=m["created_at"], expires_at=m["expires_at"],
        parent_hash=m["parent_hash"], used_at=m["used_at"], request_fp=m["request_fp"],
        successor_sealed=bytes(sealed) if sealed is not None else None, dpop_jkt=m["dpop_jkt"])
    family = None
    if m["f_family_id"] is not None:
        family = TokenFamily(
            family_id=m["f_family_id"], client_id=m["f_client_id"], user_id=m["f_user_id"],
            scopes=frozenset(_json(m["f_scopes"])), audience=tuple(_json(m["f_audience"])),
            created_at=m["f_created_at"], expires_at=m["f_expires_at"], auth_time=m["f_auth_time"],
            amr=tuple(_json(m["f_amr"])), acr=m["f_acr"], session_id=m["f_session_id"],
            revoked_at=m["f_revoked_at"], dpop_jkt=m["f_dpop_jkt"], x5t_s256=m["f_x5t_s256"])
    successor = None
    if m["s_token_hash"] is not None:
        assert family is not None
        successor = RefreshToken(token_hash=m["s_token_hash"], family_id=family.family_id,
                                 client_id=token.client_id, user_id=token.user_id,
                                 scopes=frozenset(_json(m["s_scopes"])), created_at=m["s_created_at"],
                                 expires_at=m["s_expires_at"], parent_hash=token.token_hash,
                                 dpop_jkt=family.dpop_jkt)
    return RotationOutcome(token, family, m["u_disabled"] is False, rotated=m["rotated"] == 1,
                           successor=successor)
