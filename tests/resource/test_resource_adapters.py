"""Starlette middleware, FastAPI dependencies and the Flask decorator: RFC 6750 §3 responses."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Annotated, Any

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
from ostiary.resource import AccessToken, InvalidToken, TokenVerifier
from ostiary.resource.fastapi import install, require_scopes, require_service, require_token, require_user
from ostiary.resource.flask import require_token as flask_require_token
from ostiary.resource.starlette import BearerAuthMiddleware


@pytest.fixture
def verifier(issuer: StandInIssuer, clock: FixedClock) -> Iterator[TokenVerifier]:
    v = TokenVerifier(issuer=issuer.url, audience=AUDIENCE, clock=clock)
    yield v
    v.close()


def asgi_client(app: Any, **options: Any) -> httpx.AsyncClient:
    """Starlette's TestClient now wants another package; httpx's ASGITransport does the same job."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, **options), base_url="http://api")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def bearer_challenge(response: httpx.Response) -> str:
    """The Bearer challenge: the first WWW-Authenticate line (a DPoP challenge follows it, RFC 9449 §7.1)."""
    first = response.headers.get_list("www-authenticate")[0]
    assert response.headers.get_list("www-authenticate")[1].startswith("DPoP ")
    return first


def assert_invalid_token(response: httpx.Response) -> None:
    assert response.status_code == 401
    assert bearer_challenge(response) == 'Bearer error="invalid_token"'
    body = response.json()
    assert body["error"] == "invalid_token" and body["error_description"]


def assert_missing_token(response: httpx.Response) -> None:
    assert response.status_code == 401
    assert bearer_challenge(response) == "Bearer"


# -- Starlette ---------------------------------------------------------------------------------


async def whoami(request: Request) -> JSONResponse:
    token: AccessToken | None = getattr(request.state, "access_token", None)
    return JSONResponse({"sub": token.subject if token else None})


def starlette_app(verifier: TokenVerifier, **options: Any) -> Starlette:
    app = Starlette(routes=[Route("/me", whoami, methods=["GET", "POST"]), Route("/healthz", whoami)])
    app.add_middleware(BearerAuthMiddleware, verifier=verifier, **options)
    return app


def test_middleware_is_pure_asgi() -> None:
    from starlette.middleware.base import BaseHTTPMiddleware

    assert not issubclass(BearerAuthMiddleware, BaseHTTPMiddleware)


async def test_starlette_accepts_valid_token(issuer: StandInIssuer, verifier: TokenVerifier) -> None:
    async with asgi_client(starlette_app(verifier)) as client:
        assert (await client.get("/me", headers=bearer(issuer.mint()))).json() == {"sub": "user-1"}
        assert (await client.get("/me", headers={"Authorization": f"bearer {issuer.mint()}"})).status_code == 200


async def test_starlette_refusals(issuer: StandInIssuer, verifier: TokenVerifier) -> None:
    token = issuer.mint()
    async with asgi_client(starlette_app(verifier)) as client:
        assert_missing_token(await client.get("/me"))
        assert_missing_token(await client.get("/me", headers={"Authorization": "Basic dXNlcjpwYXNz"}))
        assert_invalid_token(await client.get("/me", headers=bearer(issuer.mint(aud="https://other"))))
        assert_invalid_token(await client.get("/me", headers=bearer("not a token")))
        # RFC 6750 §2.3: a token in the URL is refused outright, even alongside a valid header
        for response in (await client.get("/me", params={"access_token": token}),
                         await client.get("/me", params={"access_token": token}, headers=bearer(token))):
            assert response.status_code == 400
            assert response.json()["error"] == "invalid_request"
            assert 'error="invalid_request"' in bearer_challenge(response)
        # RFC 6750 §2.2: a token in a form body is never read
        assert_missing_token(await client.post("/me", data={"access_token": token}))
        response = await client.get("/me", headers=[("Authorization", f"Bearer {token}")] * 2)
        assert response.status_code == 400


