"""FAPI 2.0 mode (``profile = "fapi2"``) over HTTP: PAR required, private_key_jwt (or mTLS) only, no public
clients, sender-constrained tokens, codes of at most 60 seconds, and discovery saying so."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ..support import LiveServer, start_server
from ._codeflow import Browser, auth_params, new_user, pkce, query, web_client
from ._pushed import assertion, dpop_proof, keyed_client, new_key, push, pushed_code, redeem, request_object


@pytest.fixture(scope="module")
def fapi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp: Path = tmp_path_factory.mktemp("fapi2")
    srv = start_server(f"sqlite+aiosqlite:///{tmp / 'fapi2.db'}", tmp, extra_env={"OSTIARY_PROFILE": "fapi2"})
    yield srv
    srv.stop()


def test_discovery_reflects_fapi2(fapi: LiveServer) -> None:
    meta = httpx.get(fapi.base_url + "/.well-known/openid-configuration").json()
    assert meta["require_pushed_authorization_requests"] is True
    assert meta["pushed_authorization_request_endpoint"] == fapi.issuer + "/par"
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["authorization_response_iss_parameter_supported"] is True
    for name in ("token_endpoint_auth_methods_supported", "introspection_endpoint_auth_methods_supported",
                 "revocation_endpoint_auth_methods_supported"):
        assert "private_key_jwt" in meta[name]
        assert not {"none", "client_secret_basic", "client_secret_post"} & set(meta[name]), name


def test_a_pushed_private_key_jwt_flow_with_a_dpop_proof(fapi: LiveServer) -> None:
    key = new_key()
    client, user = keyed_client(fapi, key), new_user(fapi)
    b = Browser(fapi)
    try:
        code, verifier, _ = pushed_code(fapi, b, client, key, user)  # iss in the response: checked there
        # without a DPoP proof (or mutual TLS) the token would not be sender-constrained: refused, code intact
        r = redeem(fapi, client, key, code, verifier)
        assert r.status_code == 400, r.text
        assert r.json()["error"] == "invalid_request" and "sender-constrained" in r.json()["error_description"]
        r = redeem(fapi, client, key, code, verifier, headers={"DPoP": dpop_proof(fapi.issuer + "/token")})
        assert r.status_code == 200, r.text
        assert r.json()["access_token"]
    finally:
        b.close()


def test_plain_authorize_is_refused(fapi: LiveServer) -> None:
    key = new_key()
    client = keyed_client(fapi, key)
    b = Browser(fapi)
    try:
        r = b.authorize(**auth_params(client, pkce()[1]))
        assert r.status_code == 302
        q = query(r.headers["location"])
        assert q["error"] == "invalid_request" and "FAPI 2.0" in q["error_description"] and "/par" in q[
            "error_description"]
        assert "code" not in q and q["iss"] == fapi.issuer
    finally:
        b.close()


def test_public_clients_are_refused(fapi: LiveServer) -> None:
    client = web_client(fapi)
    r = push(fapi, auth_params(client, pkce()[1]))
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    assert "FAPI 2.0" in r.json()["error_description"] and "public clients" in r.json()["error_description"]


def test_client_secret_basic_is_refused(fapi: LiveServer) -> None:
    client = web_client(fapi, client_type="confidential")
    r = push(fapi, auth_params(client, pkce()[1]), auth=(client["client_id"], client["client_secret"]))
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    assert "client_secret_basic" in r.json()["error_description"]
    assert "private_key_jwt" in r.json()["error_description"]
    token = httpx.post(fapi.base_url + "/token", data={"grant_type": "authorization_code", "code": "x",
                                                        "redirect_uri": auth_params(client, "x")["redirect_uri"],
                                                        "code_verifier": "v" * 43},
                       auth=(client["client_id"], client["client_secret"]),
                       headers={"DPoP": dpop_proof(fapi.issuer + "/token")})
    assert token.status_code == 401 and "FAPI 2.0" in token.json()["error_description"]
    introspect = httpx.post(fapi.base_url + "/introspect", data={"token": "x"},
                            auth=(client["client_id"], client["client_secret"]))
    assert introspect.status_code == 401 and "FAPI 2.0" in introspect.json()["error_description"]


def test_pushed_requests_must_name_the_redirect_uri(fapi: LiveServer) -> None:
    key = new_key()
    client = keyed_client(fapi, key)
    params = auth_params(client, pkce()[1])
    del params["redirect_uri"]
    params["scope"] = "profile"  # not an OIDC request: the only registered URI would otherwise be implied
    r = push(fapi, {**params, **assertion(fapi, key, client["client_id"])})
    assert r.status_code == 400 and "redirect_uri" in r.json()["error_description"]


def test_request_objects_carry_nbf_and_live_at_most_an_hour(fapi: LiveServer) -> None:
    """FAPI 2.0 Message Signing, signed authorization requests (as FAPI 1.0 Advanced §5.2.2 items 13 and 17): an
    nbf no more than 60 minutes old and an exp no more than 60 minutes after it. Request objects were accepted
    without nbf, and with exp 100 minutes after nbf."""
    key = new_key()
    client = keyed_client(fapi, key)
    cid, now = client["client_id"], int(time.time())
    for claims, word in (({"nbf": None}, "nbf"), ({"nbf": now - 3000, "exp": now + 3000}, "exp")):
        ro = request_object(fapi, key, cid, auth_params(client, pkce()[1]), **claims)
        r = push(fapi, {"client_id": cid, "request": ro, **assertion(fapi, key, cid)})
        assert r.status_code == 400, (claims, r.text)
        assert r.json()["error"] == "invalid_request_object" and word in r.json()["error_description"], r.text
    ro = request_object(fapi, key, cid, auth_params(client, pkce()[1]), nbf=now - 1800, exp=now + 1800)
    r = push(fapi, {"client_id": cid, "request": ro, **assertion(fapi, key, cid)})
    assert r.status_code == 201, r.text
