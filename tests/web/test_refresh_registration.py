"""A refresh mints only what the client's *current* registration allows: scopes and audiences the administrator
removed since the grant are not minted again (on SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator

import jwt
import pytest

from ..support import LiveServer
from ._codeflow import Browser, exchange, get_code, new_user, refresh, web_client

A, B = "https://a.example.com", "https://b.example.com"


@pytest.fixture
def browser(server: LiveServer) -> Iterator[Browser]:
    b = Browser(server)
    yield b
    b.close()


def _aud(access_token: str) -> list[str]:
    aud = jwt.decode(access_token, options={"verify_signature": False})["aud"]
    return [aud] if isinstance(aud, str) else list(aud)


def test_refresh_drops_scopes_and_audiences_removed_from_the_client(server: LiveServer, browser: Browser) -> None:
    client = web_client(server, audiences=[A, B])
    user = new_user(server)
    code, verifier, _ = get_code(browser, client, user, resource=B)
    first = exchange(server, client, code, verifier).json()
    assert "email" in first["scope"].split() and B in _aud(first["access_token"])

    with server.admin() as admin:
        r = admin.patch(f"/clients/{client['client_id']}",
                        json={"scopes": ["openid", "profile", "offline_access"], "audiences": [A]})
        assert r.status_code == 200, r.text

    second = refresh(server, client, first["refresh_token"])
    assert second.status_code == 200, second.text
    body = second.json()
    assert body["scope"].split() == ["offline_access", "openid", "profile"]
    assert _aud(body["access_token"]) == [server.issuer + "/userinfo"]  # B is gone; userinfo stays with openid
    # asking for the removed scope explicitly is refused, not granted
    asked = refresh(server, client, body["refresh_token"], scope="openid email")
    assert asked.status_code == 400 and asked.json()["error"] == "invalid_scope"
    # the successor refresh token carries the narrowed grant only
    third = refresh(server, client, body["refresh_token"])
    assert third.status_code == 200 and "email" not in third.json()["scope"].split()

    with server.admin() as admin:  # nothing of the grant left: the refresh is refused
        assert admin.patch(f"/clients/{client['client_id']}", json={"scopes": ["profile"]}).status_code == 200
    gone = refresh(server, client, third.json()["refresh_token"])
    assert gone.status_code == 400 and gone.json()["error"] == "invalid_grant"
