"""examples/web_microservices end to end: a real browser signs in through the web app, whose server calls
orders, which calls inventory for the user with a token it got by token exchange (RFC 8693: same ``sub``,
``act`` naming orders); then every service is attacked over real HTTP.

Everything starts once per module through the example's own ``start_all()`` (Ostiary on SQLite, the three
apps as uvicorn processes). Tokens for the negative tests come from the real issuer: user tokens by the
Authorization Code flow driven over HTTP (a first-party test client, so no consent page), service tokens by
client credentials, tokens on a user's behalf by token exchange with the orders service's own credentials;
the test clients are registered through the admin API.

Expired and not-yet-valid tokens cannot be minted with the real issuer's key (which never leaves it), so
those two cases run against a second pair of orders and inventory processes, started from the same files,
that trust a stand-in issuer run by this module (discovery, JWKS and a client-credentials token endpoint).
A valid token from that stand-in is accepted there (the positive control), so a refusal can only be caused
by the time claims.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import importlib.util
import json
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ostiary.core.jose import generate_private_key, parse_jwks, public_jwk, sign_jwt

from ..support import ROOT

EXAMPLE = ROOT / "examples" / "web_microservices"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
CALLBACK = "http://127.0.0.1:9/callback"  # nothing listens: the code is read from the Location header
EXPECTED_STOCK = {"SKU-KBD-01": "42", "SKU-MUG-07": "7", "SKU-LMP-13": "0"}  # inventory.py's data


def _load_run() -> ModuleType:
    spec = importlib.util.spec_from_file_location("web_microservices_run", EXAMPLE / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


RUN = _load_run()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64json(obj: dict[str, Any]) -> str:
    return _b64(json.dumps(obj, separators=(",", ":")).encode())


def _unb64json(part: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return value


# -- the running example ---------------------------------------------------------------------------


@dataclass
class Env:
    stack: Any
    admin_token: str

    def client(self, **spec: Any) -> dict[str, Any]:
        spec.setdefault("name", "test " + secrets.token_hex(3))
        r = httpx.post(self.stack.issuer + "/admin/api/clients", json=spec, timeout=30,
                       headers={"Authorization": f"Bearer {self.admin_token}"})
        assert r.status_code == 201, r.text
        out: dict[str, Any] = r.json()
        return out

    def service_token(self, scope: str, audience: str) -> str:
        c = self.client(scopes=scope.split(), audiences=[audience])
        r = httpx.post(self.stack.issuer + "/token", auth=(c["client_id"], c["client_secret"]), timeout=30,
                       data={"grant_type": "client_credentials", "scope": scope, "resource": audience})
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])

    def exchange(self, user_token: str, client: tuple[str, str] | None = None) -> httpx.Response:
        """RFC 8693 token exchange of a user's token for inventory, by orders (or by ``client``)."""
        stack = self.stack
        return httpx.post(stack.issuer + "/token", timeout=30,
                          auth=client or (stack.orders_client_id, stack.orders_client_secret), data={
                              "grant_type": TOKEN_EXCHANGE, "subject_token": user_token,
                              "subject_token_type": ACCESS_TOKEN_TYPE, "audience": stack.inventory_audience})

    def user_token(self, scope: str, audience: str) -> str:
        """Authorization Code + PKCE over plain HTTP, signing in as the demo user (first party: no consent)."""
        c = self.client(grant_types=["authorization_code"], scopes=scope.split(), audiences=[audience],
                        redirect_uris=[CALLBACK], first_party=True)
        verifier = secrets.token_urlsafe(48)
        challenge = _b64(hashlib.sha256(verifier.encode()).digest())
        with httpx.Client(base_url=self.stack.issuer, timeout=30) as http:
            page = http.get("/authorize", params={
                "response_type": "code", "client_id": c["client_id"], "redirect_uri": CALLBACK, "scope": scope,
                "state": "s1", "nonce": "n1", "code_challenge": challenge, "code_challenge_method": "S256"})
            assert page.status_code == 200, page.text
            hidden = {name: html.unescape(value) for name, value in re.findall(
                r'<input type="hidden" name="(authz|csrf_token)" id="[^"]*" value="([^"]*)"', page.text)}
            assert set(hidden) == {"authz", "csrf_token"}
            done = http.post("/login", data={**hidden, "username": self.stack.username,
                                             "password": self.stack.password})
            assert done.status_code in (302, 303), done.text
            code = parse_qs(urlsplit(done.headers["location"]).query)["code"][0]
            r = http.post("/token", auth=(c["client_id"], c["client_secret"]), data={
                "grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK,
                "code_verifier": verifier})
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    admin_token = "admin-" + secrets.token_urlsafe(24)
    with RUN.start_all(extra_env={"OSTIARY_ADMIN_TOKEN": admin_token}) as stack:
        yield Env(stack, admin_token)


