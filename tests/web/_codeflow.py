"""Driving the sign-in, consent and token pages over plain HTTP, as a browser would (httpx, no redirects
followed to the client)."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from ..support import LiveServer

REDIRECT = "http://127.0.0.1:9/callback"


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action"), "id": a.get("id"), "fields": {}})
        elif tag == "input" and self.forms and a.get("name") and a.get("type") == "hidden":
            self.forms[-1]["fields"][a["name"]] = a.get("value") or ""


def forms(html: str) -> dict[str, dict[str, Any]]:
    p = _Forms()
    p.feed(html)
    return {f["id"] or f["action"]: f for f in p.forms}


def approve_device(base_url: str, user_code: str, user: dict[str, Any]) -> None:
    """A person approves a device code (RFC 8628 §3.3) in a fresh browser session: enters the code, signs in,
    confirms."""
    with httpx.Client(base_url=base_url, timeout=30) as b:
        page = b.get("/device", params={"user_code": user_code})
        f = forms(page.text)["device-form"]
        r = b.post("/device", data={**f["fields"], "user_code": user_code})
        f = forms(r.text)["login-form"]
        r = b.post("/device/login", data={**f["fields"], "username": user["username"], "password": user["password"]})
        f = forms(r.text)["device-confirm-form"]
        r = b.post("/device/confirm", data={**f["fields"], "decision": "approve"})
        assert 'data-outcome="approved"' in r.text, r.text[:2000]


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def query(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


@dataclass
class Browser:
    server: LiveServer
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.server.base_url, follow_redirects=False, timeout=30,
                                 verify=self.server.verify)

    def close(self) -> None:
        self.http.close()

    def authorize(self, **params: str) -> httpx.Response:
        return self.http.get("/authorize?" + urlencode(params))

    def submit(self, resp: httpx.Response, form_id: str, **fields: str) -> httpx.Response:
        form = forms(resp.text)[form_id]
        return self.http.post(form["action"], data={**form["fields"], **fields})

    def login(self, resp: httpx.Response, username: str, password: str) -> httpx.Response:
        return self.submit(resp, "login-form", username=username, password=password)


def new_user(server: LiveServer, password: str = "correct horse battery", **spec: Any) -> dict[str, Any]:
    spec.setdefault("username", "u" + secrets.token_hex(5))
    spec.setdefault("email", spec["username"] + "@example.com")
    spec.setdefault("name", "Test User")
    with server.admin() as c:
        r = c.post("/users", json={**spec, "password": password})
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    out["password"] = password
    return out


def web_client(server: LiveServer, **spec: Any) -> dict[str, Any]:
    spec.setdefault("client_type", "public")
    spec.setdefault("grant_types", ["authorization_code", "refresh_token"])
    spec.setdefault("scopes", ["openid", "profile", "email", "offline_access"])
    spec.setdefault("redirect_uris", [REDIRECT])
    return server.create_client(**spec)


def auth_params(client: dict[str, Any], challenge: str, **extra: str) -> dict[str, str]:
    p = {"response_type": "code", "client_id": client["client_id"], "redirect_uri": REDIRECT,
         "scope": "openid profile email offline_access", "state": "st-" + secrets.token_hex(4),
         "nonce": "n-" + secrets.token_hex(4), "code_challenge": challenge, "code_challenge_method": "S256"}
    p.update(extra)
    return p


def get_code(b: Browser, client: dict[str, Any], user: dict[str, Any], **extra: str) -> tuple[str, str, dict[str, str]]:
    """Sign in and consent; returns (code, verifier, params)."""
    verifier, challenge = pkce()
    params = auth_params(client, challenge, **extra)
    r = b.authorize(**params)
    if r.status_code == 200 and "login-form" in forms(r.text):
        r = b.login(r, user["username"], user["password"])
    if r.status_code == 200 and "consent-form" in forms(r.text):
        r = b.submit(r, "consent-form", decision="allow")
    assert r.status_code in (302, 303), r.text[:2000]
    q = query(r.headers["location"])
    assert "code" in q, q
    return q["code"], verifier, params


def exchange(server: LiveServer, client: dict[str, Any], code: str, verifier: str, **extra: str) -> httpx.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier,
            "client_id": client["client_id"], **extra}
    return httpx.post(server.base_url + "/token", data=data)


def refresh(server: LiveServer, client: dict[str, Any], token: str, **extra: str) -> httpx.Response:
    return httpx.post(server.base_url + "/token", data={"grant_type": "refresh_token", "refresh_token": token,
                                                        "client_id": client["client_id"], **extra})


CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
