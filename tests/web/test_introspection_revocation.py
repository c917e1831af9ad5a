"""RFC 7662 introspection and RFC 7009 revocation over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import httpx

from ..support import LiveServer

API = "https://api.example.com"


def _client_token(server: LiveServer, client: dict) -> str:
    r = httpx.post(server.base_url + "/token", data={"grant_type": "client_credentials"},
                   auth=(client["client_id"], client["client_secret"]))
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def _introspect(server: LiveServer, client: dict, token: str) -> dict:
    r = httpx.post(server.base_url + "/introspect", data={"token": token},
                   auth=(client["client_id"], client["client_secret"]))
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    return dict(r.json())


def test_a_client_learns_only_about_its_own_tokens(server: LiveServer) -> None:
    owner = server.create_client(audiences=[API], scopes=["read"])
    other = server.create_client(audiences=[API])
    token = _client_token(server, owner)
    info = _introspect(server, owner, token)
    assert info["active"] is True
    assert info["client_id"] == owner["client_id"] and info["sub"] == owner["client_id"]
    assert info["scope"] == "read" and info["aud"] == API and info["iss"] == server.issuer
    assert info["token_type"] == "Bearer" and info["exp"] > info["iat"]
    assert _introspect(server, other, token) == {"active": False}


def test_the_resource_server_for_the_audience_may_introspect(server: LiveServer) -> None:
    owner = server.create_client(audiences=[API])
    api = server.create_client(audiences=["https://elsewhere.example.com"], resource_audiences=[API])
    token = _client_token(server, owner)
    assert _introspect(server, api, token)["active"] is True


def test_garbage_and_foreign_tokens_are_inactive(server: LiveServer) -> None:
    owner = server.create_client(audiences=[API])
    for token in ("not-a-token", "a.b.c", _client_token(server, owner)[:-4] + "AAAA"):
        assert _introspect(server, owner, token) == {"active": False}


def test_revoked_jwt_access_token_reports_inactive(server: LiveServer) -> None:
    owner = server.create_client(audiences=[API])
    token = _client_token(server, owner)
    r = httpx.post(server.base_url + "/revoke", data={"token": token, "token_type_hint": "access_token"},
                   auth=(owner["client_id"], owner["client_secret"]))
    assert r.status_code == 200 and r.content == b""
    assert _introspect(server, owner, token) == {"active": False}


def test_a_client_cannot_revoke_another_clients_token(server: LiveServer) -> None:
    owner = server.create_client(audiences=[API])
    other = server.create_client(audiences=[API])
    token = _client_token(server, owner)
    r = httpx.post(server.base_url + "/revoke", data={"token": token}, auth=(other["client_id"], other["client_secret"]))
    assert r.status_code == 200  # RFC 7009 §2.2: no hint whether the token exists
    assert _introspect(server, owner, token)["active"] is True


def test_revoking_an_unknown_token_is_200(server: LiveServer) -> None:
    owner = server.create_client(audiences=[API])
    r = httpx.post(server.base_url + "/revoke", data={"token": "nothing-like-this"},
                   auth=(owner["client_id"], owner["client_secret"]))
    assert r.status_code == 200


def test_introspection_and_revocation_require_client_authentication(server: LiveServer) -> None:
    owner = server.create_client(audiences=[API])
    token = _client_token(server, owner)
    for path in ("/introspect", "/revoke"):
        r = httpx.post(server.base_url + path, data={"token": token})
        assert r.status_code == 401 and r.json()["error"] == "invalid_client"
        r = httpx.post(server.base_url + path, data={"token": token}, auth=(owner["client_id"], "wrong"))
        assert r.status_code == 401 and r.json()["error"] == "invalid_client"
