"""The official MCP Python SDK signs in through Ostiary, end to end, with nobody's code but the SDK's in the
protocol path.

A live Ostiary (tests/support.py), the example MCP server (examples/mcp_server/server.py: the SDK's
``MCPServer`` over streamable HTTP, protected by ``ostiary.resource.mcp``) and the SDK's client with its OAuth
provider (``OAuthClientProvider``, wired by examples/mcp_server/client.py). The SDK gets a 401, discovers the
RFC 9728 document from the challenge and Ostiary's metadata from it, runs Authorization Code + PKCE with
``resource`` while real Chromium signs in and consents, calls a tool, and after the access token is made to
expire, refreshes (with ``resource``) and calls again.

The TypeScript SDK's client (``@modelcontextprotocol/sdk``, tests/mcp_node/mcp_client.mjs) does the same
through its own OAuth support, headless in Node, with Chromium doing the browser step, in the same three
registration modes (its provider's ``clientMetadataUrl`` for the metadata document; the SDK's https-only check
on that URL, ``isHttpsUrl``, is widened to http on 127.0.0.1 by a load hook in the Node script, that mode only).

How the client is registered (Python SDK test) is a fixture parametrized by mode: pre-registered, dynamic client
registration (RFC 7591), and a client ID metadata document served by the test (the SDK's ``client_metadata_url``:
the SDK sees ``client_id_metadata_document_supported`` in Ostiary's metadata and uses the URL as its client_id;
Ostiary fetches the document). The document is served over http on 127.0.0.1, which Ostiary allows because its
issuer is loopback; the SDK itself accepts only https URLs there, so for that mode the test widens the SDK's one
URL check (``is_valid_client_metadata_url``) to http on 127.0.0.1; the rest of the flow is the SDK's.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from ..support import ROOT, LiveServer, free_port, start_server
from ..web._cimd import DocServer, document
from ..web._codeflow import new_user

pytestmark = pytest.mark.browser

EXAMPLE = ROOT / "examples" / "mcp_server"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCOPE = "notes:read"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"mcp_example_{name}", EXAMPLE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


CLIENT = _load("client")


def _claims(jwt: str) -> dict[str, Any]:
    part = jwt.split(".")[1]
    value: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return value


@dataclass
class Stack:
    ostiary: LiveServer
    mcp_url: str
    log: Path
    docs: DocServer


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("mcp-interop")
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    # dynamic client registration open, for the "dcr" mode: registered clients may get tokens for this MCP server
    srv = start_server(f"sqlite+aiosqlite:///{tmp / 'ost.db'}", tmp, extra_env={
        "OSTIARY_REGISTRATION__POLICY": "open", "OSTIARY_REGISTRATION__AUDIENCES": url,
        "OSTIARY_REGISTRATION__SCOPES": f"openid offline_access {SCOPE}",
        # and client ID metadata documents, for the "metadata-document" mode
        "OSTIARY_REGISTRATION__CLIENT_METADATA_DOCUMENTS": "true"})
    docs = DocServer()
    log = tmp / "mcp.log"
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, str(EXAMPLE / "server.py"), "--issuer", srv.issuer, "--url", url,
                                 "--port", str(port)], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(url, timeout=1).status_code == 401:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield Stack(srv, url, log, docs)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        srv.stop()
        docs.close()


# -- how the MCP client comes to be known to Ostiary ---------------------------------------------


@dataclass
class Registration:
    """What the SDK is given: stored client information (a client registered beforehand), or nothing and a
    ``client_metadata_url`` (the SDK registers, or uses a client ID metadata document, by itself)."""

    mode: str
    client_info: Any | None = None
    client_metadata_url: str | None = None
    expected_client_id: str | None = None
    client_name: str = ""


def _pre_registered(stack: Stack, callback: Any) -> Registration:
    """``ostiary client create``: public, the MCP server's URL as its audience, a loopback redirect URI."""
    out = stack.ostiary.cli("client", "create", "--name", "MCP interop client", "--public", "--no-dpop",
                            "--grant-type", "authorization_code", "--grant-type", "refresh_token",
                            "--scope", SCOPE + " offline_access", "--audience", stack.mcp_url,
                            "--redirect-uri", "http://127.0.0.1/callback", "--json")
    client_id = json.loads(out.stdout)["client_id"]
    return Registration("pre-registered", CLIENT.pre_registered(client_id, callback.redirect_uri),
                        expected_client_id=client_id, client_name="MCP interop client")


def _dynamic(stack: Stack, callback: Any) -> Registration:
    """Nothing registered beforehand: the SDK registers itself at the ``registration_endpoint`` of Ostiary's
    metadata (RFC 7591, ``registration.policy = open``); the consent page shows the name it chose."""
    return Registration("dcr", None, client_name="Ostiary MCP example client")


