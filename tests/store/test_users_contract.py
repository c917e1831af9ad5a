"""The storage contract for users, login sessions, consents and recovery codes, run on the in-memory store,
SQLite and PostgreSQL (authorization codes and refresh-token families: test_tokens_contract.py)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from ostiary.core.users import Consent

from . import _records as R

RACERS = 8


async def test_users_round_trip(store) -> None:  # type: ignore[no-untyped-def]
    u = R.user()
    assert await store.get_user(u.user_id) is None
    await store.add_user(u)
    assert await store.get_user(u.user_id) == u
    assert await store.find_user(u.username) == u
    assert await store.find_user(u.username.upper()) == u
    assert u.email is not None and await store.find_user("  " + u.email.upper() + " ") == u
    assert await store.find_user("nobody-" + R.hex_id()) is None
    with pytest.raises(ValueError):
        await store.add_user(R.user(username=u.username))
    with pytest.raises(ValueError):
        await store.add_user(R.user(email=u.email))
    no_mail = R.user(email=None, totp_secret=None, email_verified=False)
    await store.add_user(no_mail)
    await store.add_user(R.user(email=None))  # several users without email
    assert (await store.get_user(no_mail.user_id)) == no_mail and not no_mail.has_totp
    changed = replace(u, name="Ann B", email=None, disabled=True, totp_secret=None, updated_at=200.0)
    await store.update_user(changed)
    assert await store.get_user(u.user_id) == changed
    with pytest.raises(ValueError):
        await store.update_user(replace(changed, username=no_mail.username))
    with pytest.raises(KeyError):
        await store.update_user(R.user())
    ids = [x.user_id for x in await store.list_users()]
    assert u.user_id in ids and no_mail.user_id in ids
    assert await store.delete_user(u.user_id) is True
    assert await store.delete_user(u.user_id) is False
    assert await store.get_user(u.user_id) is None and await store.find_user(u.username) is None


async def test_recovery_codes_are_spent_once(store) -> None:  # type: ignore[no-untyped-def]
    u = R.user()
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
    u = R.user()
    await store.add_user(u)
    s1 = R.session(u.user_id, last_seen=20.0)
    s2 = R.session(u.user_id, last_seen=30.0, amr=("pwd",), mfa_pending=True, ip=None, user_agent=None)
    someone = R.user()
    await store.add_user(someone)
    other = R.session(someone.user_id)
    for s in (s1, s2, other):
        await store.add_session(s)
    assert await store.get_session(s1.token_hash) == s1
    assert await store.get_session(s2.token_hash) == s2
    assert await store.get_session(R.hex_id(16)) is None
    assert [s.session_id for s in await store.list_sessions(u.user_id)] == [s2.session_id, s1.session_id]
    touched = replace(s1, last_seen=40.0, mfa_pending=False, amr=("pwd", "otp"), auth_time=39.0)
    await store.update_session(touched)
    assert await store.get_session(s1.token_hash) == touched
    assert [s.session_id for s in await store.list_sessions(u.user_id)] == [s1.session_id, s2.session_id]
    assert await store.end_session(s1.session_id) is True
    assert await store.end_session(s1.session_id) is False
    assert await store.get_session(s1.token_hash) is None
    await store.add_session(R.session(u.user_id))
    assert await store.end_user_sessions(u.user_id) == 2
    assert await store.list_sessions(u.user_id) == []
    assert await store.get_session(other.token_hash) == other


async def test_consents(store) -> None:  # type: ignore[no-untyped-def]
    u = R.user()
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
    u = R.user()
    await store.add_user(u)
    s = R.session(u.user_id)
    await store.add_session(s)
    await store.save_consent(Consent(u.user_id, "c1", frozenset({"openid"}), 1.0, 1.0))
    await store.set_recovery_codes(u.user_id, ["r1"])
    assert await store.delete_user(u.user_id) is True
    assert await store.get_session(s.token_hash) is None
    assert await store.list_consents(u.user_id) == []
    assert await store.count_recovery_codes(u.user_id) == 0
