"""private_key_jwt client authentication (RFC 7523 §2.2, §3) over HTTP."""

from __future__ import annotations

import secrets
import time

import httpx
import jwt as pyjwt
import pytest
from joserfc import jwt as jose_jwt
from joserfc.jwk import ECKey

from ..support import LiveServer

API = "https://api.example.com"
ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _assertion(key: ECKey, client_id: str, aud: str | list[str], *, lifetime: int = 60, jti: str | None = None,
               iat: int | None = None) -> str:
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": aud, "iat": iat or now, "exp": now + lifetime,
              "jti": jti or secrets.token_urlsafe(16)}
    return jose_jwt.encode({"alg": "ES256", "kid": key.kid}, claims, key)


def _post(server: LiveServer, assertion: str, **extra: str) -> httpx.Response:
    return httpx.post(server.base_url + "/token", data={"grant_type": "client_credentials", "client_assertion_type": ASSERTION,
                                                        "client_assertion": assertion, **extra})


@pytest.fixture
def key() -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": secrets.token_hex(4)})


def _register(server: LiveServer, key: ECKey, **kw: object) -> str:
    if "jwks_uri" not in kw:
        kw["jwks"] = {"keys": [key.as_dict(private=False)]}
    client = server.create_client(audiences=[API], token_endpoint_auth_method="private_key_jwt", **kw)
    assert "client_secret" not in client
    return str(client["client_id"])


def test_signed_assertion_authenticates_and_jti_is_single_use(server: LiveServer, key: ECKey) -> None:
    cid = _register(server, key)
    assertion = _assertion(key, cid, server.issuer)
    r = _post(server, assertion)
    assert r.status_code == 200, r.text
    replay = _post(server, assertion)
    assert replay.status_code == 401 and replay.json()["error"] == "invalid_client"


def test_the_assertion_audience_is_the_issuer_alone(server: LiveServer, key: ECKey) -> None:
    """OIDC Core §9 with the OpenID Foundation's 2025 errata (audience injection, CVE-2025-27370/27371)."""
    cid = _register(server, key)
    for aud in ([server.issuer, "https://other.example.com"], server.issuer + "/token"):
        r = _post(server, _assertion(key, cid, aud))
        assert r.status_code == 401, (aud, r.text)
        assert r.json()["error"] == "invalid_client"
    r = _post(server, _assertion(key, cid, [server.issuer]))
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("case", ["wrong_aud", "too_long", "other_key", "expired", "future_iat", "no_jti", "secret_too"])
def test_bad_assertions_are_refused(server: LiveServer, key: ECKey, case: str) -> None:
    cid = _register(server, key)
    aud = server.issuer
    if case == "wrong_aud":
        a = _assertion(key, cid, "https://elsewhere.example.com/token")
    elif case == "too_long":
        a = _assertion(key, cid, aud, lifetime=3600)
    elif case == "other_key":
        other = ECKey.generate_key("P-256", parameters={"kid": key.kid})
        a = _assertion(other, cid, aud)
    elif case == "expired":
        a = _assertion(key, cid, aud, lifetime=-120)
    elif case == "future_iat":
        a = _assertion(key, cid, aud, iat=int(time.time()) + 600)
    elif case == "no_jti":
        now = int(time.time())
        a = jose_jwt.encode({"alg": "ES256", "kid": key.kid},
                            {"iss": cid, "sub": cid, "aud": aud, "exp": now + 60}, key)
    else:
        r = _post(server, _assertion(key, cid, aud), client_secret="x", client_id=cid)
        assert r.status_code == 400 and r.json()["error"] == "invalid_request"
        return
    r = _post(server, a)
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "invalid_client"


def test_jwks_uri_is_fetched_and_refetched_on_an_unknown_kid(server: LiveServer, key: ECKey, jwks_host) -> None:
    uri, state = jwks_host
    state["jwks"] = {"keys": [key.as_dict(private=False)]}
    cid = _register(server, key, jwks_uri=uri)
    assert _post(server, _assertion(key, cid, server.issuer)).status_code == 200
    # the client rotates its key: the server refetches its JWKS when it sees the new kid
    new = ECKey.generate_key("P-256", parameters={"kid": "rotated-" + secrets.token_hex(3)})
    state["jwks"] = {"keys": [key.as_dict(private=False), new.as_dict(private=False)]}
    time.sleep(0)  # no wait needed: an unknown kid forces a refetch (rate-limited per 10 s)
    r = _post(server, _assertion(new, cid, server.issuer))
    assert r.status_code == 200, r.text
    assert state["hits"] >= 2


