"""Client Credentials over HTTP against a live server, on SQLite and PostgreSQL (RFC 6749 §4.4, RFC 9068)."""

from __future__ import annotations

import base64
import time

import httpx
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet

from ..support import LiveServer

API = "https://api.example.com"


def _token(server: LiveServer, client: dict, **form: str) -> httpx.Response:
    data = {"grant_type": "client_credentials", **form}
    return httpx.post(server.base_url + "/token", data=data, auth=(client["client_id"], client["client_secret"]))


def test_token_is_an_rfc9068_jwt_verified_by_an_independent_library(server: LiveServer) -> None:
    client = server.create_client(scopes=["api:read", "api:write"], audiences=[API])
    r = _token(server, client, scope="api:read")
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["pragma"] == "no-cache"
    body = r.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "api:read"
    assert "refresh_token" not in body  # RFC 6749 §4.4.3
    assert 60 <= body["expires_in"] <= 3600

    jwks = httpx.get(server.base_url + "/jwks").json()
    token = jose_jwt.decode(body["access_token"], KeySet.import_key_set(jwks), algorithms=["ES256"])
    assert token.header["typ"] == "at+jwt"
    assert token.header["kid"] in {k["kid"] for k in jwks["keys"]}
    claims = token.claims
    assert claims["iss"] == server.issuer
    assert claims["sub"] == client["client_id"] == claims["client_id"]
    assert claims["aud"] == API
    assert claims["scope"] == "api:read"
    assert claims["exp"] - claims["iat"] == body["expires_in"]
    assert claims["nbf"] <= time.time() + 5
    assert len(claims["jti"]) >= 16
    registry = jose_jwt.JWTClaimsRegistry(iss={"essential": True, "value": server.issuer},
                                          aud={"essential": True, "value": API})
    registry.validate(claims)


def test_default_scope_is_the_clients_allowed_set(server: LiveServer) -> None:
    client = server.create_client(scopes=["b", "a"], audiences=[API])
    body = _token(server, client).json()
    assert body["scope"] == "a b"


def test_scope_outside_the_allowed_set_is_invalid_scope(server: LiveServer) -> None:
    client = server.create_client(scopes=["api:read"], audiences=[API])
    r = _token(server, client, scope="api:read admin")
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_scope"


def test_resource_parameter_selects_the_audience(server: LiveServer) -> None:
    client = server.create_client(scopes=["x"], audiences=[API, "https://other.example.com"])
    r = _token(server, client, resource="https://other.example.com")
    assert r.status_code == 200, r.text
    jwks = KeySet.import_key_set(httpx.get(server.base_url + "/jwks").json())
    assert jose_jwt.decode(r.json()["access_token"], jwks, algorithms=["ES256"]).claims["aud"] == "https://other.example.com"
    r = _token(server, client, resource="https://evil.example.com")
    assert r.status_code == 400 and r.json()["error"] == "invalid_target"
    r = _token(server, client, resource="not-a-uri")
    assert r.status_code == 400 and r.json()["error"] == "invalid_target"


def test_client_credentials_client_without_audience_is_refused_at_registration(server: LiveServer) -> None:
    """A service token always names its API: a client that could only get invalid_target is never registered."""
    with server.admin() as admin:
        r = admin.post("/clients", json={"name": "no audience", "scopes": ["x"]})
    assert r.status_code == 422, r.text  # the admin API's answer to invalid input
    assert "audience" in r.text
    r = server.cli("client", "create", "--name", "no audience", "--scope", "x", check=False)
    assert r.returncode == 1 and "--audience" in r.stderr and "Traceback" not in r.stderr


def test_client_secret_post_works(server: LiveServer) -> None:
    client = server.create_client(audiences=[API], token_endpoint_auth_method="client_secret_post")
    r = httpx.post(server.base_url + "/token", data={"grant_type": "client_credentials", "client_id": client["client_id"],
                                                     "client_secret": client["client_secret"]})
    assert r.status_code == 200, r.text


def test_wrong_secret_is_401_with_www_authenticate_for_basic(server: LiveServer) -> None:
    client = server.create_client(audiences=[API])
    r = httpx.post(server.base_url + "/token", data={"grant_type": "client_credentials"},
                   auth=(client["client_id"], client["client_secret"] + "x"))
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"
    assert r.headers["www-authenticate"].startswith("Basic")
    r = httpx.post(server.base_url + "/token", data={"grant_type": "client_credentials", "client_id": client["client_id"],
                                                     "client_secret": "nope"})
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    assert "www-authenticate" not in r.headers


def test_unknown_client_gets_the_same_answer_as_a_wrong_secret(server: LiveServer) -> None:
    r1 = httpx.post(server.base_url + "/token", data={"grant_type": "client_credentials"}, auth=("nobody-here", "x"))
    client = server.create_client(audiences=[API])
    r2 = httpx.post(server.base_url + "/token", data={"grant_type": "client_credentials"}, auth=(client["client_id"], "x"))
    assert r1.status_code == r2.status_code == 401
    assert r1.json() == r2.json()


