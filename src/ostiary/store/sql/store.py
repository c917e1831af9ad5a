"""The SQL implementation of the core storage Protocols."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ...core.audit import AuditEvent, AuditEventsRejected
from ...core.clients import Client, ClientSecret, InitialAccessToken
from ...core.keys import SigningKey
from ...core.mtls import TlsClientAuthName
from ...core.requests import storable_text as _storable  # an id that is not such text is stored nowhere
from . import tables as t
from .availability import Availability, guard_unavailable
from .device import SqlDeviceMixin
from .federation import SqlFederationMixin
from .pushed import SqlPushedMixin
from .resources import SqlResourcesMixin
from .tokens import SqlTokensMixin
from .unit_of_work import SqlUnitOfWork, dialect_insert
from .users import SqlUsersMixin

__all__ = ["SqlStore", "create_engine"]


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


# JSON columns (audit details, client metadata) through orjson: the stdlib encoder was a visible share of the
# batched audit INSERT.
_JSON = {"json_serializer": _json_dumps, "json_deserializer": orjson.loads}

_EVENT_COLUMNS = ("type", "outcome", "at", "client_id", "subject", "grant_type", "jti", "ip", "detail")
#: PostgreSQL: a batch of audit events in one INSERT, each column an array (see ``record_events``); the ids follow
#: the order of the arrays, as they followed the rows of an executemany
_PG_INSERT_EVENTS = sa.text(
    "INSERT INTO audit_events (type, outcome, at, client_id, subject, grant_type, jti, ip, detail) "
    "SELECT type, outcome, at, client_id, subject, grant_type, jti, ip, detail::json FROM unnest("
    "CAST(:type AS varchar[]), CAST(:outcome AS varchar[]), CAST(:at AS float8[]), CAST(:client_id AS varchar[]), "
    "CAST(:subject AS varchar[]), CAST(:grant_type AS varchar[]), CAST(:jti AS varchar[]), CAST(:ip AS varchar[]), "
    "CAST(:detail AS text[])) AS e(type, outcome, at, client_id, subject, grant_type, jti, ip, detail)")


def create_engine(url: str, *, pool_size: int = 20, max_overflow: int = 0, timeout: float = 5.0) -> AsyncEngine:
    """An async engine. SQLite gets WAL and a busy timeout so several processes can share the file.

    On PostgreSQL ``timeout`` bounds both opening a connection and waiting for a pooled one: during an outage a
    request gets its 503 within that time instead of asyncpg's 60 s connect timeout or the pool's 30 s."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30}, **_JSON)

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    # No pre-ping: it doubles the round trips of every read. A connection the server dropped raises a
    # disconnect error once, SQLAlchemy invalidates it, and the pool replaces it; recycling bounds its age.
    return create_async_engine(url, pool_size=pool_size, max_overflow=max_overflow, pool_recycle=1800,
                               pool_timeout=timeout, connect_args={"timeout": timeout}, **_JSON)


def _refused(exc: StatementError) -> bool:
    """The statement failed because of the values it carried, not because of the database or the connection:
    SQLSTATE class 22 (data exception: too long, NUL, bad encoding) or 23 (integrity constraint), or a value
    the driver could not even send."""
    if isinstance(exc, DataError | IntegrityError):
        return True
    if not isinstance(exc, DBAPIError):
        return True  # raised while preparing the parameters, before anything reached the database
    state = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return isinstance(state, str) and state[:2] in ("22", "23")


def _client_row(c: Client) -> dict[str, Any]:
    return {
        "client_id": c.client_id, "name": c.name, "client_type": c.client_type,
        "token_endpoint_auth_method": c.token_endpoint_auth_method,
        "grant_types": sorted(c.grant_types), "scopes": sorted(c.scopes), "audiences": list(c.audiences),
        "resource_audiences": list(c.resource_audiences), "may_exchange_for": list(c.may_exchange_for),
        "redirect_uris": list(c.redirect_uris), "post_logout_redirect_uris": list(c.post_logout_redirect_uris),
        "allowed_origins": list(c.allowed_origins),
        "secrets": [{"hash": s.secret_hash, "created_at": s.created_at, "expires_at": s.expires_at}
                    for s in c.secrets],
        "jwks": dict(c.jwks) if c.jwks else None, "jwks_uri": c.jwks_uri, "first_party": c.first_party,
        "admin": c.admin, "id_token_signed_response_alg": c.id_token_signed_response_alg,
        "tls_client_auth": _tls_name_row(c.tls_client_auth),
        "tls_client_certificate_bound_access_tokens": c.tls_client_certificate_bound_access_tokens,
        "require_pushed_authorization_requests": c.require_pushed_authorization_requests,
        "dpop_bound_access_tokens": c.dpop_bound_access_tokens, "dpop_require_nonce": c.dpop_require_nonce,
        "created_at": c.created_at, "updated_at": c.updated_at, "dynamic": c.dynamic, "disabled": c.disabled,
        "last_used_at": c.last_used_at, "logo_uri": c.logo_uri, "client_uri": c.client_uri,
        "registration_token_hash": c.registration_token_hash,
    }


