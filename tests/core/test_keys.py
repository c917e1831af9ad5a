"""Signing-key stages: pending → active → retired → expired (removed), driven by a fixed clock; one active key
per algorithm (ES256 for access tokens, RS256 for ID tokens by default), each rotating on its own."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ostiary.core import jose
from ostiary.core import keys as core_keys
from ostiary.core.keys import KeyRingError

from .conftest import Engine


async def test_first_start_creates_one_active_key_per_algorithm(engine: Engine) -> None:
    # changed with issue 16.1: the first start creates an ES256 key (access tokens) and an RS256 key (ID tokens)
    ring = engine.keyring()
    assert ring.signer is not None and ring.signer.alg == "ES256"
    assert ring.algs == {"ES256", "RS256"}
    assert {k["kid"] for k in ring.jwks["keys"]} == {s.kid for s in ring.signers.values()}
    assert {k["alg"] for k in ring.jwks["keys"]} == {"ES256", "RS256"}
    assert all("d" not in k for k in ring.jwks["keys"])  # never a private member
    assert not await core_keys.ensure_signing_key(engine.store, engine.policy, engine.kek, engine.clock)


async def test_an_algorithm_added_to_the_settings_gets_its_key_at_the_next_start(engine: Engine) -> None:
    engine.policy = replace(engine.policy, key_algorithms=("ES256", "RS256", "EdDSA"))
    assert await core_keys.ensure_signing_key(engine.store, engine.policy, engine.kek, engine.clock)
    await engine.reload()
    assert engine.keyring().algs == {"ES256", "RS256", "EdDSA"}
    # RS256 is kept whatever the settings say: OIDC Discovery §3 requires it
    assert replace(engine.policy, access_token_alg="EdDSA", key_algorithms=("EdDSA",)).signing_algs == (
        "EdDSA", "RS256")


async def test_rotation_publishes_before_signing_and_keeps_the_old_key_until_its_tokens_expire(engine: Engine) -> None:
    old = engine.keyring().signer
    rs = engine.keyring().signers["RS256"]
    assert old is not None
    new = await core_keys.rotate_key(engine.store, engine.policy, engine.kek, engine.clock, "ES256")
    await engine.reload()
    ring = engine.keyring()
    assert {k["kid"] for k in ring.jwks["keys"]} == {old.kid, new.kid, rs.kid}
    assert ring.signer is not None and ring.signer.kid == old.kid  # pending: published, not signing
    engine.clock.advance(engine.policy.key_publish_delay)
    await engine.reload()
    assert engine.keyring().signer.kid == new.kid  # type: ignore[union-attr]
    assert engine.keyring().signers["RS256"].kid == rs.kid  # another algorithm's key is untouched
    assert {k["kid"] for k in engine.keyring().jwks["keys"]} == {old.kid, new.kid, rs.kid}  # old retired, published
    engine.clock.advance(engine.policy.max_token_lifetime)
    await engine.reload()
    assert {k["kid"] for k in engine.keyring().jwks["keys"]} == {new.kid, rs.kid}
    assert await core_keys.purge_expired_keys(engine.store, engine.policy, engine.clock) == 1


async def test_retire_refuses_the_only_signing_key(engine: Engine) -> None:
    kid = engine.keyring().signer.kid  # type: ignore[union-attr]
    with pytest.raises(KeyRingError, match="keys rotate --now"):
        await core_keys.retire_key(engine.store, engine.policy, kid, engine.clock)
    pending = await core_keys.rotate_key(engine.store, engine.policy, engine.kek, engine.clock, "ES256")
    await core_keys.retire_key(engine.store, engine.policy, pending.kid, engine.clock)
    engine.clock.advance(engine.policy.key_publish_delay + 1)
    await engine.reload()
    assert engine.keyring().signer.kid == kid  # type: ignore[union-attr]  # withdrawn; the old key still signs
    assert kid in [k["kid"] for k in engine.keyring().jwks["keys"]]
    assert pending.kid not in [k["kid"] for k in engine.keyring().jwks["keys"]]
    # an emergency rotation retires the old key at once
    await core_keys.rotate_key(engine.store, engine.policy, engine.kek, engine.clock, "ES256", immediate=True)
    with pytest.raises(KeyRingError, match="already retired"):
        await core_keys.retire_key(engine.store, engine.policy, kid, engine.clock)


@pytest.mark.parametrize("alg", ["ES256", "RS256", "EdDSA"])
async def test_each_algorithm_signs_verifiable_tokens(engine: Engine, alg: str) -> None:
    engine.policy = replace(engine.policy, key_algorithms=("ES256", "RS256", "EdDSA"))
    new = await core_keys.rotate_key(engine.store, engine.policy, engine.kek, engine.clock, alg, immediate=True)
    await engine.reload()
    ring = engine.keyring()
    assert ring.signers[alg].kid == new.kid
    token = ring.sign({"sub": "x", "exp": engine.clock.now() + 60}, "at+jwt", alg)
    verified = jose.verify_jwt(token, ring.verification_keys, now=engine.clock.now())
    assert verified.key.alg == alg and verified.header["kid"] == new.kid


async def test_rotating_all_rotates_each_algorithm_and_both_keep_signing(engine: Engine) -> None:
    before = dict(engine.keyring().signers)
    new = await core_keys.rotate_keys(engine.store, engine.policy, engine.kek, engine.clock)
    assert sorted(k.alg for k in new) == ["ES256", "RS256"]
    await engine.reload()
    assert {a: k.kid for a, k in engine.keyring().signers.items()} == {a: k.kid for a, k in before.items()}
    engine.clock.advance(engine.policy.key_publish_delay)
    await engine.reload()
    ring = engine.keyring()
    assert {a: k.kid for a, k in ring.signers.items()} == {k.alg: k.kid for k in new}
    for alg in ("ES256", "RS256"):
        token = ring.sign({"sub": "x", "exp": engine.clock.now() + 60}, "JWT", alg)
        assert jose.verify_jwt(token, ring.verification_keys, now=engine.clock.now()).key.alg == alg


async def test_rotation_and_retirement_are_per_algorithm(engine: Engine) -> None:
    rs = engine.keyring().signers["RS256"]
    with pytest.raises(KeyRingError, match="keys.algorithms"):  # only the configured algorithms rotate
        await core_keys.rotate_key(engine.store, engine.policy, engine.kek, engine.clock, "EdDSA")
    # a new ES256 key does not make the RS256 key retirable: it is still the only RS256 key
    await core_keys.rotate_key(engine.store, engine.policy, engine.kek, engine.clock, "ES256", immediate=True)
    with pytest.raises(KeyRingError, match="only RS256 key"):
        await core_keys.retire_key(engine.store, engine.policy, rs.kid, engine.clock)
    # an algorithm dropped from the settings can be retired to the last key
    extra = replace(engine.policy, key_algorithms=("ES256", "RS256", "EdDSA"))
    ed = await core_keys.rotate_key(engine.store, extra, engine.kek, engine.clock, "EdDSA", immediate=True)
    await core_keys.retire_key(engine.store, engine.policy, ed.kid, engine.clock)
    await engine.reload()
    assert engine.keyring().algs == {"ES256", "RS256"}


async def test_scheduled_rotation(engine: Engine) -> None:
    engine.policy = replace(engine.policy, key_rotate_every=86400)
    assert not await core_keys.maybe_auto_rotate(engine.store, engine.policy, engine.kek, engine.clock)
    engine.clock.advance(86400)
    assert await core_keys.maybe_auto_rotate(engine.store, engine.policy, engine.kek, engine.clock)
    assert not await core_keys.maybe_auto_rotate(engine.store, engine.policy, engine.kek, engine.clock)  # pending
    states = [(k.alg, k.state(engine.clock.now(), engine.policy.max_token_lifetime))
              for k in await engine.store.list_keys()]
    # changed with issue 16.1: each algorithm rotates on schedule
    assert sorted(states) == [("ES256", "active"), ("ES256", "pending"), ("RS256", "active"), ("RS256", "pending")]


async def test_private_keys_are_encrypted_at_rest(engine: Engine) -> None:
    for key in await engine.store.list_keys():
        assert b"PRIVATE KEY" not in key.encrypted_private_key
        with pytest.raises(jose.JoseError):
            jose.decrypt_private_key(key.encrypted_private_key, b"\x00" * 32, key.kid)


async def test_id_tokens_use_the_requested_algorithm_and_refuse_an_unsignable_one(engine: Engine) -> None:
    from ostiary.core.errors import UnauthorizedClient

    issuer = engine.ctx.issuer
    for alg in ("RS256", "ES256"):
        token = issuer.id_token(subject="u", client_id="c", auth_time=engine.clock.now(), alg=alg)
        verified = jose.verify_jwt(token, engine.keyring().verification_keys, now=engine.clock.now())
        assert verified.header["alg"] == alg and verified.claims["aud"] == "c"
    at = issuer.access_token(subject="u", client_id="c", audience=["https://api.example.com"], scopes=[])
    assert jose.decode_unverified(at.token)[0]["alg"] == "ES256"  # access tokens keep the fast path
    # a client whose algorithm lost its key (dropped from keys.algorithms, then retired): a 4xx, not a crash
    with pytest.raises(UnauthorizedClient, match="id_token_signed_response_alg"):
        issuer.id_token(subject="u", client_id="c", auth_time=engine.clock.now(), alg="EdDSA")
