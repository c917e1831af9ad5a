"""RFC 9728 protected-resource metadata: the document, where it is served, and the challenges that point at
it (401 ``resource_metadata``, 403 ``insufficient_scope`` with the scope to step up to); and the MCP SDK's
token verifier over ours."""

from __future__ import annotations

import logging
import socket
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
from ostiary.resource import AccessToken, ProtectedResourceMetadata, TokenVerifier
from ostiary.resource.fastapi import install, require_scopes
from ostiary.resource.flask import require_token as flask_require_token
from ostiary.resource.flask import serve_metadata
from ostiary.resource.mcp import McpTokenVerifier, auth_settings
from ostiary.resource.starlette import BearerAuthMiddleware

METADATA_URL = "https://api.example.test/.well-known/oauth-protected-resource"


@pytest.fixture
def verifier(issuer: StandInIssuer, clock: FixedClock) -> Iterator[TokenVerifier]:
    v = TokenVerifier(issuer=issuer.url, audience=AUDIENCE, clock=clock)
    yield v
    v.close()


@pytest.fixture
def metadata(issuer: StandInIssuer) -> ProtectedResourceMetadata:
    return ProtectedResourceMetadata(AUDIENCE, [issuer.url], scopes_supported=["orders:read", "orders:write"],
                                     resource_name="Orders")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def challenge(response: httpx.Response | Any) -> str:
    """The Bearer challenge (the first line; the DPoP one follows it, RFC 9449 §7.1)."""
    if isinstance(response, httpx.Response):
        return response.headers.get_list("www-authenticate")[0]
    return str(response.headers["www-authenticate"])


# -- the document --------------------------------------------------------------------------------


def test_document_and_where_it_is_served(issuer: StandInIssuer, metadata: ProtectedResourceMetadata) -> None:
    assert metadata.document() == {"resource": AUDIENCE, "authorization_servers": [issuer.url],
                                   "bearer_methods_supported": ["header"],
                                   "scopes_supported": ["orders:read", "orders:write"], "resource_name": "Orders"}
    assert metadata.url == METADATA_URL and metadata.paths == ("/.well-known/oauth-protected-resource",)
    # RFC 9728 §3.1: the resource's path goes after the well-known suffix
    mcp = ProtectedResourceMetadata("https://tools.example.com/mcp", ["https://login.example.com"])
    assert mcp.url == "https://tools.example.com/.well-known/oauth-protected-resource/mcp"
    assert mcp.paths == ("/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource")
    assert "scopes_supported" not in mcp.document()


@pytest.mark.parametrize("resource, servers", [
    ("http://api.example.com", ["https://login.example.com"]),       # http off loopback
    ("https://api.example.com/#frag", ["https://login.example.com"]),
    ("/relative", ["https://login.example.com"]),
    ("https://api.example.com", []),
    ("https://api.example.com", ["https://login.example.com?x=1"]),  # an issuer has no query
])
def test_bad_metadata_is_refused_when_built(resource: str, servers: list[str]) -> None:
    with pytest.raises(ValueError):
        ProtectedResourceMetadata(resource, servers)


def test_certificate_bound_tokens_are_advertised_when_asked_for(issuer: StandInIssuer) -> None:
    """RFC 9728 §2 ``tls_client_certificate_bound_access_tokens``: left out unless the API says it receives client
    certificates; a reserved member, not one for ``extra``."""
    plain = ProtectedResourceMetadata(AUDIENCE, [issuer.url])
    assert "tls_client_certificate_bound_access_tokens" not in plain.document()
    bound = ProtectedResourceMetadata(AUDIENCE, [issuer.url], tls_client_certificate_bound_access_tokens=True)
    assert bound.document()["tls_client_certificate_bound_access_tokens"] is True
    with pytest.raises(ValueError, match="tls_client_certificate_bound_access_tokens"):
        ProtectedResourceMetadata(AUDIENCE, [issuer.url], extra={"tls_client_certificate_bound_access_tokens": True})


# -- Starlette -----------------------------------------------------------------------------------


async def me(request: Request) -> JSONResponse:
    return JSONResponse({"sub": request.state.access_token.subject})


async def test_starlette_serves_the_document_and_points_every_challenge_at_it(
        issuer: StandInIssuer, verifier: TokenVerifier, metadata: ProtectedResourceMetadata) -> None:
    app = Starlette(routes=[Route("/me", me)])
    app.add_middleware(BearerAuthMiddleware, verifier=verifier, metadata=metadata)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://api.example.test") as c:
        doc = await c.get("/.well-known/oauth-protected-resource")  # no token needed
        assert doc.status_code == 200 and doc.json() == metadata.document()
        assert doc.headers["access-control-allow-origin"] == "*"
        assert (await c.post("/.well-known/oauth-protected-resource")).status_code == 405
        missing = await c.get("/me")
        assert missing.status_code == 401 and challenge(missing) == f'Bearer resource_metadata="{METADATA_URL}"'
        bad = await c.get("/me", headers=bearer(issuer.mint(aud="https://other.example")))
        assert challenge(bad) == f'Bearer error="invalid_token", resource_metadata="{METADATA_URL}"'
        assert (await c.get("/me", headers=bearer(issuer.mint()))).json() == {"sub": "user-1"}


