"""Uvicorn's httptools protocol with limits on the request head, so Ostiary is safe without a reverse proxy.

Uvicorn bounds neither the size of the request line and headers (with httptools, its default parser) nor the
time a client takes to send them: a client could hold a connection for ever by sending its headers a byte at
a time, or fill memory with one endless header. Here the request head must arrive within
``server.header_timeout`` seconds of the connection opening (or, on a keep-alive connection, of the next
request's first byte), else ``408`` and the connection is closed; and it may be at most
``server.max_header_bytes`` long, else Uvicorn's ``400 Invalid HTTP request`` and the connection is closed.
The request body has its own limits (``server.max_body_bytes``, ``server.body_timeout``: web/guard.py).

Over TLS it also fills the ASGI TLS extension (``scope["extensions"]["tls"]``, asgiref's "TLS" extension),
which Uvicorn does not: ``client_cert_chain`` holds the client certificate the handshake verified, as PEM, for
mutual-TLS client authentication (RFC 8705). Python's ``ssl`` gives the peer's leaf certificate only, so the
chain is that one certificate.

The response head is also cheaper than Uvicorn's (:class:`OneWriteCycle`): its header names and values are
checked with one regular-expression search each (Uvicorn runs two per header), and when the response has a
``Content-Length`` the head waits for the first body chunk and both go out in one ``write`` (one system call,
one TCP segment for a small JSON answer, instead of two).

``ostiary serve`` selects it with Uvicorn's ``http`` option; the app factory sets the limits from the settings.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

__all__ = ["BoundedHttpToolsProtocol", "HeadTooLarge", "OneWriteCycle"]

_TIMEOUT_BODY = b'{"error":"invalid_request","error_description":"the request headers did not arrive in time"}'
_TIMEOUT_RESPONSE = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
                     b"content-length: " + str(len(_TIMEOUT_BODY)).encode() + b"\r\n\r\n" + _TIMEOUT_BODY)


class HeadTooLarge(Exception):
    """Raised from a parser callback: httptools turns it into a parse error, which Uvicorn answers with 400."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    header_timeout: ClassVar[float] = 10.0
    max_header_bytes: ClassVar[int] = 32 * 1024

    @classmethod
    def configure(cls, *, header_timeout: float, max_header_bytes: int) -> None:
        cls.header_timeout = header_timeout
        cls.max_header_bytes = max_header_bytes

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._tls: dict[str, Any] | None = _tls_extension(transport)
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._start_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        # Uvicorn builds the cycle inside on_headers_complete; its class is swapped before its task starts (the
        # subclass adds methods only, no state of its own beyond a class-level default)
        cycle.__class__ = OneWriteCycle
        super()._start_asgi_task(cycle, app)

    def _start_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.write(_TIMEOUT_RESPONSE)
            self.transport.close()

    def _count(self, n: int) -> None:
        self._head_bytes += n
        if self._head_bytes > self.max_header_bytes:
            raise HeadTooLarge(f"request head over {self.max_header_bytes} bytes")

    # parser callbacks
    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._tls is not None:
            tls: dict[object, object] = {}
            tls.update(self._tls)
            self.scope["extensions"] = {"tls": tls}
        self._head_bytes = 0
        self._start_head_timer()  # a keep-alive connection's next request: its head has the same time limit

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._stop_head_timer()
        super().on_headers_complete()


class OneWriteCycle(RequestResponseCycle):
    """Uvicorn's request/response cycle with a cheaper response head (see the module docstring). Everything
    else (request bodies, chunked responses, HEAD, 100-continue, flow control, disconnects, the checks on the
    body length) is Uvicorn's own code."""

    _head: bytes | None = None  # the response head, waiting for the first body chunk

    async def send(self, message: Any) -> None:
        head = self._head
        if head is not None:
            self._head = None
            if (message["type"] == "http.response.body" and not self.disconnected and not self.flow.write_paused
                    and self.scope["method"] != "HEAD"):
                body = message.get("body", b"")
                if len(body) > self.expected_content_length:
                    raise RuntimeError("Response content longer than Content-Length")
                self.expected_content_length -= len(body)
                self.transport.write(head + body)
                if not message.get("more_body", False):
                    if self.expected_content_length != 0:
                        raise RuntimeError("Response content shorter than Content-Length")
                    self.response_complete = True
                    self.message_event.set()
                    if not self.keep_alive:
                        self.transport.close()
                    self.on_response()
                return
            if not self.disconnected:  # anything unusual: the head goes out alone, then Uvicorn's own code
                self.transport.write(head)
        elif (message["type"] == "http.response.start" and not self.response_started and not self.disconnected
              and not self.access_log and not self.flow.write_paused):
            self._start(message)
            return
        await super().send(message)

    def _start(self, message: Any) -> None:
        """Uvicorn's handling of ``http.response.start`` (same checks, same head), without the per-header regex
        calls; the head is kept back when a body of known, non-zero length follows."""
        self.response_started = True
        self.waiting_for_100_continue = False
        status_code = message["status"]
        headers = [*self.default_headers, *message.get("headers", ())]
        if HEADER_RE.search(b"".join(name for name, _ in headers)):  # the patterns match single bytes, so one
            raise RuntimeError("Invalid HTTP header name.")  # search over the joined names checks them all
        if HEADER_VALUE_RE.search(b"".join(value for _, value in headers)):
            raise RuntimeError("Invalid HTTP header value.")
        content = [STATUS_LINE[status_code]]
        has_connection_close = False
        for name, value in headers:
            name = name.lower()
            if name == b"content-length" and self.chunked_encoding is None:
                self.expected_content_length = int(value.decode())
                self.chunked_encoding = False
            elif name == b"transfer-encoding" and value.lower() == b"chunked":
                self.expected_content_length = 0
                self.chunked_encoding = True
            elif name == b"connection" and b"close" in [token.lower().strip() for token in value.split(b",")]:
                self.keep_alive = False
                has_connection_close = True
            content.extend((name, b": ", value, b"\r\n"))
        if not self.keep_alive and not has_connection_close:
            content.append(b"connection: close\r\n")
        if self.chunked_encoding is None and self.scope["method"] != "HEAD" and status_code not in (204, 304):
            self.chunked_encoding = True
            content.append(b"transfer-encoding: chunked\r\n")
        content.append(b"\r\n")
        head = b"".join(content)
        if self.chunked_encoding is False and self.expected_content_length > 0 and self.scope["method"] != "HEAD":
            self._head = head
        else:
            self.transport.write(head)


def _tls_extension(transport: asyncio.Transport) -> dict[str, Any] | None:
    """The ASGI TLS extension of a connection (None when it is not TLS). The handshake is over when Uvicorn's
    protocol sees the connection, so the peer certificate is known once, for every request on it."""
    ssl_object = transport.get_extra_info("ssl_object")
    if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return {"server_cert": None, "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
            "client_cert_name": None, "client_cert_error": None, "tls_version": None, "cipher_suite": None}


def uvicorn_http_option() -> dict[str, Any]:
    """Uvicorn's ``http`` option selecting this protocol (an import path: worker processes import it)."""
    return {"http": f"{__name__}:BoundedHttpToolsProtocol"}
