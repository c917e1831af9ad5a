"""The storage contract of ``rotate_refresh_token_once`` (issue 15 item 2): find, check, spend and succeed a refresh
token at once (one statement on PostgreSQL), on the in-memory store, SQLite and PostgreSQL; the refresh grant on
each store (reuse revokes the family, a race has one winner); and the round trips of a rotation on PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import secrets
from dataclasses import replace
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa

from ostiary._clock import FixedClock
from ostiary._secrets import derive_key, token_hash
from ostiary.core import keys as core_keys
from ostiary.core.audit import AuditEvent
from ostiary.core.clients import Client
from ostiary.core.context import EngineContext
from ostiary.core.endpoints.token import TokenEndpoint
from ostiary.core.errors import InvalidGrant, InvalidScope
from ostiary.core.grants import default_grants
from ostiary.core.keys import KeyRing
from ostiary.core.policy import ServerPolicy
from ostiary.core.requests import EndpointRequest
from ostiary.core.tokens import RefreshRotation, RefreshToken, TokenFamily, rotation_refusal
from ostiary.core.user_tokens import REFRESH_TOKEN_PREFIX
from ostiary.core.users import User
from ostiary.store.sql import SqlStore

ISSUER = "https://id.example.com"
USERINFO = ISSUER + "/userinfo"


async def _user(store: Any, *, disabled: bool = False) -> str:
    uid = "u-" + secrets.token_hex(6)
    await store.add_user(User(user_id=uid, username=uid, name="n", password_hash="x", disabled=disabled))
    return uid


async def _grant(store: Any, uid: str, *, scopes: frozenset[str] = frozenset({"openid", "offline_access", "api"}),
                 audience: tuple[str, ...] = ("https://api.example", USERINFO), expires_at: float = 5000.0,
                 token_expires_at: float = 300.0, dpop_jkt: str | None = "jkt-1",
                 x5t_s256: str | None = None) -> tuple[TokenFamily, RefreshToken]:
    fam = TokenFamily(family_id=secrets.token_hex(8), client_id="web", user_id=uid, scopes=scopes,
                      audience=audience, created_at=10.0, expires_at=expires_at, auth_time=9.0, dpop_jkt=dpop_jkt,
                      x5t_s256=x5t_s256)
    await store.add_family(fam)
    tok = RefreshToken(token_hash=secrets.token_hex(16), family_id=fam.family_id, client_id="web", user_id=uid,
                       scopes=scopes, created_at=10.0, expires_at=token_expires_at, dpop_jkt=dpop_jkt)
    await store.add_refresh_token(tok)
    return fam, tok


def _rotation(tok: RefreshToken, **kw: Any) -> RefreshRotation:
    base: dict[str, Any] = dict(
        token_hash=tok.token_hash, client_id="web", now=20.0, requested=frozenset(),
        client_scopes=frozenset({"openid", "offline_access", "api"}),
        client_audiences=frozenset({"https://api.example", "web"}), userinfo_audience=USERINFO,
        refresh_allowed=True, jti="jti-" + secrets.token_hex(6), access_expires_at=920.0,
        successor_hash=secrets.token_hex(16), idle_ttl=100.0, dpop_jkt="jkt-1")
    base.update(kw)
    return RefreshRotation(**base)


async def _nothing_written(store: Any, fam: TokenFamily, tok: RefreshToken, r: RefreshRotation) -> None:
    assert await store.family_jtis(fam.family_id) == []
    assert await store.get_refresh_token(r.successor_hash) is None
    now = await store.get_refresh_token(tok.token_hash)
    assert now is not None and now.used_at == tok.used_at


async def test_a_rotation_spends_the_token_records_the_jti_and_stores_the_successor(store) -> None:  # type: ignore[no-untyped-def]
    fam, tok = await _grant(store, await _user(store))
    r = _rotation(tok, client_scopes=frozenset({"openid", "offline_access", "api", "other"}))
    out = await store.rotate_refresh_token_once(r)
    assert out.rotated and out.user_enabled
    assert out.token == tok and out.family == fam  # as found, before the write
    spent = await store.get_refresh_token(tok.token_hash)
    assert spent is not None and spent.used_at == 20.0
    assert await store.family_jtis(fam.family_id) == [(r.jti, 920.0)]
    successor = await store.get_refresh_token(r.successor_hash)
    assert successor == out.successor
    assert successor == RefreshToken(token_hash=r.successor_hash, family_id=fam.family_id, client_id="web",
                                     user_id=fam.user_id, scopes=fam.scopes, created_at=20.0,
                                     expires_at=120.0, parent_hash=tok.token_hash, dpop_jkt="jkt-1")


async def test_a_family_bound_to_a_certificate_rotates_with_it(store) -> None:  # type: ignore[no-untyped-def]
    fam, tok = await _grant(store, await _user(store), x5t_s256="thumb-a")
    out = await store.rotate_refresh_token_once(_rotation(tok, x5t_s256="thumb-a"))
    assert out.rotated and out.family == fam


async def test_an_unbound_family_rotates_with_or_without_a_dpop_key(store) -> None:  # type: ignore[no-untyped-def]
    for jkt in (None, "jkt-9"):
        fam, tok = await _grant(store, await _user(store), dpop_jkt=None)
        out = await store.rotate_refresh_token_once(_rotation(tok, dpop_jkt=jkt))
        assert out.rotated and out.family == fam


async def test_the_successor_carries_the_registration_of_now_and_the_absolute_expiry(store) -> None:  # type: ignore[no-untyped-def]
    fam, tok = await _grant(store, await _user(store), expires_at=50.0, dpop_jkt=None)
    r = _rotation(tok, client_scopes=frozenset({"openid", "offline_access"}))  # "api" removed since the grant
    out = await store.rotate_refresh_token_once(r)
    assert out.rotated and out.successor is not None
    assert out.successor.scopes == {"openid", "offline_access"} and out.successor.expires_at == 50.0
    assert out.successor.dpop_jkt is None
    assert await store.get_refresh_token(r.successor_hash) == out.successor


@pytest.mark.parametrize("case", ["no refresh grant", "offline_access removed"])
async def test_no_successor_when_none_is_due(store, case: str) -> None:  # type: ignore[no-untyped-def]
    fam, tok = await _grant(store, await _user(store))
    r = (_rotation(tok, refresh_allowed=False) if case == "no refresh grant"
         else _rotation(tok, client_scopes=frozenset({"openid", "api"})))
    out = await store.rotate_refresh_token_once(r)
    assert out.rotated and out.successor is None
    assert await store.get_refresh_token(r.successor_hash) is None
    assert await store.family_jtis(fam.family_id) == [(r.jti, 920.0)]


async def test_a_spent_token_is_found_spent_and_nothing_is_written(store) -> None:  # type: ignore[no-untyped-def]
    fam, tok = await _grant(store, await _user(store))
    first = _rotation(tok)
    assert (await store.rotate_refresh_token_once(first)).rotated
    again = _rotation(tok, now=21.0)
    out = await store.rotate_refresh_token_once(again)
    assert not out.rotated and out.token is not None and out.token.used_at == 20.0
    assert rotation_refusal(out.token, out.family, out.user_enabled, again) == "spent"
    assert await store.family_jtis(fam.family_id) == [(first.jti, 920.0)]
    assert await store.get_refresh_token(again.successor_hash) is None


@pytest.mark.parametrize("case", ["wrong client", "expired", "family expired", "revoked family", "unknown",
                                  "widened", "no longer allowed", "nothing registered", "user disabled",
                                  "no certificate", "another certificate", "no DPoP proof", "another DPoP key"])
async def test_a_refused_rotation_writes_nothing(store, case: str) -> None:  # type: ignore[no-untyped-def]
    uid = await _user(store, disabled=case == "user disabled")
    fam, tok = await _grant(store, uid, token_expires_at=19.0 if case == "expired" else 300.0,
                            expires_at=20.0 if case == "family expired" else 5000.0,
                            x5t_s256="thumb-a" if "certificate" in case else None)
    if case == "revoked family":
        assert await store.revoke_family(fam.family_id, 15.0)
    kw: dict[str, Any] = {
        "wrong client": {"client_id": "other"},
        "unknown": {"token_hash": secrets.token_hex(16)},
        "widened": {"requested": frozenset({"api", "admin"})},
        "no longer allowed": {"requested": frozenset({"api"}), "client_scopes": frozenset({"openid"})},
        "nothing registered": {"client_audiences": frozenset({"web"}), "client_scopes": frozenset({"api"})},
        "another certificate": {"x5t_s256": "thumb-b"},
        "no DPoP proof": {"dpop_jkt": None},  # the family is bound to jkt-1 (RFC 9449 §5)
        "another DPoP key": {"dpop_jkt": "jkt-2"},
    }.get(case, {})
    r = _rotation(tok, **kw)
    out = await store.rotate_refresh_token_once(r)
    assert not out.rotated
    assert rotation_refusal(out.token, out.family, out.user_enabled, r) is not None
    if case == "unknown":
        assert out.token is None
    else:
        assert out.token == tok and out.family is not None and out.family.family_id == fam.family_id
    await _nothing_written(store, fam, tok, r)


async def test_the_store_spends_exactly_when_the_rule_says(store) -> None:  # type: ignore[no-untyped-def]
    """The PostgreSQL statement is ``rotation_refusal`` written in SQL: the same answer over every combination
    of requested scope, registered scopes and audiences."""
    uid = await _user(store)
    scope_sets = [frozenset(s) for s in ((), ("api",), ("openid",), ("openid", "offline_access"), ("x",))]
    audiences = [frozenset({"web"}), frozenset({"web", "https://api.example"})]
    for requested, client_scopes, client_audiences in itertools.product(scope_sets, scope_sets[1:], audiences):
        for fam_aud in (("https://api.example",), (USERINFO,), ("web", USERINFO)):
            fam, tok = await _grant(store, uid, audience=fam_aud)
            r = _rotation(tok, requested=requested, client_scopes=client_scopes, client_audiences=client_audiences)
            expected = rotation_refusal(tok, fam, True, r) is None
            out = await store.rotate_refresh_token_once(r)
            assert out.rotated is expected, (requested, client_scopes, client_audiences, fam_aud)
            if expected:
                assert (out.successor is not None) == ("openid" not in client_scopes or "offline_access" in client_scopes)


async def test_concurrent_rotations_of_one_token_have_exactly_one_winner(store) -> None:  # type: ignore[no-untyped-def]
    """On PostgreSQL each call runs on its own pooled connection, truly concurrently."""
    for _ in range(5):
        fam, tok = await _grant(store, await _user(store))
        rotations = [_rotation(tok) for _ in range(6)]
        outs = await asyncio.gather(*(store.rotate_refresh_token_once(r) for r in rotations))
        winners = [r for r, o in zip(rotations, outs, strict=True) if o.rotated]
        assert len(winners) == 1
        losers = [o for o in outs if not o.rotated]
        assert all(o.token is not None and o.token.used_at is not None for o in losers)  # seen spent: a reuse
        assert await store.family_jtis(fam.family_id) == [(winners[0].jti, 920.0)]
        stored = [await store.get_refresh_token(r.successor_hash) for r in rotations]
        assert [s is not None for s in stored].count(True) == 1


async def test_a_rotation_racing_a_family_revocation_leaves_no_live_access_token(store) -> None:  # type: ignore[no-untyped-def]
    for _ in range(5):
        fam, tok = await _grant(store, await _user(store))
        r = _rotation(tok)
        out, revoked = await asyncio.gather(store.rotate_refresh_token_once(r), store.revoke_user_tokens(fam.user_id,
                                                                                                       20.0))
        assert revoked.families == 1
        assert not out.rotated or await store.is_access_token_revoked(r.jti)


# the refresh grant on each store


class _Sink:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def emit(self, event: AuditEvent) -> None:
        self.events.append(event)


async def _context(store: Any) -> tuple[EngineContext, _Sink]:
    clock, policy, kek = FixedClock(), ServerPolicy(issuer=ISSUER), derive_key(b"k" * 32, "kek")
    await core_keys.ensure_signing_key(store, policy, kek, clock)
    ring = KeyRing(await store.list_keys(), kek, clock.now(), policy.max_token_lifetime)
    sink = _Sink()
    return EngineContext(policy=policy, store=store, keyring=lambda: ring, clock=clock, audit=sink,
                         secret_hash_key=derive_key(b"k" * 32, "hash")), sink


async def _live_grant(ctx: EngineContext, store: Any) -> tuple[Client, str, TokenFamily]:
    cid = "web-" + secrets.token_hex(4)
    client = Client(client_id=cid, name="w", client_type="public", token_endpoint_auth_method="none",
                    grant_types=frozenset({"authorization_code", "refresh_token"}),
                    scopes=frozenset({"openid", "offline_access"}), redirect_uris=("https://app.example/cb",))
    await store.add_client(client)
    uid = await _user(store)
    now = ctx.clock.now()
    fam = TokenFamily(family_id=secrets.token_hex(8), client_id=cid, user_id=uid,
                      scopes=frozenset({"openid", "offline_access"}), audience=(cid, USERINFO), created_at=now,
                      expires_at=now + 3600, auth_time=now)
    await store.add_family(fam)
    plain = REFRESH_TOKEN_PREFIX + secrets.token_urlsafe(32)
    await store.add_refresh_token(RefreshToken(token_hash=token_hash(plain, ctx.secret_hash_key),
                                               family_id=fam.family_id, client_id=cid, user_id=uid,
                                               scopes=fam.scopes, created_at=now, expires_at=now + 600))
    return client, plain, fam


async def _refresh(ctx: EngineContext, client_id: str, token: str, **extra: str) -> Any:
    form = (("grant_type", "refresh_token"), ("refresh_token", token), ("client_id", client_id), *extra.items())
    return await TokenEndpoint(ctx, default_grants()).handle(
        EndpointRequest(endpoint=ISSUER + "/token", params=form, authorization=None, client_ip="203.0.113.9"))


async def test_the_grant_rotates_and_a_reuse_revokes_the_family(store) -> None:  # type: ignore[no-untyped-def]
    ctx, sink = await _context(store)
    client, plain, fam = await _live_grant(ctx, store)
    with pytest.raises(InvalidScope):  # widened: refused before the reuse check, the token stays usable
        await _refresh(ctx, client.client_id, plain, scope="openid offline_access admin")
    first = await _refresh(ctx, client.client_id, plain)
    second = await _refresh(ctx, client.client_id, first.refresh_token)
    assert second.refresh_token and second.id_token
    jtis = [j for j, _ in await store.family_jtis(fam.family_id)]
    assert len(jtis) == 2
    with pytest.raises(InvalidGrant):  # the first token again: reuse
        await _refresh(ctx, client.client_id, plain)
    revoked = await store.get_family(fam.family_id)
    assert revoked is not None and revoked.revoked_at is not None
    assert all([await store.is_access_token_revoked(j) for j in jtis])
    with pytest.raises(InvalidGrant):
        await _refresh(ctx, client.client_id, second.refresh_token)
    assert [e.type for e in sink.events].count("security.refresh_token_reuse") == 1
    assert [e.type for e in sink.events].count("token.issued") == 2


async def test_another_client_cannot_use_the_token_nor_harm_the_family(store) -> None:  # type: ignore[no-untyped-def]
    ctx, _ = await _context(store)
    client, plain, fam = await _live_grant(ctx, store)
    other, _, _ = await _live_grant(ctx, store)
    with pytest.raises(InvalidGrant):
        await _refresh(ctx, other.client_id, plain)
    assert (await _refresh(ctx, client.client_id, plain)).refresh_token
    live = await store.get_family(fam.family_id)
    assert live is not None and live.revoked_at is None


async def test_a_race_through_the_grant_has_one_winner_and_revokes_the_family(store) -> None:  # type: ignore[no-untyped-def]
    ctx, sink = await _context(store)
    client, plain, fam = await _live_grant(ctx, store)
    results = await asyncio.gather(*(_refresh(ctx, client.client_id, plain) for _ in range(4)),
                                   return_exceptions=True)
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1, results
    assert all(isinstance(r, InvalidGrant) for r in results if r not in winners)
    family = await store.get_family(fam.family_id)
    assert family is not None and family.revoked_at is not None  # strict: the losers' reuse revoked it
    assert [e.type for e in sink.events].count("security.refresh_token_reuse") == 1


async def test_one_round_trip_per_rotation_on_postgresql(sql_urls: dict[str, str]) -> None:
    store = SqlStore.from_url(sql_urls["postgres"])
    try:
        ctx, _ = await _context(store)
        client, plain, _ = await _live_grant(ctx, store)
        ctx = replace(ctx, store=store)
        statements: list[str] = []
        sa.event.listen(store.engine.sync_engine, "before_cursor_execute",
                        lambda conn, cursor, stmt, *a: statements.append(stmt))
        begins: list[object] = []
        sa.event.listen(store.engine.sync_engine, "begin",
                        lambda conn: begins.append(conn) if conn.get_execution_options().get(
                            "isolation_level") != "AUTOCOMMIT" else None)
        token = plain
        for _ in range(3):
            statements.clear()
            begins.clear()
            token = (await _refresh(ctx, client.client_id, token)).refresh_token
            # the client is read too (no cache in this bare context): one statement for it, one for the rotation
            assert [s for s in statements if "refresh_tokens" in s] and len(statements) == 2, statements
            assert begins == []
    finally:
        await store.close()


async def test_a_failed_rotation_statement_raises_what_any_statement_raises_on_postgresql(
        sql_urls: dict[str, str]) -> None:
    """The rotation statement is sent as the driver takes it (``exec_driver_sql``); its errors still come as
    SQLAlchemy's exceptions: a refused value as ``IntegrityError`` (here a successor hash that exists, the unique
    key of ``refresh_tokens``; nothing is written), not as asyncpg's own exception."""
    store = SqlStore.from_url(sql_urls["postgres"])
    try:
        uid = await _user(store)
        fam, tok = await _grant(store, uid)
        _, other = await _grant(store, uid)
        r = _rotation(tok, successor_hash=other.token_hash)
        with pytest.raises(sa.exc.IntegrityError):
            await store.rotate_refresh_token_once(r)
        await _nothing_written(store, fam, tok, replace(r, successor_hash="none-" + secrets.token_hex(4)))
        assert (await store.rotate_refresh_token_once(_rotation(tok))).rotated  # the connection is still usable
    finally:
        await store.close()


