"""DeviceAuthorizationRepository: the same behaviour on memory, SQLite and PostgreSQL (migration 0004)."""

from __future__ import annotations

import secrets

import pytest

from ostiary.core.device import DeviceAuthorization, new_user_code

NOW = 1_800_000_000.0


def _auth(**kw: object) -> DeviceAuthorization:
    base: dict[str, object] = {"device_code_hash": secrets.token_urlsafe(32), "user_code": new_user_code(),
                               "client_id": "cli", "scopes": frozenset({"openid", "offline_access"}),
                               "audience": ("https://id.example.com/userinfo",), "created_at": NOW,
                               "expires_at": NOW + 600, "interval": 5}
    base.update(kw)
    return DeviceAuthorization(**base)  # type: ignore[arg-type]


async def test_round_trip_and_user_code_uniqueness(store) -> None:  # noqa: F811
    a = _auth()
    await store.add_device_authorization(a)
    assert await store.get_device_authorization(a.device_code_hash) == a
    with pytest.raises(ValueError):
        await store.add_device_authorization(_auth(user_code=a.user_code))
    found = await store.find_device_authorizations(a.user_code[:4], NOW + 1)
    assert a in found
    assert await store.find_device_authorizations(a.user_code[:4], NOW + 601) == []


async def test_decide_once_consume_once(store) -> None:  # noqa: F811
    a = _auth()
    await store.add_device_authorization(a)
    assert not await store.consume_device_authorization(a.device_code_hash, NOW)  # not approved yet
    assert await store.decide_device_authorization(a.device_code_hash, True, "u1", "s1", NOW - 5, ("pwd", "otp"), NOW)
    assert not await store.decide_device_authorization(a.device_code_hash, False, "u2", None, NOW, (), NOW)
    got = await store.get_device_authorization(a.device_code_hash)
    assert (got.status, got.user_id, got.session_id, got.amr, got.auth_time) == ("approved", "u1", "s1",
                                                                                 ("pwd", "otp"), NOW - 5)
    assert await store.find_device_authorizations(a.user_code[:4], NOW) == []
    assert await store.consume_device_authorization(a.device_code_hash, NOW)
    assert not await store.consume_device_authorization(a.device_code_hash, NOW)
    assert (await store.get_device_authorization(a.device_code_hash)).status == "consumed"


async def test_expired_authorizations_cannot_be_decided_and_are_purged(store) -> None:  # noqa: F811
    a = _auth(expires_at=NOW + 10)
    await store.add_device_authorization(a)
    assert not await store.decide_device_authorization(a.device_code_hash, True, "u1", None, NOW, (), NOW + 10)
    assert await store.purge_device_authorizations(NOW + 10) == 0  # kept a while to answer expired_token
    assert await store.purge_device_authorizations(NOW + 10 + 3600) >= 1
    assert await store.get_device_authorization(a.device_code_hash) is None


async def test_wrong_codes_lock_the_authorization(store) -> None:  # noqa: F811
    a = _auth()
    await store.add_device_authorization(a)
    for i in range(1, 3):
        assert await store.record_user_code_failure(a.device_code_hash, 3, NOW) == i
    assert (await store.get_device_authorization(a.device_code_hash)).status == "pending"
    assert await store.record_user_code_failure(a.device_code_hash, 3, NOW) == 3
    locked = await store.get_device_authorization(a.device_code_hash)
    assert (locked.status, locked.failed_attempts, locked.decided_at) == ("denied", 3, NOW)
