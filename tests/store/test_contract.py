"""One storage contract, run on the in-memory store, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import replace
from pathlib import Path

import pytest

from ostiary.core.audit import AuditEvent
from ostiary.core.clients import Client, ClientSecret
from ostiary.core.keys import SigningKey
from ostiary.core.mtls import TlsClientAuthName
from ostiary.core.tokens import TokenFamily
from ostiary.store.sql import SqlStore, check_schema, upgrade

from ..support import create_pg_database, drop_pg_database


def _client(**kw: object) -> Client:
    base = dict(client_id="c-" + secrets.token_hex(6), name="n", client_type="confidential",
                token_endpoint_auth_method="client_secret_basic", grant_types=frozenset({"client_credentials"}),
                scopes=frozenset({"a", "b"}), audiences=("https://api.example.com",),
                resource_audiences=("urn:example:orders",), may_exchange_for=("https://inventory.example.com",),
                secrets=(ClientSecret("h1", 1.0, None), ClientSecret("h0", 0.5, 99.0)),
                jwks={"keys": []}, created_at=10.0, updated_at=11.0)
    base.update(kw)
    return Client(**base)  # type: ignore[arg-type]


async def test_clients_round_trip(store) -> None:  # type: ignore[no-untyped-def]
    c = _client()
    assert await store.get_client(c.client_id) is None
    await store.add_client(c)
    assert await store.get_client(c.client_id) == c
    with pytest.raises(ValueError):
        await store.add_client(c)
    changed = replace(c, scopes=frozenset({"z"}), secrets=(ClientSecret("h2", 2.0, None),),
                      id_token_signed_response_alg="ES256")
    await store.update_client(changed)
    assert await store.get_client(c.client_id) == changed
    assert c.client_id in [x.client_id for x in await store.list_clients()]
    assert await store.delete_client(c.client_id) is True
    assert await store.delete_client(c.client_id) is False
    assert await store.get_client(c.client_id) is None
    with pytest.raises(KeyError):
        await store.update_client(changed)


async def test_mtls_client_metadata_and_family_binding_round_trip(store) -> None:  # type: ignore[no-untyped-def]
    """RFC 8705: the registered certificate name, the token-binding flag, and a family's certificate thumbprint."""
    c = _client(token_endpoint_auth_method="tls_client_auth",
                tls_client_auth=TlsClientAuthName(subject_dn="CN=svc,O=Example"),
                tls_client_certificate_bound_access_tokens=True)
    await store.add_client(c)
    assert await store.get_client(c.client_id) == c
    changed = replace(c, tls_client_auth=TlsClientAuthName(san_ip="10.0.0.7"),
                      tls_client_certificate_bound_access_tokens=False)
    await store.update_client(changed)
    assert await store.get_client(c.client_id) == changed
    family = TokenFamily(family_id=secrets.token_hex(8), client_id=c.client_id, user_id="u", scopes=frozenset({"a"}),
                         audience=("https://api.example.com",), created_at=1.0, expires_at=99.0, auth_time=1.0,
                         x5t_s256="A" * 43)
    await store.add_family(family)
    assert await store.get_family(family.family_id) == family


async def test_keys_round_trip(store) -> None:  # type: ignore[no-untyped-def]
    k = SigningKey(kid="k-" + secrets.token_hex(4), alg="ES256", public_jwk={"kty": "EC", "kid": "x"},
                   encrypted_private_key=b"\x00\x01blob", created_at=5.0, activates_at=6.0)
    await store.add_key(k)
    assert k in await store.list_keys()
    await store.update_key(replace(k, retires_at=9.0))
    assert replace(k, retires_at=9.0) in await store.list_keys()
    await store.delete_key(k.kid)
    assert all(x.kid != k.kid for x in await store.list_keys())


async def test_revocation_and_purge(store) -> None:  # type: ignore[no-untyped-def]
    jti = secrets.token_hex(8)
    assert not await store.is_access_token_revoked(jti)
    await store.revoke_access_token(jti, "c", 100.0)
    await store.revoke_access_token(jti, "c", 100.0)  # idempotent
    assert await store.is_access_token_revoked(jti)
    await store.purge_expired(50.0)
    assert await store.is_access_token_revoked(jti)
    await store.purge_expired(100.0)
    assert not await store.is_access_token_revoked(jti)


async def test_use_once_is_single_use_until_expiry(store) -> None:  # type: ignore[no-untyped-def]
    v = secrets.token_hex(8)
    assert await store.use_once("ns", v, 100.0, 10.0) is True
    assert await store.use_once("ns", v, 100.0, 20.0) is False
    assert await store.use_once("other", v, 100.0, 20.0) is True
    assert await store.use_once("ns", v, 200.0, 100.0) is True  # expired entry can be taken again
    assert await store.use_once("ns", v, 200.0, 150.0) is False


async def test_concurrent_use_once_admits_exactly_one(store) -> None:  # type: ignore[no-untyped-def]
    v = secrets.token_hex(8)
    results = await asyncio.gather(*(store.use_once("race", v, 100.0, 1.0) for _ in range(10)))
    assert results.count(True) == 1


async def test_audit_events(store) -> None:  # type: ignore[no-untyped-def]
    tag = secrets.token_hex(4)
    events = [AuditEvent(type=f"t{tag}.{i}", outcome="success", at=float(i), client_id="c", jti=f"j{i}",
                         detail={"i": i}) for i in range(3)]
    await store.record_events(events)
    found = await store.list_events(limit=10, type_prefix=f"t{tag}")
    assert [e.type for e in found] == [f"t{tag}.2", f"t{tag}.1", f"t{tag}.0"]
    assert found[0].detail == {"i": 2}


async def test_ping(store) -> None:  # type: ignore[no-untyped-def]
    assert await store.ping() is True


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_schema_status_names_the_command(backend: str, tmp_path: Path) -> None:
    if backend == "sqlite":
        url, name = f"sqlite+aiosqlite:///{tmp_path / 's.db'}", None
    else:
        name, url = await asyncio.to_thread(create_pg_database)
    try:
        status = await check_schema(url)
        assert status.state == "unmigrated" and "ostiary migrate" in status.message
        upgrade(url)
        assert (await check_schema(url)).state == "current"
        s = SqlStore.from_url(url)
        import sqlalchemy as sa

        async with s.engine.begin() as conn:
            await conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999_future'"))
        await s.close()
        status = await check_schema(url)
        assert status.state == "newer" and "newer" in status.message
    finally:
        if name:
            await asyncio.to_thread(drop_pg_database, name)


async def test_audit_purge_deletes_the_oldest_events_before_the_cutoff_in_bounded_batches(store) -> None:  # type: ignore[no-untyped-def]
    tag = secrets.token_hex(4)
    events = [AuditEvent(type=f"purge.{tag}", outcome="success", at=-1000.0 + i, client_id=f"c{i}") for i in range(7)]
    await store.record_events(events)
    # older than anything another test records; before -995: events 0..4 qualify; a batch of 3 takes the three oldest
    assert await store.purge_events(-995.0, 3) == 3
    left = [e.client_id for e in await store.list_events(limit=50, type_prefix=f"purge.{tag}")]
    assert sorted(left) == ["c3", "c4", "c5", "c6"]
    assert await store.purge_events(-995.0, 3) == 2
    assert await store.purge_events(-995.0, 3) == 0
    left = [e.client_id for e in await store.list_events(limit=50, type_prefix=f"purge.{tag}")]
    assert sorted(left) == ["c5", "c6"]
