"""The storage contract for users, login sessions, consents, authorization codes and refresh-token families,
run on the in-memory store, SQLite and PostgreSQL; single use of codes and refresh tokens under concurrency."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import replace

import pytest

from ostiary.core.tokens import AuthorizationCode, RefreshToken, TokenFamily
from ostiary.core.users import Consent, LoginSession, User

RACERS = 8




def _hex(n: int = 6) -> str:
    return secrets.token_hex(n)


def _user(**kw: object) -> User:
    name = "u" + _hex()
    base: dict[str, object] = dict(user_id=_hex(16), username=name, name="Ann Example", password_hash="$argon2id$x",
                                   email=name + "@example.com", email_verified=True, totp_secret=b"\x00sealed\xff",
                                   created_at=100.0, updated_at=101.5)
    base.update(kw)
    return User(**base)  # type: ignore[arg-type]


def _session(user_id: str, **kw: object) -> LoginSession:
    base: dict[str, object] = dict(session_id=_hex(8), token_hash=_hex(16), user_id=user_id, created_at=10.0,
                                   last_seen=20.0, expires_at=1000.0, auth_time=10.0, amr=("pwd", "otp"),
                                   mfa_pending=False, ip="127.0.0.1", user_agent="pytest")
    base.update(kw)
    return LoginSession(**base)  # type: ignore[arg-type]


def _family(user_id: str, **kw: object) -> TokenFamily:
    base: dict[str, object] = dict(family_id=_hex(8), client_id="c-" + _hex(), user_id=user_id,
                                   scopes=frozenset({"openid", "offline_access"}), audience=("https://api.example",),
                                   created_at=10.0, expires_at=5000.0, auth_time=9.0, amr=("pwd",), acr="pwd",
                                   session_id=_hex(8))
    base.update(kw)
    return TokenFamily(**base)  # type: ignore[arg-type]


def _code(family: TokenFamily, **kw: object) -> AuthorizationCode:
    base: dict[str, object] = dict(code_hash=_hex(16), client_id=family.client_id,
                                   redirect_uri="http://127.0.0.1:9/cb", code_challenge="ch" + _hex(),
                                   scopes=frozenset({"openid", "email"}), user_id=family.user_id,
                                   session_id=family.session_id or "", auth_time=9.0, amr=("pwd", "otp"),
                                   family_id=family.family_id, created_at=10.0, expires_at=70.0, nonce="n1",
                                   acr="mfa", audience=("https://api.example",))
    base.update(kw)
    return AuthorizationCode(**base)  # type: ignore[arg-type]


def _refresh(family: TokenFamily, **kw: object) -> RefreshToken:
    base: dict[str, object] = dict(token_hash=_hex(16), family_id=family.family_id, client_id=family.client_id,
                                   user_id=family.user_id, scopes=frozenset({"openid", "offline_access"}),
                                   created_at=10.0, expires_at=300.0)
    base.update(kw)
    return RefreshToken(**base)  # type: ignore[arg-type]


async def test_users_round_trip(store) -> None:  # type: ignore[no-untyped-def]
    u = _user()
    assert await store.get_user(u.user_id) is None
    await store.add_user(u)
    assert await store.get_user(u.user_id) == u
    assert await store.find_user(u.username) == u
    assert await store.find_user(u.username.upper()) == u
    assert u.email is not None and await store.find_user("  " + u.email.upper() + " ") == u
    assert await store.find_user("nobody-" + _hex()) is None
    with pytest.raises(ValueError):
        await store.add_user(_user(username=u.username))
    with pytest.raises(ValueError):
        await store.add_user(_user(email=u.email))
    no_mail = _user(email=None, totp_secret=None, email_verified=False)
    await store.add_user(no_mail)
    await store.add_user(_user(email=None))  # several users without email
    assert (await store.get_user(no_mail.user_id)) == no_mail and not no_mail.has_totp
    changed = replace(u, name="Ann B", email=None, disabled=True, totp_secret=None, updated_at=200.0)
    await store.update_user(changed)
    assert await store.get_user(u.user_id) == changed
    with pytest.raises(ValueError):
        await store.update_user(replace(changed, username=no_mail.username))
    with pytest.raises(KeyError):
        await store.update_user(_user())
    ids = [x.user_id for x in await store.list_users()]
    assert u.user_id in ids and no_mail.user_id in ids
    assert await store.delete_user(u.user_id) is True
    assert await store.delete_user(u.user_id) is False
    assert await store.get_user(u.user_id) is None and await store.find_user(u.username) is None


async def test_recovery_codes_are_spent_once(store) -> None:  # type: ignore[no-untyped-def]
    u = _user()
    await store.add_user(u)
    assert await store.count_recovery_codes(u.user_id) == 0
    await store.set_recovery_codes(u.user_id, ["h1", "h2", "h3"])
    assert await store.count_recovery_codes(u.user_id) == 3
    assert await store.use_recovery_code(u.user_id, "h1", 50.0) is True
    assert await store.use_recovery_code(u.user_id, "h1", 51.0) is False
    assert await store.use_recovery_code(u.user_id, "nope", 51.0) is False
    assert await store.use_recovery_code("other-user", "h2", 51.0) is False
    assert await store.count_recovery_codes(u.user_id) == 2
    results = await asyncio.gather(*(store.use_recovery_code(u.user_id, "h2", 60.0) for _ in range(RACERS)))
    assert results.count(True) == 1
    await store.set_recovery_codes(u.user_id, ["n1"])  # replaces the old set
    assert await store.count_recovery_codes(u.user_id) == 1
    assert await store.use_recovery_code(u.user_id, "h3", 70.0) is False
    await store.set_recovery_codes(u.user_id, [])
    assert await store.count_recovery_codes(u.user_id) == 0


async def test_sessions(store) -> None:  # type: ignore[no-untyped-def]
    u = _user()
    await store.add_user(u)
    s1 = _session(u.user_id, last_seen=20.0)
    s2 = _session(u.user_id, last_seen=30.0, amr=("pwd",), mfa_pending=True, ip=None, user_agent=None)
    someone = _user()
    await store.add_user(someone)
    other = _session(someone.user_id)
    for s in (s1, s2, other):
        await store.add_session(s)
    assert await store.get_session(s1.token_hash) == s1
    assert await store.get_session(s2.token_hash) == s2
    assert await store.get_session(_hex(16)) is None
    assert [s.session_id for s in await store.list_sessions(u.user_id)] == [s2.session_id, s1.session_id]
    touched = replace(s1, last_seen=40.0, mfa_pending=False, amr=("pwd", "otp"), auth_time=39.0)
    await store.update_session(touched)
    assert await store.get_session(s1.token_hash) == touched
    assert [s.session_id for s in await store.list_sessions(u.user_id)] == [s1.session_id, s2.session_id]
    assert await store.end_session(s1.session_id) is True
    assert await store.end_session(s1.session_id) is False
    assert await store.get_session(s1.token_hash) is None
    await store.add_session(_session(u.user_id))
    assert await store.end_user_sessions(u.user_id) == 2
    assert await store.list_sessions(u.user_id) == []
    assert await store.get_session(other.token_hash) == other


async def test_consents(store) -> None:  # type: ignore[no-untyped-def]
    u = _user()
    await store.add_user(u)
    assert await store.get_consent(u.user_id, "c1") is None
    c1 = Consent(user_id=u.user_id, client_id="c1", scopes=frozenset({"openid", "email"}), granted_at=5.0,
                 updated_at=5.0)
    await store.save_consent(c1)
    assert await store.get_consent(u.user_id, "c1") == c1
    wider = replace(c1, scopes=frozenset({"openid", "email", "profile"}), updated_at=9.0)
    await store.save_consent(wider)  # saving again replaces
    assert await store.get_consent(u.user_id, "c1") == wider
    c0 = replace(c1, client_id="c0")
    await store.save_consent(c0)
    assert await store.list_consents(u.user_id) == [c0, wider]
    assert await store.delete_consent(u.user_id, "c1") is True
    assert await store.delete_consent(u.user_id, "c1") is False
    assert await store.list_consents(u.user_id) == [c0]


async def test_deleting_a_user_removes_sessions_consents_and_recovery_codes(store) -> None:  # type: ignore[no-untyped-def]
    u = _user()
    await store.add_user(u)
    s = _session(u.user_id)
    await store.add_session(s)
    await store.save_consent(Consent(u.user_id, "c1", frozenset({"openid"}), 1.0, 1.0))
    await store.set_recovery_codes(u.user_id, ["r1"])
    assert await store.delete_user(u.user_id) is True
    assert await store.get_session(s.token_hash) is None
    assert await store.list_consents(u.user_id) == []
    assert await store.count_recovery_codes(u.user_id) == 0


async def test_authorization_codes_round_trip_and_single_use(store) -> None:  # type: ignore[no-untyped-def]
    fam = _family("user-" + _hex())
    code = _code(fam)
    assert await store.get_code(code.code_hash) is None
    await store.add_code(code)
    assert await store.get_code(code.code_hash) == code
    plain = _code(fam, nonce=None, acr=None, audience=(), amr=("pwd",))
    await store.add_code(plain)
    assert await store.get_code(plain.code_hash) == plain
    assert await store.use_code(code.code_hash, 20.0) is True
    assert await store.use_code(code.code_hash, 21.0) is False
    assert await store.get_code(code.code_hash) == replace(code, used_at=20.0)
    assert await store.use_code(_hex(16), 20.0) is False


async def test_families_and_their_access_token_ids(store) -> None:  # type: ignore[no-untyped-def]
    uid = "user-" + _hex()
    f1 = _family(uid, created_at=1.0)
    f2 = _family(uid, created_at=2.0, acr=None, session_id=None, amr=(), dpop_jkt="jkt-" + _hex())
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
    fam = _family("user-" + _hex())
    await store.add_family(fam)
    first = _refresh(fam)
    assert await store.get_refresh_token(first.token_hash) is None
    await store.add_refresh_token(first)
    assert await store.get_refresh_token(first.token_hash) == first
    nxt = _refresh(fam, parent_hash=first.token_hash, created_at=20.0, scopes=frozenset({"openid"}),
                   dpop_jkt="jkt-1")
    await store.add_refresh_token(nxt)
    assert await store.get_refresh_token(nxt.token_hash) == nxt
    assert await store.use_refresh_token(first.token_hash, 20.0, "fp-1", b"\x01sealed-successor") is True
    assert await store.use_refresh_token(first.token_hash, 21.0, "fp-2", None) is False
    assert await store.get_refresh_token(first.token_hash) == replace(
        first, used_at=20.0, request_fp="fp-1", successor_sealed=b"\x01sealed-successor")
    assert await store.use_refresh_token(nxt.token_hash, 30.0, "fp-3", None) is True
    assert await store.get_refresh_token(nxt.token_hash) == replace(nxt, used_at=30.0, request_fp="fp-3")
    assert await store.use_refresh_token(_hex(16), 30.0, "fp", None) is False


async def test_concurrent_code_use_admits_exactly_one(store) -> None:  # type: ignore[no-untyped-def]
    code = _code(_family("user-" + _hex()))
    await store.add_code(code)
    results = await asyncio.gather(*(store.use_code(code.code_hash, 20.0 + i) for i in range(RACERS)))
    assert results.count(True) == 1
    used = await store.get_code(code.code_hash)
    assert used is not None and used.used_at is not None


async def test_concurrent_refresh_use_admits_exactly_one(store) -> None:  # type: ignore[no-untyped-def]
    fam = _family("user-" + _hex())
    await store.add_family(fam)
    token = _refresh(fam)
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
    fam = _family("user-" + _hex())
    await store.add_family(fam)
    results = await asyncio.gather(*(store.revoke_family(fam.family_id, 40.0) for _ in range(RACERS)))
    assert results.count(True) == 1


async def test_purge_deletes_only_what_can_no_longer_be_used(store) -> None:  # type: ignore[no-untyped-def]
    now, grace = 1_000_000_000.0, 86_400.0
    uid = "user-" + _hex()
    await store.add_user(_user(user_id=uid))
    old_family, live_family = _family(uid, expires_at=now - grace - 1), _family(uid, expires_at=now + 1000)
    await store.add_family(old_family)
    await store.add_family(live_family)
    old_rt, live_rt = _refresh(old_family, expires_at=now - grace - 1), _refresh(live_family, expires_at=now + 1000)
    await store.add_refresh_token(old_rt)
    await store.add_refresh_token(live_rt)
    await store.add_family_jti(old_family.family_id, "jti-old-family", now + 100)  # goes with its family
    await store.add_family_jti(live_family.family_id, "jti-expired", now - 1)  # that access token expired
    await store.add_family_jti(live_family.family_id, "jti-live", now + 100)
    old_session = _session(uid, expires_at=now - grace - 1)
    recent_session = _session(uid, expires_at=now - 10)  # expired, but within the grace period
    live_session = _session(uid, expires_at=now + 3600)
    for s in (old_session, recent_session, live_session):
        await store.add_session(s)
    old_code, live_code = _code(live_family, expires_at=now - grace - 1), _code(live_family, expires_at=now + 60)
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