def test_public_client_may_not_use_client_credentials(server: LiveServer) -> None:
    with server.admin() as admin:
        r = admin.post("/clients", json={"name": "spa", "client_type": "public", "grant_types": ["client_credentials"]})
    assert r.status_code == 422
    assert "public clients may not use client_credentials" in r.text


def test_grant_not_allowed_for_client_is_unauthorized_client(server: LiveServer) -> None:
    client = server.create_client(audiences=[API], grant_types=[])
    r = _token(server, client)
    assert r.status_code == 400 and r.json()["error"] == "unauthorized_client"


def test_password_and_implicit_are_refused_naming_the_replacement(server: LiveServer) -> None:
    client = server.create_client(audiences=[API])
    r = httpx.post(server.base_url + "/token", data={"grant_type": "password", "username": "u", "password": "p"},
                   auth=(client["client_id"], client["client_secret"]))
    assert r.status_code == 400
    body = r.json()
    assert body["error"] == "unsupported_grant_type"
    assert "authorization code" in body["error_description"] and "PKCE" in body["error_description"]
    assert "device" in body["error_description"]
    with server.admin() as admin:
        r = admin.post("/clients", json={"name": "legacy", "grant_types": ["password"]})
    assert r.status_code == 422 and "PKCE" in r.text


def test_secret_rotation_keeps_both_secrets_valid_during_the_overlap(server: LiveServer) -> None:
    client = server.create_client(audiences=[API])
    with server.admin() as admin:
        rotated = admin.post(f"/clients/{client['client_id']}/rotate-secret").json()
    assert rotated["client_secret"] != client["client_secret"]
    assert rotated["client_secret"].startswith("ost_cs_")
    assert _token(server, client).status_code == 200
    assert _token(server, {**client, "client_secret": rotated["client_secret"]}).status_code == 200
    assert sum(1 for s in rotated["secrets"] if s["active"]) == 2


def test_secrets_are_generated_with_a_scannable_prefix_and_never_shown_again(server: LiveServer) -> None:
    client = server.create_client(audiences=[API])
    secret = client["client_secret"]
    assert secret.startswith("ost_cs_")
    assert len(base64.urlsafe_b64decode(secret[7:] + "==")) >= 32
    with server.admin() as admin:
        shown = admin.get(f"/clients/{client['client_id']}").text
        listed = admin.get("/clients").text
    assert secret not in shown and secret not in listed
    assert "hash" not in shown


def test_discovery_documents_advertise_what_is_implemented(server: LiveServer) -> None:
    for path in ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"):
        meta = httpx.get(server.base_url + path).json()
        assert meta["issuer"] == server.issuer
        assert meta["token_endpoint"] == server.issuer + "/token"
        assert meta["jwks_uri"] == server.issuer + "/jwks"
        assert meta["introspection_endpoint"] == server.issuer + "/introspect"
        assert meta["revocation_endpoint"] == server.issuer + "/revoke"
        assert "client_credentials" in meta["grant_types_supported"]
        assert "password" not in meta["grant_types_supported"]
        assert "implicit" not in meta["grant_types_supported"]
        assert "private_key_jwt" in meta["token_endpoint_auth_methods_supported"]
        for grant in meta["grant_types_supported"]:  # every advertised grant answers something other than unsupported
            r = httpx.post(server.base_url + "/token", data={"grant_type": grant}, auth=("x", "y"))
            assert r.json()["error"] != "unsupported_grant_type"


def test_health_and_readiness(server: LiveServer) -> None:
    assert httpx.get(server.base_url + "/healthz").json() == {"status": "ok"}
    r = httpx.get(server.base_url + "/readyz")
    assert r.status_code == 200 and r.json()["checks"] == {"database": True, "keys": True}


def test_metrics_count_tokens_by_grant(server: LiveServer) -> None:
    client = server.create_client(audiences=[API])
    assert _token(server, client).status_code == 200
    text = httpx.get(server.base_url + "/metrics").text
    assert 'ostiary_tokens_issued_total{grant_type="client_credentials"}' in text
    assert "ostiary_http_request_seconds_bucket" in text


def test_audience_parameter_is_refused_resource_is_honoured(server: LiveServer) -> None:
    """RFC 8707 ``resource`` names the API; RFC 8693's ``audience`` is refused, never silently ignored."""
    import jwt as pyjwt

    client = server.create_client(audiences=["https://a.example.com", "https://b.example.com"])
    auth = (client["client_id"], client["client_secret"])
    r = httpx.post(server.base_url + "/token", auth=auth,
                   data={"grant_type": "client_credentials", "audience": "https://b.example.com"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    assert "resource" in r.json()["error_description"]
    r = httpx.post(server.base_url + "/token", auth=auth,
                   data={"grant_type": "client_credentials", "resource": "https://b.example.com"})
    assert r.status_code == 200, r.text
    assert pyjwt.decode(r.json()["access_token"], options={"verify_signature": False})["aud"] in (
        "https://b.example.com", ["https://b.example.com"])