async def test_starlette_optional_and_exempt(issuer: StandInIssuer, verifier: TokenVerifier) -> None:
    async with asgi_client(starlette_app(verifier, required=False)) as client:
        assert (await client.get("/me")).json() == {"sub": None}
        assert_invalid_token(await client.get("/me", headers=bearer("bad.token.value")))
    async with asgi_client(starlette_app(verifier, exempt={"/healthz"})) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/me")).status_code == 401


async def test_starlette_realm(issuer: StandInIssuer, verifier: TokenVerifier) -> None:
    transport = httpx.ASGITransport(app=starlette_app(verifier, realm="orders"))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        assert (await client.get("/me", headers=bearer(issuer.mint()))).status_code == 200
        response = await client.get("/me")
        assert bearer_challenge(response) == 'Bearer realm="orders"'


# -- FastAPI -----------------------------------------------------------------------------------


def fastapi_app(verifier: TokenVerifier) -> FastAPI:
    app = FastAPI()
    install(app, verifier)

    @app.get("/any")
    async def any_token(token: Annotated[AccessToken, Depends(require_token())]) -> dict[str, str]:
        return {"sub": token.subject}

    @app.get("/orders")
    async def orders(token: Annotated[AccessToken, Depends(require_scopes("orders:read"))]) -> dict[str, str]:
        return {"sub": token.subject}

    @app.post("/orders")
    async def write(token: Annotated[AccessToken, Depends(require_scopes("orders:write"))]) -> dict[str, str]:
        return {"sub": token.subject}

    @app.get("/profile")
    async def profile(token: Annotated[AccessToken, Depends(require_user("profile"))]) -> dict[str, str]:
        return {"sub": token.subject}

    @app.get("/internal")
    async def internal(token: Annotated[AccessToken, Depends(require_service())]) -> dict[str, str]:
        return {"client": token.client_id}

    return app


async def test_fastapi_dependencies(issuer: StandInIssuer, verifier: TokenVerifier) -> None:
    user, service = issuer.mint(), issuer.mint(claims=issuer.service_claims(scope="orders:read"))
    async with asgi_client(fastapi_app(verifier)) as client:
        assert (await client.get("/any", headers=bearer(user))).json() == {"sub": "user-1"}
        assert (await client.get("/orders", headers=bearer(service))).json() == {"sub": "billing"}
        assert (await client.get("/profile", headers=bearer(user))).status_code == 200
        assert (await client.get("/internal", headers=bearer(service))).json() == {"client": "billing"}

        assert_missing_token(await client.get("/any"))
        assert_invalid_token(await client.get("/orders", headers=bearer(issuer.mint(exp=0))))

        response = await client.post("/orders", headers=bearer(user))
        assert response.status_code == 403
        assert bearer_challenge(response) == 'Bearer error="insufficient_scope", scope="orders:write"'
        assert response.json()["error"] == "insufficient_scope"

        response = await client.get("/profile", headers=bearer(service))
        assert response.status_code == 403
        assert response.json() == {"error": "wrong_token_kind", "error_description":
                                   "This endpoint requires a user token; a service token was presented."}
        response = await client.get("/internal", headers=bearer(user))
        assert response.status_code == 403 and response.json()["error"] == "wrong_token_kind"

        assert (await client.get("/any", params={"access_token": user})).status_code == 400


async def test_fastapi_reuses_middleware_result(issuer: StandInIssuer, verifier: TokenVerifier) -> None:
    app = fastapi_app(verifier)
    app.add_middleware(BearerAuthMiddleware, verifier=verifier)
    async with asgi_client(app) as client:
        assert (await client.get("/orders", headers=bearer(issuer.mint()))).status_code == 200
        assert (await client.post("/orders", headers=bearer(issuer.mint()))).status_code == 403