def _metadata_document(stack: Stack, callback: Any) -> Registration:
    """Nothing registered: the client_id is the URL of a metadata document the test serves (its loopback
    redirect URI, public), which Ostiary fetches; the consent page shows the document's client_name."""
    path = f"/agents/{time.monotonic_ns()}/client.json"
    url = stack.docs.base + path
    stack.docs.add(path, document(url, client_name="Interop agent (metadata document)",
                                  redirect_uris=[callback.redirect_uri]),
                   headers={"Content-Type": "application/json", "Cache-Control": "max-age=600"})
    return Registration("metadata-document", None, client_metadata_url=url, expected_client_id=url,
                        client_name="Interop agent (metadata document)")


REGISTRATION_MODES: dict[str, Callable[[Stack, Any], Registration]] = {"pre-registered": _pre_registered,
                                                                      "dcr": _dynamic,
                                                                      "metadata-document": _metadata_document}


def _https_or_loopback_metadata_url(url: str | None) -> bool:
    """The SDK's check (https with a path), widened to http on 127.0.0.1 for the document served here."""
    from mcp.client.auth.utils import is_valid_client_metadata_url

    return is_valid_client_metadata_url(url) or bool(url and url.startswith("http://127.0.0.1:")
                                                     and urlsplit(url).path not in ("", "/"))


@pytest.fixture(params=sorted(REGISTRATION_MODES))
def callback_and_registration(request: pytest.FixtureRequest, stack: Stack,
                              monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Registration]]:
    if request.param == "metadata-document":
        import mcp.client.auth.oauth2 as sdk_oauth2

        monkeypatch.setattr(sdk_oauth2, "is_valid_client_metadata_url", _https_or_loopback_metadata_url)
    with CLIENT.LoopbackCallback() as callback:
        yield callback, REGISTRATION_MODES[request.param](stack, callback)


# -- the browser step --------------------------------------------------------------------------------


@dataclass
class Person:
    """Real Chromium: opens the authorization URL the SDK hands over, signs in, allows."""

    page: Any
    user: dict[str, Any]
    urls: list[str] = field(default_factory=list)
    consent_clients: list[str] = field(default_factory=list)  # the client's name as the consent page shows it

    async def __call__(self, url: str) -> None:
        self.urls.append(url)
        await self.page.goto(url)
        if await self.page.locator("#done").count():  # sent straight back (an error): the callback tells
            return
        if not await self.page.locator("#username").count():  # Ostiary refused the request: say why
            raise AssertionError(await self.page.inner_text("body"))
        await self.page.fill("#username", self.user["username"])
        await self.page.fill("#password", self.user["password"])
        await self.page.click("#login-submit")
        await self.page.wait_for_selector("#consent-form")
        self.consent_clients.append((await self.page.text_content("#consent-client") or "").strip())
        await self.page.click("#consent-allow")
        await self.page.wait_for_selector("#done")  # the loopback callback's page


@pytest.fixture
async def browser() -> Any:
    from playwright.async_api import async_playwright

    if not await asyncio.to_thread(Path(CHROMIUM).exists):
        pytest.fail(f"{CHROMIUM} is missing: run scripts/ensure-chromium.sh (never `playwright install`)")
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


# -- the tests -------------------------------------------------------------------------------------


