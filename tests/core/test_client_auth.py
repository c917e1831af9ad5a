"""private_key_jwt (RFC 7523 §3, OIDC Core §9): the assertion's ``aud`` is the issuer identifier alone.

The OpenID Foundation's 2025 errata (after the audience-injection reports CVE-2025-27370/27371) require it:
an ``aud`` that also names another party, or names an endpoint instead of the issuer, is refused.
"""

from __future__ import annotations

import base64
import secrets
from typing import Any
from urllib.parse import quote_plus

import pytest

from ostiary.core import jose
from ostiary.core.client_auth import (
    ASSERTION_TYPE,
    assertion_audience_ok,
    authenticate_client,
    parse_basic_authorization,
)
from ostiary.core.errors import InvalidClient, InvalidRequest

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


# --- each method, one at a time (issue 11 item 9) ---------------------------------------------------------------

TOKEN = ISSUER + "/token"


async def _auth(engine: Engine, params: dict[str, str], authorization: str | None = None):  # type: ignore[no-untyped-def]
    return await authenticate_client(params, authorization, engine.ctx.client_auth(TOKEN))


def _basic(user: str, password: str) -> str:
    """RFC 6749 §2.3.1: form-urlencode each part, then Basic-encode them."""
    return "Basic " + base64.b64encode(f"{quote_plus(user)}:{quote_plus(password)}".encode()).decode()


async def _confidential(engine: Engine, method: str = "client_secret_basic") -> tuple[str, str]:
    cid, secret = await engine.client(token_endpoint_auth_method=method, audiences=[API])
    assert secret is not None
    return cid, secret


def test_basic_credentials_are_form_urlencoded_before_base64() -> None:
    raw = base64.b64encode(b"my%3Aclient:p%2Bss%20word").decode()
    assert parse_basic_authorization("Basic " + raw) == ("my:client", "p+ss word")
    assert parse_basic_authorization("basic " + raw) == ("my:client", "p+ss word")  # the scheme is case-blind


@pytest.mark.parametrize("header", ["Basic", "Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode(),
                                    "Basic " + base64.b64encode(b"\xff:\xfe").decode(), "Bearer abc"])
def test_malformed_basic_credentials_are_invalid_client_with_a_challenge(header: str) -> None:
    with pytest.raises(InvalidClient) as exc:
        parse_basic_authorization(header)
    assert exc.value.headers is not None and exc.value.headers["WWW-Authenticate"].startswith("Basic ")


async def test_client_secret_basic(engine: Engine) -> None:
    cid, secret = await _confidential(engine)
    client = await _auth(engine, {}, _basic(cid, secret))
    assert client is not None and client.client.client_id == cid and client.method == "client_secret_basic"
    assert (await _auth(engine, {"client_id": cid}, _basic(cid, secret))) is not None  # the same id twice: fine
    with pytest.raises(InvalidRequest):
        await _auth(engine, {"client_id": "someone-else"}, _basic(cid, secret))
    for user, password in ((cid, secret + "x"), (cid, ""), ("unknown-client", secret)):
        with pytest.raises(InvalidClient) as exc:
            await _auth(engine, {}, _basic(user, password))
        # RFC 6749 §5.2: a failed Basic authentication answers 401 with a challenge
        assert exc.value.status == 401 and "WWW-Authenticate" in (exc.value.headers or {})


async def test_client_secret_post(engine: Engine) -> None:
    cid, secret = await _confidential(engine, "client_secret_post")
    client = await _auth(engine, {"client_id": cid, "client_secret": secret})
    assert client is not None and client.method == "client_secret_post"
    with pytest.raises(InvalidClient) as exc:
        await _auth(engine, {"client_id": cid, "client_secret": secret[:-1]})
    assert not exc.value.headers  # no Basic challenge for a body credential
    with pytest.raises(InvalidClient):
        await _auth(engine, {"client_secret": secret})  # no client_id


async def test_a_secret_does_not_authenticate_a_client_registered_for_keys_or_none(engine: Engine) -> None:
    public, _ = await engine.client(client_type="public", grant_types=["authorization_code"],
                                    redirect_uris=["https://app.example.com/cb"])
    with pytest.raises(InvalidClient):
        await _auth(engine, {"client_id": public, "client_secret": "anything"})
    cid, _ = await _client(engine)  # private_key_jwt
    with pytest.raises(InvalidClient):
        await _auth(engine, {}, _basic(cid, "anything"))


