"""RFC 6750 §2: one way to send the token per request, and never in the URL; the same answer from the
Starlette middleware, the FastAPI dependencies and the Flask decorator. And ``token.actor`` (RFC 8693 §4.1)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any
from urllib.parse import parse_qsl

import flask
import httpx
import pytest
from _issuer import AUDIENCE, StandInIssuer
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ostiary._clock import FixedClock
from ostiary.resource import AccessToken, TokenVerifier
from ostiary.resource.fastapi import install, require_token
from ostiary.resource.flask import require_token as flask_require_token
from ostiary.resource.starlette import BearerAuthMiddleware

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def asgi_client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def verifier(issuer: StandInIssuer, clock: FixedClock) -> Iterator[TokenVerifier]:
    v = TokenVerifier(issuer=issuer.url, audience=AUDIENCE, clock=clock)
    yield v
    v.close()


async def echo(request: Request) -> JSONResponse:
    token: AccessToken = request.state.access_token
    form = parse_qsl((await request.body()).decode())  # still there for the app after the middleware read it
    return JSONResponse({"sub": token.subject, "actor": token.actor, "form": dict(form)})


def starlette_app(verifier: TokenVerifier) -> Starlette:
    app = Starlette(routes=[Route("/echo", echo, methods=["GET", "POST"])])
    app.add_middleware(BearerAuthMiddleware, verifier=verifier)
    return app


def fastapi_app(verifier: TokenVerifier) -> FastAPI:
    app = FastAPI()
    install(app, verifier)

    @app.post("/echo")
    async def post(request: Request, token: Annotated[AccessToken, Depends(require_token())]) -> dict[str, Any]:
        return {"sub": token.subject, "actor": token.actor, "form": dict(parse_qsl((await request.body()).decode()))}

    @app.get("/echo")
    async def get(token: Annotated[AccessToken, Depends(require_token())]) -> dict[str, Any]:
        return {"sub": token.subject, "actor": token.actor, "form": {}}

    return app


def flask_app(verifier: TokenVerifier) -> flask.Flask:
    app = flask.Flask(__name__)

    @app.route("/echo", methods=["GET", "POST"])
    @flask_require_token(verifier)
    def echo_view() -> dict[str, Any]:
        token: AccessToken = flask.g.access_token
        return {"sub": token.subject, "actor": token.actor, "form": dict(flask.request.form)}

    return app


class Adapter:
    """The same requests against each adapter, answered as (status, JSON body)."""

    def __init__(self, kind: str, verifier: TokenVerifier) -> None:
        self.kind = kind
        self.app: Any = {"starlette": starlette_app, "fastapi": fastapi_app, "flask": flask_app}[kind](verifier)

    async def request(self, method: str, path: str, *, headers: dict[str, str] | None = None,
                      content: str | None = None) -> tuple[int, dict[str, Any], dict[str, str]]:
        if self.kind == "flask":
            r = self.app.test_client().open(path, method=method, headers=headers or {}, data=content)
            return r.status_code, r.json, dict(r.headers)
        async with asgi_client(self.app) as client:
            resp = await client.request(method, path, headers=headers, content=content)
            return resp.status_code, resp.json(), dict(resp.headers)


ADAPTERS = ["starlette", "fastapi", "flask"]


@pytest.mark.parametrize("kind", ADAPTERS)
async def test_a_token_in_the_query_string_is_never_used_and_the_answer_says_why(
        issuer: StandInIssuer, verifier: TokenVerifier, kind: str) -> None:
    app, token = Adapter(kind, verifier), issuer.mint()
    for path in (f"/echo?access_token={token}", f"/echo?x=1&acc%65ss_token={token}"):
        status, body, headers = await app.request("GET", path)
        assert status == 400 and body["error"] == "invalid_request"
        assert "access logs" in body["error_description"] and "Authorization header" in body["error_description"]
        challenges = headers.get("www-authenticate", headers.get("WWW-Authenticate"))
        assert challenges.split(", DPoP ")[0] == 'Bearer error="invalid_request"'
    # with a valid header too: still refused (the header token is not used either), and both reasons are given
    status, body, _ = await app.request("GET", f"/echo?access_token={token}", headers=bearer(token))
    assert status == 400 and body["error"] == "invalid_request"
    assert "more than one way" in body["error_description"] and "access logs" in body["error_description"]


@pytest.mark.parametrize("kind", ADAPTERS)
async def test_header_and_form_body_together_are_refused(issuer: StandInIssuer, verifier: TokenVerifier,
                                                         kind: str) -> None:
    app, token = Adapter(kind, verifier), issuer.mint()
    status, body, headers = await app.request("POST", "/echo", headers={**bearer(token), **FORM},
                                              content=f"note=hi&access_token={token}")
    assert status == 400 and body["error"] == "invalid_request", body
    assert "more than one way" in body["error_description"]
    # the same request with the header only works, and the app still reads its form
    status, body, _ = await app.request("POST", "/echo", headers={**bearer(token), **FORM}, content="note=hi")
    assert status == 200 and body == {"sub": "user-1", "actor": None, "form": {"note": "hi"}}
    # a form token alone is not read: no token, 401
    status, body, headers = await app.request("POST", "/echo", headers=FORM, content=f"access_token={token}")
    assert status == 401


async def test_starlette_passes_a_large_form_on_unread(issuer: StandInIssuer, verifier: TokenVerifier) -> None:
    token = issuer.mint()
    big = "note=" + "x" * (1 << 20) + "&more=1"
    async with asgi_client(starlette_app(verifier)) as client:
        r = await client.post("/echo", headers={**bearer(token), **FORM}, content=big)
        assert r.status_code == 200 and r.json()["form"]["more"] == "1"


@pytest.mark.parametrize("kind", ADAPTERS)
async def test_token_actor_names_who_acts_for_the_user(issuer: StandInIssuer, verifier: TokenVerifier,
                                                      kind: str) -> None:
    app = Adapter(kind, verifier)
    delegated = issuer.mint(client_id="orders-service", act={"sub": "orders-service", "act": {"sub": "web"}})
    status, body, _ = await app.request("GET", "/echo", headers=bearer(delegated))
    assert status == 200 and body["sub"] == "user-1" and body["actor"] == "orders-service"


def test_actor_chain_and_kind(issuer: StandInIssuer, verifier: TokenVerifier) -> None:
    token = verifier.verify(issuer.mint(client_id="b", act={"sub": "b", "act": {"sub": "a"}}))
    assert token.actor == "b" and token.actor_chain == ("b", "a")
    assert token.is_user and not token.is_service  # still the user's token, used by a service
    plain = verifier.verify(issuer.mint())
    assert plain.actor is None and plain.actor_chain == ()