def test_unauthenticated_request_points_at_metadata_that_names_ostiary(stack: Stack) -> None:
    r = httpx.post(stack.mcp_url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert r.status_code == 401
    challenge = r.headers["www-authenticate"]
    assert challenge.startswith("Bearer ") and "resource_metadata=" in challenge
    metadata_url = challenge.split('resource_metadata="', 1)[1].split('"', 1)[0]
    assert metadata_url == stack.mcp_url.replace("/mcp", "/.well-known/oauth-protected-resource/mcp")
    doc = httpx.get(metadata_url).json()
    assert doc["resource"] == stack.mcp_url and doc["scopes_supported"] == [SCOPE]
    assert [a.rstrip("/") for a in doc["authorization_servers"]] == [stack.ostiary.issuer]
    assert doc["bearer_methods_supported"] == ["header"]


def test_tokens_for_another_audience_are_refused(stack: Stack) -> None:
    """A genuine Ostiary token, but for another API: the verifier refuses it (aud is checked)."""
    c = stack.ostiary.create_client(scopes=[SCOPE], audiences=["https://other.example.com"])
    r = httpx.post(stack.ostiary.base_url + "/token", auth=(c["client_id"], c["client_secret"]),
                   data={"grant_type": "client_credentials", "scope": SCOPE})
    assert r.status_code == 200, r.text
    call = httpx.post(stack.mcp_url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                      headers={"Authorization": "Bearer " + r.json()["access_token"],
                               "Accept": "application/json, text/event-stream"})
    assert call.status_code == 401 and "resource_metadata=" in call.headers["www-authenticate"]


async def test_sdk_client_signs_in_calls_a_tool_refreshes_and_calls_again(
        stack: Stack, callback_and_registration: tuple[Any, Registration], browser: Any) -> None:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    callback, registration = callback_and_registration
    user = new_user(stack.ostiary, name="Mcp User")
    context = await browser.new_context()
    context.set_default_timeout(20_000)
    person = Person(await context.new_page(), user)
    storage = CLIENT.MemoryStorage(registration.client_info)
    provider = CLIENT.oauth_provider(stack.mcp_url, storage, callback, person,
                                     client_metadata_url=registration.client_metadata_url)
    try:
        async with httpx2.AsyncClient(auth=provider, timeout=30) as http, \
                Client(streamable_http_client(stack.mcp_url, http_client=http)) as client:
            first = await client.call_tool("whoami")
            assert not first.is_error, first.content
            who = first.structured_content
            assert who is not None
            client_id = storage.client_info.client_id
            if registration.expected_client_id is not None:
                assert client_id == registration.expected_client_id
            if registration.client_metadata_url is not None:  # Ostiary fetched the document, once
                assert stack.docs.hits[urlsplit(registration.client_metadata_url).path] == 1
            assert who["subject"] == user["id"] and who["client_id"] == client_id
            assert who["resource"] == stack.mcp_url and SCOPE in who["scopes"]

            # the browser went to Ostiary's /authorize with PKCE S256 and resource = the MCP server
            assert len(person.urls) == 1 and person.consent_clients == [registration.client_name]
            asked = {k: v[0] for k, v in parse_qs(urlsplit(person.urls[0]).query).items()}
            assert person.urls[0].startswith(stack.ostiary.issuer + "/authorize?")
            assert asked["resource"] == stack.mcp_url and asked["code_challenge_method"] == "S256"
            assert asked["client_id"] == client_id and SCOPE in asked["scope"].split()

            tokens = storage.tokens
            assert tokens is not None and tokens.refresh_token
            claims = _claims(tokens.access_token)
            assert claims["aud"] in (stack.mcp_url, [stack.mcp_url]) and claims["iss"] == stack.ostiary.issuer
            assert claims["sub"] == user["id"] and claims["client_id"] == client_id

            # Make the access token expire (as far as the client knows): its next request refreshes first
            provider.context.token_expiry_time = time.time() - 1
            notes = await client.call_tool("list_notes")
            assert not notes.is_error and notes.structured_content and "welcome" in notes.structured_content
            refreshed = storage.tokens
            assert refreshed is not None
            assert refreshed.access_token != tokens.access_token
            assert refreshed.refresh_token and refreshed.refresh_token != tokens.refresh_token  # rotated
            assert len(person.urls) == 1  # no second trip through the browser
            again = _claims(refreshed.access_token)
            assert again["aud"] in (stack.mcp_url, [stack.mcp_url]) and again["sub"] == user["id"]
            assert (await client.call_tool("whoami")).structured_content == who
    finally:
        await context.close()

    # the refresh went through Ostiary with resource: the old refresh token is spent (rotation)
    async with httpx.AsyncClient() as http_plain:
        spent = await http_plain.post(stack.ostiary.base_url + "/token", data={
            "grant_type": "refresh_token", "refresh_token": tokens.refresh_token, "client_id": client_id})
    assert spent.status_code == 400 and spent.json()["error"] == "invalid_grant"


# -- the TypeScript SDK's client -------------------------------------------------------------------


NODE_DIR = ROOT / "tests" / "mcp_node"


@pytest.fixture(scope="module")
def node_client() -> Path:
    """``npm install`` once (idempotent: only when node_modules is missing)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.fail("node and npm are needed for the MCP TypeScript SDK test (apt-get install nodejs npm)")
    if not (NODE_DIR / "node_modules" / "@modelcontextprotocol" / "sdk").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True, capture_output=True,
                       timeout=300)
    return NODE_DIR / "mcp_client.mjs"


TS_MODES = ("dcr", "metadata-document", "pre-registered")


@pytest.mark.parametrize("mode", TS_MODES)
async def test_typescript_sdk_client_signs_in_calls_a_tool_refreshes_and_calls_again(
        stack: Stack, node_client: Path, browser: Any, mode: str) -> None:
    """``@modelcontextprotocol/sdk``'s own OAuth client (StreamableHTTPClientTransport with an auth provider),
    headless: it prints the authorization URL, Chromium signs in and consents, the code reaches the Node
    process's loopback callback; it calls a tool, then, when the server refuses its access token, refreshes
    and calls again. Registered beforehand, by the SDK itself (RFC 7591), or as a client ID metadata document
    (the provider's ``clientMetadataUrl``) that the test serves and Ostiary fetches."""
    expected_client_id: str | None = None
    doc_path = doc_url = None
    if mode == "pre-registered":
        out = stack.ostiary.cli("client", "create", "--name", "TS MCP client", "--public", "--no-dpop",
                                "--grant-type", "authorization_code", "--grant-type", "refresh_token",
                                "--scope", SCOPE + " offline_access", "--audience", stack.mcp_url,
                                "--redirect-uri", "http://127.0.0.1/callback", "--json")
        expected_client_id = json.loads(out.stdout)["client_id"]
        args, client_name = [expected_client_id], "TS MCP client"
    elif mode == "dcr":  # the name is the one the provider's clientMetadata gives
        args, client_name = [], "TS MCP client"
    else:
        doc_path = f"/agents/ts-{time.monotonic_ns()}/client.json"
        doc_url = expected_client_id = stack.docs.base + doc_path
        args, client_name = [doc_url], "TS agent (metadata document)"
    user = new_user(stack.ostiary, name="Ts User")
    context = await browser.new_context()
    context.set_default_timeout(20_000)
    person = Person(await context.new_page(), user)
    proc = await asyncio.create_subprocess_exec("node", str(node_client), stack.mcp_url, mode, *args,
                                                cwd=NODE_DIR, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    events: dict[str, dict[str, Any]] = {}
    try:
        assert proc.stdout is not None and proc.stderr is not None
        while True:
            line = await asyncio.wait_for(proc.stdout.readline(), 120)
            if not line:
                break
            event = json.loads(line)
            events[event["event"]] = event
            if event["event"] == "authorize":
                if doc_path is not None:  # publish the document, with the Node process's loopback redirect URI
                    redirect_uri = parse_qs(urlsplit(event["url"]).query)["redirect_uri"][0]
                    stack.docs.add(doc_path, document(doc_url, client_name=client_name,
                                                      redirect_uris=[redirect_uri]),
                                   headers={"Content-Type": "application/json", "Cache-Control": "max-age=600"})
                await person(event["url"])
        assert await asyncio.wait_for(proc.wait(), 60) == 0, (await proc.stderr.read()).decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await context.close()

    called, refreshed = events["called"], events["refreshed"]
    client_id = called["client_id"]
    if expected_client_id is not None:
        assert client_id == expected_client_id
    else:  # registered by the SDK: a new client, not any other kind of client id
        assert client_id and not client_id.startswith(("http://", "https://"))
    if doc_path is not None:  # Ostiary fetched the document, once (sign-in, code exchange and refresh)
        assert stack.docs.hits[doc_path] == 1
    assert len(person.urls) == 1 and person.consent_clients == [client_name]
    asked = {k: v[0] for k, v in parse_qs(urlsplit(person.urls[0]).query).items()}
    assert person.urls[0].startswith(stack.ostiary.issuer + "/authorize?")
    assert asked["resource"] == stack.mcp_url and asked["code_challenge_method"] == "S256"
    assert asked["client_id"] == client_id and SCOPE in asked["scope"].split()
    assert called["whoami"]["subject"] == user["id"] and called["whoami"]["client_id"] == client_id
    assert called["whoami"]["resource"] == stack.mcp_url
    access = _claims(called["access_token"])
    assert access["aud"] in (stack.mcp_url, [stack.mcp_url]) and access["client_id"] == client_id
    assert "cnf" not in access  # unbound: the SDK makes no DPoP proofs
    assert "welcome" in refreshed["notes"] and refreshed["whoami"] == called["whoami"]
    assert refreshed["token_responses"] == 2  # the code exchange, then one refresh
    assert refreshed["access_token"] != called["access_token"]
    assert refreshed["refresh_token"] and refreshed["refresh_token"] != called["refresh_token"]  # rotated
    assert _claims(refreshed["access_token"])["aud"] in (stack.mcp_url, [stack.mcp_url])

# -- make demo-mcp ---------------------------------------------------------------------------------


def test_demo_check_starts_everything_prints_json_and_cleans_up() -> None:
    """``make demo-mcp`` runs examples/mcp_server/run.py; ``--check`` starts the same, checks what a client sees
    first (401 → RFC 9728 document naming Ostiary) and stops."""
    proc = subprocess.run([sys.executable, str(EXAMPLE / "run.py"), "--check"], capture_output=True, text=True,
                          timeout=180, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["username"] == "demo" and len(info["password"]) >= 12 and info["client_id"] == "demo-mcp-client"
    assert info["metadata"]["resource"] == info["mcp_url"]
    assert [a.rstrip("/") for a in info["metadata"]["authorization_servers"]] == [info["issuer"]]
    assert info["metadata_url"].endswith("/.well-known/oauth-protected-resource/mcp")
    assert not Path(info["workdir"]).exists()
    for url in (info["issuer"], info["mcp_url"]):  # every process is gone
        with pytest.raises(httpx.ConnectError):
            httpx.get(url, timeout=2)
