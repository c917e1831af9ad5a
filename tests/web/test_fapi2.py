"""FAPI 2.0 mode (``profile = "fapi2"``) over HTTP: PAR required, private_key_jwt (or mTLS) only, no public
clients, sender-constrained tokens, codes of at most 60 seconds, and discovery saying so."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from joserfc import jwt as jose_jwt
from joserfc.jwk import RSAKey

from ostiary.config import ConfigError, load_settings

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


def _rsa_proof(url: str) -> str:
    key = RSAKey.generate_key(2048)
    claims = {"jti": secrets.token_urlsafe(16), "htm": "POST", "htu": url, "iat": int(time.time())}
    return jose_jwt.encode({"alg": "RS256", "typ": "dpop+jwt", "jwk": key.as_dict(private=False)}, claims, key)


def test_client_jwts_are_ps256_es256_or_eddsa(fapi: LiveServer) -> None:
    """FAPI 2.0 Security Profile §5.4.1: JWTs are processed only with PS256, ES256 or EdDSA, never RSASSA-PKCS1-v1_5
    (RS256). Request objects, client assertions and DPoP proofs signed RS256 were accepted, and discovery listed
    RS256, ES384 and ES512 for them."""
    meta = httpx.get(fapi.base_url + "/.well-known/openid-configuration").json()
    for name in ("request_object_signing_alg_values_supported", "token_endpoint_auth_signing_alg_values_supported",
                 "introspection_endpoint_auth_signing_alg_values_supported",
                 "revocation_endpoint_auth_signing_alg_values_supported", "dpop_signing_alg_values_supported"):
        assert set(meta[name]) <= {"PS256", "ES256", "EdDSA"} and "ES256" in meta[name], (name, meta[name])
    ec_key = new_key()
    rsa_key = RSAKey.generate_key(2048, parameters={"kid": "rsa-" + secrets.token_hex(4)})
    client = keyed_client(fapi, ec_key)
    both = {"keys": [ec_key.as_dict(private=False), rsa_key.as_dict(private=False)]}
    with fapi.admin() as admin:
        assert admin.patch(f"/clients/{client['client_id']}", json={"jwks": both}).status_code == 200
    cid = client["client_id"]
    params = auth_params(client, pkce()[1])
    ro = request_object(fapi, rsa_key, cid, params, header={"alg": "RS256"})
    r = push(fapi, {"client_id": cid, "request": ro, **assertion(fapi, ec_key, cid)})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request_object", r.text
    now = int(time.time())
    claims = {"iss": cid, "sub": cid, "aud": fapi.issuer, "iat": now, "exp": now + 60,
              "jti": secrets.token_urlsafe(16)}
    rs256 = {"client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
             "client_assertion": jose_jwt.encode({"alg": "RS256", "kid": rsa_key.kid}, claims, rsa_key)}
    r = push(fapi, {**params, **rs256})
    assert r.status_code == 401 and r.json()["error"] == "invalid_client", r.text
    r = push(fapi, {**params, **assertion(fapi, ec_key, cid)}, headers={"DPoP": _rsa_proof(fapi.issuer + "/par")})
    assert r.status_code == 400 and r.json()["error"] == "invalid_dpop_proof", r.text
    # the same with ES256 throughout is accepted
    ro = request_object(fapi, ec_key, cid, params)
    r = push(fapi, {"client_id": cid, "request": ro, **assertion(fapi, ec_key, cid)},
             headers={"DPoP": dpop_proof(fapi.issuer + "/par")})
    assert r.status_code == 201, r.text


def test_fapi2_needs_a_dpop_algorithm_it_accepts() -> None:
    with pytest.raises(ConfigError, match="dpop.algorithms"):
        load_settings(environ={"OSTIARY_PROFILE": "fapi2", "OSTIARY_DPOP__ALGORITHMS": "RS256,ES384"})
    policy = load_settings(environ={"OSTIARY_PROFILE": "fapi2", "OSTIARY_DPOP__ALGORITHMS": "RS256,ES256"}).policy()
    assert policy.dpop_algs == ("ES256",)


def test_fapi2_signs_access_tokens_with_an_algorithm_it_allows() -> None:
    """FAPI 2.0 Security Profile §5.4.1 applies to the JWTs the server creates too: keys.algorithm = RS256 (the
    access tokens' algorithm) was accepted with profile fapi2."""
    with pytest.raises(ConfigError, match="keys.algorithm"):
        load_settings(environ={"OSTIARY_PROFILE": "fapi2", "OSTIARY_KEYS__ALGORITHM": "RS256"})
    assert load_settings(environ={"OSTIARY_PROFILE": "fapi2", "OSTIARY_KEYS__ALGORITHM": "EdDSA"}).keys.algorithm \
        == "EdDSA"


def test_id_tokens_are_not_rs256(fapi: LiveServer) -> None:
    """FAPI 2.0 Security Profile §5.4.1 (the JWTs the server creates): a client registered in FAPI 2.0 mode got
    RS256 ID tokens by default, and RS256 could be chosen. Now the access tokens' algorithm by default, RS256
    refused."""
    client = keyed_client(fapi, new_key())
    assert client["id_token_signed_response_alg"] == "ES256"
    with fapi.admin() as admin:
        r = admin.post("/clients", json={"name": "rs256", "grant_types": ["authorization_code"],
                                         "redirect_uris": ["http://127.0.0.1:9/callback"], "scopes": ["openid"],
                                         "token_endpoint_auth_method": "private_key_jwt",
                                         "jwks": {"keys": [new_key().as_dict(private=False)]},
                                         "id_token_signed_response_alg": "RS256"})
    assert r.status_code == 422 and "FAPI 2.0" in r.text, r.text


def test_the_cli_registers_fapi2_clients_without_rs256(fapi: LiveServer, tmp_path: Path) -> None:
    """`ostiary client create` sent RS256 for the ID tokens unless told otherwise, which FAPI 2.0 mode refuses."""
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [new_key().as_dict(private=False)]}))
    out = fapi.cli("client", "create", "--name", "cli fapi", "--auth-method", "private_key_jwt", "--jwks", str(jwks),
                   "--grant-type", "authorization_code", "--scope", "openid",
                   "--redirect-uri", "http://127.0.0.1:9/callback", "--json")
    assert json.loads(out.stdout)["id_token_signed_response_alg"] == "ES256"
