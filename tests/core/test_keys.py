"""Signing-key stages: pending → active → retired → expired (removed), driven by a fixed clock."""

from __future__ import annotations

import pytest

from ostiary.core import jose
from ostiary.core import keys as core_keys
from ostiary.core.keys import KeyRingError

from .conftest import Engine


async def test_first_start_creates_one_active_es256_key(engine: Engine) -> None:
    ring = engine.keyring()
    assert ring.signer is not None and ring.signer.alg == "ES256"
    assert [k["kid"] for k in ring.jwks["keys"]] == [ring.signer.kid]
    assert all("d" not in k for k in ring.jwks["keys"])  # never a private member
    assert not await core_keys.ensure_signing_key(engine.store, engine.policy, engine.kek, engine.clock)


async def test_rotation_publishes_before_signing_and_keeps_the_old_key_until_its_tokens_expire(engine: Engine) -> None:
    old = engine.keyring().signer
    assert old is not None
    new = await core_keys.rotate_keys(engine.store, engine.policy, engine.kek, engine.clock)
    await engine.reload()
    ring = engine.keyring()
    assert {k["kid"] for k in ring.jwks["keys"]} == {old.kid, new.kid}
    assert ring.signer is not None and ring.signer.kid == old.kid  # pending: published, not signing
    engine.clock.advance(engine.policy.key_publish_delay)
    await engine.reload()
    assert engine.keyring().signer.kid == new.kid  # type: ignore[union-attr]
    assert {k["kid"] for k in engine.keyring().jwks["keys"]} == {old.kid, new.kid}  # old retired, published
    engine.clock.advance(engine.policy.max_token_lifetime)
    await engine.reload()
    assert [k["kid"] for k in engine.keyring().jwks["keys"]] == [new.kid]
    assert await core_keys.purge_expired_keys(engine.store, engine.policy, engine.clock) == 1


async def test_retire_refuses_the_only_signing_key(engine: Engine) -> None:
    kid = engine.keyring().signer.kid  # type: ignore[union-attr]
    with pytest.raises(KeyRingError, match="keys rotate --now"):
        await core_keys.retire_key(engine.store, engine.policy, kid, engine.clock)
    pending = await core_keys.rotate_keys(engine.store, engine.policy, engine.kek, engine.clock)
    await core_keys.retire_key(engine.store, engine.policy, pending.kid, engine.clock)
    engine.clock.advance(engine.policy.key_publish_delay + 1)
    await engine.reload()
    assert engine.keyring().signer.kid == kid  # type: ignore[union-attr]  # withdrawn; the old key still signs
    assert [k["kid"] for k in engine.keyring().jwks["keys"]] == [kid]
    # an emergency rotation retires the old key at once
    await core_keys.rotate_keys(engine.store, engine.policy, engine.kek, engine.clock, immediate=True)
    with pytest.raises(KeyRingError, match="already retired"):
        await core_keys.retire_key(engine.store, engine.policy, kid, engine.clock)


@pytest.mark.parametrize("alg", ["ES256", "RS256", "EdDSA"])
async def test_each_algorithm_signs_verifiable_tokens(engine: Engine, alg: str) -> None:
    await core_keys.rotate_keys(engine.store, engine.policy, engine.kek, engine.clock, immediate=True, alg=alg)
    await engine.reload()
    ring = engine.keyring()
    assert ring.signer is not None and ring.signer.alg == alg
    token = ring.sign({"sub": "x", "exp": engine.clock.now() + 60}, "at+jwt")
    verified = jose.verify_jwt(token, ring.verification_keys, now=engine.clock.now())
    assert verified.key.alg == alg


async def test_scheduled_rotation(engine: Engine) -> None:
    from dataclasses import replace

    engine.policy = replace(engine.policy, key_rotate_every=86400)
    assert not await core_keys.maybe_auto_rotate(engine.store, engine.policy, engine.kek, engine.clock)
    engine.clock.advance(86400)
    assert await core_keys.maybe_auto_rotate(engine.store, engine.policy, engine.kek, engine.clock)
    assert not await core_keys.maybe_auto_rotate(engine.store, engine.policy, engine.kek, engine.clock)  # pending
    states = [k.state(engine.clock.now(), engine.policy.max_token_lifetime) for k in await engine.store.list_keys()]
    assert sorted(states) == ["active", "pending"]


async def test_private_keys_are_encrypted_at_rest(engine: Engine) -> None:
    (key,) = await engine.store.list_keys()
    assert b"PRIVATE KEY" not in key.encrypted_private_key
    with pytest.raises(jose.JoseError):
        jose.decrypt_private_key(key.encrypted_private_key, b"\x00" * 32, key.kid)
