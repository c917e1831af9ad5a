"""The bounded fetcher (web/safe_fetch.py) in process, and client ``jwks_uri`` fetches through a live server.

Address rules are checked with an injected resolver and a transport that fails the test if it is ever used: no
traffic is ever sent to a private or metadata address. Oversized and slow bodies come from servers on 127.0.0.1.
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from joserfc import jwt as jose_jwt
from joserfc.jwk import ECKey

from ostiary.web.jwks_fetch import HttpJwksFetcher
from ostiary.web.safe_fetch import FetchCache, FetchError, SafeFetcher

from ..support import LiveServer

ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class NoTraffic(httpx.AsyncBaseTransport):
    """A transport that fails the test if a request gets this far."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        raise AssertionError(f"a request was sent to {request.url}")


def resolver(table: dict[str, list[str]], asked: list[str] | None = None):  # type: ignore[no-untyped-def]
    async def resolve(host: str, port: int) -> list[str]:
        if asked is not None:
            asked.append(host)
        return table[host]
    return resolve


@pytest.mark.parametrize("url", [
    "gopher://jwks.example.com/", "file:///etc/passwd", "ftp://jwks.example.com/jwks.json",
    "http://jwks.example.com/jwks.json",  # plain http to a remote host
    "https://169.254.169.254/latest/meta-data/", "http://169.254.169.254/latest/meta-data/",
    "https://10.0.0.1/jwks.json", "https://192.168.1.1/jwks.json", "https://[::ffff:10.0.0.1]/jwks.json",
    "https://[fd00:ec2::254]/", "https://100.100.100.200/", "https://168.63.129.16/", "https://0.0.0.0/",
    "https://224.0.0.1/", "https://user:pw@jwks.example.com/jwks.json", "https://127.0.0.1/jwks.json",
    "http://localhost:8080/jwks.json",  # loopback only while the issuer is loopback: not here
])
async def test_refused_urls_never_resolve_or_connect(url: str) -> None:
    asked: list[str] = []
    transport = NoTraffic()
    fetcher = SafeFetcher(allow_loopback=False, resolver=resolver({}, asked), transport=transport)
    try:
        with pytest.raises(FetchError, match="refusing to fetch"):
            await fetcher.get_json(url)
    finally:
        await fetcher.close()
    assert asked == [] and transport.requests == []


@pytest.mark.parametrize("addresses", [
    ["10.0.0.5"], ["169.254.169.254"], ["93.184.216.34", "172.16.0.1"], ["fe80::1"], ["127.0.0.1"],
    ["::ffff:169.254.169.254"], ["100.64.0.1"],
])
async def test_names_resolving_to_internal_addresses_are_refused_before_connecting(addresses: list[str]) -> None:
    transport = NoTraffic()
    fetcher = SafeFetcher(allow_loopback=False, resolver=resolver({"jwks.example.com": addresses}),
                          transport=transport)
    try:
        with pytest.raises(FetchError, match="resolves to"):
            await fetcher.get_json("https://jwks.example.com/jwks.json")
    finally:
        await fetcher.close()
    assert transport.requests == []


async def test_connects_to_the_checked_address_with_the_name_for_host_and_tls() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, stream=httpx.ByteStream(b"{\"keys\": []}"))

    fetcher = SafeFetcher(allow_loopback=False, resolver=resolver({"jwks.example.com": ["93.184.216.34"]}),
                          transport=httpx.MockTransport(handler))
    try:
        assert await fetcher.get_json("https://jwks.example.com/path/jwks.json?v=1") == {"keys": []}
    finally:
        await fetcher.close()
    (request,) = seen
    assert str(request.url) == "https://93.184.216.34/path/jwks.json?v=1"  # no second DNS look-up
    assert request.headers["host"] == "jwks.example.com"
    assert request.extensions["sni_hostname"] == "jwks.example.com"  # certificate checked for the name


