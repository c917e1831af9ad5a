"""Signed authorization request objects (JAR, RFC 9101) at /par and /authorize, over HTTP."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import httpx
import pytest
from joserfc import jwt as jose_jwt
from joserfc.jwk import OctKey

from ..support import LiveServer
from ._codeflow import Browser, auth_params, new_user, pkce, query
from ._pushed import (
    assertion,
    error_code,
    finish,
    keyed_client,
    new_key,
    push,
    pushed_uri,
    redeem,
    request_object,
)


def test_discovery_advertises_request_objects(server: LiveServer) -> None:
    meta = httpx.get(server.base_url + "/.well-known/openid-configuration").json()
    assert meta["request_parameter_supported"] is True
    assert meta["request_uri_parameter_supported"] is False
    assert "ES256" in meta["request_object_signing_alg_values_supported"]
    assert not any(a == "none" or a.startswith("HS") for a in meta["request_object_signing_alg_values_supported"])


def test_a_request_object_at_authorize_replaces_the_outer_parameters(server: LiveServer) -> None:
    key = new_key()
    client, user = keyed_client(server, key), new_user(server)
    verifier, challenge = pkce()
    params = auth_params(client, challenge, state="inner")
    ro = request_object(server, key, client["client_id"], params)
    b = Browser(server)
    try:
        q = finish(b, b.authorize(client_id=client["client_id"], request=ro, state="outer", scope="openid"), user)
        assert q["state"] == "inner"
        tokens = redeem(server, client, key, q["code"], verifier)
        assert tokens.status_code == 200, tokens.text
        assert set(tokens.json()["scope"].split()) == set(params["scope"].split())
    finally:
        b.close()


def test_a_request_object_pushed_to_par(server: LiveServer) -> None:
    key = new_key()
    client, user = keyed_client(server, key), new_user(server)
    verifier, challenge = pkce()
    params = auth_params(client, challenge)
    r = push(server, {"client_id": client["client_id"], **assertion(server, key, client["client_id"]),
                      "request": request_object(server, key, client["client_id"], params)})
    assert r.status_code == 201, r.text
    b = Browser(server)
    try:
        q = finish(b, b.authorize(client_id=client["client_id"], request_uri=r.json()["request_uri"]), user)
        assert q["state"] == params["state"]
        assert redeem(server, client, key, q["code"], verifier).status_code == 200
    finally:
        b.close()


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _negative(case: str, server: LiveServer, key: Any, client: dict[str, Any], other: dict[str, Any],
              params: dict[str, str]) -> str:
    cid, now = client["client_id"], int(time.time())
    if case == "alg_none":
        claims = {"iss": cid, "aud": server.issuer, "exp": now + 60, **params}
        return _b64({"alg": "none", "typ": "oauth-authz-req+jwt"}) + "." + _b64(claims) + "."
    if case == "hs256_with_the_client_secret":
        claims = {"iss": cid, "aud": server.issuer, "exp": now + 60, **params}
        return jose_jwt.encode({"alg": "HS256"}, claims, OctKey.import_key(client["client_secret"]))
    if case == "unsigned_json":
        return json.dumps(params)
    if case == "unknown_key":
        return request_object(server, new_key(), cid, params)
    if case == "client_id_mismatch":
        return request_object(server, key, cid, {**params, "client_id": other["client_id"]})
    overrides: dict[str, Any] = {
        "wrong_aud": {"aud": server.issuer + "/authorize"},
        "expired": {"exp": now - 120},
        "exp_too_far": {"exp": now + 7200},
        "nbf_in_the_future": {"nbf": now + 600},
        "iss_mismatch": {"iss": other["client_id"]},
    }[case]
    return request_object(server, key, cid, params, **overrides)


CASES = ["alg_none", "hs256_with_the_client_secret", "unsigned_json", "unknown_key", "wrong_aud", "expired",
         "exp_too_far", "nbf_in_the_future", "iss_mismatch", "client_id_mismatch"]


@pytest.fixture(scope="module")
def jar_clients(server: LiveServer) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    key = new_key()
    # a client with both a secret and keys: its secret must never be accepted as an HMAC key
    client = keyed_client(server, key, token_endpoint_auth_method="client_secret_basic")
    assert client["client_secret"]
    return key, client, keyed_client(server, new_key())


@pytest.mark.parametrize("case", CASES)
def test_request_object_negatives_at_par(server: LiveServer, jar_clients: Any, case: str) -> None:
    key, client, other = jar_clients
    params = auth_params(client, pkce()[1])
    token = _negative(case, server, key, client, other, params)
    r = push(server, {"client_id": client["client_id"], "request": token},
             auth=(client["client_id"], client["client_secret"]))
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_request_object", r.text


@pytest.mark.parametrize("case", CASES)
def test_request_object_negatives_at_authorize(server: LiveServer, jar_clients: Any, case: str) -> None:
    key, client, other = jar_clients
    params = auth_params(client, pkce()[1])
    token = _negative(case, server, key, client, other, params)
    with Browser(server).http as http:
        r = http.get("/authorize", params={"client_id": client["client_id"], "request": token,
                                           "redirect_uri": params["redirect_uri"], "state": "outer"})
        assert r.status_code == 302, r.text[:500]
        q = query(r.headers["location"])
        assert q["error"] == "invalid_request_object" and q["state"] == "outer" and "code" not in q
        # without a registered outer redirect_uri: an error page, no redirect
        r = http.get("/authorize", params={"client_id": client["client_id"], "request": token})
        assert r.status_code == 400 and error_code(r) == "invalid_request_object"


def test_request_uri_by_reference_is_refused(server: LiveServer) -> None:
    key = new_key()
    client = keyed_client(server, key)
    b = Browser(server)
    try:
        r = b.authorize(client_id=client["client_id"], request_uri="https://client.example/request.jwt")
        assert r.status_code == 400 and error_code(r) == "request_uri_not_supported"
    finally:
        b.close()


def test_request_and_request_uri_together_are_refused(server: LiveServer) -> None:
    """RFC 9101 §5 / OIDC Core §6.1: a request by value or by reference, never both. The request object was
    silently ignored in favour of the pushed request; now neither is used (an error page, the pushed request
    untouched)."""
    key = new_key()
    client = keyed_client(server, key)
    cid = client["client_id"]
    uri = pushed_uri(server, client, key, auth_params(client, pkce()[1], state="pushed"))
    ro = request_object(server, key, cid, auth_params(client, pkce()[1], state="by-value"))
    b = Browser(server)
    try:
        r = b.authorize(client_id=cid, request_uri=uri, request=ro)
        assert r.status_code == 400 and "location" not in r.headers, r.text[:300]
        assert error_code(r) == "invalid_request"
        assert b.authorize(client_id=cid, request_uri=uri).status_code == 200
    finally:
        b.close()


def test_a_claims_object_in_a_request_object_is_treated_as_the_form_parameter(server: LiveServer) -> None:
    """OIDC Core §5.5 / §6.1: in a request object ``claims`` is a JSON object (in a form, its JSON text). The form's
    is ignored (claims_parameter_supported: false) but the request object's was refused ("must be a string"), so
    the same request failed only when signed. Now both are the JSON text, ignored alike."""
    key = new_key()
    client, user = keyed_client(server, key), new_user(server)
    cid = client["client_id"]
    verifier, challenge = pkce()
    params = auth_params(client, challenge)
    claims = {"id_token": {"acr": {"essential": True, "values": ["urn:example:acr"]}}}
    r = push(server, {"client_id": cid, "request": request_object(server, key, cid, params, claims=claims),
                      **assertion(server, key, cid)})
    assert r.status_code == 201, r.text
    form = push(server, {**params, "claims": json.dumps(claims), **assertion(server, key, cid)})
    assert form.status_code == 201, form.text
    b = Browser(server)
    try:
        q = finish(b, b.authorize(client_id=cid, request_uri=r.json()["request_uri"]), user)
        assert redeem(server, client, key, q["code"], verifier).status_code == 200
    finally:
        b.close()
