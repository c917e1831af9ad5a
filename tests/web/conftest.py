"""Fixtures shared by the HTTP tests."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@pytest.fixture
def jwks_host() -> Iterator[tuple[str, dict]]:
    """A client's JWKS host on loopback (private_key_jwt, self_signed_tls_client_auth): serves ``state["jwks"]``
    and counts its fetches in ``state["hits"]``."""
    state: dict = {"jwks": {"keys": []}, "hits": 0}

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
