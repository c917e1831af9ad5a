"""RFC 7662 introspection and RFC 7009 revocation over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ..support import LiveServer
from ._codeflow import REDIRECT, Browser, exchange, get_code, new_user, refresh, web_client

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


# ---------------------------------------------------------------- public clients (RFC 7009 §2.1, §5)

@pytest.fixture
def browser(server: LiveServer) -> Iterator[Browser]:
    b = Browser(server)
    yield b
    b.close()


def _signed_in(server: LiveServer, browser: Browser, client: dict[str, Any]) -> dict[str, Any]:
    """Tokens from the code flow for a new user of ``client`` (public)."""
    code, verifier, _ = get_code(browser, client, new_user(server))
    r = exchange(server, client, code, verifier)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _public_revoke(server: LiveServer, client: dict[str, Any], token: str, hint: str | None = None) -> httpx.Response:
    data = {"token": token, "client_id": client["client_id"]}
    if hint:
        data["token_type_hint"] = hint
    return httpx.post(server.base_url + "/revoke", data=data)


def _userinfo_status(server: LiveServer, access_token: str) -> int:
    return httpx.get(server.base_url + "/userinfo", headers={"Authorization": "Bearer " + access_token}).status_code


@pytest.mark.parametrize("hint", [None, "access_token", "refresh_token"])
def test_a_public_client_revokes_its_access_and_refresh_tokens_at_logout(server: LiveServer, browser: Browser,
                                                                         hint: str | None) -> None:
    """An SPA's logout revokes both tokens it holds, identified by client_id alone; a wrong hint does not
    matter (RFC 7009 §2.1: the server searches on)."""
    spa = web_client(server)
    tokens = _signed_in(server, browser, spa)
    assert _userinfo_status(server, tokens["access_token"]) == 200
    r = _public_revoke(server, spa, tokens["access_token"], hint)
    assert r.status_code == 200 and r.content == b"", r.text
    assert r.headers["cache-control"] == "no-store"
    assert _userinfo_status(server, tokens["access_token"]) == 401
    # the access token alone: the refresh token lives on until it is revoked too
    fresh = refresh(server, spa, tokens["refresh_token"])
    assert fresh.status_code == 200, fresh.text
    rt = fresh.json()["refresh_token"]
    r = _public_revoke(server, spa, rt, hint)
    assert r.status_code == 200 and r.content == b"", r.text
    assert refresh(server, spa, rt).json()["error"] == "invalid_grant"
    assert _userinfo_status(server, fresh.json()["access_token"]) == 401  # the family went with it


def test_a_public_client_cannot_revoke_another_clients_tokens(server: LiveServer, browser: Browser) -> None:
    """Another client's token: a silent 200 and nothing happens (RFC 7009 §2.2 gives no hint)."""
    owner = web_client(server)
    other = web_client(server)
    tokens = _signed_in(server, browser, owner)
    for token in (tokens["access_token"], tokens["refresh_token"]):
        r = _public_revoke(server, other, token)
        assert r.status_code == 200 and r.content == b"", r.text
    assert _userinfo_status(server, tokens["access_token"]) == 200
    assert refresh(server, owner, tokens["refresh_token"]).status_code == 200


def test_a_confidential_client_cannot_revoke_by_client_id_alone(server: LiveServer) -> None:
    owner = server.create_client(audiences=[API])
    token = _client_token(server, owner)
    r = httpx.post(server.base_url + "/revoke", data={"token": token, "client_id": owner["client_id"]})
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    assert _introspect(server, owner, token)["active"] is True


def test_inactive_answers_are_byte_identical(server: LiveServer, browser: Browser) -> None:
    """Unknown, revoked and rotated-out tokens look the same to the introspecting client: nothing tells them
    apart (RFC 7662 §2.2), whether a public client or the client itself revoked them."""
    app = web_client(server, client_type="confidential")
    auth = (app["client_id"], app["client_secret"])
    code, verifier, _ = get_code(browser, app, new_user(server))
    tokens = httpx.post(server.base_url + "/token", auth=auth, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier}).json()
    rotated = httpx.post(server.base_url + "/token", auth=auth, data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}).json()
    code, verifier, _ = get_code(browser, app, new_user(server))
    revoked = httpx.post(server.base_url + "/token", auth=auth, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier}).json()
    assert httpx.post(server.base_url + "/revoke", auth=auth, data={"token": revoked["refresh_token"]}).status_code == 200

    def answer(token: str) -> tuple[int, bytes, str]:
        r = httpx.post(server.base_url + "/introspect", auth=auth, data={"token": token})
        return r.status_code, r.content, r.headers["content-type"]

    assert answer(rotated["refresh_token"])[1] != answer(tokens["refresh_token"])[1]  # the live one is active
    inactive = {answer(t) for t in (
        "ost_rt_" + "A" * 43, "not-a-token",  # unknown
        revoked["refresh_token"], revoked["access_token"],  # revoked (the access token with its family)
        tokens["refresh_token"],  # rotated out
    )}
    assert inactive == {(200, b'{"active":false}', "application/json")}
