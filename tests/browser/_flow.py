"""Helpers shared by the browser tests: registering a client for the relying party, the authorization URL,
the sign-in form, TOTP enrolment on the account page, the code exchange and id_token verification."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pyotp
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet

from ..support import LiveServer


@dataclass
class RelyingParty:
    """Records every request that reaches it (method, path, query or form fields) and answers with a page."""

    base_url: str = ""
    hits: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def callback(self) -> str:
        return self.base_url + "/callback"

    @property
    def bye(self) -> str:
        return self.base_url + "/bye"

    def record(self, method: str, path: str, params: dict[str, str]) -> None:
        with self.lock:
            self.hits.append((method, path, params))

    def last_hit(self, path: str = "/callback") -> tuple[str, dict[str, str]]:
        """(method, parameters) of the latest request to ``path``."""
        with self.lock:
            found = [(m, p) for m, pth, p in self.hits if pth == path]
        assert found, f"nothing reached the relying party at {path}: {self.hits}"
        return found[-1]

    def last(self, path: str = "/callback") -> dict[str, str]:
        return self.last_hit(path)[1]


def rp_handler(rp: RelyingParty) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self, method: str, params: dict[str, str]) -> None:
            path = urlsplit(self.path).path
            if path != "/favicon.ico":
                rp.record(method, path, params)
            body = (f'<!doctype html><title>RP</title><h1 id="rp-{path.strip("/") or "home"}">'
                    f'Relying party {path}</h1>').encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            self._answer("GET", dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True)))

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode()
            self._answer("POST", dict(parse_qsl(body, keep_blank_values=True)))

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    return Handler


SCOPE = "openid profile email offline_access"


def verify_id_token(server: LiveServer, token: str) -> dict[str, Any]:
    jwks = KeySet.import_key_set(httpx.get(server.base_url + "/jwks").json())
    return dict(jose_jwt.decode(token, jwks, algorithms=["ES256", "RS256", "EdDSA"]).claims)


def register(server: LiveServer, rp: RelyingParty, **spec: Any) -> dict[str, Any]:
    spec.setdefault("client_type", "public")
    spec.setdefault("grant_types", ["authorization_code", "refresh_token"])
    spec.setdefault("scopes", SCOPE.split())
    spec.setdefault("redirect_uris", [rp.callback])
    spec.setdefault("post_logout_redirect_uris", [rp.bye])
    return server.create_client(**spec)


def authorize_url(server: LiveServer, rp: RelyingParty, client: dict[str, Any], challenge: str,
                  **extra: str) -> tuple[str, dict[str, str]]:
    params = {"response_type": "code", "client_id": client["client_id"], "redirect_uri": rp.callback,
              "scope": SCOPE, "state": "st-" + secrets.token_hex(6), "nonce": "n-" + secrets.token_hex(6),
              "code_challenge": challenge, "code_challenge_method": "S256", **extra}
    return server.base_url + "/authorize?" + urlencode(params), params


def sign_in(page: Any, user: dict[str, Any]) -> None:
    page.fill("#username", user["username"])
    page.fill("#password", user["password"])
    page.click("#login-submit")


def enrol_totp(page: Any, server: LiveServer, user: dict[str, Any]) -> str:
    """Through the account page, as a person would; returns the shared secret."""
    page.goto(server.base_url + "/login")
    sign_in(page, user)
    page.wait_for_selector("#account-username")
    assert page.text_content("#account-username").strip() == user["username"]
    page.click("#totp-enroll-link")
    assert page.locator("#totp-qr svg").count() == 1
    secret = page.text_content("#totp-secret").strip()
    page.fill("#code", pyotp.TOTP(secret).now())
    page.click("#totp-enroll-submit")
    page.wait_for_selector("#recovery-codes")
    return str(secret)


def exchange(server: LiveServer, client: dict[str, Any], rp: RelyingParty, code: str,
             verifier: str) -> dict[str, Any]:
    r = httpx.post(server.base_url + "/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": rp.callback,
        "code_verifier": verifier, "client_id": client["client_id"]})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def jwk_thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638 §3 for an EC key (what ``cnf.jkt`` holds, RFC 9449 §6.1): SHA-256 of the required members in
    lexicographic order, no whitespace."""
    required = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(required.encode()).digest()).rstrip(b"=").decode()
