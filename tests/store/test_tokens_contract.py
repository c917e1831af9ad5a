"""The storage contract for authorization codes, refresh-token families, their refresh tokens and access-token
ids, run on the in-memory store, SQLite and PostgreSQL: single use of codes and refresh tokens under concurrency,
and the purge of what can no longer be used."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from . import _records as R

RACERS = 8


async def test_authorization_codes_round_trip_and_single_use(store) -> None:  # type: ignore[no-untyped-def]
    fam = R.family("user-" + R.hex_id())
    code = R.code(fam)
    assert await store.get_code(code.code_hash) is None
    await store.add_code(code)
    assert await store.get_code(code.code_hash) == code
    plain = R.code(fam, nonce=None, acr=None, audience=(), amr=("pwd",))
    await store.add_code(plain)
    assert await store.get_code(plain.code_hash) == plain
    assert await store.use_code(code.code_hash, 20.0) is True
    assert await store.use_code(code.code_hash, 21.0) is False
    assert await store.get_code(code.code_hash) == replace(code, used_at=20.0)
    assert await store.use_code(R.hex_id(16), 20.0) is False


async def test_families_and_their_access_token_ids(store) -> None:  # type: ignore[no-untyped-def]
    uid = "user-" + R.hex_id()
    f1 = R.family(uid, created_at=1.0)
    f2 = R.family(uid, created_at=2.0, acr=None, session_id=None, amr=(), dpop_jkt="jkt-" + R.hex_id())
    assert await store.get_family(f1.family_id) is None
    await store.add_family(f1)
    await store.add_family(f2)
    assert await store.get_family(f1.family_id) == f1
    assert await store.get_family(f2.family_id) == f2
    assert [f.family_id for f in await store.list_families(uid)] == [f1.family_id, f2.family_id]
    await store.add_family_jti(f1.family_id, "jti-b", 500.0)
    await store.add_family_jti(f1.family_id, "jti-a", 400.0)
    assert await store.family_jtis(f1.family_id) == [("jti-a", 400.0), ("jti-b", 500.0)]
    assert await store.family_jtis(f2.family_id) == []
    assert await store.revoke_family(f1.family_id, 50.0) is True
    assert await store.revoke_family(f1.family_id, 51.0) is False
    assert await store.revoke_family("no-such-family", 51.0) is False
    assert await store.get_family(f1.family_id) == replace(f1, revoked_at=50.0)
    assert [f.family_id for f in await store.list_families(uid)] == [f2.family_id]


async def test_refresh_tokens_round_trip_and_single_use(store) -> None:  # type: ignore[no-untyped-def]
    fam = R.family("user-" + R.hex_id())
    await store.add_family(fam)
    first = R.refresh_token(fam)
    assert await store.get_refresh_token(first.token_hash) is None
    await store.add_refresh_token(first)
    assert await store.get_refresh_token(first.token_hash) == first
    nxt = R.refresh_token(fam, parent_hash=first.token_hash, created_at=20.0, scopes=frozenset({"openid"}),
                   dpop_jkt="jkt-1")
    await store.add_refresh_token(nxt)
    assert await store.get_refresh_token(nxt.token_hash) == nxt
    assert await store.use_refresh_token(first.token_hash, 20.0, "fp-1", b"\x01sealed-successor") is True
    assert await store.use_refresh_token(first.token_hash, 21.0, "fp-2", None) is False
    assert await store.get_refresh_token(first.token_hash) == replace(
        first, used_at=20.0, request_fp="fp-1", successor_sealed=b"\x01sealed-successor")
    assert await store.use_refresh_token(nxt.token_hash, 30.0, "fp-3", None) is True
    assert await store.get_refresh_token(nxt.token_hash) == replace(nxt, used_at=30.0, request_fp="fp-3")
    assert await store.use_refresh_token(R.hex_id(16), 30.0, "fp", None) is False


async def test_concurrent_code_use_admits_exactly_one(store) -> None:  # type: ignore[no-untyped-def]
    code = R.code(R.family("user-" + R.hex_id()))
    await store.add_code(code)
    results = await asyncio.gather(*(store.use_code(code.code_hash, 20.0 + i) for i in range(RACERS)))
    assert results.count(True) == 1
    used = await store.get_code(code.code_hash)
    assert used is not None and used.used_at is not None


async def test_concurrent_refresh_use_admits_exactly_one(store) -> None:  # type: ignore[no-untyped-def]
    fam = R.family("user-" + R.hex_id())
    await store.add_family(fam)
    token = R.refresh_token(fam)
    await store.add_refresh_token(token)
    results = await asyncio.gather(*(store.use_refresh_token(token.token_hash, 20.0 + i, f"fp-{i}", bytes([i]))
                                     for i in range(RACERS)))
    assert results.count(True) == 1
    winner = results.index(True)
    spent = await store.get_refresh_token(token.token_hash)
    assert spent is not None
    assert (spent.used_at, spent.request_fp, spent.successor_sealed) == (20.0 + winner, f"fp-{winner}",
                                                                         bytes([winner]))


async def test_concurrent_family_revocation_reports_once(store) -> None:  # type: ignore[no-untyped-def]
    fam = R.family("user-" + R.hex_id())
    await store.add_family(fam)
    results = await asyncio.gather(*(store.revoke_family(fam.family_id, 40.0) for _ in range(RACERS)))
    assert results.count(True) == 1


async def test_purge_deletes_only_what_can_no_longer_be_used(store) -> None:  # type: ignore[no-untyped-def]
    now, grace = 1_000_000_000.0, 86_400.0
    uid = "user-" + R.hex_id()
    await store.add_user(R.user(user_id=uid))
    old_family, live_family = R.family(uid, expires_at=now - grace - 1), R.family(uid, expires_at=now + 1000)
    await store.add_family(old_family)
    await store.add_family(live_family)
    old_rt, live_rt = R.refresh_token(old_family, expires_at=now - grace - 1), R.refresh_token(live_family, expires_at=now + 1000)
    await store.add_refresh_token(old_rt)
    await store.add_refresh_token(live_rt)
    await store.add_family_jti(old_family.family_id, "jti-old-family", now + 100)  # goes with its family
    await store.add_family_jti(live_family.family_id, "jti-expired", now - 1)  # that access token expired
    await store.add_family_jti(live_family.family_id, "jti-live", now + 100)
    old_session = R.session(uid, expires_at=now - grace - 1)
    recent_session = R.session(uid, expires_at=now - 10)  # expired, but within the grace period
    live_session = R.session(uid, expires_at=now + 3600)
    for s in (old_session, recent_session, live_session):
        await store.add_session(s)
    old_code, live_code = R.code(live_family, expires_at=now - grace - 1), R.code(live_family, expires_at=now + 60)
    await store.add_code(old_code)
    await store.add_code(live_code)

    assert await store.purge_user_flows(now, grace) >= 6

    assert await store.get_family(old_family.family_id) is None
    assert await store.get_family(live_family.family_id) == live_family
    assert await store.get_refresh_token(old_rt.token_hash) is None
    assert await store.get_refresh_token(live_rt.token_hash) == live_rt
    assert await store.family_jtis(old_family.family_id) == []
    assert await store.family_jtis(live_family.family_id) == [("jti-live", now + 100)]
    assert await store.get_session(old_session.token_hash) is None
    assert await store.get_session(recent_session.token_hash) == recent_session
    assert await store.get_session(live_session.token_hash) == live_session
    assert await store.get_code(old_code.code_hash) is None
    assert await store.get_code(live_code.code_hash) == live_code
    assert await store.purge_user_flows(now, grace) == 0  # nothing more to do
