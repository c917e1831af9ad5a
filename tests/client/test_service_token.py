"""ServiceTokenClient and ClientCredentialsAuth against the stand-in issuer over real HTTP."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "resource"))
from _issuer import AUDIENCE, StandInIssuer  # noqa: E402

from ostiary._clock import FixedClock  # noqa: E402
from ostiary.client import (  # noqa: E402
    ClientCredentialsAuth,
    OAuthError,
    ServiceTokenClient,
    TokenEndpointUnavailable,
)
from ostiary.core.jose import generate_private_key, public_jwk  # noqa: E402
from ostiary.resource import TokenVerifier  # noqa: E402
from ostiary.resource.starlette import BearerAuthMiddleware  # noqa: E402

SECRET = "correct horse:battery/staple"


@pytest.fixture(scope="module")
def _server() -> Iterator[StandInIssuer]:
    server = StandInIssuer().start()
    yield server
    server.stop()


@pytest.fixture
def issuer(_server: StandInIssuer) -> StandInIssuer:
    _server.reset()
    _server.state.secrets["billing"] = SECRET
    return _server


@pytest.fixture
def clock(issuer: StandInIssuer) -> FixedClock:
    assert isinstance(issuer.state.clock, FixedClock)
    return issuer.state.clock


@pytest.fixture
def client(issuer: StandInIssuer, clock: FixedClock) -> Iterator[ServiceTokenClient]:
    c = ServiceTokenClient(issuer.url, "billing", client_secret=SECRET, clock=clock, backoff=0.001)
    yield c
    c.close()


def test_client_secret_basic_and_cache(issuer: StandInIssuer, client: ServiceTokenClient) -> None:
    token = client.get_token("orders:read")
    assert client.get_token("orders:read") is token
    assert issuer.state.counts["token"] == 1
    assert issuer.state.token_requests[0] == {"grant_type": "client_credentials", "scope": "orders:read"}
    assert token.access_token not in repr(token) and SECRET not in repr(client)


def test_cache_is_per_scope_and_resource(issuer: StandInIssuer, client: ServiceTokenClient) -> None:
    a = client.get_token("orders:read orders:write")
    assert client.get_token(["orders:write", "orders:read"]) is a
    b = client.get_token("orders:read")
    c = client.get_token("orders:read", resource="https://inventory.example.test")
    assert len({a.access_token, b.access_token, c.access_token}) == 3
    assert issuer.state.token_requests[-1]["resource"] == "https://inventory.example.test"
    assert issuer.state.counts["token"] == 3


def test_refresh_at_80_percent(issuer: StandInIssuer, client: ServiceTokenClient, clock: FixedClock) -> None:
    issuer.state.token_lifetime = 100
    first = client.get_token()
    clock.advance(79)
    assert client.get_token() is first
    clock.advance(2)
    assert client.get_token() is not first
    assert issuer.state.counts["token"] == 2


async def test_100_concurrent_tasks_one_request(issuer: StandInIssuer, client: ServiceTokenClient) -> None:
    issuer.state.token_delay = 0.2
    tokens = await asyncio.gather(*(client.aget_token("orders:read") for _ in range(100)))
    assert len({t.access_token for t in tokens}) == 1
    assert issuer.state.counts["token"] == 1


def test_100_threads_one_request(issuer: StandInIssuer, client: ServiceTokenClient) -> None:
    issuer.state.token_delay = 0.2
    barrier, results = threading.Barrier(100), []

    def worker() -> None:
        barrier.wait()
        results.append(client.get_token("orders:read").access_token)

    threads = [threading.Thread(target=worker) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 100 and len(set(results)) == 1
    assert issuer.state.counts["token"] == 1


def test_retries_5xx_then_succeeds(issuer: StandInIssuer, client: ServiceTokenClient) -> None:
    issuer.state.token_script = [500, 503]
    assert client.get_token().access_token
    assert issuer.state.counts["token"] == 3


async def test_retries_5xx_async(issuer: StandInIssuer, client: ServiceTokenClient) -> None:
    issuer.state.token_script = [502]
    assert (await client.aget_token()).access_token
    assert issuer.state.counts["token"] == 2


def test_retries_are_bounded(issuer: StandInIssuer, client: ServiceTokenClient) -> None:
    issuer.state.token_script = [500] * 10
    with pytest.raises(TokenEndpointUnavailable):
        client.get_token()
    assert issuer.state.counts["token"] == 4


def test_network_errors_are_retried(clock: FixedClock) -> None:
    c = ServiceTokenClient("http://127.0.0.1:9", "billing", client_secret=SECRET,
                           token_endpoint="http://127.0.0.1:9/token", clock=clock, backoff=0.001,
                           max_attempts=2)
    with pytest.raises(TokenEndpointUnavailable):
        c.get_token()


def test_no_retry_on_4xx(issuer: StandInIssuer, client: ServiceTokenClient) -> None:
    issuer.state.token_script = [400]
    with pytest.raises(OAuthError) as info:
        client.get_token()
    assert info.value.error == "invalid_client" and info.value.status_code == 400
    assert issuer.state.counts["token"] == 1


def test_wrong_secret(issuer: StandInIssuer, clock: FixedClock, caplog: pytest.LogCaptureFixture) -> None:
    c = ServiceTokenClient(issuer.url, "billing", client_secret="wrong", clock=clock)
    with pytest.raises(OAuthError) as info:
        c.get_token()
    assert info.value.error == "invalid_client" and info.value.description == "client authentication failed"
    assert issuer.state.counts["token"] == 1
    assert "wrong" not in caplog.text


def test_stale_token_used_while_endpoint_is_down(issuer: StandInIssuer, client: ServiceTokenClient,
                                                 clock: FixedClock) -> None:
    issuer.state.token_lifetime = 100
    first = client.get_token()
    clock.advance(90)
    issuer.state.token_script = [500] * 4
    assert client.get_token() is first  # still valid for 10 s
    clock.advance(11)
    issuer.state.token_script = [500] * 4
    with pytest.raises(TokenEndpointUnavailable):
        client.get_token()


def test_private_key_jwt(issuer: StandInIssuer, clock: FixedClock) -> None:
    key = generate_private_key("ES256")
    issuer.state.client_jwks["ci-runner"] = {"keys": [public_jwk(key, "ci-key-1")]}
    c = ServiceTokenClient(issuer.url, "ci-runner", private_key=key, key_id="ci-key-1", clock=clock)
    token = c.get_token("deploy")
    assert token.access_token
    (assertion,) = issuer.state.assertions
    assert assertion["iss"] == assertion["sub"] == "ci-runner"
    assert assertion["aud"] == issuer.url  # the issuer alone (OIDC Core §9, 2025 errata)
    assert 0 < assertion["exp"] - assertion["iat"] <= 300 and len(assertion["jti"]) >= 16
    form = issuer.state.token_requests[0]
    assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    assert "Basic" not in repr(c)


def test_private_key_jwt_wrong_key_is_refused(issuer: StandInIssuer, clock: FixedClock) -> None:
    issuer.state.client_jwks["ci-runner"] = {"keys": [public_jwk(generate_private_key("EdDSA"), "k")]}
    c = ServiceTokenClient(issuer.url, "ci-runner", private_key=generate_private_key("EdDSA"), key_id="k",
                           clock=clock)
    with pytest.raises(OAuthError):
        c.get_token()


def test_exactly_one_credential() -> None:
    with pytest.raises(ValueError):
        ServiceTokenClient("https://issuer.example", "x")
    with pytest.raises(ValueError):
        ServiceTokenClient("https://issuer.example", "x", client_secret="s", private_key=generate_private_key("ES256"))


def test_plain_http_issuer_is_refused() -> None:
    from ostiary.client import DiscoveryError

    c = ServiceTokenClient("http://issuer.example", "x", client_secret="s")
    with pytest.raises(DiscoveryError):
        c.get_token()


# -- httpx.Auth, end to end with a protected API -----------------------------------------------


async def whoami_app(issuer: StandInIssuer, clock: FixedClock) -> BearerAuthMiddleware:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def whoami(request: Request) -> JSONResponse:
        return JSONResponse({"client": request.state.access_token.client_id})

    verifier = TokenVerifier(issuer.url, AUDIENCE, clock=clock)
    return BearerAuthMiddleware(Starlette(routes=[Route("/whoami", whoami)]), verifier)


async def test_async_auth_against_protected_api(issuer: StandInIssuer, client: ServiceTokenClient,
                                                clock: FixedClock) -> None:
    transport = httpx.ASGITransport(app=await whoami_app(issuer, clock))
    auth = ClientCredentialsAuth(client, "orders:read", resource=AUDIENCE)
    async with httpx.AsyncClient(transport=transport, base_url="http://api", auth=auth) as api:
        responses = await asyncio.gather(*(api.get("/whoami") for _ in range(20)))
    assert all(r.json() == {"client": "billing"} for r in responses)
    assert issuer.state.counts["token"] == 1


def test_sync_auth_retries_once_after_invalid_token(issuer: StandInIssuer, client: ServiceTokenClient) -> None:
    seen: list[str] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"])
        if len(seen) == 1:
            return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return httpx.Response(200, json={"ok": True})

    with httpx.Client(transport=httpx.MockTransport(api), auth=client.auth("orders:read")) as http:
        assert http.get("https://api.example.test/x").json() == {"ok": True}
    assert len(seen) == 2 and seen[0] != seen[1] and all(s.startswith("Bearer ") for s in seen)
    assert issuer.state.counts["token"] == 2


def test_tokens_never_logged(issuer: StandInIssuer, client: ServiceTokenClient,
                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    issuer.state.token_script = [500]
    token = client.get_token()
    assert token.access_token not in caplog.text and SECRET not in caplog.text
    assert "attempt 1" in caplog.text


def test_client_imports_without_server_dependencies() -> None:
    code = ("import sys, ostiary.client\n"
            "bad = [m for m in ('starlette', 'sqlalchemy', 'jinja2', 'fastapi', 'flask') if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)


# -- audience and origin binding (RFC 8707) ----------------------------------------------------

def test_token_for_another_audience_is_refused_and_not_cached(issuer: StandInIssuer,
                                                             client: ServiceTokenClient) -> None:
    """A server that ignores ``resource`` answers with a token for its default audience: not trusted."""
    issuer.state.ignore_resource = True
    with pytest.raises(OAuthError) as info:
        client.get_token("orders:read", resource="https://inventory.example.test")
    assert info.value.error == "invalid_target"
    issuer.state.ignore_resource = False
    token = client.get_token("orders:read", resource="https://inventory.example.test")
    assert issuer.state.counts["token"] == 2  # the refused token was not cached
    assert "audience" not in issuer.state.token_requests[-1]
    assert client.get_token("orders:read", resource="https://inventory.example.test") is token


def test_audience_is_not_a_parameter_any_more(client: ServiceTokenClient) -> None:
    with pytest.raises(TypeError):
        client.get_token("orders:read", audience="https://inventory.example.test")  # type: ignore[call-arg]


def test_auth_sends_the_token_to_one_origin_only(issuer: StandInIssuer, client: ServiceTokenClient) -> None:
    from ostiary.client import ClientError

    seen: list[str] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json={"ok": True})

    with httpx.Client(transport=httpx.MockTransport(api), auth=client.auth("orders:read", resource=AUDIENCE)) as http:
        assert http.get("https://api.example.test/x").status_code == 200
        assert http.get("https://api.example.test:443/y").status_code == 200  # same origin
        for other in ("https://other.example.test/x", "http://api.example.test/x", "https://api.example.test:8443/"):
            with pytest.raises(ClientError, match="refusing to send a token"):
                http.get(other)
    assert seen == ["https://api.example.test/x", "https://api.example.test/y"]

    pinned = client.auth("orders:read", resource=AUDIENCE, origin="https://api.example.test")
    with httpx.Client(transport=httpx.MockTransport(api), auth=pinned) as http:
        with pytest.raises(ClientError):
            http.get("https://other.example.test/x")  # not even the first request goes elsewhere
        assert http.get("https://api.example.test/z").status_code == 200