@dataclass(frozen=True)
class Tokens:
    user_orders: str            # user, aud orders, orders:read: what the web app holds
    user_orders_no_scope: str   # user, aud orders, without orders:read
    user_inventory: str         # user, aud inventory, inventory:read, used first-hand (no act)
    user_inventory_no_scope: str
    delegated_inventory: str    # user_orders exchanged by orders: aud inventory, act orders: what orders sends
    service_inventory: str      # service (client credentials), aud inventory, inventory:read
    service_orders: str         # service, aud orders, orders:read


@pytest.fixture(scope="module")
def tokens(env: Env) -> Tokens:
    orders, inventory = env.stack.orders_audience, env.stack.inventory_audience
    user_orders = env.user_token("openid orders:read inventory:read", orders)
    delegated = env.exchange(user_orders)
    assert delegated.status_code == 200, delegated.text
    return Tokens(
        user_orders=user_orders,
        user_orders_no_scope=env.user_token("openid profile", orders),
        user_inventory=env.user_token("openid inventory:read", inventory),
        user_inventory_no_scope=env.user_token("openid profile", inventory),
        delegated_inventory=delegated.json()["access_token"],
        service_inventory=env.service_token("inventory:read", inventory),
        service_orders=env.service_token("orders:read", orders),
    )


# -- the pattern in a real browser -----------------------------------------------------------------


@pytest.mark.browser
def test_sign_in_through_the_web_app_and_see_orders_with_stock(env: Env) -> None:
    from playwright.sync_api import sync_playwright

    stack = env.stack
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/ensure-chromium.sh (never `playwright install`)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()
            context.set_default_timeout(15_000)
            page = context.new_page()
            page.goto(stack.webapp + "/orders")
            # the web app sent the browser to Ostiary's authorization endpoint: PKCE S256, state, nonce
            assert page.url.startswith(stack.issuer + "/authorize?")
            query = parse_qs(urlsplit(page.url).query)
            assert query["code_challenge_method"] == ["S256"] and query["client_id"] == ["webapp"]
            assert query["state"] and query["nonce"] and query["redirect_uri"] == [stack.webapp + "/callback"]
            page.fill("#username", stack.username)
            page.fill("#password", stack.password)
            page.click("#login-submit")
            page.wait_for_selector("#consent-allow")
            assert page.text_content("#consent-client") == "Acme Shop"
            asked = page.eval_on_selector_all("#consent-scopes li", "els => els.map(e => e.dataset.scope)")
            assert "orders:read" in asked
            page.click("#consent-allow")
            page.wait_for_url(stack.webapp + "/orders")

            assert page.text_content("#user-name") == "Demo User"
            rows = page.locator("#orders li")
            assert rows.count() == 3
            stock = {rows.nth(i).get_attribute("data-sku"): rows.nth(i).locator(".stock").get_attribute("data-stock")
                     for i in range(3)}
            assert stock == EXPECTED_STOCK  # fetched by orders from inventory, for this user
            assert page.text_content("#ord-1001 .warehouse") == "Lyon"
            # inventory saw the user's sub, with orders as the actor (RFC 8693 act)
            assert page.get_attribute("#ord-1001 .stock", "data-actor") == "orders-service"
            assert page.get_attribute("#ord-1001 .stock", "data-for")

            # The browser holds no token: no JWT in the page, no web storage, and only session cookies.
            assert not JWT.search(page.content())
            assert page.evaluate("() => localStorage.length + sessionStorage.length") == 0
            cookies = context.cookies()
            # Cookies are per host, not per port: Ostiary (same host 127.0.0.1) has its own two as well.
            assert {c["name"] for c in cookies} <= {"webapp_session", "ostiary_session", "ostiary_csrf"}
            session = [c for c in cookies if c["name"] == "webapp_session"]
            assert len(session) == 1 and session[0]["httpOnly"] and session[0]["sameSite"] == "Lax"
            assert all(c["httpOnly"] and not JWT.search(c["value"]) and "." not in c["value"] for c in cookies)

            # Sign out: the session is gone here and at Ostiary; /orders sends the browser to sign in again.
            page.click("#logout")
            page.wait_for_url(stack.webapp + "/")
            assert page.is_visible("#signed-out")
            page.goto(stack.webapp + "/orders")
            assert page.url.startswith(stack.issuer + "/authorize?")
            assert page.is_visible("#login-form")
            context.close()
        finally:
            browser.close()