def _tls_name_row(name: TlsClientAuthName) -> dict[str, str] | None:
    row = {k: v for k, v in (("subject_dn", name.subject_dn), ("san_dns", name.san_dns), ("san_uri", name.san_uri),
                             ("san_ip", name.san_ip), ("san_email", name.san_email)) if v is not None}
    return row or None


def _client(row: Any) -> Client:
    m = row._mapping
    return Client(
        client_id=m["client_id"], name=m["name"], client_type=m["client_type"],
        token_endpoint_auth_method=m["token_endpoint_auth_method"],
        grant_types=frozenset(m["grant_types"]), scopes=frozenset(m["scopes"]),
        audiences=tuple(m["audiences"]), resource_audiences=tuple(m["resource_audiences"]),
        may_exchange_for=tuple(m["may_exchange_for"] or ()),
        redirect_uris=tuple(m["redirect_uris"]), post_logout_redirect_uris=tuple(m["post_logout_redirect_uris"]),
        allowed_origins=tuple(m["allowed_origins"]),
        secrets=tuple(ClientSecret(s["hash"], s["created_at"], s["expires_at"]) for s in m["secrets"]),
        jwks=m["jwks"], jwks_uri=m["jwks_uri"], first_party=bool(m["first_party"]),
        admin=bool(m["admin"]), id_token_signed_response_alg=m["id_token_signed_response_alg"],
        tls_client_auth=TlsClientAuthName(**(m["tls_client_auth"] or {})),
        tls_client_certificate_bound_access_tokens=bool(m["tls_client_certificate_bound_access_tokens"]),
        require_pushed_authorization_requests=bool(m["require_pushed_authorization_requests"]),
        dpop_bound_access_tokens=bool(m["dpop_bound_access_tokens"]), dpop_require_nonce=bool(m["dpop_require_nonce"]),
        created_at=m["created_at"], updated_at=m["updated_at"], dynamic=bool(m["dynamic"]),
        disabled=bool(m["disabled"]), last_used_at=m["last_used_at"], logo_uri=m["logo_uri"],
        client_uri=m["client_uri"], registration_token_hash=m["registration_token_hash"],
    )


def _key(row: Any) -> SigningKey:
    m = row._mapping
    return SigningKey(kid=m["kid"], alg=m["alg"], public_jwk=m["public_jwk"],
                      encrypted_private_key=bytes(m["encrypted_private_key"]), created_at=m["created_at"],
                      activates_at=m["activates_at"], retires_at=m["retires_at"])