async def test_a_rotation_on_a_connection_the_server_closed_is_unavailable_and_the_pool_recovers(
        sql_urls: dict[str, str]) -> None:
    """A backend terminated under a pooled connection (as in a database restart): the rotation raises
    ``StoreUnavailable`` (the availability guard knows the error as a disconnect), the connection is invalidated,
    and the next rotation gets a new one."""
    from ostiary.core.errors import StoreUnavailable

    store = SqlStore.from_url(sql_urls["postgres"], pool_size=1)
    try:
        uid = await _user(store)
        fam, tok = await _grant(store, uid)
        async with store.reader.connect() as conn:  # the pool's only connection
            pid = (await conn.exec_driver_sql("SELECT pg_backend_pid()")).scalar()
        killer = await asyncpg.connect(sql_urls["postgres"].replace("postgresql+asyncpg://", "postgresql://"))
        try:
            assert await killer.fetchval("SELECT pg_terminate_backend($1)", pid)
        finally:
            await killer.close()
        await asyncio.sleep(0.2)
        with pytest.raises(StoreUnavailable):
            await store.rotate_refresh_token_once(_rotation(tok))
        out = await store.rotate_refresh_token_once(_rotation(tok))
        assert out.rotated and out.token is not None and out.token.family_id == fam.family_id
    finally:
        await store.close()
