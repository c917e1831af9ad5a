"""Fixtures shared by the HTTP tests."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ..conftest import db_url_for
from ..support import LiveServer, start_server

MCP = "https://mcp.example.com/mcp"
#: open dynamic registration (RFC 7591 without an initial access token), as MCP agents use it
OPEN_ENV = {"OSTIARY_REGISTRATION__POLICY": "open", "OSTIARY_REGISTRATION__PER_IP": "1000",
            "OSTIARY_REGISTRATION__SCOPES": "openid profile email offline_access",
            "OSTIARY_REGISTRATION__AUDIENCES": MCP}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def open_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                pg_url_factory: object) -> Iterator[LiveServer]:
    """A server with open registration, one per test module and database."""
    tmp = tmp_path_factory.mktemp(f"register-open-{request.param}")
    srv = start_server(db_url_for(request.param, tmp, pg_url_factory), tmp, extra_env=OPEN_ENV)
    yield srv
    srv.stop()


@pytest.fixture
def jwks_host() -> Iterator[tuple[str, dict[str, Any]]]:
    """A client's JWKS host on loopback (private_key_jwt, self_signed_tls_client_auth): serves ``state["jwks"]``
    and counts its fetches in ``state["hits"]``."""
    state: dict[str, Any] = {"jwks": {"keys": []}, "hits": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            state["hits"] += 1
            body = json.dumps(state["jwks"]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/jwks.json", state
    httpd.shutdown()
    httpd.server_close()
