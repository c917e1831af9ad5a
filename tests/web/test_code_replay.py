"""A replayed authorization code (RFC 6749 §4.1.2) revokes the tokens issued from it only when the replay proves
it comes from the client: client authentication, the code's ``redirect_uri`` and the right PKCE
``code_verifier``. Anything less is a plain ``invalid_grant`` and the user's tokens keep working; otherwise
whoever saw a spent code could sign the user out of the application at will."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ..support import LiveServer
from ._codeflow import REDIRECT, Browser, exchange, get_code, new_user, pkce, refresh, web_client


@pytest.fixture
def browser(server: LiveServer) -> Iterator[Browser]:
    b = Browser(server)
    yield b
    b.close()


def _userinfo(server: LiveServer, access_token: str) -> int:
    return httpx.get(server.base_url + "/userinfo", headers={"Authorization": f"Bearer {access_token}"}).status_code


def _replay(server: LiveServer, form: dict[str, str], auth: tuple[str, str] | None = None) -> httpx.Response:
    return httpx.post(server.base_url + "/token", data={"grant_type": "authorization_code", **form}, auth=auth)


def _still_works(server: LiveServer, client: dict[str, Any], tokens: dict[str, Any],
                 auth: tuple[str, str] | None = None) -> dict[str, Any]:
    """The victim's access token is accepted and its refresh token rotates; returns the new tokens."""
    assert _userinfo(server, tokens["access_token"]) == 200
    if auth is None:
        r = refresh(server, client, tokens["refresh_token"])
    else:
        r = httpx.post(server.base_url + "/token", auth=auth,
                       data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def test_public_client_replay_without_the_verifier_revokes_nothing(server: LiveServer, browser: Browser) -> None:
    client = web_client(server)
    user = new_user(server)
    code, verifier, _ = get_code(browser, client, user)
    first = exchange(server, client, code, verifier)
    assert first.status_code == 200, first.text
    tokens = first.json()
    cid = client["client_id"]

    attempts = [
        {"code": code, "redirect_uri": REDIRECT, "client_id": cid},  # no code_verifier
        {"code": code, "redirect_uri": REDIRECT, "client_id": cid, "code_verifier": pkce()[0]},  # wrong one
        {"code": code, "redirect_uri": REDIRECT, "client_id": cid, "code_verifier": "short"},  # malformed
        {"code": code, "client_id": cid, "code_verifier": verifier},  # no redirect_uri
        {"code": code, "redirect_uri": REDIRECT + "x", "client_id": cid, "code_verifier": verifier},
    ]
    for form in attempts:
        r = _replay(server, form)
        assert r.status_code == 400, (form, r.text)
        assert r.json()["error"] == "invalid_grant"
        assert "revoked" not in r.json().get("error_description", "")
    tokens = _still_works(server, client, tokens)

    # the client itself replaying (verifier and redirect_uri right): the code leaked, the family is revoked
    r = exchange(server, client, code, verifier)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    assert "revoked" in r.json()["error_description"]
    assert _userinfo(server, tokens["access_token"]) == 401
    assert refresh(server, client, tokens["refresh_token"]).json()["error"] == "invalid_grant"


def test_confidential_client_replay_without_its_credentials_revokes_nothing(server: LiveServer,
                                                                            browser: Browser) -> None:
    client = web_client(server, client_type="confidential")
    other = web_client(server, client_type="confidential")
    auth = (client["client_id"], client["client_secret"])
    user = new_user(server)
    code, verifier, _ = get_code(browser, client, user)
    full = {"code": code, "redirect_uri": REDIRECT, "code_verifier": verifier}
    first = _replay(server, full, auth)
    assert first.status_code == 200, first.text
    tokens = first.json()

    no_auth = _replay(server, full)
    assert no_auth.status_code == 401 and no_auth.json()["error"] == "invalid_client"
    only_id = _replay(server, {**full, "client_id": client["client_id"]})
    assert only_id.status_code == 401 and only_id.json()["error"] == "invalid_client"
    wrong_secret = _replay(server, full, (client["client_id"], "ost_cs_wrong"))
    assert wrong_secret.status_code == 401 and wrong_secret.json()["error"] == "invalid_client"
    someone_else = _replay(server, full, (other["client_id"], other["client_secret"]))
    assert someone_else.status_code == 400 and someone_else.json()["error"] == "invalid_grant"
    no_verifier = _replay(server, {"code": code, "redirect_uri": REDIRECT}, auth)
    assert no_verifier.status_code == 400 and no_verifier.json()["error"] == "invalid_grant"
    tokens = _still_works(server, client, tokens, auth)

    proven = _replay(server, full, auth)
    assert proven.status_code == 400 and "revoked" in proven.json()["error_description"]
    assert _userinfo(server, tokens["access_token"]) == 401