def test_fastapi_openapi_declares_bearer(verifier: TokenVerifier) -> None:
    schema = fastapi_app(verifier).openapi()
    assert schema["components"]["securitySchemes"]["BearerToken"]["scheme"] == "bearer"
    assert schema["paths"]["/orders"]["get"]["security"] == [{"BearerToken": []}]


async def test_fastapi_without_install_fails_closed(issuer: StandInIssuer) -> None:
    app = FastAPI()

    @app.get("/x")
    async def x(token: Annotated[AccessToken, Depends(require_token())]) -> dict[str, str]:
        return {}

    async with asgi_client(app, raise_app_exceptions=False) as client:
        assert (await client.get("/x", headers=bearer(issuer.mint()))).status_code == 500


# -- Flask -------------------------------------------------------------------------------------


def flask_app(verifier: TokenVerifier) -> flask.Flask:
    app = flask.Flask(__name__)

    @app.get("/orders")
    @flask_require_token(verifier, scopes="orders:read")
    def orders() -> dict[str, str]:
        return {"sub": flask.g.access_token.subject}

    @app.post("/orders")
    @flask_require_token(verifier, scopes=["orders:write"])
    def write() -> dict[str, str]:
        return {}

    @app.get("/profile")
    @flask_require_token(verifier, user=True)
    def profile() -> dict[str, str]:
        return {"sub": flask.g.access_token.subject}

    @app.get("/internal")
    @flask_require_token(verifier, service=True)
    def internal() -> dict[str, str]:
        return {"client": flask.g.access_token.client_id}

    return app


def test_flask_decorator(issuer: StandInIssuer, verifier: TokenVerifier) -> None:
    user, service = issuer.mint(), issuer.mint(claims=issuer.service_claims(scope="orders:read"))
    client = flask_app(verifier).test_client()
    assert client.get("/orders", headers=bearer(user)).json == {"sub": "user-1"}
    assert client.get("/internal", headers=bearer(service)).json == {"client": "billing"}

    response = client.get("/orders")
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"
    response = client.get("/orders", headers=bearer(issuer.mint(iss="https://evil.example")))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    response = client.post("/orders", headers=bearer(user))
    assert response.status_code == 403
    assert response.headers["WWW-Authenticate"] == 'Bearer error="insufficient_scope", scope="orders:write"'
    assert client.get("/profile", headers=bearer(service)).json["error"] == "wrong_token_kind"
    assert client.get("/internal", headers=bearer(user)).status_code == 403
    response = client.get(f"/orders?access_token={user}")
    assert response.status_code == 400 and response.json["error"] == "invalid_request"
    assert client.post("/orders", data={"access_token": user}).status_code == 401


# -- import hygiene ----------------------------------------------------------------------------


def test_core_package_imports_no_framework() -> None:
    code = ("import sys, ostiary.resource, ostiary.client\n"
            "bad = [m for m in ('starlette', 'fastapi', 'flask', 'sqlalchemy', 'jinja2') if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_public_surface() -> None:
    import ostiary.resource as resource
    import ostiary.resource.fastapi as fa
    import ostiary.resource.flask as fl
    import ostiary.resource.starlette as st

    for module in (resource, fa, fl, st):
        assert all(hasattr(module, name) for name in module.__all__)
    assert set(resource.__all__) >= {"TokenVerifier", "AccessToken", "InvalidToken", "InsufficientScope"}


@pytest.mark.parametrize("crit", [[["x"]], [{"x": 1}], [], "x", ["exp"]])
async def test_malformed_or_unknown_crit_is_invalid_token_not_500(issuer: StandInIssuer, verifier: TokenVerifier,
                                                                   crit: Any) -> None:
    """RFC 7515 §4.1.11: ``crit`` is a non-empty array of names this verifier understands (none)."""
    token = issuer.mint(headers={"crit": crit})
    async with asgi_client(starlette_app(verifier), raise_app_exceptions=False) as client:
        assert_invalid_token(await client.get("/me", headers=bearer(token)))
    with pytest.raises(InvalidToken):
        verifier.verify(token)
