"""Dynamic clients and initial access tokens (RFC 7591): the same contract on memory, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import replace

import pytest

from ostiary.core.clients import Client, InitialAccessToken


def _dynamic(**kw: object) -> Client:
    base = dict(client_id="d-" + secrets.token_hex(6), name="agent", client_type="public",
                token_endpoint_auth_method="none", grant_types=frozenset({"authorization_code", "refresh_token"}),
                scopes=frozenset({"openid"}), redirect_uris=("https://agent.example.com/cb",), dynamic=True,
                logo_uri="https://agent.example.com/logo.png", client_uri="https://agent.example.com/",
                registration_token_hash="rat-" + secrets.token_hex(8), created_at=100.0, updated_at=100.0)
    base.update(kw)
    return Client(**base)  # type: ignore[arg-type]


async def test_dynamic_fields_round_trip(store) -> None:  # type: ignore[no-untyped-def]
    c = _dynamic()
    await store.add_client(c)
    assert await store.get_client(c.client_id) == c
    disabled = replace(c, disabled=True, last_used_at=150.0, logo_uri=None)
    await store.update_client(disabled)
    assert await store.get_client(c.client_id) == disabled
    await store.delete_client(c.client_id)


async def test_touch_writes_only_when_stale(store) -> None:  # type: ignore[no-untyped-def]
    c = _dynamic()
    await store.add_client(c)
    await store.touch_client(c.client_id, 1000.0, 600.0)
    assert (await store.get_client(c.client_id)).last_used_at == 1000.0
    await store.touch_client(c.client_id, 1300.0, 600.0)  # within the interval: unchanged
    assert (await store.get_client(c.client_id)).last_used_at == 1000.0
    await store.touch_client(c.client_id, 1600.0, 600.0)
    assert (await store.get_client(c.client_id)).last_used_at == 1600.0
    await store.touch_client("no-such-client", 1600.0, 600.0)  # nothing to do, no error
    await store.delete_client(c.client_id)


async def test_idle_dynamic_clients_are_purged(store) -> None:  # type: ignore[no-untyped-def]
    never_used = _dynamic(created_at=100.0)
    used_lately = _dynamic(created_at=100.0, last_used_at=900.0)
    used_long_ago = _dynamic(created_at=100.0, last_used_at=200.0)
    vetted = _dynamic(dynamic=False, created_at=100.0)
    for c in (never_used, used_lately, used_long_ago, vetted):
        await store.add_client(c)
    gone = await store.purge_idle_dynamic_clients(500.0, 1000.0)
    assert gone >= 2
    assert await store.get_client(never_used.client_id) is None
    assert await store.get_client(used_long_ago.client_id) is None
    assert await store.get_client(used_lately.client_id) == used_lately
    assert await store.get_client(vetted.client_id) == vetted  # an administrator's client never expires so
    for c in (used_lately, vetted):
        await store.delete_client(c.client_id)


async def test_initial_access_token_uses_and_expiry(store) -> None:  # type: ignore[no-untyped-def]
    h = "iat-" + secrets.token_hex(8)
    await store.add_initial_access_token(InitialAccessToken(h, 100.0, 200.0, 2))
    assert await store.spend_initial_access_token(h, 150.0) is True
    assert await store.spend_initial_access_token(h, 150.0) is True
    assert await store.spend_initial_access_token(h, 150.0) is False  # used up
    expiring = "iat-" + secrets.token_hex(8)
    await store.add_initial_access_token(InitialAccessToken(expiring, 100.0, 200.0, 5))
    assert await store.spend_initial_access_token(expiring, 200.0) is False  # expired
    assert await store.spend_initial_access_token("iat-unknown", 150.0) is False
    assert await store.spend_initial_access_token("bad\x00hash", 150.0) is False


async def test_spent_use_is_given_back_when_the_transaction_fails(store) -> None:  # type: ignore[no-untyped-def]
    h = "iat-" + secrets.token_hex(8)
    await store.add_initial_access_token(InitialAccessToken(h, 100.0, 200.0, 1))
    taken = _dynamic()
    await store.add_client(taken)
    with pytest.raises(ValueError):
        async with store.transaction():
            assert await store.spend_initial_access_token(h, 150.0) is True
            await store.add_client(taken)  # a client id that exists: the registration fails
    assert await store.spend_initial_access_token(h, 150.0) is True  # the use came back
    await store.delete_client(taken.client_id)


async def test_the_last_use_goes_to_exactly_one_racer(store) -> None:  # type: ignore[no-untyped-def]
    h = "iat-" + secrets.token_hex(8)
    await store.add_initial_access_token(InitialAccessToken(h, 100.0, 200.0, 1))
    results = await asyncio.gather(*(store.spend_initial_access_token(h, 150.0) for _ in range(8)))
    assert results.count(True) == 1


async def test_purge_drops_spent_and_expired_initial_access_tokens(store) -> None:  # type: ignore[no-untyped-def]
    live, spent, old = ("iat-" + secrets.token_hex(8) for _ in range(3))
    await store.add_initial_access_token(InitialAccessToken(live, 100.0, 2000.0, 1))
    await store.add_initial_access_token(InitialAccessToken(spent, 100.0, 2000.0, 1))
    await store.add_initial_access_token(InitialAccessToken(old, 100.0, 900.0, 1))
    assert await store.spend_initial_access_token(spent, 150.0)
    await store.purge_idle_dynamic_clients(0.0, 1000.0)
    assert await store.spend_initial_access_token(live, 1000.0) is True
    assert await store.spend_initial_access_token(old, 800.0) is False  # purged, though not expired at 800
