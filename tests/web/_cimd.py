"""A server of client ID metadata documents on 127.0.0.1 for tests (http: allowed while the issuer is loopback)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ._codeflow import REDIRECT


@dataclass
class Doc:
    body: bytes
    status: int = 200
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    delay: float = 0.0


class DocServer:
    """Serves metadata documents on 127.0.0.1 and counts the requests per path."""

    def __init__(self) -> None:
        self.docs: dict[str, Doc] = {}
        self.hits: Counter[str] = Counter()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                outer.hits[self.path] += 1
                doc = outer.docs.get(self.path)
                if doc is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                if doc.delay:
                    time.sleep(doc.delay)
                self.send_response(doc.status)
                for k, v in doc.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(doc.body)))
                self.end_headers()
                with contextlib.suppress(OSError):
                    self.wfile.write(doc.body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def add(self, path: str, doc: dict[str, Any] | None = None, **kw: Any) -> str:
        """Serve ``doc`` (default: a valid document whose client_id is its URL) at ``path``; the URL."""
        url = self.base + path
        body = json.dumps(doc if doc is not None else document(url)).encode()
        self.docs[path] = Doc(body, **kw)
        return url

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def document(url: str, **kw: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"client_id": url, "client_name": "An MCP agent", "redirect_uris": [REDIRECT],
                           "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
                           "token_endpoint_auth_method": "none"}
    doc.update(kw)
    return doc
