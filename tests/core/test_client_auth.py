"""private_key_jwt (RFC 7523 §3, OIDC Core §9): the assertion's ``aud`` is the issuer identifier alone.

The OpenID Foundation's 2025 errata (after the audience-injection reports CVE-2025-27370/27371) require it:
an ``aud`` that also names another party, or names an endpoint instead of the issuer, is refused.
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from ostiary.core import jose
from ostiary.core.client_auth import ASSERTION_TYPE, assertion_audience_ok
from ostiary.core.errors import InvalidClient

from .conftest import ISSUER, Engine

API = "https://api.example.com"


@pytest.mark.parametrize("aud, ok", [
    (ISSUER, True),
    ([ISSUER], True),
    ([ISSUER, "https://other.example.com"], False),
    (["https://other.example.com", ISSUER], False),
    ([ISSUER, ISSUER], False),
    (ISSUER + "/token", False),
    ([ISSUER + "/token"], False),
    (ISSUER + "/", False),
    ("", False),
    ([], False),
    (None, False),
    ({"aud": ISSUER}, False),
])
def test_assertion_audience_is_the_issuer_alone(aud: Any, ok: bool) -> None:
    assert assertion_audience_ok(aud, ISSUER) is ok


async def _client(engine: Engine) -> tuple[str, jose.PrivateKey]:
    key = jose.generate_private_key("ES256")
    jwks = {"keys": [jose.public_jwk(key, "k1")]}
    cid, _ = await engine.client(token_endpoint_auth_method="private_key_jwt", jwks=jwks, audiences=[API])
    return cid, key


def _form(engine: Engine, cid: str, key: jose.PrivateKey, aud: Any) -> dict[str, str]:
    now = int(engine.clock.now())
    claims = {"iss": cid, "sub": cid, "aud": aud, "iat": now, "exp": now + 60, "jti": secrets.token_urlsafe(16)}
    return {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": jose.sign_jwt(claims, key, alg="ES256", kid="k1")}


@pytest.mark.parametrize("aud", [ISSUER, [ISSUER]])
async def test_an_assertion_for_the_issuer_authenticates(engine: Engine, aud: Any) -> None:
    cid, key = await _client(engine)
    tokens = await engine.token(_form(engine, cid, key, aud))
    assert tokens.access_token


@pytest.mark.parametrize("aud", [[ISSUER, "https://other.example.com"], ISSUER + "/token", [ISSUER + "/token"],
                                 ISSUER + "/introspect", "https://other.example.com"])
async def test_any_other_audience_is_invalid_client(engine: Engine, aud: Any) -> None:
    cid, key = await _client(engine)
    with pytest.raises(InvalidClient):
        await engine.token(_form(engine, cid, key, aud))
