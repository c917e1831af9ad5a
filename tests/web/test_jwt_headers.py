"""JWT header checks at every server surface that reads a token: a malformed ``crit`` (RFC 7515 §4.1.11) is a 4xx
everywhere, never a 500; ``id_token_hint`` must be an ID Token, not an access token."""

from __future__ import annotations

import secrets
import time
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from ..support import LiveServer

API = "https://api.example.com"


def crit_token(server: LiveServer, crit: Any, typ: str = "at+jwt") -> str:
    now = int(time.time())
    claims = {"iss": server.issuer, "sub": "someone", "aud": server.issuer + "/userinfo", "client_id": "c",
              "iat": now, "exp": now + 60, "jti": secrets.token_hex(8)}
    return jwt.encode(claims, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256",
                      headers={"typ": typ, "kid": "whatever", "crit": crit})


CRITS = [[["x"]], [{"a": 1}], [1], [], "x"]


@pytest.mark.parametrize("crit", CRITS)
def test_userinfo(server: LiveServer, crit: Any) -> None:
    r = httpx.get(server.base_url + "/userinfo", headers={"Authorization": f"Bearer {crit_token(server, crit)}"})
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "invalid_token"


@pytest.mark.parametrize("crit", CRITS)
def test_admin_api(server: LiveServer, crit: Any) -> None:
    r = httpx.get(server.base_url + "/admin/api/clients",
                  headers={"Authorization": f"Bearer {crit_token(server, crit)}"})
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "invalid_token"


@pytest.mark.parametrize("crit", CRITS)
def test_logout_id_token_hint(server: LiveServer, crit: Any) -> None:
    r = httpx.get(server.base_url + "/logout", params={"id_token_hint": crit_token(server, crit, typ="JWT")})
    assert r.status_code == 400, r.text
    assert "id_token_hint" in r.text


@pytest.mark.parametrize("crit", CRITS)
def test_introspect(server: LiveServer, crit: Any) -> None:
    client = server.create_client(audiences=[API])
    r = httpx.post(server.base_url + "/introspect", data={"token": crit_token(server, crit)},
                   auth=(client["client_id"], client["client_secret"]))
    assert r.status_code == 200, r.text
    assert r.json() == {"active": False}


def test_an_access_token_is_not_an_id_token_hint(server: LiveServer) -> None:
    """OIDC RP-Initiated Logout §2: the hint is an ID Token. An access token whose audience happens to be a
    client id (here ``urn:…``, a valid client id) must not pass as one."""
    aud = "urn:aud-" + secrets.token_hex(4)
    service = server.create_client(audiences=[aud])
    target = "https://rp.example.com/bye"
    server.create_client(client_id=aud, grant_types=["authorization_code"], redirect_uris=["https://rp.example.com/cb"],
                         post_logout_redirect_uris=[target])
    r = httpx.post(server.base_url + "/token", data={"grant_type": "client_credentials", "resource": aud},
                   auth=(service["client_id"], service["client_secret"]))
    assert r.status_code == 200, r.text
    access_token = r.json()["access_token"]
    r = httpx.get(server.base_url + "/logout", params={"id_token_hint": access_token,
                                                       "post_logout_redirect_uri": target})
    assert r.status_code == 400, r.text
    assert "id_token_hint is not an ID Token" in r.text


def test_logout_hint_whose_exp_is_no_numeric_date(server: LiveServer) -> None:
    """The hint's unverified exp picks the time it is checked at: a 400-digit one made float() raise
    OverflowError (a 500 for anyone)."""
    import base64
    import json

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    for exp in (b"1" + b"0" * 400, b"NaN", b"-Infinity"):
        claims = b'{"iss":' + json.dumps(server.issuer).encode() + b',"sub":"u","aud":"c","iat":1,"exp":' + exp + b"}"
        hint = b64(b'{"alg":"ES256","typ":"JWT","kid":"k"}') + "." + b64(claims) + "." + b64(b"s" * 64)
        r = httpx.get(server.base_url + "/logout", params={"id_token_hint": hint})
        assert r.status_code == 400, r.text
        assert "id_token_hint" in r.text
