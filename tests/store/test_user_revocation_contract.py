"""The storage contract for ending a user's access (issue 17 item 3) and for the admin flag (item 1), on the
in-memory store, SQLite and PostgreSQL; and migration 0006 flagging only the clients that administered before."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import replace
from pathlib import Path

import sqlalchemy as sa

from ostiary.core.clients import Client
from ostiary.core.tokens import RefreshToken, TokenFamily
from ostiary.store.sql import SqlStore, upgrade
from ostiary.store.sql.store import create_engine


def _family(user_id: str, client_id: str = "web") -> TokenFamily:
    return TokenFamily(family_id=secrets.token_hex(8), client_id=client_id, user_id=user_id,
                       scopes=frozenset({"openid"}), audience=("https://api.example",), created_at=10.0,
                       expires_at=5000.0, auth_time=9.0)


async def test_revoke_user_tokens_revokes_live_families_and_their_live_access_tokens(store) -> None:  # type: ignore[no-untyped-def]
    uid, other = "user-" + secrets.token_hex(6), "user-" + secrets.token_hex(6)
    f1, f2, f_cli, f_other = _family(uid), _family(uid), _family(uid, "cli"), _family(other)
    for f in (f1, f2, f_cli, f_other):
        await store.add_family(f)
    jti = {name: f"{name}-{secrets.token_hex(6)}" for name in ("live1", "expired1", "live2", "cli", "other")}
    await store.add_family_jti(f1.family_id, jti["live1"], 500.0)
    await store.add_family_jti(f1.family_id, jti["expired1"], 90.0)
    await store.add_family_jti(f2.family_id, jti["live2"], 600.0)
    await store.add_family_jti(f_cli.family_id, jti["cli"], 600.0)
    await store.add_family_jti(f_other.family_id, jti["other"], 600.0)
    await store.revoke_access_token(jti["live2"], "web", 600.0)  # already revoked at /revoke: no conflict

    assert tuple(await store.revoke_user_tokens(uid, 100.0, "cli")) == (1, 1)  # one client's grants only
    assert await store.is_access_token_revoked(jti["cli"])
    assert not await store.is_access_token_revoked(jti["live1"])

    assert tuple(await store.revoke_user_tokens(uid, 100.0)) == (2, 2)
    assert all([await store.is_access_token_revoked(jti[n]) for n in ("live1", "live2", "cli")])
    assert not await store.is_access_token_revoked(jti["expired1"])  # expired anyway: nothing to remember
    assert not await store.is_access_token_revoked(jti["other"])
    assert [f.family_id for f in await store.list_families(uid)] == []
    assert [f.family_id for f in await store.list_families(other)] == [f_other.family_id]
    revoked = await store.get_family(f1.family_id)
    assert revoked is not None and revoked.revoked_at == 100.0
    assert tuple(await store.revoke_user_tokens(uid, 101.0)) == (0, 0)


async def test_a_revoked_family_cannot_rotate_a_refresh_token(store) -> None:  # type: ignore[no-untyped-def]
    """A refresh racing a password reset either finished first (its access token is then revoked) or fails."""
    fam = _family("user-" + secrets.token_hex(6))
    await store.add_family(fam)
    token = RefreshToken(token_hash=secrets.token_hex(16), family_id=fam.family_id, client_id=fam.client_id,
                         user_id=fam.user_id, scopes=fam.scopes, created_at=10.0, expires_at=300.0)
    await store.add_refresh_token(token)
    await store.revoke_user_tokens(fam.user_id, 20.0)
    assert await store.rotate_refresh_token(token.token_hash, 21.0, "fp", None, fam.family_id, "jti-late", 900.0,
                                            None) is False
    assert await store.family_jtis(fam.family_id) == []
    unspent = await store.get_refresh_token(token.token_hash)
    assert unspent is not None and unspent.used_at is None


async def test_concurrent_refreshes_and_a_revocation_leave_no_live_access_token(store) -> None:  # type: ignore[no-untyped-def]
    uid = "user-" + secrets.token_hex(6)
    families = [_family(uid) for _ in range(6)]
    tokens = []
    for fam in families:
        await store.add_family(fam)
        tok = RefreshToken(token_hash=secrets.token_hex(16), family_id=fam.family_id, client_id=fam.client_id,
                           user_id=uid, scopes=fam.scopes, created_at=10.0, expires_at=300.0)
        await store.add_refresh_token(tok)
        tokens.append(tok)
    jtis = [f"jti-{secrets.token_hex(6)}" for _ in tokens]
    rotations = [store.rotate_refresh_token(t.token_hash, 20.0, "fp", None, t.family_id, j, 900.0, None)
                 for t, j in zip(tokens, jtis, strict=True)]
    results = await asyncio.gather(store.revoke_user_tokens(uid, 20.0), *rotations)
    for jti, rotated in zip(jtis, results[1:], strict=True):
        # every access token minted by a rotation that succeeded is revoked
        assert not rotated or await store.is_access_token_revoked(jti)


async def test_the_admin_flag_round_trips(store) -> None:  # type: ignore[no-untyped-def]
    cid = "ops-" + secrets.token_hex(4)
    client = Client(client_id=cid, name="ops", client_type="confidential",
                    token_endpoint_auth_method="client_secret_basic", grant_types=frozenset({"client_credentials"}),
                    scopes=frozenset({"admin"}), admin=True)
    await store.add_client(client)
    assert await store.get_client(cid) == client
    await store.update_client(replace(client, admin=False))
    got = await store.get_client(cid)
    assert got is not None and got.admin is False


def test_migration_0006_flags_only_clients_that_administered_with_client_credentials(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    upgrade(url, "0005")
    row = dict(client_type="confidential", token_endpoint_auth_method="client_secret_basic", audiences=[],
               resource_audiences=[], redirect_uris=[], post_logout_redirect_uris=[], allowed_origins=[], secrets=[],
               jwks=None, jwks_uri=None, first_party=False, created_at=1.0, updated_at=1.0)
    before = {"ops": (["client_credentials"], ["admin"]), "console": (["authorization_code", "refresh_token"],
                                                                     ["openid", "admin"]),
              "api": (["client_credentials"], ["api:read"]), "mixed": (["client_credentials", "refresh_token"],
                                                                      ["admin"])}

    async def seed() -> None:
        engine = create_engine(url)
        async with engine.begin() as conn:
            table = await conn.run_sync(lambda c: sa.Table("clients", sa.MetaData(), autoload_with=c))
            for cid, (grants, scopes) in before.items():
                await conn.execute(table.insert().values(client_id=cid, name=cid, grant_types=grants, scopes=scopes,
                                                         **row))
        await engine.dispose()

    asyncio.run(seed())
    upgrade(url)

    async def flags() -> dict[str, bool]:
        store = SqlStore.from_url(url)
        try:
            return {c.client_id: c.admin for c in await store.list_clients()}
        finally:
            await store.close()

    assert asyncio.run(flags()) == {"ops": True, "console": False, "api": False, "mixed": False}