async def test_none_identifies_a_public_client_only(engine: Engine) -> None:
    public, _ = await engine.client(client_type="public", grant_types=["authorization_code"],
                                    redirect_uris=["https://app.example.com/cb"])
    client = await _auth(engine, {"client_id": public})
    assert client is not None and client.method == "none"
    assert await _auth(engine, {}) is None  # no identification at all: the grant decides
    confidential, _ = await _confidential(engine)
    for cid in (confidential, "unknown-client", "bad id with spaces", "x" * 300):
        with pytest.raises(InvalidClient):
            await _auth(engine, {"client_id": cid})
    # another scheme in Authorization is not client authentication
    client = await _auth(engine, {"client_id": public}, "Bearer some-access-token")
    assert client is not None and client.method == "none"


@pytest.mark.parametrize("methods", [("basic", "post"), ("basic", "jwt"), ("post", "jwt"), ("basic", "post", "jwt")])
async def test_exactly_one_method_per_request(engine: Engine, methods: tuple[str, ...]) -> None:
    cid, secret = await _confidential(engine)
    params: dict[str, str] = {}
    if "post" in methods:
        params.update(client_id=cid, client_secret=secret)
    if "jwt" in methods:
        params.update(client_assertion_type=ASSERTION_TYPE, client_assertion="a.b.c")
    with pytest.raises(InvalidRequest, match="exactly one"):
        await _auth(engine, params, _basic(cid, secret) if "basic" in methods else None)


async def test_repeated_credentials_are_refused_before_authentication(engine: Engine) -> None:
    cid, secret = await _confidential(engine, "client_secret_post")
    with pytest.raises(InvalidRequest, match="repeated"):
        await engine.token([("grant_type", "client_credentials"), ("client_id", cid), ("client_secret", secret),
                            ("client_secret", secret)])


def _assertion(engine: Engine, cid: str, key: jose.PrivateKey, **overrides: Any) -> dict[str, str]:
    now = int(engine.clock.now())
    claims = {"iss": cid, "sub": cid, "aud": ISSUER, "iat": now, "exp": now + 60, "jti": secrets.token_urlsafe(16)}
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return {"client_assertion_type": ASSERTION_TYPE,
            "client_assertion": jose.sign_jwt(claims, key, alg="ES256", kid="k1")}


async def test_private_key_jwt_authenticates_once_per_jti(engine: Engine) -> None:
    cid, key = await _client(engine)
    form = _assertion(engine, cid, key)
    client = await _auth(engine, form)
    assert client is not None and client.client.client_id == cid and client.method == "private_key_jwt"
    with pytest.raises(InvalidClient) as exc:
        await _auth(engine, form)  # RFC 7523 §3 item 7: the same jti again
    assert "replayed" in exc.value.debug
    assert await _auth(engine, _assertion(engine, cid, key)) is not None  # a new jti is fine


async def test_private_key_jwt_lifetime(engine: Engine) -> None:
    cid, key = await _client(engine)
    longest = engine.policy.assertion_max_lifetime + engine.policy.leeway
    now = int(engine.clock.now())
    assert await _auth(engine, _assertion(engine, cid, key, exp=now + longest)) is not None
    for claims in ({"exp": now + longest + 1},  # lives too long
                   {"exp": now - engine.policy.leeway - 1},  # expired
                   {"iat": now + engine.policy.leeway + 5, "exp": now + 120},  # issued in the future
                   {"exp": None}, {"jti": None}, {"jti": ""}):
        with pytest.raises(InvalidClient):
            await _auth(engine, _assertion(engine, cid, key, **claims))


async def test_private_key_jwt_identity_and_key(engine: Engine) -> None:
    cid, key = await _client(engine)
    other, _ = await _client(engine)
    with pytest.raises(InvalidClient):
        await _auth(engine, _assertion(engine, cid, key, sub=other))  # iss and sub differ
    with pytest.raises(InvalidClient):
        await _auth(engine, _assertion(engine, other, key))  # signed with another client's key
    with pytest.raises(InvalidClient):
        await _auth(engine, {"client_id": other, **_assertion(engine, cid, key)})  # client_id is not the iss
    with pytest.raises(InvalidClient):
        await _auth(engine, {"client_assertion_type": ASSERTION_TYPE, "client_assertion": "not-a-jwt"})
    with pytest.raises(InvalidRequest):
        await _auth(engine, {**_assertion(engine, cid, key), "client_assertion_type": "urn:other"})
    secret_client, _ = await _confidential(engine)
    with pytest.raises(InvalidClient):  # registered for a secret: an assertion does not count
        await _auth(engine, _assertion(engine, secret_client, key))
