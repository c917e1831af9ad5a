"""A single-page app on its own origin, built on oidc-client-ts (the widely used browser OIDC library, its
browser build straight from npm, no bundler), signs a user in with Authorization Code + PKCE (no nonce: the
library sends none unless asked), calls userinfo, refreshes, and revokes both tokens at logout: every call
cross-origin from Chromium, so CORS has to be right on discovery, /token, /userinfo and /revoke."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from ..support import LiveServer
from ..web._codeflow import new_user
from ._flow import sign_in, verify_id_token

pytestmark = pytest.mark.browser

SPA_DIR = Path(__file__).resolve().parent.parent / "spa_node"
LIBRARY = SPA_DIR / "node_modules" / "oidc-client-ts" / "dist" / "browser" / "oidc-client-ts.min.js"


@pytest.fixture(scope="module")
def library() -> Path:
    """``npm install`` once (idempotent: only when node_modules is missing), as for tests/rp_node."""
    npm = shutil.which("npm")
    if not LIBRARY.is_file():
        if not npm:
            pytest.fail("npm is needed for the oidc-client-ts test (apt-get install nodejs npm)")
        subprocess.run([npm, "install", "--no-audit", "--no-fund"], cwd=SPA_DIR, check=True, capture_output=True,
                       timeout=300)
    return LIBRARY


@dataclass
class Spa:
    """The SPA's own static server on 127.0.0.1: index.html on / and /callback, app.js, the library, and a
    /config.js with what the test sets in ``config``."""

    origin: str = ""
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def redirect_uri(self) -> str:
        return self.origin + "/callback"


def _spa_handler(spa: Spa, library: Path) -> type[BaseHTTPRequestHandler]:
    files = {"/": SPA_DIR / "index.html", "/callback": SPA_DIR / "index.html", "/app.js": SPA_DIR / "app.js",
             "/oidc-client-ts.min.js": library}
    types = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8"}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            path = urlsplit(self.path).path
            if path == "/config.js":
                body, ctype = f"window.SPA_CONFIG = {json.dumps(spa.config)};\n".encode(), types[".js"]
            elif path in files:
                body, ctype = files[path].read_bytes(), types[files[path].suffix]
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    return Handler


@pytest.fixture(scope="module")
def spa(library: Path) -> Iterator[Spa]:
    app = Spa()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _spa_handler(app, library))
    app.origin = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield app
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def _result(page: Any, step: str) -> dict[str, Any]:
    """The JSON a step of app.js wrote, or the error it hit (then the test fails saying which)."""
    page.wait_for_selector(f"#{step}, #error", state="attached")
    if page.locator("#error").count():
        raise AssertionError(f"the SPA failed at {step}: {page.text_content('#error')}")
    out: dict[str, Any] = json.loads(page.text_content(f"#{step}") or "{}")
    return out


def _userinfo(live: LiveServer, access_token: str) -> int:
    return httpx.get(live.base_url + "/userinfo", headers={"Authorization": "Bearer " + access_token}).status_code


@pytest.mark.parametrize("nonce", [None, "n-" + secrets.token_hex(8)], ids=["without-nonce", "with-nonce"])
def test_an_oidc_client_ts_spa_signs_in_refreshes_and_revokes_at_logout(live: LiveServer, spa: Spa, page: Any,
                                                                        nonce: str | None) -> None:
    client = live.create_client(name="Photo SPA", client_type="public",
                                grant_types=["authorization_code", "refresh_token"],
                                scopes=["openid", "profile", "email", "offline_access"],
                                redirect_uris=[spa.redirect_uri], allowed_origins=[spa.origin])
    # a resource server that may introspect the SPA's access tokens (their audience is the userinfo endpoint)
    api = live.create_client(audiences=["https://api.example.com"], resource_audiences=[live.issuer + "/userinfo"])
    user = new_user(live, name="Spa User")
    spa.config = {"authority": live.issuer, "client_id": client["client_id"], "nonce": nonce}
    calls: list[tuple[str, str, int, str | None]] = []
    page.on("response", lambda r: calls.append((r.request.method, urlsplit(r.url).path, r.status,
                                                 r.headers.get("access-control-allow-origin")))
            if r.url.startswith(live.base_url) else None)

    page.goto(spa.origin + "/")
    page.wait_for_selector("#spa-ready")
    page.click("#login")
    page.wait_for_selector("#login-form, #error")  # the SPA shows an error it got back at its callback
    assert not page.locator("#error").count(), page.text_content("#error")
    assert page.url.startswith(live.base_url + "/authorize?") and "code_challenge_method=S256" in page.url
    assert ("nonce=" in page.url) is (nonce is not None)
    sign_in(page, user)
    page.wait_for_selector("#consent-form")
    assert page.text_content("#consent-client").strip() == "Photo SPA"
    page.click("#consent-allow")

    signed_in = _result(page, "signed-in")
    assert page.url.startswith(spa.redirect_uri)
    assert set(signed_in["scope"].split()) == {"openid", "profile", "email", "offline_access"}
    claims = verify_id_token(live, signed_in["id_token"])
    assert claims["sub"] == user["id"] and claims["aud"] == client["client_id"] and claims["iss"] == live.issuer
    if nonce is None:
        assert "nonce" not in claims
    else:
        assert claims["nonce"] == nonce  # and oidc-client-ts compared it with the one it kept
    profile = signed_in["profile"]
    assert profile["sub"] == user["id"] and profile["name"] == "Spa User" and profile["email"] == user["email"]
    first = signed_in

    page.click("#userinfo")
    info = _result(page, "userinfo-result")
    assert info["status"] == 200 and info["body"]["sub"] == user["id"] and info["body"]["email"] == user["email"]

    page.click("#refresh")
    refreshed = _result(page, "refreshed")
    assert refreshed["access_token"] != first["access_token"]
    assert refreshed["refresh_token"] != first["refresh_token"]  # rotated (RFC 9700 §4.14.2)
    assert refreshed["profile"]["sub"] == user["id"]
    api_auth = (api["client_id"], api["client_secret"])
    active = httpx.post(live.base_url + "/introspect", auth=api_auth, data={"token": refreshed["access_token"]})
    assert active.json()["active"] is True and active.json()["client_id"] == client["client_id"]
    assert _userinfo(live, refreshed["access_token"]) == 200

    page.click("#logout")
    assert _result(page, "revoked") == {"revoked": True}
    revokes = [c for c in calls if c[1] == "/revoke" and c[0] == "POST"]
    assert [c[2] for c in revokes] == [200, 200] and {c[3] for c in revokes} == {spa.origin}
    # both are dead: the resource server sees an inactive token, userinfo refuses it, the refresh token is spent
    gone = httpx.post(live.base_url + "/introspect", auth=api_auth, data={"token": refreshed["access_token"]})
    assert gone.status_code == 200 and gone.content == b'{"active":false}'
    assert _userinfo(live, refreshed["access_token"]) == 401
    r = httpx.post(live.base_url + "/token", data={"grant_type": "refresh_token", "client_id": client["client_id"],
                                                   "refresh_token": refreshed["refresh_token"]})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"

    # every call went cross-origin from the SPA's origin and was readable there
    paths = {c[1] for c in calls if c[0] in ("GET", "POST")}
    assert {"/.well-known/openid-configuration", "/token", "/userinfo", "/revoke"} <= paths
    for method, path, status, allow in calls:
        if path in ("/token", "/userinfo", "/revoke") and method != "OPTIONS":
            assert allow == spa.origin, (method, path, status)
        if path.startswith("/.well-known/"):
            assert allow == "*"
