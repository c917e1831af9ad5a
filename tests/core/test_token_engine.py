"""The protocol engine on the memory store with a fixed clock: no HTTP, no database."""

from __future__ import annotations

import pytest

from ostiary.core import jose
from ostiary.core.errors import InvalidClient, InvalidRequest, InvalidScope, InvalidTarget, UnsupportedGrantType

from .conftest import ISSUER, Engine

API = "https://api.example.com"


def claims(engine: Engine, token: str) -> dict:
    return dict(jose.verify_jwt(token, engine.keyring().verification_keys, issuer=ISSUER, audience=API,
                                typ="at+jwt", now=engine.clock.now()).claims)


async def test_client_credentials_token_claims(engine: Engine) -> None:
    cid, secret = await engine.client(scopes=["a", "b"], audiences=[API])
    assert secret
    resp = await engine.token({"grant_type": "client_credentials", "scope": "a"}, (cid, secret))
    c = claims(engine, resp.access_token)
    assert c["sub"] == c["client_id"] == cid
    assert c["iat"] == c["nbf"] == int(engine.clock.now())
    assert c["exp"] == c["iat"] + engine.policy.access_token_ttl
    assert resp.refresh_token is None
    issued = [e for e in engine.audit.events if e.type == "token.issued"]
    assert issued and issued[-1].jti == c["jti"]
    assert secret not in repr(issued[-1].as_dict()) and resp.access_token not in repr(issued[-1].as_dict())


async def test_duplicate_parameters_are_rejected_but_resource_may_repeat(engine: Engine) -> None:
    cid, secret = await engine.client(audiences=[API, "https://b.example.com"])
    with pytest.raises(InvalidRequest):
        await engine.token([("grant_type", "client_credentials"), ("grant_type", "client_credentials")], (cid, secret))
    resp = await engine.token([("grant_type", "client_credentials"), ("resource", API),
                               ("resource", "https://b.example.com")], (cid, secret))
    c = jose.verify_jwt(resp.access_token, engine.keyring().verification_keys, now=engine.clock.now()).claims
    assert c["aud"] == [API, "https://b.example.com"]


async def test_scope_and_target_rules(engine: Engine) -> None:
    cid, secret = await engine.client(scopes=["a"], audiences=[API])
    with pytest.raises(InvalidScope):
        await engine.token({"grant_type": "client_credentials", "scope": "a b"}, (cid, secret))
    with pytest.raises(InvalidRequest):
        await engine.token({"grant_type": "client_credentials", "scope": "a  b"}, (cid, secret))
    with pytest.raises(InvalidTarget):
        await engine.token({"grant_type": "client_credentials", "resource": "https://x.example.com"}, (cid, secret))


async def test_password_grant_names_the_replacement(engine: Engine) -> None:
    cid, secret = await engine.client(audiences=[API])
    with pytest.raises(UnsupportedGrantType) as exc:
        await engine.token({"grant_type": "password", "username": "u", "password": "p"}, (cid, secret))
    assert "PKCE" in exc.value.description and "device" in exc.value.description


async def test_failed_client_authentication_is_audited_without_the_secret(engine: Engine) -> None:
    cid, _ = await engine.client(audiences=[API])
    with pytest.raises(InvalidClient):
        await engine.token({"grant_type": "client_credentials"}, (cid, "ost_cs_guess"))
    failed = [e for e in engine.audit.events if e.type == "client.auth_failed"]
    assert failed and "ost_cs_guess" not in repr(failed[-1].as_dict())


async def test_rotated_secret_overlap_then_expiry(engine: Engine) -> None:
    cid, old = await engine.client(audiences=[API])
    _, new = await engine.admin.rotate_secret(cid, overlap=60)
    for secret in (old, new):
        await engine.token({"grant_type": "client_credentials"}, (cid, secret))
    engine.clock.advance(61)
    await engine.token({"grant_type": "client_credentials"}, (cid, new))
    with pytest.raises(InvalidClient):
        await engine.token({"grant_type": "client_credentials"}, (cid, old))


async def test_introspection_and_revocation_only_for_own_tokens(engine: Engine) -> None:
    a, sa = await engine.client(audiences=[API])
    b, sb = await engine.client(audiences=[API])
    rs, srs = await engine.client(audiences=["https://rs.example.com"], resource_audiences=[API])
    tok = (await engine.token({"grant_type": "client_credentials"}, (a, sa))).access_token
    assert (await engine.introspect({"token": tok}, (a, sa)))["active"] is True
    assert (await engine.introspect({"token": tok}, (b, sb))) == {"active": False}
    assert (await engine.introspect({"token": tok}, (rs, srs)))["active"] is True  # the API it is for
    await engine.revoke({"token": tok}, (b, sb))  # someone else's token: silently ignored
    assert (await engine.introspect({"token": tok}, (a, sa)))["active"] is True
    await engine.revoke({"token": tok, "token_type_hint": "access_token"}, (a, sa))
    assert (await engine.introspect({"token": tok}, (a, sa))) == {"active": False}
    engine.clock.advance(engine.policy.access_token_ttl + 1)
    tok2 = (await engine.token({"grant_type": "client_credentials"}, (a, sa))).access_token
    engine.clock.advance(engine.policy.access_token_ttl + 1)
    assert (await engine.introspect({"token": tok2}, (a, sa))) == {"active": False}  # expired
