"""The web app: a backend-for-frontend that signs people in with Authorization Code + PKCE + OpenID Connect.

The browser never sees a token. It holds one cookie, ``webapp_session``: a random id (HttpOnly,
SameSite=Lax) naming a server-side session. The tokens (access, refresh, id token) stay in this process
and are used only by the server, here to call the ``orders`` API on the person's behalf.

Sign-in, step by step:

1. ``/login`` makes a fresh ``state``, ``nonce`` and PKCE ``code_verifier`` (RFC 7636, S256 only), keeps
   them in the session, and redirects to the issuer's ``authorization_endpoint``.
2. ``/callback`` checks ``state`` (single use) and ``iss`` (RFC 9207, against mix-up attacks), then
   exchanges the code at the ``token_endpoint`` as a confidential client (``client_secret_basic``) with
   the ``code_verifier``.
3. It verifies the id token (OpenID Connect Core §3.1.3.7): signature with a key from the issuer's JWKS
   (``ostiary.resource.JwksCache``: discovery, caching, refetch on rotation), ``iss``, ``aud`` (this
   client), ``exp``/``iat``, the ``nonce`` it sent and ``at_hash``; reads the person's name from the
   userinfo endpoint (whose ``sub`` must match). Only then is a *new* session created (the pre-login
   session id is dropped, so a planted cookie cannot be promoted: no session fixation).

``/orders`` calls the orders API with the session's access token (refreshed with the refresh token when
it is about to expire); ``/logout`` (POST) drops the session, revokes the refresh token and signs out at
the issuer (RP-initiated logout with ``id_token_hint``).

    WEBAPP_CLIENT_SECRET=… python webapp.py --issuer http://127.0.0.1:8000 --client-id webapp \\
        --base-url http://127.0.0.1:9300 --orders-url http://127.0.0.1:9301 --port 9300
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import jinja2
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from ostiary.client import adiscover
from ostiary.core.jose import JoseError, decode_unverified, verify_jwt
from ostiary.resource import JwksCache

COOKIE = "webapp_session"
SCOPE = "openid profile offline_access orders:read inventory:read"
SESSION_IDLE = 8 * 3600  # seconds
PENDING_LOGINS = 5  # sign-ins started in other tabs that may still come back

PAGES = {
    "base.html": """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{% block title %}{% endblock %} · Acme Shop</title></head>
<body>
<header><a href="/" id="home">Acme Shop</a>
{% if user %} · signed in as <strong id="user-name">{{ user }}</strong>
<form method="post" action="/logout" id="logout-form">
<button type="submit" id="logout">Sign out</button></form>{% endif %}</header>
<main>{% block content %}{% endblock %}</main>
</body></html>""",
    "home.html": """{% extends "base.html" %}{% block title %}Home{% endblock %}{% block content %}
<h1 id="home-title">Acme Shop</h1>
{% if user %}<p><a href="/orders" id="orders-link">Your orders</a></p>
{% else %}<p id="signed-out">You are signed out.</p><p><a href="/login" id="sign-in">Sign in</a></p>{% endif %}
{% endblock %}""",
    "orders.html": """{% extends "base.html" %}{% block title %}Your orders{% endblock %}{% block content %}
<h1 id="orders-title">Your orders</h1>
<ul id="orders">
{% for o in orders %}<li id="{{ o.id }}" data-order-id="{{ o.id }}" data-sku="{{ o.sku }}">
<span class="item">{{ o.item }}</span>, quantity <span class="quantity">{{ o.quantity }}</span>:
<span class="stock" data-stock="{{ o.stock }}" data-for="{{ o.inventory_saw.sub }}"
data-actor="{{ o.inventory_saw.act.sub }}">{{ o.stock }} in stock</span>
(<span class="warehouse">{{ o.warehouse }}</span>)</li>
{% endfor %}</ul>
<p class="muted">Fetched by this server from the orders service, which asked the inventory service for stock
on your behalf, with a token it exchanged yours for.</p>
{% endblock %}""",
    "error.html": """{% extends "base.html" %}{% block title %}Error{% endblock %}{% block content %}
