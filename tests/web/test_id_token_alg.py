"""ID tokens are RS256 unless the client registered another algorithm (OIDC Registration §2
``id_token_signed_response_alg``); access tokens stay ES256; discovery and the JWKS list exactly what the key
ring signs with (OIDC Discovery 1.0 §3: RS256 is always there); each algorithm's key rotates on its own."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt as pyjwt
import pytest
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet

from ..support import LiveServer
from ._codeflow import REDIRECT, Browser, exchange, get_code, new_user, web_client


@pytest.fixture
def browser(server: LiveServer) -> Iterator[Browser]:
    b = Browser(server)
    yield b
    b.close()


def _header(token: str) -> dict[str, Any]:
    part = token.split(".")[0]
    out: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return out


def _jwks(server: LiveServer) -> dict[str, Any]:
    out: dict[str, Any] = httpx.get(server.base_url + "/jwks").json()
    return out


def _tokens(server: LiveServer, browser: Browser, client: dict[str, Any], user: dict[str, Any] | None = None
            ) -> dict[str, Any]:
    """Sign in (once per browser: later calls reuse the session) and exchange a code."""
    code, verifier, _ = get_code(browser, client, user or new_user(server))
    r = exchange(server, client, code, verifier)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def test_id_tokens_are_rs256_by_default_and_access_tokens_es256(server: LiveServer, browser: Browser) -> None:
    meta = httpx.get(server.base_url + "/.well-known/openid-configuration").json()
    jwks = _jwks(server)
    assert "RS256" in meta["id_token_signing_alg_values_supported"]
    # exactly the signable algorithms: one active key each, all published
    assert sorted(meta["id_token_signing_alg_values_supported"]) == ["ES256", "RS256"]
    assert {k["alg"] for k in jwks["keys"]} == {"ES256", "RS256"}

    client = web_client(server)
    assert client["id_token_signed_response_alg"] == "RS256"
    tokens = _tokens(server, browser, client)
    assert _header(tokens["id_token"])["alg"] == "RS256"
    # verified by two independent libraries against the published JWKS, RS256 only
    claims = jose_jwt.decode(tokens["id_token"], KeySet.import_key_set(jwks), algorithms=["RS256"]).claims
    kid = _header(tokens["id_token"])["kid"]
    rsa_key = pyjwt.PyJWK(next(k for k in jwks["keys"] if k["kid"] == kid)).key
    assert pyjwt.decode(tokens["id_token"], rsa_key, algorithms=["RS256"], audience=client["client_id"],
                        issuer=server.issuer) == claims
    # OIDC Core §3.1.3.6: at_hash with RS256's hash (SHA-256)
    digest = hashlib.sha256(tokens["access_token"].encode()).digest()
    assert claims["at_hash"] == base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()
    # the access token stays on the fast path
    assert _header(tokens["access_token"])["alg"] == "ES256"
    jose_jwt.decode(tokens["access_token"], KeySet.import_key_set(jwks), algorithms=["ES256"])


def test_a_client_registered_for_es256_gets_es256_id_tokens(server: LiveServer, browser: Browser) -> None:
    client = web_client(server, id_token_signed_response_alg="ES256")
    tokens = _tokens(server, browser, client)
    assert _header(tokens["id_token"])["alg"] == "ES256"
    claims = jose_jwt.decode(tokens["id_token"], KeySet.import_key_set(_jwks(server)), algorithms=["ES256"]).claims
    assert claims["aud"] == client["client_id"]
    # and back to RS256 through the admin API
    with server.admin() as admin:
        r = admin.patch(f"/clients/{client['client_id']}", json={"id_token_signed_response_alg": "RS256"})
    assert r.status_code == 200 and r.json()["id_token_signed_response_alg"] == "RS256"
    assert _header(_tokens(server, browser, client)["id_token"])["alg"] == "RS256"


@pytest.mark.parametrize("alg", ["EdDSA", "HS256", "none", "PS256"])
def test_registration_refuses_an_algorithm_the_server_does_not_sign_with(server: LiveServer, alg: str) -> None:
    with server.admin() as admin:
        r = admin.post("/clients", json={"name": "x", "client_type": "public", "grant_types": ["authorization_code"],
                                         "redirect_uris": [REDIRECT], "scopes": ["openid"],
                                         "id_token_signed_response_alg": alg})
    assert r.status_code == 422, r.text
    assert alg in r.text or "id_token_signed_response_alg" in r.text


def _until(predicate: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("condition not reached in time")


def test_each_algorithm_rotates_on_its_own_and_both_keep_verifying(make_server: Any) -> None:
    srv: LiveServer = make_server()
    browser = Browser(srv)
    user = new_user(srv)
    try:
        client = web_client(srv)
        es_client = json.loads(srv.cli(
            "client", "create", "--name", "es", "--public", "--no-dpop", "--grant-type", "authorization_code", "--scope",
            "openid profile email offline_access", "--redirect-uri", REDIRECT, "--id-token-alg", "ES256",
            "--json").stdout)
        assert es_client["id_token_signed_response_alg"] == "ES256"
        refused = srv.cli("client", "create", "--name", "ed", "--public", "--grant-type", "authorization_code",
                          "--scope", "openid", "--redirect-uri", REDIRECT, "--id-token-alg", "EdDSA", check=False)
        assert refused.returncode == 1 and "keys.algorithms" in refused.stderr

        before = _tokens(srv, browser, client, user)
        es_kid = _header(before["access_token"])["kid"]
        rs_kid = _header(before["id_token"])["kid"]
        rotated = json.loads(srv.cli("keys", "rotate", "--alg", "RS256", "--now", "--json").stdout)
        assert [k["alg"] for k in rotated] == ["RS256"] and rotated[0]["state"] == "active"
        new_rs = rotated[0]["kid"]
        _until(lambda: new_rs in {k["kid"] for k in _jwks(srv)["keys"]})
        _until(lambda: _header(_tokens(srv, browser, client, user)["id_token"])["kid"] == new_rs)

        after = _tokens(srv, browser, client, user)
        assert _header(after["access_token"])["kid"] == es_kid  # the ES256 key was not touched
        keys = KeySet.import_key_set(_jwks(srv))
        for token, alg in ((before["id_token"], "RS256"), (after["id_token"], "RS256"),
                           (after["access_token"], "ES256")):
            jose_jwt.decode(token, keys, algorithms=[alg])  # the retired RS256 key is still published
        assert _header(_tokens(srv, browser, es_client, user)["id_token"])["alg"] == "ES256"
        states = {(k["alg"], k["kid"]): k["state"] for k in json.loads(srv.cli("keys", "list", "--json").stdout)}
        assert states == {("ES256", es_kid): "active", ("RS256", rs_kid): "retired", ("RS256", new_rs): "active"}
    finally:
        browser.close()
