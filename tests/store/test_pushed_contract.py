"""PushedRequestRepository (RFC 9126): the same behaviour on memory, SQLite and PostgreSQL (migration 0010_par)."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from ostiary.core.pushed import PushedRequest

NOW = 1_800_000_000.0
PARAMS = (("response_type", "code"), ("client_id", "web"), ("scope", "openid profile"),
          ("resource", "https://a.example"), ("resource", "https://b.example"))


def _pushed(**kw: object) -> PushedRequest:
    base: dict[str, object] = {"request_id": secrets.token_hex(32), "client_id": "web", "params": PARAMS,
                               "created_at": NOW, "expires_at": NOW + 60}
    base.update(kw)
    return PushedRequest(**base)  # type: ignore[arg-type]


async def test_round_trip_keeps_parameters_in_order(store) -> None:
    p = _pushed()
    await store.add_pushed_request(p)
    assert await store.get_pushed_request(p.request_id) == p
    assert await store.get_pushed_request(secrets.token_hex(32)) is None
    with pytest.raises(ValueError):
        await store.add_pushed_request(_pushed(request_id=p.request_id))


async def test_claim_once_by_its_client_while_unexpired(store) -> None:
    p = _pushed()
    await store.add_pushed_request(p)
    assert not await store.claim_pushed_request(p.request_id, "other", None, NOW + 1, NOW + 600)
    assert not await store.claim_pushed_request(p.request_id, "web", None, NOW + 60, NOW + 600)  # expired
    assert await store.claim_pushed_request(p.request_id, "web", "b" * 64, NOW + 1, NOW + 601)
    assert not await store.claim_pushed_request(p.request_id, "web", "b" * 64, NOW + 2, NOW + 602)
    got = await store.get_pushed_request(p.request_id)
    assert (got.claimed_at, got.expires_at, got.browser_hash) == (NOW + 1, NOW + 601, "b" * 64)


async def test_concurrent_claims_have_one_winner(store) -> None:
    p = _pushed()
    await store.add_pushed_request(p)
    results = await asyncio.gather(*(store.claim_pushed_request(p.request_id, "web", None, NOW, NOW + 600)
                                     for _ in range(5)))
    assert sorted(results) == [False, False, False, False, True]


async def test_update_spend_and_purge(store) -> None:
    p = _pushed()
    await store.add_pushed_request(p)
    await store.update_pushed_params(p.request_id, (("scope", "openid"),))
    assert (await store.get_pushed_request(p.request_id)).params == (("scope", "openid"),)
    assert await store.spend_pushed_request(p.request_id)
    assert not await store.spend_pushed_request(p.request_id)
    assert await store.get_pushed_request(p.request_id) is None
    old, live = _pushed(expires_at=NOW - 1), _pushed(expires_at=NOW + 30)
    await store.add_pushed_request(old)
    await store.add_pushed_request(live)
    assert await store.purge_pushed_requests(NOW) >= 1
    assert await store.get_pushed_request(old.request_id) is None
    assert await store.get_pushed_request(live.request_id) == live


async def test_client_flag_round_trips(store) -> None:
    from ostiary.core.clients import Client

    c = Client(client_id="par-" + secrets.token_hex(4), name="PAR", client_type="confidential",
               token_endpoint_auth_method="private_key_jwt", grant_types=frozenset({"authorization_code"}),
               scopes=frozenset({"openid"}), require_pushed_authorization_requests=True)
    await store.add_client(c)
    got = await store.get_client(c.client_id)
    assert got.require_pushed_authorization_requests is True