# -- hostile loopback servers ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hostile() -> Iterator[dict]:
    """/big-declared (Content-Length 800 MiB), /big-stream (no length, endless), /drip (one byte at a time),
    /redirect (to /jwks), /jwks (a good JWKS, set by the test), /gzip."""
    state: dict = {"jwks": {"keys": []}, "hits": {}, "stop": threading.Event()}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_GET(self) -> None:  # noqa: N802
            path = self.path.split("?")[0]
            state["hits"][path] = state["hits"].get(path, 0) + 1
            try:
                if path == "/big-declared":
                    self.send_response(200)
                    self.send_header("Content-Length", str(800 * 1024 * 1024))
                    self.end_headers()
                    chunk = b" " * 65536
                    for _ in range(800 * 16):
                        self.wfile.write(chunk)
                elif path == "/big-stream":
                    self.send_response(200)
                    self.end_headers()
                    self.wfile.write(b'{"keys": [], "pad": "')
                    chunk = b"x" * 16384
                    for _ in range(50_000):  # ~800 MiB unless the client hangs up
                        self.wfile.write(chunk)
                elif path == "/drip":
                    self.send_response(200)
                    self.send_header("Content-Length", "1000")
                    self.end_headers()
                    while not state["stop"].is_set():
                        self.wfile.write(b" ")
                        self.wfile.flush()
                        time.sleep(0.05)
                elif path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", "/jwks")
                    self.end_headers()
                elif path == "/fed/.well-known/openid-configuration":
                    body = json.dumps({"issuer": state["base"] + "/fed",
                                       "jwks_uri": state["base"] + "/big-stream"}).encode()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                elif path == "/gzip":
                    self.send_response(200)
                    self.send_header("Content-Encoding", "gzip")
                    self.end_headers()
                    self.wfile.write(b"\x1f\x8b")
                else:
                    body = json.dumps(state["jwks"]).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    state["base"] = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield state
    state["stop"].set()
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize(("path", "message"), [
    ("/big-declared", "larger than 65536 bytes"), ("/big-stream", "larger than 65536 bytes"),
    ("/drip", "did not answer within"), ("/redirect", "answered HTTP 302"), ("/gzip", "compressed"),
])
async def test_hostile_bodies_are_cut_off(hostile: dict, path: str, message: str) -> None:
    fetcher = SafeFetcher(allow_loopback=True, deadline=1.0)
    try:
        with pytest.raises(FetchError, match=message):
            await fetcher.get_json(hostile["base"] + path)
        hostile["jwks"] = {"keys": [], "ok": True}
        assert await fetcher.get_json(hostile["base"] + "/jwks") == {"keys": [], "ok": True}  # loopback: dev only
    finally:
        await fetcher.close()


async def test_federation_keys_go_through_the_same_fetcher(hostile: dict) -> None:
    """A pinned issuer whose JWKS is endless: cut off at 64 KiB, reported as unavailable keys."""
    from ostiary.core.federation import ExternalKeysUnavailable
    from ostiary.web.federation_keys import HttpExternalKeys

    keys = HttpExternalKeys(allow_loopback=True)
    try:
        with pytest.raises(ExternalKeysUnavailable, match="larger than 65536 bytes"):
            await keys.keys(hostile["base"] + "/fed")
    finally:
        await keys.close()
    remote = HttpExternalKeys()  # this server's issuer is not loopback: no loopback fetches at all
    try:
        with pytest.raises(ExternalKeysUnavailable, match="loopback"):
            await remote.keys(hostile["base"] + "/fed")
    finally:
        await remote.close()


async def test_every_checked_address_is_tried_in_turn(hostile: dict) -> None:
    """``localhost`` may resolve to ::1 first while the server listens on 127.0.0.1 only."""
    port = hostile["base"].rsplit(":", 1)[1]
    hostile["jwks"] = {"keys": [], "via": "localhost"}
    fetcher = SafeFetcher(allow_loopback=True, resolver=resolver({"localhost": ["::1", "127.0.0.1"]}))
    try:
        assert await fetcher.get_json(f"http://localhost:{port}/jwks") == {"keys": [], "via": "localhost"}
    finally:
        await fetcher.close()


async def test_unreachable_host_is_a_fetch_error() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    fetcher = SafeFetcher(allow_loopback=True)
    try:
        with pytest.raises(FetchError, match="cannot fetch"):
            await fetcher.get_json(f"http://127.0.0.1:{port}/jwks.json")
    finally:
        await fetcher.close()


# -- the cache policy ------------------------------------------------------------------------------------

class Monotonic:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


async def test_failures_are_cached_with_exponential_backoff() -> None:
    clock = Monotonic()
    cache: FetchCache[dict] = FetchCache(ttl=300, min_refetch=10, max_backoff=40, monotonic=clock)
    calls = 0
    fail = True

    async def load() -> dict:
        nonlocal calls
        calls += 1
        if fail:
            raise FetchError("down")
        return {"ok": True}

    for expected_calls, wait in ((1, 10), (2, 20), (3, 40), (4, 40)):
        for _ in range(5):  # every request while backing off is answered from the failure cache
            with pytest.raises(FetchError, match="down"):
                await cache.get("u", load)
        assert calls == expected_calls
        clock.t += wait - 1
        with pytest.raises(FetchError):
            await cache.get("u", load)
        assert calls == expected_calls  # not yet
        clock.t += 1
    fail = False
    assert await cache.get("u", load) == {"ok": True}
    assert calls == 5
    assert await cache.get("u", load) == {"ok": True}
    assert calls == 5  # success cached