@guard_unavailable
class SqlStore(SqlFederationMixin, SqlUsersMixin, SqlTokensMixin, SqlDeviceMixin, SqlPushedMixin,
               SqlResourcesMixin, SqlUnitOfWork):
    """Every public method raises ``StoreUnavailable`` when the database cannot be reached (availability.py).

    ``transaction()`` (unit_of_work.py) makes the calls inside it one unit of work. A call that fails inside a
    transaction fails the whole transaction (PostgreSQL refuses any statement after an error), so the writes
    that may meet a conflict inside one (``revoke_access_token``, ``use_once``) resolve it in SQL instead of
    catching an ``IntegrityError``."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.availability = Availability()
        # single-statement reads need no transaction: no BEGIN/ROLLBACK round trips around every SELECT
        self.reader = engine.execution_options(isolation_level="AUTOCOMMIT")

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 5.0, pool_size: int = 20, max_overflow: int = 0) -> SqlStore:
        return cls(create_engine(url, timeout=timeout, pool_size=pool_size, max_overflow=max_overflow))

    # clients
    async def get_client(self, client_id: str) -> Client | None:
        if not _storable(client_id):
            return None
        async with self._read() as conn:
            row = (await conn.execute(sa.select(t.clients).where(t.clients.c.client_id == client_id))).first()
        return _client(row) if row else None

    async def add_client(self, client: Client) -> None:
        try:
            async with self._begin() as conn:
                await conn.execute(t.clients.insert().values(**_client_row(client)))
        except IntegrityError as exc:
            raise ValueError(f"client {client.client_id!r} exists") from exc

    async def update_client(self, client: Client) -> None:
        row = _client_row(client)
        async with self._begin() as conn:
            res = await conn.execute(t.clients.update().where(t.clients.c.client_id == client.client_id)
                                     .values(**row))
            if res.rowcount != 1:
                raise KeyError(client.client_id)

    async def delete_client(self, client_id: str) -> bool:
        if not _storable(client_id):
            return False
        async with self._begin() as conn:
            res = await conn.execute(t.clients.delete().where(t.clients.c.client_id == client_id))
        return bool(res.rowcount)

    async def list_clients(self) -> list[Client]:
        async with self._read() as conn:
            rows = await conn.execute(sa.select(t.clients).order_by(t.clients.c.created_at, t.clients.c.client_id))
            return [_client(r) for r in rows]

    async def touch_client(self, client_id: str, now: float, interval: float) -> None:
        c = t.clients.c
        await self._write(t.clients.update().where(
            c.client_id == client_id, sa.or_(c.last_used_at.is_(None), c.last_used_at <= now - interval))
            .values(last_used_at=now))

    async def purge_idle_dynamic_clients(self, idle_since: float, now: float) -> int:
        c = t.clients.c
        iat = t.initial_access_tokens.c
        async with self._begin() as conn:
            res = await conn.execute(t.clients.delete().where(
                c.dynamic.is_(True), sa.func.coalesce(c.last_used_at, c.created_at) < idle_since))
            await conn.execute(t.initial_access_tokens.delete().where(
                sa.or_(iat.expires_at <= now, iat.uses_left <= 0)))
        return int(res.rowcount or 0)

    # initial access tokens (RFC 7591 §3)
    async def add_initial_access_token(self, token: InitialAccessToken) -> None:
        await self._write(t.initial_access_tokens.insert().values(
            token_hash=token.token_hash, created_at=token.created_at, expires_at=token.expires_at,
            uses_left=token.uses_left))

    async def spend_initial_access_token(self, token_hash: str, now: float) -> bool:
        """One conditional UPDATE: two registrations racing for the last use cannot both win."""
        iat = t.initial_access_tokens.c
        if not _storable(token_hash):
            return False
        return await self._write(t.initial_access_tokens.update().where(
            iat.token_hash == token_hash, iat.uses_left > 0, iat.expires_at > now)
            .values(uses_left=iat.uses_left - 1)) == 1

    # keys
    async def list_keys(self) -> list[SigningKey]:
        async with self._read() as conn:
            rows = await conn.execute(sa.select(t.signing_keys)
                                      .order_by(t.signing_keys.c.created_at, t.signing_keys.c.kid))
            return [_key(r) for r in rows]

    async def add_key(self, key: SigningKey) -> None:
        async with self._begin() as conn:
            await conn.execute(t.signing_keys.insert().values(
                kid=key.kid, alg=key.alg, public_jwk=dict(key.public_jwk),
                encrypted_private_key=key.encrypted_private_key, created_at=key.created_at,
                activates_at=key.activates_at, retires_at=key.retires_at))

    async def update_key(self, key: SigningKey) -> None:
        async with self._begin() as conn:
            await conn.execute(t.signing_keys.update().where(t.signing_keys.c.kid == key.kid)
                               .values(activates_at=key.activates_at, retires_at=key.retires_at))

    async def delete_key(self, kid: str) -> None:
        async with self._begin() as conn:
            await conn.execute(t.signing_keys.delete().where(t.signing_keys.c.kid == kid))

    # revocation
    async def revoke_access_token(self, jti: str, client_id: str, expires_at: float) -> None:
        async with self._begin() as conn:  # already revoked: nothing to do
            await conn.execute(dialect_insert(conn, t.revoked_tokens).values(
                jti=jti, client_id=client_id, expires_at=expires_at).on_conflict_do_nothing(index_elements=["jti"]))

    async def is_access_token_revoked(self, jti: str) -> bool:
        async with self._read() as conn:
            row = (await conn.execute(sa.select(t.revoked_tokens.c.jti).where(t.revoked_tokens.c.jti == jti))).first()
        return row is not None

    async def purge_expired(self, now: float) -> int:
        async with self._begin() as conn:
            a = await conn.execute(t.revoked_tokens.delete().where(t.revoked_tokens.c.expires_at <= now))
            b = await conn.execute(t.replay_cache.delete().where(t.replay_cache.c.expires_at <= now))
        return int(a.rowcount or 0) + int(b.rowcount or 0)

    async def use_once(self, namespace: str, value: str, expires_at: float, now: float) -> bool:
        """Insert; on conflict, take over only an expired entry. One atomic statement on SQLite and PostgreSQL."""
        rc = t.replay_cache
        async with self._begin() as conn:
            insert = dialect_insert(conn, rc).values(namespace=namespace, value=value, expires_at=expires_at)
            res = await conn.execute(insert.on_conflict_do_update(
                index_elements=["namespace", "value"], set_={"expires_at": expires_at}, where=rc.c.expires_at <= now))
        return bool(res.rowcount == 1)

    async def purge_user_flows(self, now: float, grace: float) -> int:
        """``RefreshTokenRepository.purge_user_flows``: expired login sessions (users.py), then codes and token
        families (tokens.py), in one transaction."""
        cutoff = now - grace
        async with self.transaction():
            return await self._purge_sessions(cutoff) + await self._purge_tokens(now, cutoff)

    # audit
    async def record_events(self, events: Sequence[AuditEvent]) -> None:
        if not events:
            return
        # never in a request's transaction: the audit sink writes in the background
        pg = self.engine.dialect.name == "postgresql"
        try:
            if pg:
                # one statement for the whole batch, its columns as arrays (unnest): PostgreSQL parses, plans and
                # executes one INSERT instead of one per row (an executemany), which costs both processes a
                # fraction of the CPU per event; a single statement is atomic without BEGIN and COMMIT
                cols: list[list[Any]] = [[], [], [], [], [], [], [], [], []]
                for e in events:
                    for col, value in zip(cols, (e.type, e.outcome, e.at, e.client_id, e.subject, e.grant_type, e.jti,
                                                 e.ip, _json_dumps(e.detail)), strict=True):
                        col.append(value)
                async with self.reader.connect() as conn:
                    await conn.execute(_PG_INSERT_EVENTS, dict(zip(_EVENT_COLUMNS, cols, strict=True)))
                return
            rows = [{"type": e.type, "outcome": e.outcome, "at": e.at, "client_id": e.client_id, "subject": e.subject,
                     "grant_type": e.grant_type, "jti": e.jti, "ip": e.ip, "detail": dict(e.detail)} for e in events]
            async with self.engine.begin() as conn:
                await conn.execute(t.audit_events.insert(), rows)
        except StatementError as exc:
            if _refused(exc):
                raise AuditEventsRejected(str(exc.orig)[:300]) from exc
            raise  # the database or the connection failed: worth a retry

    async def purge_events(self, before: float, limit: int) -> int:
        """One bounded batch: the oldest rows (the ``at`` index) before the cut-off. On PostgreSQL rows another
        node is deleting at the same moment are skipped, not waited for."""
        ae = t.audit_events
        async with self._begin() as conn:
            pick = sa.select(ae.c.id).where(ae.c.at < before).order_by(ae.c.at).limit(limit)
            if conn.dialect.name == "postgresql":
                pick = pick.with_for_update(skip_locked=True)
            res = await conn.execute(ae.delete().where(ae.c.id.in_(pick.scalar_subquery())))
        return int(res.rowcount or 0)

    async def list_events(self, limit: int = 100, type_prefix: str | None = None) -> list[AuditEvent]:
        q = sa.select(t.audit_events).order_by(t.audit_events.c.id.desc()).limit(limit)
        if type_prefix:
            q = q.where(t.audit_events.c.type.startswith(type_prefix))
        async with self._read() as conn:
            rows = await conn.execute(q)
            return [AuditEvent(type=m["type"], outcome=m["outcome"], at=m["at"], client_id=m["client_id"],
                               subject=m["subject"], grant_type=m["grant_type"], jti=m["jti"], ip=m["ip"],
                               detail=m["detail"] or {}) for m in (r._mapping for r in rows)]

    async def ping(self) -> bool:
        async with self._read() as conn:
            await conn.execute(sa.text("SELECT 1"))
        return True

    async def close(self) -> None:
        await self.engine.dispose()
