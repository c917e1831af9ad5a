"""CORS over HTTP, on SQLite and PostgreSQL: which endpoint answers which origins.

* discovery and JWKS are public documents: ``Access-Control-Allow-Origin: *`` for any origin, never credentials;
* /token, /userinfo and /revoke: only origins registered on some client (``allowed_origins``), echoed;
* /authorize, /introspect and the pages: no CORS headers at all, whatever the origin.
"""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest

from ..support import LiveServer
from ._codeflow import web_client

PUBLIC = ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server", "/jwks"]
REGISTERED_ONLY = ["/token", "/userinfo", "/revoke"]
NEVER = ["/authorize", "/introspect", "/login", "/account", "/admin/api/clients"]


def _origin() -> str:
    return f"https://spa-{secrets.token_hex(4)}.example.com"


@pytest.fixture
def spa_origin(server: LiveServer) -> str:
    origin = _origin()
    web_client(server, allowed_origins=[origin])
    return origin


def _preflight(server: LiveServer, path: str, origin: str, method: str = "POST") -> httpx.Response:
    return httpx.options(server.base_url + path, headers={
        "Origin": origin, "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type"})


def _acao(r: httpx.Response) -> str | None:
    return r.headers.get("access-control-allow-origin")


@pytest.mark.parametrize("path", PUBLIC)
@pytest.mark.parametrize("who", ["registered", "unregistered", "none"])
def test_public_documents_are_readable_from_any_origin(server: LiveServer, spa_origin: str, path: str,
                                                       who: str) -> None:
    headers = {"registered": {"Origin": spa_origin}, "unregistered": {"Origin": _origin()}, "none": {}}[who]
    r = httpx.get(server.base_url + path, headers=headers)
    assert r.status_code == 200 and r.json()
    assert _acao(r) == "*"
    assert "access-control-allow-credentials" not in r.headers


@pytest.mark.parametrize("path", PUBLIC)
def test_public_documents_answer_any_preflight_with_a_wildcard(server: LiveServer, path: str) -> None:
    r = _preflight(server, path, _origin(), "GET")
    assert r.status_code == 204, r.text
    assert _acao(r) == "*" and "GET" in r.headers["access-control-allow-methods"]
    assert r.headers["access-control-allow-headers"] == "*"  # whatever headers a library adds
    assert "access-control-allow-credentials" not in r.headers


@pytest.mark.parametrize("path", REGISTERED_ONLY)
def test_registered_origins_only_on_token_userinfo_and_revoke(server: LiveServer, spa_origin: str,
                                                              path: str) -> None:
    r = _preflight(server, path, spa_origin)
    assert r.status_code == 204 and _acao(r) == spa_origin
    assert "POST" in r.headers["access-control-allow-methods"]
    assert "authorization" in r.headers["access-control-allow-headers"].lower()
    assert "Origin" in r.headers["vary"]
    # the request itself (an error is fine: the browser must be able to read it)
    method = "GET" if path == "/userinfo" else "POST"
    r = httpx.request(method, server.base_url + path, headers={"Origin": spa_origin})
    assert r.status_code in (400, 401) and _acao(r) == spa_origin and "Origin" in r.headers["vary"]
    assert "access-control-allow-credentials" not in r.headers

    stranger = _origin()
    r = _preflight(server, path, stranger)
    assert r.status_code == 403 and _acao(r) is None
    r = httpx.request(method, server.base_url + path, headers={"Origin": stranger})
    assert _acao(r) is None and "Origin" in r.headers["vary"]


@pytest.mark.parametrize("path", NEVER)
def test_no_cors_on_authorize_introspect_and_the_pages(server: LiveServer, spa_origin: str, path: str) -> None:
    for origin in (spa_origin, _origin()):
        for r in (_preflight(server, path, origin), _preflight(server, path, origin, "GET"),
                  httpx.get(server.base_url + path, headers={"Origin": origin}),
                  httpx.post(server.base_url + path, headers={"Origin": origin}, data={"token": "x"})):
            assert not any(k.lower().startswith("access-control-") for k in r.headers), (path, r.headers)


def test_revoke_from_a_registered_origin_is_readable(server: LiveServer, spa_origin: str) -> None:
    """An SPA's logout: the POST of a public client's client_id and token, read back by the browser."""
    client: dict[str, Any] = web_client(server, allowed_origins=[spa_origin])
    r = httpx.post(server.base_url + "/revoke", headers={"Origin": spa_origin},
                   data={"token": "ost_rt_unknown", "client_id": client["client_id"]})
    assert r.status_code == 200 and _acao(r) == spa_origin