def test_jwks_and_jwks_uri_are_alternatives(server: LiveServer, key: ECKey, jwks_host) -> None:
    """RFC 7591 §2: jwks and jwks_uri MUST NOT both be present. The admin API took both, used the jwks and never
    fetched the URI; now it refuses the pair, and an update that sets one replaces the other."""
    uri, state = jwks_host
    with server.admin() as admin:
        r = admin.post("/clients", json={"name": "both", "audiences": [API], "jwks_uri": uri,
                                         "token_endpoint_auth_method": "private_key_jwt",
                                         "jwks": {"keys": [key.as_dict(private=False)]}})
        assert r.status_code == 422, r.text
        assert "jwks" in r.text and "jwks-uri" in r.text
        cid = _register(server, key)
        rotated = ECKey.generate_key("P-256", parameters={"kid": "at-uri-" + secrets.token_hex(3)})
        state["jwks"] = {"keys": [rotated.as_dict(private=False)]}
        r = admin.patch(f"/clients/{cid}", json={"jwks_uri": uri})  # the URI replaces the registered keys
        assert r.status_code == 200, r.text
        assert r.json()["jwks_uri"] == uri and r.json()["has_jwks"] is False
        assert _post(server, _assertion(rotated, cid, server.issuer)).status_code == 200
        assert _post(server, _assertion(key, cid, server.issuer)).status_code == 401
        r = admin.patch(f"/clients/{cid}", json={"jwks": {"keys": [key.as_dict(private=False)]}})  # and back
        assert r.status_code == 200, r.text
        assert r.json()["jwks_uri"] is None and r.json()["has_jwks"] is True
        assert _post(server, _assertion(key, cid, server.issuer)).status_code == 200
        assert _post(server, _assertion(rotated, cid, server.issuer)).status_code == 401
        r = admin.patch(f"/clients/{cid}", json={"jwks_uri": uri, "jwks": {"keys": [key.as_dict(private=False)]}})
        assert r.status_code == 422, r.text


@pytest.mark.parametrize("claim", ["exp", "iat"])
def test_a_time_beyond_64_bits_is_invalid_client_not_a_500(server: LiveServer, key: ECKey, claim: str) -> None:
    """A client's own key signs ``exp`` = 10**400: json.loads reads it, and the float arithmetic of the time
    checks raised OverflowError (a 500) until NumericDates were bounded to 64 bits."""
    cid = _register(server, key)
    now = int(time.time())
    claims = {"iss": cid, "sub": cid, "aud": server.issuer, "iat": now, "exp": now + 60,
              "jti": secrets.token_urlsafe(16), claim: 10**400}
    r = _post(server, jose_jwt.encode({"alg": "ES256", "kid": key.kid}, claims, key))
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "invalid_client"


@pytest.mark.parametrize("jti", ["nul\x00byte", "lone\ud800surrogate", "é" * 10, "x" * 1000],
                         ids=["nul", "surrogate", "non-ascii", "1000"])
def test_any_json_string_is_a_single_use_jti(server: LiveServer, key: ECKey, jti: str) -> None:
    """RFC 7519 §4.1.7 makes jti any string; the replay cache keeps its digest, so one with a NUL (which
    PostgreSQL text refuses: a 500 before), a lone surrogate or longer than the column is used once like any
    other. (PyJWT writes the surrogate as the JSON escape ``\\ud800``, which Python reads back as one.)"""
    cid = _register(server, key)
    now = int(time.time())
    claims = {"iss": cid, "sub": cid, "aud": server.issuer, "iat": now, "exp": now + 60, "jti": jti}
    assertion = pyjwt.encode(claims, key.private_key, algorithm="ES256", headers={"kid": key.kid})
    r = _post(server, assertion)
    assert r.status_code == 200, r.text
    replay = _post(server, assertion)
    assert replay.status_code == 401 and replay.json()["error"] == "invalid_client", replay.text


@pytest.mark.parametrize(("typ", "status"), [(None, 200), ("JWT", 200), ("client-authentication+jwt", 200),
                                             ("oauth-authz-req+jwt", 401), ("dpop+jwt", 401), ("at+jwt", 401)])
def test_a_jwt_typed_for_another_use_is_no_client_assertion(server: LiveServer, key: ECKey, typ: str | None,
                                                            status: int) -> None:
    """RFC 8725 §3.11 (explicit typing): a request object signed by the client's key carries iss, aud = the issuer
    and exp, and may carry sub and jti; it travels through the browser, so whoever sees it must not be able to
    authenticate as the client with it."""
    cid = _register(server, key)
    now = int(time.time())
    claims = {"iss": cid, "sub": cid, "aud": server.issuer, "iat": now, "exp": now + 60,
              "jti": secrets.token_urlsafe(16)}
    header = {"alg": "ES256", "kid": key.kid, **({"typ": typ} if typ else {})}
    r = _post(server, jose_jwt.encode(header, claims, key))
    assert r.status_code == status, r.text
    if status == 401:
        assert r.json()["error"] == "invalid_client"
