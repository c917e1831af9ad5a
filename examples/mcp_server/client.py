"""An MCP client (the official ``mcp`` SDK and its OAuth provider) that signs in through Ostiary.

On the server's 401 the SDK discovers everything itself: the RFC 9728 document named in the challenge, then
Ostiary's metadata (RFC 8414 / OpenID Connect discovery); it sends the browser to Ostiary's /authorize with
PKCE and ``resource`` = the server's URL (RFC 8707), receives the code on a loopback port, redeems it, and
refreshes the token when it expires. This client is registered beforehand (``ostiary client create
--public …``), so the SDK is handed its client id instead of registering itself.

    python client.py --url http://127.0.0.1:9400/mcp --client-id demo-mcp-client
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import webbrowser
from collections.abc import Awaitable, Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx2
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from pydantic import AnyUrl

GRANT_TYPES = ["authorization_code", "refresh_token"]


class MemoryStorage:
    """The SDK's ``TokenStorage``: tokens and client information, in memory only."""

    def __init__(self, client_info: OAuthClientInformationFull | None = None) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info = client_info

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


class LoopbackCallback:
    """A one-page HTTP server on 127.0.0.1 (a free port) that receives the authorization response."""

    def __init__(self, timeout: float = 300) -> None:
        self.timeout = timeout
        self.queries: list[dict[str, str]] = []
        self._arrived = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path == "/callback":
                    owner.queries.append(dict(parse_qsl(url.query)))
                    owner._arrived.set()
                body = b"<!doctype html><title>Done</title><h1 id='done'>You can close this window.</h1>"
                self.send_response(200 if url.path == "/callback" else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.redirect_uri = f"http://127.0.0.1:{self._httpd.server_address[1]}/callback"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> LoopbackCallback:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    async def wait(self) -> AuthorizationCodeResult:
        """The SDK's callback handler: the next authorization response's code, state and iss."""
        if not self.queries and not await asyncio.to_thread(self._arrived.wait, self.timeout):
            raise TimeoutError("no authorization response arrived")
        self._arrived.clear()
        query = self.queries.pop(0)
        if "error" in query:
            raise RuntimeError(f"authorization failed: {query['error']} {query.get('error_description', '')}")
        return AuthorizationCodeResult(code=query["code"], state=query.get("state"), iss=query.get("iss"))


def oauth_provider(url: str, storage: MemoryStorage, callback: LoopbackCallback,
                   redirect_handler: Callable[[str], Awaitable[None]], *,
                   client_metadata_url: str | None = None) -> OAuthClientProvider:
    """The SDK's OAuth provider for the MCP server at ``url``: a public client (no secret) with a loopback
    redirect URI. The scope is left to the SDK: what the server's metadata says it needs."""
    metadata = OAuthClientMetadata(client_name="Ostiary MCP example client",
                                   redirect_uris=[AnyUrl(callback.redirect_uri)], grant_types=GRANT_TYPES,
                                   response_types=["code"], token_endpoint_auth_method="none")
    return OAuthClientProvider(server_url=url, client_metadata=metadata, storage=storage,
                               redirect_handler=redirect_handler, callback_handler=callback.wait,
                               client_metadata_url=client_metadata_url)


def pre_registered(client_id: str, redirect_uri: str) -> OAuthClientInformationFull:
    """What the SDK needs to know of a client registered with ``ostiary client create --public``."""
    return OAuthClientInformationFull(client_id=client_id, redirect_uris=[AnyUrl(redirect_uri)],
                                      grant_types=GRANT_TYPES, response_types=["code"],
                                      token_endpoint_auth_method="none")


async def open_browser(url: str) -> None:
    print(f"Opening your browser to sign in:\n  {url}", flush=True)
    webbrowser.open(url)


async def main_async(url: str, client_id: str) -> None:
    with LoopbackCallback() as callback:
        storage = MemoryStorage(pre_registered(client_id, callback.redirect_uri))
        provider = oauth_provider(url, storage, callback, open_browser)
        async with httpx2.AsyncClient(auth=provider, timeout=30) as http, \
                Client(streamable_http_client(url, http_client=http)) as client:
            print("whoami:", (await client.call_tool("whoami")).structured_content, flush=True)
            print("notes:", (await client.call_tool("list_notes")).structured_content, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="Call an Ostiary-protected MCP server with the official SDK.")
    parser.add_argument("--url", required=True, help="the MCP server's URL")
    parser.add_argument("--client-id", required=True, help="the client id registered at Ostiary")
    args = parser.parse_args()
    asyncio.run(main_async(args.url, args.client_id))


if __name__ == "__main__":
    main()