def test_the_web_app_refuses_a_callback_it_did_not_start(env: Env) -> None:
    r = httpx.get(env.stack.webapp + "/callback", params={"code": "x", "state": "forged", "iss": env.stack.issuer})
    assert r.status_code == 400 and "was not started here" in r.text
    assert not r.headers.get("set-cookie")


def test_the_web_app_refuses_a_callback_from_another_issuer(env: Env) -> None:
    with httpx.Client(base_url=env.stack.webapp, timeout=30) as http:
        start = http.get("/login")
        assert start.status_code == 303
        state = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
        r = http.get("/callback", params={"code": "x", "state": state, "iss": "https://evil.example"})
        assert r.status_code == 400 and "unexpected issuer" in r.text
        again = http.get("/callback", params={"code": "x", "state": state, "iss": env.stack.issuer})
        assert again.status_code == 400 and "already used" in again.text  # state is single use


# -- orders and inventory over real HTTP ---------------------------------------------------------


def _get(base: str, path: str, token: str | None = None, **params: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.get(base + path, params=params, headers=headers, timeout=30)


def _assert_invalid_token(r: httpx.Response) -> None:
    assert r.status_code == 401, r.text
    assert r.headers.get_list("www-authenticate")[0] == 'Bearer error="invalid_token"'
    assert r.json()["error"] == "invalid_token"


def _target(env: Env, tokens: Tokens, service: str) -> tuple[str, str, dict[str, str], str]:
    """(base URL, path, query, a token the service accepts)."""
    if service == "orders":
        return env.stack.orders, "/orders", {}, tokens.user_orders
    return env.stack.inventory, "/stock", {"sku": "SKU-KBD-01"}, tokens.delegated_inventory


def _claims(token: str) -> dict[str, Any]:
    return _unb64json(token.split(".")[1])


def test_orders_accepts_the_users_token_and_calls_inventory_for_that_user(env: Env, tokens: Tokens) -> None:
    r = _get(env.stack.orders, "/orders", tokens.user_orders)
    assert r.status_code == 200, r.text
    orders = r.json()["orders"]
    assert {o["sku"]: str(o["stock"]) for o in orders} == EXPECTED_STOCK
    # what reached inventory: the user's sub, and act naming orders (RFC 8693 §4.1)
    user = _claims(tokens.user_orders)["sub"]
    assert r.json()["customer"] == user
    assert all(o["inventory_saw"] == {"sub": user, "act": {"sub": "orders-service"}} for o in orders)


def test_the_exchanged_token_keeps_the_user_and_is_bounded_by_the_users_token(env: Env, tokens: Tokens) -> None:
    user, delegated = _claims(tokens.user_orders), _claims(tokens.delegated_inventory)
    assert delegated["sub"] == user["sub"] and delegated["client_id"] == "orders-service"
    assert delegated["act"] == {"sub": "orders-service"}
    assert delegated["aud"] == env.stack.inventory_audience and delegated["scope"] == "inventory:read"
    assert delegated["exp"] <= user["exp"]
    r = _get(env.stack.inventory, "/stock", tokens.delegated_inventory, sku="SKU-MUG-07")
    assert r.status_code == 200 and r.json()["available"] == 7
    # orders cannot exchange a token that was not sent to it, nor widen the scope
    refused = env.exchange(tokens.user_inventory)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"


def test_inventory_refuses_a_token_exchanged_by_another_service(env: Env, tokens: Tokens) -> None:
    other = env.client(grant_types=[TOKEN_EXCHANGE], scopes=["inventory:read"],
                       resource_audiences=[env.stack.orders_audience],
                       may_exchange_for=[env.stack.inventory_audience])
    r = env.exchange(tokens.user_orders, (other["client_id"], other["client_secret"]))
    assert r.status_code == 200, r.text
    refused = _get(env.stack.inventory, "/stock", r.json()["access_token"], sku="SKU-KBD-01")
    assert refused.status_code == 403 and refused.json()["error"] == "wrong_token_kind"
    assert "another service" in refused.json()["error_description"]


def _forge_unknown_kid(token: str, issuer: str) -> str:
    claims = _unb64json(token.split(".")[1])
    return sign_jwt(claims, generate_private_key("ES256"), alg="ES256", kid="not-a-key-of-the-issuer",
                    typ="at+jwt")


def _forge_alg_none(token: str, issuer: str) -> str:
    header = _unb64json(token.split(".")[0])
    return _b64json({**header, "alg": "none"}) + "." + token.split(".")[1] + "."


def _forge_hs256_with_public_key(token: str, issuer: str) -> str:
    """The classic key-confusion attack: HMAC keyed with the issuer's *public* key (PEM), as a naive
    verifier that takes the algorithm from the header would check it."""
    header = _unb64json(token.split(".")[0])
    jwks = httpx.get(issuer + "/jwks", timeout=30).json()
    key = next(k for k in parse_jwks(jwks) if k.kid == header["kid"])
    pem = key.key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    signing_input = _b64json({**header, "alg": "HS256"}) + "." + token.split(".")[1]
    return signing_input + "." + _b64(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())


def _forge_tampered_payload(token: str, issuer: str) -> str:
    header, payload, signature = token.split(".")
    claims = _unb64json(payload)
    claims["sub"] = "someone-else"
    return f"{header}.{_b64json(claims)}.{signature}"


def _forge_stripped_signature(token: str, issuer: str) -> str:
    return token.rsplit(".", 1)[0] + "."


FORGERIES: dict[str, Callable[[str, str], str]] = {
    "tampered payload": _forge_tampered_payload,
    "stripped signature": _forge_stripped_signature,
    "alg none": _forge_alg_none,
    "HS256 with the issuer's public key": _forge_hs256_with_public_key,
    "unknown kid": _forge_unknown_kid,
}


@pytest.mark.parametrize("forgery", list(FORGERIES))
@pytest.mark.parametrize("service", ["orders", "inventory"])
def test_forged_tokens_are_refused(env: Env, tokens: Tokens, service: str, forgery: str) -> None:
    base, path, query, good = _target(env, tokens, service)
    assert _get(base, path, good, **query).status_code == 200  # the genuine token works
    _assert_invalid_token(_get(base, path, FORGERIES[forgery](good, env.stack.issuer), **query))


@pytest.mark.parametrize("service", ["orders", "inventory"])
def test_token_for_another_audience_is_refused(env: Env, tokens: Tokens, service: str) -> None:
    base, path, query, _ = _target(env, tokens, service)
    # same kind and scope the service wants, but issued for the other API
    other = tokens.user_inventory if service == "orders" else tokens.service_orders
    _assert_invalid_token(_get(base, path, other, **query))


@pytest.mark.parametrize("service", ["orders", "inventory"])
def test_token_from_another_issuer_is_refused(env: Env, tokens: Tokens, service: str,
                                              stand_in: StandIn) -> None:
    base, path, query, good = _target(env, tokens, service)
    claims = _unb64json(good.split(".")[1])  # the same claims, but another issuer with its own JWKS
    forged = stand_in.mint(**{k: v for k, v in claims.items() if k not in ("iss", "iat", "nbf", "exp")})
    _assert_invalid_token(_get(base, path, forged, **query))


@pytest.mark.parametrize("service", ["orders", "inventory"])
def test_token_in_the_query_string_is_refused(env: Env, tokens: Tokens, service: str) -> None:
    base, path, query, good = _target(env, tokens, service)
    r = _get(base, path, None, access_token=good, **query)
    assert r.status_code == 400, r.text
    assert r.headers.get_list("www-authenticate")[0] == 'Bearer error="invalid_request"'
    assert r.json()["error"] == "invalid_request"


@pytest.mark.parametrize("service", ["orders", "inventory"])
def test_no_token_gets_a_bare_challenge(env: Env, tokens: Tokens, service: str) -> None:
    base, path, query, _ = _target(env, tokens, service)
    r = _get(base, path, None, **query)
    assert r.status_code == 401 and r.headers.get_list("www-authenticate")[0] == "Bearer"


def test_orders_refuses_a_service_token(env: Env, tokens: Tokens) -> None:
    r = _get(env.stack.orders, "/orders", tokens.service_orders)  # right audience and scope, wrong kind
    assert r.status_code == 403, r.text
    assert r.json()["error"] == "wrong_token_kind"


def test_inventory_refuses_a_user_token_used_first_hand_and_a_service_token(env: Env, tokens: Tokens) -> None:
    for token in (tokens.user_inventory, tokens.service_inventory):  # right audience and scope, no act
        r = _get(env.stack.inventory, "/stock", token, sku="SKU-KBD-01")
        assert r.status_code == 403, r.text
        assert r.json()["error"] == "wrong_token_kind"


@pytest.mark.parametrize("service", ["orders", "inventory"])
def test_token_without_the_scope_is_refused(env: Env, tokens: Tokens, service: str) -> None:
    base, path, query, _ = _target(env, tokens, service)
    token, scope = ((tokens.user_orders_no_scope, "orders:read") if service == "orders"
                    else (tokens.user_inventory_no_scope, "inventory:read"))
    r = _get(base, path, token, **query)
    assert r.status_code == 403, r.text
    assert r.headers.get_list("www-authenticate")[0] == f'Bearer error="insufficient_scope", scope="{scope}"'


# -- expiry and not-before, against the same services trusting a stand-in issuer ---------------------


class StandIn:
    """A minimal issuer on 127.0.0.1: discovery, JWKS, and client credentials for one client."""

    def __init__(self, client_id: str, client_secret: str) -> None:
        self.key = generate_private_key("ES256")
        self.kid = "stand-in-1"
        self._client = (client_id, client_secret)
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        app = Starlette(routes=[Route("/.well-known/openid-configuration", self._metadata),
                                Route("/jwks", self._jwks), Route("/token", self._token, methods=["POST"])])
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert time.monotonic() < deadline, "stand-in issuer did not start"
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(5)
        self._sock.close()

    def mint(self, **claims: Any) -> str:
        now = int(time.time())
        full = {"iss": self.url, "iat": now, "nbf": now, "exp": now + 300, "jti": secrets.token_hex(8), **claims}
        return sign_jwt({k: v for k, v in full.items() if v is not None}, self.key, alg="ES256", kid=self.kid,
                        typ="at+jwt")

    async def _metadata(self, request: Request) -> JSONResponse:
        return JSONResponse({"issuer": self.url, "jwks_uri": self.url + "/jwks", "token_endpoint": self.url + "/token"})

    async def _jwks(self, request: Request) -> JSONResponse:
        return JSONResponse({"keys": [public_jwk(self.key, self.kid, "ES256")]})

    async def _token(self, request: Request) -> JSONResponse:
        expected = "Basic " + base64.b64encode(":".join(self._client).encode()).decode()
        if not hmac.compare_digest(request.headers.get("authorization", ""), expected):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        form = dict(parse_qsl((await request.body()).decode()))
        client_id = self._client[0]
        # RFC 8693 token exchange, as a stand-in: the subject token is one this issuer minted for orders
        subject = _unb64json(form["subject_token"].split(".")[1])
        token = self.mint(sub=subject["sub"], client_id=client_id, aud=form["audience"], scope=form["scope"],
                          act={"sub": client_id}, auth_time=subject.get("auth_time"))
        return JSONResponse({"access_token": token, "token_type": "Bearer", "expires_in": 300})


@pytest.fixture(scope="module")
def stand_in() -> Iterator[StandIn]:
    issuer = StandIn("orders-service", "stand-in-" + secrets.token_urlsafe(16))
    yield issuer
    issuer.stop()


@dataclass(frozen=True)
class StandInServices:
    orders: str
    inventory: str


@pytest.fixture(scope="module")
def stand_in_services(env: Env, stand_in: StandIn, tmp_path_factory: pytest.TempPathFactory
                      ) -> Iterator[StandInServices]:
    """orders.py and inventory.py again, started exactly as run.py starts them, but trusting the stand-in."""
    logs = tmp_path_factory.mktemp("stand-in-services")
    ports = {"orders": RUN.free_port(), "inventory": RUN.free_port()}
    url = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    child_env = dict(env.stack.env, ORDERS_CLIENT_SECRET=stand_in._client[1])
    commands = {
        "inventory": [sys.executable, str(EXAMPLE / "inventory.py"), "--issuer", stand_in.url,
                      "--audience", env.stack.inventory_audience, "--caller", "orders-service",
                      "--port", str(ports["inventory"])],
        "orders": [sys.executable, str(EXAMPLE / "orders.py"), "--issuer", stand_in.url,
                   "--audience", env.stack.orders_audience, "--client-id", "orders-service",
                   "--inventory-url", url["inventory"], "--inventory-audience", env.stack.inventory_audience,
                   "--port", str(ports["orders"])],
    }
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name, cmd in commands.items():
            with (logs / f"{name}.log").open("ab") as out:
                procs.append(subprocess.Popen(cmd, env=child_env, stdout=out, stderr=subprocess.STDOUT))
        for proc, name in zip(procs, commands, strict=True):
            RUN.wait_http(url[name] + "/healthz", proc, name, logs / f"{name}.log")
        yield StandInServices(orders=url["orders"], inventory=url["inventory"])
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _stand_in_target(env: Env, stand_in: StandIn, services: StandInServices, service: str
                     ) -> tuple[str, str, dict[str, str], dict[str, Any]]:
    if service == "orders":
        return services.orders, "/orders", {}, {"sub": "user-7", "client_id": "webapp", "auth_time": int(time.time()),
                                                "aud": env.stack.orders_audience, "scope": "openid orders:read"}
    return services.inventory, "/stock", {"sku": "SKU-KBD-01"}, {
        "sub": "user-7", "client_id": "orders-service", "act": {"sub": "orders-service"},
        "aud": env.stack.inventory_audience, "scope": "inventory:read", "auth_time": int(time.time())}


@pytest.mark.parametrize("service", ["orders", "inventory"])
def test_stand_in_issuer_control_token_is_accepted(env: Env, stand_in: StandIn,
                                                   stand_in_services: StandInServices, service: str) -> None:
    base, path, query, claims = _stand_in_target(env, stand_in, stand_in_services, service)
    r = _get(base, path, stand_in.mint(**claims), **query)
    assert r.status_code == 200, r.text
    if service == "orders":  # orders exchanged the user's token at the stand-in and inventory accepted it
        assert {o["sku"]: str(o["stock"]) for o in r.json()["orders"]} == EXPECTED_STOCK


@pytest.mark.parametrize("times", ["expired", "not yet valid", "issued in the future"])
@pytest.mark.parametrize("service", ["orders", "inventory"])
def test_expired_and_not_yet_valid_tokens_are_refused(env: Env, stand_in: StandIn,
                                                      stand_in_services: StandInServices, service: str,
                                                      times: str) -> None:
    base, path, query, claims = _stand_in_target(env, stand_in, stand_in_services, service)
    now = int(time.time())  # the services allow 30 s of clock skew; these are well beyond it
    claims.update({"expired": {"iat": now - 600, "nbf": now - 600, "exp": now - 120},
                   "not yet valid": {"nbf": now + 120, "exp": now + 600},
                   "issued in the future": {"iat": now + 120, "nbf": None, "exp": now + 600}}[times])
    _assert_invalid_token(_get(base, path, stand_in.mint(**claims), **query))


# -- the one command ------------------------------------------------------------------------------


def test_run_check_starts_everything_prints_json_and_cleans_up() -> None:
    proc = subprocess.run([sys.executable, str(EXAMPLE / "run.py"), "--check"], capture_output=True, text=True,
                          timeout=180, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["username"] == "demo" and len(info["password"]) >= 12
    assert {"issuer", "webapp", "orders", "inventory"} <= set(info)
    assert not Path(info["workdir"]).exists()
    for name in ("issuer", "webapp", "orders", "inventory"):  # every process is gone
        with pytest.raises(httpx.ConnectError):
            httpx.get(info[name] + "/", timeout=2)