<h1 id="error-title">Sign-in failed</h1><p id="error-description">{{ message }}</p>
<p><a href="/login" id="sign-in">Try again</a></p>
{% endblock %}""",
}
_templates = jinja2.Environment(loader=jinja2.DictLoader(PAGES), autoescape=True)


@dataclass
class Session:
    """Server-side session state. Only its random id goes to the browser."""

    last_seen: float = field(default_factory=time.time)
    pending: dict[str, dict[str, str]] = field(default_factory=dict)  # state → nonce, verifier, next
    user: str | None = None
    subject: str | None = None
    access_token: str | None = field(default=None, repr=False)
    access_expires_at: float = 0.0
    refresh_token: str | None = field(default=None, repr=False)
    id_token: str | None = field(default=None, repr=False)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def s256(verifier: str) -> str:
    """RFC 7636 §4.2: BASE64URL(SHA256(ASCII(code_verifier)))."""
    return _b64(hashlib.sha256(verifier.encode("ascii")).digest())


def _at_hash(access_token: str) -> str:
    """OpenID Connect Core §3.1.3.6 for SHA-256 algorithms (ES256, RS256; EdDSA uses SHA-512)."""
    return _b64(hashlib.sha256(access_token.encode("ascii")).digest()[:16])


class WebApp:
    def __init__(self, issuer: str, client_id: str, client_secret: str, base_url: str, orders_url: str) -> None:
        self.issuer = issuer
        self.client_id = client_id
        self._secret = client_secret
        self.base_url = base_url.rstrip("/")
        self.redirect_uri = self.base_url + "/callback"
        self.orders_url = orders_url.rstrip("/")
        self.secure_cookie = urlsplit(self.base_url).scheme == "https"
        self.sessions: dict[str, Session] = {}  # in memory: use Redis or a database in production
        self.http = httpx.AsyncClient(timeout=10)
        self.jwks = JwksCache(issuer, algorithms=("ES256", "RS256", "EdDSA"), clock=_SystemClock(),
                              async_http_client=self.http)
        self._metadata: dict[str, Any] = {}

    async def metadata(self) -> dict[str, Any]:
        """The issuer's metadata (OpenID Connect Discovery; its ``issuer`` must be the pinned one), fetched once."""
        if not self._metadata:
            self._metadata = dict((await adiscover(self.issuer, self.http)).raw)
        return self._metadata

    # -- sessions --------------------------------------------------------------------------------

    def session(self, request: Request) -> Session | None:
        sid = request.cookies.get(COOKIE)
        session = self.sessions.get(sid) if sid else None
        if session is None:
            return None
        if time.time() - session.last_seen > SESSION_IDLE:
            self.sessions.pop(sid or "", None)
            return None
        session.last_seen = time.time()
        return session

    def new_session(self, response: Response, session: Session) -> None:
        sid = secrets.token_urlsafe(32)
        self.sessions[sid] = session
        response.set_cookie(COOKIE, sid, httponly=True, samesite="lax", secure=self.secure_cookie, path="/")

    def drop_session(self, request: Request) -> Session | None:
        return self.sessions.pop(request.cookies.get(COOKIE) or "", None)

    # -- pages -----------------------------------------------------------------------------------

    def page(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        response = HTMLResponse(_templates.get_template(name).render(**context), status_code=status)
        response.headers["Cache-Control"] = "no-store"
        response.headers["Content-Security-Policy"] = (
            f"default-src 'none'; form-action 'self' {_origin(self.issuer)}; "
            "frame-ancestors 'none'; base-uri 'none'")
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    async def home(self, request: Request) -> Response:
        session = self.session(request)
        return self.page("home.html", user=session.user if session else None)

    async def login(self, request: Request) -> Response:
        """Start Authorization Code + PKCE (RFC 9700 §2.1.1: S256; state and nonce single use)."""
        session = self.session(request)
        fresh = session is None
        session = session or Session()
        state, nonce, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(48)
        nxt = request.query_params.get("next", "/orders")
        session.pending[state] = {"nonce": nonce, "verifier": verifier,
                                  "next": nxt if nxt.startswith("/") and not nxt.startswith("//") else "/orders"}
        while len(session.pending) > PENDING_LOGINS:
            session.pending.pop(next(iter(session.pending)))
        query = urlencode({"response_type": "code", "client_id": self.client_id, "redirect_uri": self.redirect_uri,
                           "scope": SCOPE, "state": state, "nonce": nonce, "code_challenge": s256(verifier),
                           "code_challenge_method": "S256"})
        response = RedirectResponse(f"{(await self.metadata())['authorization_endpoint']}?{query}", status_code=303)
        if fresh:
            self.new_session(response, session)
        return response

    async def callback(self, request: Request) -> Response:
        params = request.query_params
        session = self.session(request)
        pending = session.pending.pop(params.get("state", ""), None) if session else None
        if session is None or pending is None:
            return self.page("error.html", 400, user=None, message="This sign-in was not started here, or "
                             "was already used. Please sign in again.")
        if params.get("iss") != self.issuer:  # RFC 9207 §2.4
            return self.page("error.html", 400, user=None, message="The answer came from an unexpected issuer.")
        if "error" in params or "code" not in params:
            return self.page("error.html", 400, user=None,
                             message=f"The sign-in was not completed ({params.get('error', 'no code')}).")
        token_endpoint = (await self.metadata())["token_endpoint"]
        r = await self.http.post(token_endpoint, auth=(self.client_id, self._secret), data={
            "grant_type": "authorization_code", "code": params["code"], "redirect_uri": self.redirect_uri,
            "code_verifier": pending["verifier"]})
        if r.status_code != 200:
            error = r.json().get("error") if r.headers.get("content-type", "").startswith("application/json") else None
            return self.page("error.html", 400, user=None, message=f"The code exchange failed ({error}).")
        tokens = r.json()
        try:
            claims = await self.verify_id_token(tokens["id_token"], pending["nonce"], tokens["access_token"])
        except (JoseError, KeyError) as exc:
            return self.page("error.html", 400, user=None, message=f"The id token was refused: {exc}.")
        profile = await self.userinfo(tokens["access_token"], claims["sub"])
        # A new session for the signed-in person (the old id may have been planted: session fixation).
        self.drop_session(request)
        signed_in = Session(user=str(profile.get("name") or profile.get("preferred_username") or claims["sub"]),
                            subject=str(claims["sub"]), id_token=tokens["id_token"])
        self._keep_tokens(signed_in, tokens)
        response = RedirectResponse(pending["next"], status_code=303)
        self.new_session(response, signed_in)
        return response

    async def verify_id_token(self, id_token: str, nonce: str, access_token: str) -> dict[str, Any]:
        """OpenID Connect Core §3.1.3.7 (keys only from the pinned issuer's JWKS; alg from the key)."""
        kid = decode_unverified(id_token)[0].get("kid")
        keys = await self.jwks.akeys(kid if isinstance(kid, str) else None)
        verified = verify_jwt(id_token, keys, issuer=self.issuer, audience=self.client_id, leeway=30,
                              require=("iss", "sub", "aud", "exp", "iat", "nonce"))
        claims = dict(verified.claims)
        if claims.get("azp", self.client_id) != self.client_id:
            raise JoseError("azp is another client")
        if not hmac.compare_digest(str(claims["nonce"]), nonce):
            raise JoseError("nonce does not match")
        at_hash = claims.get("at_hash")
        if at_hash is not None and verified.key.alg in ("ES256", "RS256") and at_hash != _at_hash(access_token):
            raise JoseError("at_hash does not match the access token")
        return claims

    async def userinfo(self, access_token: str, subject: str) -> dict[str, Any]:
        """The person's profile claims (OpenID Connect Core §5.3; its ``sub`` must be the id token's, §5.3.4)."""
        endpoint = (await self.metadata()).get("userinfo_endpoint")
        if not endpoint:
            return {}
        r = await self.http.get(endpoint, headers={"Authorization": f"Bearer {access_token}"})
        profile = r.json() if r.status_code == 200 else {}
        return profile if isinstance(profile, dict) and profile.get("sub") == subject else {}

    def _keep_tokens(self, session: Session, tokens: dict[str, Any]) -> None:
        session.access_token = tokens["access_token"]
        session.access_expires_at = time.time() + float(tokens.get("expires_in", 60))
        session.refresh_token = tokens.get("refresh_token", session.refresh_token)  # rotated on every use

    async def _refresh(self, session: Session) -> bool:
        if session.refresh_token is None:
            return False
        token_endpoint = (await self.metadata())["token_endpoint"]
        r = await self.http.post(token_endpoint, auth=(self.client_id, self._secret), data={
            "grant_type": "refresh_token", "refresh_token": session.refresh_token})
        if r.status_code != 200:
            session.refresh_token = None
            return False
        self._keep_tokens(session, r.json())
        return True

    async def orders(self, request: Request) -> Response:
        session = self.session(request)
        if session is None or session.access_token is None:
            return RedirectResponse("/login?next=/orders", status_code=303)
        if time.time() > session.access_expires_at - 30:
            await self._refresh(session)
        r = await self._get_orders(session)
        if r.status_code == 401 and await self._refresh(session):
            r = await self._get_orders(session)
        if r.status_code == 401:
            self.drop_session(request)
            return RedirectResponse("/login?next=/orders", status_code=303)
        if r.status_code != 200:
            return self.page("error.html", 502, user=session.user,
                             message=f"The orders service answered HTTP {r.status_code}.")
        return self.page("orders.html", user=session.user, orders=r.json()["orders"])

    async def _get_orders(self, session: Session) -> httpx.Response:
        return await self.http.get(self.orders_url + "/orders",
                                   headers={"Authorization": f"Bearer {session.access_token}"})

    async def logout(self, request: Request) -> Response:
        """POST only (the SameSite=Lax cookie is not sent on cross-site POSTs, so no one can sign you out)."""
        session = self.drop_session(request)
        target, metadata = "/", await self.metadata()
        if session is not None and session.refresh_token and metadata.get("revocation_endpoint"):
            await self.http.post(metadata["revocation_endpoint"], auth=(self.client_id, self._secret),
                                 data={"token": session.refresh_token, "token_type_hint": "refresh_token"})
        if session is not None and session.id_token and metadata.get("end_session_endpoint"):
            target = metadata["end_session_endpoint"] + "?" + urlencode({
                "id_token_hint": session.id_token, "post_logout_redirect_uri": self.base_url + "/",
                "client_id": self.client_id})
        response = RedirectResponse(target, status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    async def healthz(self, request: Request) -> Response:
        return Response("ok")


class _SystemClock:
    def now(self) -> float:
        return time.time()


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def create_app(issuer: str, client_id: str, client_secret: str, base_url: str, orders_url: str) -> Starlette:
    web = WebApp(issuer, client_id, client_secret, base_url, orders_url)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await web.http.aclose()

    return Starlette(lifespan=lifespan, routes=[
        Route("/", web.home),
        Route("/login", web.login),
        Route("/callback", web.callback),
        Route("/orders", web.orders),
        Route("/logout", web.logout, methods=["POST"]),
        Route("/healthz", web.healthz),
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description="The web app (backend for frontend) of the example.")
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--client-id", required=True, help="the web app's client id (secret: $WEBAPP_CLIENT_SECRET)")
    parser.add_argument("--base-url", required=True, help="where browsers reach this app")
    parser.add_argument("--orders-url", required=True)
    parser.add_argument("--port", type=int, default=9300)
    args = parser.parse_args()
    app = create_app(args.issuer, args.client_id, os.environ["WEBAPP_CLIENT_SECRET"], args.base_url, args.orders_url)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