# -- FastAPI -------------------------------------------------------------------------------------


async def test_fastapi_step_up_names_the_scope_and_the_metadata(
        issuer: StandInIssuer, verifier: TokenVerifier, metadata: ProtectedResourceMetadata) -> None:
    app = FastAPI()
    install(app, verifier, metadata=metadata)

    @app.post("/orders")
    async def write(token: Annotated[AccessToken, Depends(require_scopes("orders:write"))]) -> dict[str, str]:
        return {"sub": token.subject}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://api.example.test") as c:
        assert (await c.get("/.well-known/oauth-protected-resource")).json() == metadata.document()
        assert "/.well-known/oauth-protected-resource" not in (await c.get("/openapi.json")).text
        missing = await c.post("/orders")
        assert missing.status_code == 401 and challenge(missing) == f'Bearer resource_metadata="{METADATA_URL}"'
        step_up = await c.post("/orders", headers=bearer(issuer.mint(scope="orders:read")))
        assert step_up.status_code == 403 and step_up.json()["error"] == "insufficient_scope"
        assert challenge(step_up) == (f'Bearer error="insufficient_scope", scope="orders:write", '
                                      f'resource_metadata="{METADATA_URL}"')
        assert (await c.post("/orders", headers=bearer(issuer.mint(scope="orders:write")))).status_code == 200


# -- Flask ---------------------------------------------------------------------------------------


def test_flask_serves_the_document_and_points_challenges_at_it(
        issuer: StandInIssuer, verifier: TokenVerifier, metadata: ProtectedResourceMetadata) -> None:
    app = flask.Flask(__name__)
    serve_metadata(app, metadata)

    @app.get("/orders")
    @flask_require_token(verifier, scopes="orders:write", metadata=metadata)
    def orders() -> dict[str, str]:
        return {"sub": flask.g.access_token.subject}

    client = app.test_client()
    assert client.get("/.well-known/oauth-protected-resource").json == metadata.document()
    response = client.get("/orders")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == f'Bearer resource_metadata="{METADATA_URL}"'
    response = client.get("/orders", headers=bearer(issuer.mint()))
    assert response.status_code == 403
    assert response.headers["WWW-Authenticate"] == (
        f'Bearer error="insufficient_scope", scope="orders:write", resource_metadata="{METADATA_URL}"')


# -- the MCP SDK's token verifier ----------------------------------------------------------------


async def test_mcp_token_verifier(issuer: StandInIssuer, verifier: TokenVerifier) -> None:
    mcp = McpTokenVerifier(verifier)
    token = issuer.mint(scope="notes:read profile")
    access = await mcp.verify_token(token)
    assert access is not None
    assert (access.client_id, access.subject, access.resource) == ("web-app", "user-1", AUDIENCE)
    assert sorted(access.scopes) == ["notes:read", "profile"] and access.claims and access.claims["iss"] == issuer.url
    assert access.expires_at == int(issuer.claims()["exp"])
    for refused in (issuer.mint(aud="https://other.example"), issuer.mint(iss="https://evil.example"), "garbage",
                    issuer.mint(typ="JWT")):
        assert await mcp.verify_token(refused) is None


def test_mcp_auth_settings_keep_the_issuer_as_written() -> None:
    settings = auth_settings("https://login.example.com", "https://tools.example.com/mcp", ["notes:read"])
    assert str(settings.issuer_url) == "https://login.example.com"  # RFC 8414 §3.3: compared as strings
    assert str(settings.resource_server_url) == "https://tools.example.com/mcp"
    assert settings.required_scopes == ["notes:read"] and settings.validate_token_resource is True


async def test_mcp_token_verifier_fails_safe_when_the_issuer_is_unreachable(
        issuer: StandInIssuer, caplog: pytest.LogCaptureFixture) -> None:
    """No keys can be fetched: the token is refused (the SDK answers 401), never let through."""
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mcp = McpTokenVerifier.for_server(f"http://127.0.0.1:{port}", AUDIENCE, timeout=2)
    try:
        with caplog.at_level(logging.WARNING, logger="ostiary.resource"):
            assert await mcp.verify_token(issuer.mint(iss=f"http://127.0.0.1:{port}")) is None
        assert "issuer is unavailable" in caplog.text
    finally:
        mcp.close()
