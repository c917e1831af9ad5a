"""Client ID metadata documents over HTTP, against real server processes: a client whose ``client_id`` is the URL
of its metadata, served by the test on 127.0.0.1 (http on loopback is allowed because the issuer is loopback).
The full code flow with consent every time, caching per ``Cache-Control``, and every refused document (private and
metadata addresses, redirect, oversized, mismatched ``client_id``, wrong content type, unreachable, timeout, a
redirect URI not in the document, a deny-listed domain), each recorded as an audit event with its reason.
The address rules for a *name* that resolves to a private address are checked in process with an injected
resolver (no traffic is ever sent there)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Iterator

import httpx
import jwt
import pytest

from ostiary.core.audit import AuditEvent
from ostiary.core.client_metadata import ClientMetadataError
from ostiary.store.sql import SqlStore
from ostiary.web.client_metadata import MAX_IN_FLIGHT, MAX_TTL, MIN_TTL, HttpClientMetadata, cache_ttl
from ostiary.web.safe_fetch import SafeFetcher

from ..conftest import db_url_for
from ..support import LiveServer, free_port, start_server
from ._cimd import DocServer, document
from ._codeflow import REDIRECT, Browser, auth_params, exchange, forms, new_user, pkce, query, refresh

MCP = "https://mcp.example.com/mcp"


@pytest.fixture(scope="module")
def docs() -> Iterator[DocServer]:
    srv = DocServer()
    yield srv
    srv.close()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def cimd_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                pg_url_factory: object) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp(f"cimd-{request.param}")
    srv = start_server(db_url_for(request.param, tmp, pg_url_factory), tmp, extra_env={
        "OSTIARY_REGISTRATION__CLIENT_METADATA_DOCUMENTS": "true",
        "OSTIARY_REGISTRATION__SCOPES": "openid profile email offline_access",
        "OSTIARY_REGISTRATION__AUDIENCES": MCP,
        "OSTIARY_REGISTRATION__CLIENT_METADATA_DENY_DOMAINS": "localhost blocked.example",
    })
    yield srv
    srv.stop()


def _events(server: LiveServer, until: Callable[[list[AuditEvent]], bool]) -> list[AuditEvent]:
    async def read() -> list[AuditEvent]:
        store = SqlStore.from_url(server.env["OSTIARY_DATABASE_URL"])
        try:
            return await store.list_events(1000, "client_metadata.")
        finally:
            await store.close()

    deadline = time.monotonic() + 20
    while True:
        events = asyncio.run(read())
        if until(events) or time.monotonic() > deadline:
            return events
        time.sleep(0.2)


def refusal(server: LiveServer, url: str) -> str:
    """The reason recorded for refusing ``url``."""
    def found(es: list[AuditEvent]) -> bool:
        return any(e.type == "client_metadata.refused" and e.client_id == url for e in es)
    events = [e for e in _events(server, found) if e.type == "client_metadata.refused" and e.client_id == url]
    assert events, f"no refusal recorded for {url}"
    return str(events[-1].detail["reason"])


def try_authorize(server: LiveServer, client_id: str, **extra: str) -> httpx.Response:
    _, challenge = pkce()
    b = Browser(server)
    try:
        return b.authorize(**auth_params({"client_id": client_id}, challenge, **extra))
    finally:
        b.close()


def test_discovery_advertises_metadata_documents_only_when_enabled(cimd_server: LiveServer,
                                                                    server: LiveServer) -> None:
    meta = httpx.get(cimd_server.base_url + "/.well-known/oauth-authorization-server").json()
    assert meta["client_id_metadata_document_supported"] is True
    assert "none" in meta["token_endpoint_auth_methods_supported"]
    off = httpx.get(server.base_url + "/.well-known/oauth-authorization-server").json()
    assert "client_id_metadata_document_supported" not in off


def test_off_by_default_nothing_is_fetched(server: LiveServer, docs: DocServer) -> None:
    url = docs.add("/off-" + secrets.token_hex(4))
    r = try_authorize(server, url)
    assert r.status_code == 400 and "location" not in r.headers
    assert docs.hits[url.removeprefix(docs.base)] == 0


def test_full_flow_consent_every_time_and_cached_document(cimd_server: LiveServer, docs: DocServer) -> None:
    path = "/agent-" + secrets.token_hex(4) + "/client.json"
    url = docs.add(path, headers={"Content-Type": "application/json; charset=utf-8",
                                  "Cache-Control": "public, max-age=3600"})
    client = {"client_id": url}
    user = new_user(cimd_server)
    b = Browser(cimd_server)
    try:
        verifier, challenge = pkce()
        r = b.authorize(**auth_params(client, challenge, resource=MCP))
        r = b.login(r, user["username"], user["password"])
        assert "consent-form" in forms(r.text)
        assert "Not verified by the administrator" in r.text
        assert docs.base in r.text  # the consent page names the origin of the client_id URL
        r = b.submit(r, "consent-form", decision="allow")
        code = query(r.headers["location"])["code"]
        tokens = exchange(cimd_server, client, code, verifier, resource=MCP)
        assert tokens.status_code == 200, tokens.text
        body = tokens.json()
        claims = jwt.decode(body["access_token"], options={"verify_signature": False})
        assert claims["client_id"] == url and MCP in ([claims["aud"]] if isinstance(claims["aud"], str)
                                                      else claims["aud"])
        again = refresh(cimd_server, client, body["refresh_token"])
        assert again.status_code == 200, again.text
        # consent again the next time, and prompt=none cannot skip it
        verifier, challenge = pkce()
        r = b.authorize(**auth_params(client, challenge))
        assert "consent-form" in forms(r.text)
        r = b.authorize(**auth_params(client, challenge, prompt="none"))
        assert query(r.headers["location"])["error"] == "consent_required"
    finally:
        b.close()
    # three authorizations, a code exchange and a refresh: one fetch, within max-age
    assert docs.hits[path] == 1
    events = _events(cimd_server, lambda es: any(e.client_id == url for e in es))
    fetched = [e for e in events if e.type == "client_metadata.fetched" and e.client_id == url]
    assert len(fetched) == 1


def test_redirect_uri_not_in_the_document_is_refused(cimd_server: LiveServer, docs: DocServer) -> None:
    url = docs.add("/ru-" + secrets.token_hex(4))
    r = try_authorize(cimd_server, url, redirect_uri="https://attacker.example/cb")
    assert r.status_code == 400 and "location" not in r.headers  # an error page, never a redirect
    r = try_authorize(cimd_server, url, redirect_uri=REDIRECT + "/")
    assert r.status_code == 400 and "location" not in r.headers


@pytest.mark.parametrize(("case", "reason"), [
    ("mismatched", "client_id is not its URL"),
    ("content-type", "not application/json"),
    ("oversized", "larger than"),
    ("redirect", "HTTP 302"),
    ("secret", "only public clients"),
    ("bad-redirect-uri", "redirect URI"),
    ("not-found", "HTTP 404"),
])
def test_refused_documents(cimd_server: LiveServer, docs: DocServer, case: str, reason: str) -> None:
    path = f"/{case}-{secrets.token_hex(4)}"
    url = docs.base + path
    target = docs.add(path + "-target")
    if case == "mismatched":
        docs.add(path, document(docs.base + "/someone-else"))
    elif case == "content-type":
        docs.add(path, headers={"Content-Type": "text/plain"})
    elif case == "oversized":
        docs.add(path, document(url, client_name="x" * 200, padding="p" * 6000))
    elif case == "redirect":
        docs.add(path, status=302, headers={"Location": target, "Content-Type": "application/json"})
    elif case == "secret":
        docs.add(path, document(url, token_endpoint_auth_method="client_secret_basic"))
    elif case == "bad-redirect-uri":
        docs.add(path, document(url, redirect_uris=["javascript:alert(1)"]))
    r = try_authorize(cimd_server, url)
    assert r.status_code == 400 and "location" not in r.headers
    assert reason in refusal(cimd_server, url)
    assert docs.hits[path + "-target"] == 0  # a redirect is never followed
    # nor can the client use the token endpoint
    t = httpx.post(cimd_server.base_url + "/token", data={"grant_type": "authorization_code", "code": "x",
                                                          "redirect_uri": REDIRECT, "code_verifier": "v" * 43,
                                                          "client_id": url})
    assert t.status_code == 401 and t.json()["error"] == "invalid_client"


@pytest.mark.parametrize(("url", "reason"), [
    ("https://10.0.0.1/client.json", "private address"),
    ("https://169.254.169.254/latest/meta-data/client", "cloud metadata address"),
    ("https://169.254.1.1/client.json", "link-local address"),
    ("https://[fd00::1]/client.json", "private address"),
    ("https://blocked.example/client.json", "deny-listed"),
    ("https://sub.blocked.example/client.json", "deny-listed"),
    ("https://agent.example.com/", "must have a path"),
    ("https://agent.example.com/a/../client.json", "dot segments"),
])
def test_refused_urls(cimd_server: LiveServer, url: str, reason: str) -> None:
    r = try_authorize(cimd_server, url)
    assert r.status_code == 400 and "location" not in r.headers
    assert reason in refusal(cimd_server, url)


def test_deny_listed_domain_is_never_fetched(cimd_server: LiveServer, docs: DocServer) -> None:
    path = "/denied-" + secrets.token_hex(4)
    url = docs.base.replace("127.0.0.1", "localhost") + path
    docs.add(path, document(url))
    r = try_authorize(cimd_server, url)
    assert r.status_code == 400
    assert "deny-listed" in refusal(cimd_server, url)
    assert docs.hits[path] == 0


def test_unreachable_and_slow_hosts(cimd_server: LiveServer, docs: DocServer) -> None:
    closed = f"http://127.0.0.1:{free_port()}/client.json"
    assert try_authorize(cimd_server, closed).status_code == 400
    assert "cannot fetch" in refusal(cimd_server, closed)
    path = "/slow-" + secrets.token_hex(4)
    slow = docs.add(path, delay=5.0)
    assert try_authorize(cimd_server, slow).status_code == 400
    assert "did not answer within" in refusal(cimd_server, slow)


# -- in process: names resolving to private addresses, and the caching bounds --------------------------------


class _NoTraffic(httpx.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"a request was sent to {request.url}")


@pytest.mark.parametrize("address", ["10.1.2.3", "169.254.169.254", "192.168.0.10", "fe80::1", "127.0.0.1"])
async def test_a_name_resolving_to_a_private_address_is_never_fetched(address: str) -> None:
    async def resolve(host: str, port: int) -> list[str]:
        return ["93.184.215.14", address]  # one public, one not: refused

    fetcher = SafeFetcher(allow_loopback=False, resolver=resolve, transport=_NoTraffic())
    resolver = HttpClientMetadata(fetcher)
    with pytest.raises(ClientMetadataError, match="resolves to"):
        await resolver.resolve("https://agent.example.com/client.json")
    await resolver.close()


def test_cache_lifetime_follows_cache_control_within_bounds() -> None:
    assert cache_ttl("max-age=3600") == 3600
    assert cache_ttl("public, max-age=0") == MIN_TTL
    assert cache_ttl("no-store") == MIN_TTL
    assert cache_ttl("max-age=99999999") == MAX_TTL
    assert MIN_TTL <= cache_ttl(None) <= MAX_TTL


class _Held(httpx.AsyncBaseTransport):
    """Answers nothing until released: fetches stay in flight."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.all_started = asyncio.Event()
        self.started = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.started += 1
        if self.started == MAX_IN_FLIGHT:
            self.all_started.set()
        await self.release.wait()
        return httpx.Response(200, headers={"Content-Type": "application/json"}, stream=httpx.ByteStream(b"{}"))


async def test_fetches_in_flight_are_bounded() -> None:
    async def resolve(host: str, port: int) -> list[str]:
        return ["93.184.215.14"]

    held = _Held()
    resolver = HttpClientMetadata(SafeFetcher(allow_loopback=False, resolver=resolve, transport=held))
    urls = [f"https://agent{i}.example.com/client.json" for i in range(MAX_IN_FLIGHT)]
    tasks = [asyncio.create_task(resolver.resolve(u)) for u in urls]
    await held.all_started.wait()
    with pytest.raises(ClientMetadataError, match="being fetched already"):
        await resolver.resolve("https://one-more.example.com/client.json")
    assert held.started == MAX_IN_FLIGHT  # the one more was never sent
    held.release.set()
    assert all(r.fetched for r in await asyncio.gather(*tasks))
    await resolver.close()