# -- through the token endpoint --------------------------------------------------------------------------

def _assertion(key: ECKey, client_id: str, aud: str) -> str:
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": aud, "iat": now, "exp": now + 60,
              "jti": secrets.token_urlsafe(16)}
    return jose_jwt.encode({"alg": "ES256", "kid": key.kid}, claims, key)


def _jwt_client(server: LiveServer, jwks_uri: str) -> str:
    client = server.create_client(audiences=["https://api.example.com"], token_endpoint_auth_method="private_key_jwt",
                                  jwks_uri=jwks_uri)
    return str(client["client_id"])


@pytest.mark.parametrize("uri", [
    "gopher://jwks.example.com/", "file:///etc/passwd", "http://jwks.example.com/jwks.json",
    "http://169.254.169.254/latest/meta-data/", "https://10.0.0.1/jwks.json", "https://u:p@jwks.example.com/",
])
def test_registration_refuses_unfetchable_jwks_uris(server: LiveServer, uri: str) -> None:
    with server.admin() as admin:
        r = admin.post("/clients", json={"name": "x", "token_endpoint_auth_method": "private_key_jwt",
                                         "jwks_uri": uri, "audiences": ["https://api.example.com"]})
        assert r.status_code == 422, r.text
        assert "jwks_uri" in r.json()["error_description"]
        cid = server.create_client(audiences=["https://api.example.com"])["client_id"]
        r = admin.patch(f"/clients/{cid}", json={"jwks_uri": uri})
        assert r.status_code in (409, 422) and "jwks_uri" in r.json()["error_description"], r.text


@pytest.mark.parametrize("path", ["/big-declared", "/big-stream", "/drip", "/unreachable", "/redirect"])
def test_failed_jwks_fetch_is_invalid_client_and_not_refetched(server: LiveServer, hostile: dict, path: str) -> None:
    key = ECKey.generate_key("P-256", parameters={"kid": secrets.token_hex(4)})
    uri = hostile["base"] + path + "?" + secrets.token_hex(4)  # a URL of its own: nothing cached yet
    if path == "/unreachable":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            uri = f"http://127.0.0.1:{s.getsockname()[1]}/jwks.json"
    cid = _jwt_client(server, uri)
    before = hostile["hits"].get(path, 0)
    for _ in range(3):  # (the drip holds the first request for the fetcher's whole 5 s deadline, no longer)
        r = httpx.post(server.base_url + "/token", timeout=60, data={
            "grant_type": "client_credentials", "client_assertion_type": ASSERTION,
            "client_assertion": _assertion(key, cid, server.issuer)})
        assert r.status_code == 401, r.text
        assert r.json()["error"] == "invalid_client"
    if path != "/unreachable":
        assert hostile["hits"].get(path, 0) == before + 1  # the failure is remembered (backoff): fetched once


def test_jwks_fetch_failures_count_toward_the_lockout(make_server, hostile: dict) -> None:  # type: ignore[no-untyped-def]
    server = make_server(extra_env={"OSTIARY_RATE_LIMITS__FAILED_AUTH_MAX": "3"})
    key = ECKey.generate_key("P-256", parameters={"kid": secrets.token_hex(4)})
    cid = _jwt_client(server, hostile["base"] + "/big-declared?" + secrets.token_hex(4))
    statuses = []
    for _ in range(5):  # no client_id parameter: the assertion's iss names the client
        r = httpx.post(server.base_url + "/token", data={
            "grant_type": "client_credentials", "client_assertion_type": ASSERTION,
            "client_assertion": _assertion(key, cid, server.issuer)})
        statuses.append(r.status_code)
    assert statuses == [401, 401, 401, 429, 429]


async def test_jwks_fetcher_single_flight_and_forced_refetch(hostile: dict) -> None:
    import asyncio

    clock = Monotonic()
    fetcher = SafeFetcher(allow_loopback=True)
    jwks = HttpJwksFetcher(fetcher, monotonic=clock)
    uri = hostile["base"] + "/jwks?" + secrets.token_hex(4)
    hostile["jwks"] = {"keys": []}
    before = hostile["hits"].get("/jwks", 0)
    try:
        results = await asyncio.gather(*(jwks.fetch(uri) for _ in range(20)))
        assert all(r == {"keys": []} for r in results)
        hits = hostile["hits"]["/jwks"]
        assert hits == before + 1  # twenty concurrent callers, one fetch
        await jwks.fetch(uri, force=True)
        await jwks.fetch(uri, force=True)  # a second forced refetch within 10 s: cached
        assert hostile["hits"]["/jwks"] == hits + 1
    finally:
        await fetcher.close()
