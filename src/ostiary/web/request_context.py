"""Per-request context, one pure ASGI middleware outside every route:

- the client address, resolved once by ``web.client_ip`` and put in ``scope["client"]``;
- the client certificate forwarded by a trusted proxy (``web.client_cert``), or the header stripped;
- a request id: a well-formed ``X-Request-ID`` from a trusted proxy is kept (1 to 64 characters of
  ``A-Za-z0-9-_``), anything else is replaced by a new one; returned as ``X-Request-ID`` and added to every
  log line written while the request is handled;
- one access log line per request (``http.request``: method, path without the query, status,
  duration_ms, client_id when an audit event named one, client address, request_id);
- a client that goes away before its body arrived is logged as ``client_disconnected``, not an error;
- with ``audit.durability = "sync"``, the request's audit rows are written before the response starts.
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging
import re
import secrets
import time
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..core.audit import AuditEvent
from .client_cert import apply_forwarded_certificate
from .client_ip import ClientAddress
from .logs import REQUEST_ID, LineBuffer

if TYPE_CHECKING:
    from .audit import BatchingAuditSink

__all__ = ["RequestContext", "RequestState", "current_request"]

log = logging.getLogger("ostiary.access")

_REQUEST_ID = re.compile(rb"[A-Za-z0-9_-]{1,64}")


@dataclasses.dataclass(slots=True)
class RequestState:
    request_id: str
    client_id: str | None = None
    audit_pending: list[AuditEvent] | None = None  # sync durability: rows to write before the response


_CURRENT: contextvars.ContextVar[RequestState | None] = contextvars.ContextVar("ostiary_request", default=None)


def current_request() -> RequestState | None:
    return _CURRENT.get()


_UNAVAILABLE = orjson.dumps({"error": "temporarily_unavailable",
                             "error_description": "the server cannot record this request now; retry"})


class RequestContext:
    def __init__(self, app: ASGIApp, *, addresses: ClientAddress, access_log: LineBuffer,
                 audit: BatchingAuditSink | None = None, cert_header: str | None = None) -> None:
        self.app = app
        self.cert_header = cert_header.lower().encode("latin-1") if cert_header else None
        self.addresses = addresses
        self.access_log = access_log
        self.audit = audit

    def _request_id(self, scope: Scope, proxied: bool) -> str:
        if proxied:
            for k, v in scope["headers"]:
                if k == b"x-request-id" and _REQUEST_ID.fullmatch(v):
                    return bytes(v).decode("ascii")
        return secrets.token_hex(8)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        peer = scope.get("client")
        proxied = False
        if self.addresses.enabled and peer:
            proxied = self.addresses.trusted_peer(peer[0])
        if self.cert_header is not None:
            apply_forwarded_certificate(scope, self.cert_header, trusted_peer=proxied)
        if self.addresses.enabled and peer:
            host = self.addresses.resolve(peer[0], scope["headers"])
            if host is not None and host != peer[0]:
                scope["client"] = (host, peer[1])  # the port stays the connection's (web.guard counts by it)
        rid = self._request_id(scope, proxied)
        sync = self.audit is not None and self.audit.durability == "sync"
        state = RequestState(rid, audit_pending=[] if sync else None)
        state_token = _CURRENT.set(state)
        rid_token = REQUEST_ID.set(rid)
        status = 0
        rid_header = (b"x-request-id", rid.encode("ascii"))

        withheld = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, withheld
            if withheld:
                return
            if message["type"] == "http.response.start":
                if state.audit_pending and self.audit is not None:
                    events, state.audit_pending = state.audit_pending, []
                    if not await self.audit.write_now(events):
                        # fail safe: no token handed out without its audit row; the events stay queued
                        withheld = True
                        status = 503
                        await send({"type": "http.response.start", "status": 503, "headers": [
                            (b"content-type", b"application/json"), (b"cache-control", b"no-store"),
                            (b"retry-after", b"1"), rid_header]})
                        await send({"type": "http.response.body", "body": _UNAVAILABLE})
                        return
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), rid_header]
            await send(message)

        disconnected = False

        async def receive_wrapper() -> Message:
            nonlocal disconnected
            message = await receive()
            if message["type"] == "http.disconnect":
                disconnected = True
            return message

        event = "http.request"
        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        except ClientDisconnect:
            disconnected = True
        except BaseException:
            status = status or 500
            raise
        finally:
            if state.audit_pending and self.audit is not None:  # emitted after the response started
                self.audit.enqueue(state.audit_pending)
            state.audit_pending = None  # a task the request started and that emits later: the queue takes it
            _CURRENT.reset(state_token)
            REQUEST_ID.reset(rid_token)
            fields: dict[str, Any] = {
                "method": scope["method"], "path": scope["path"], "status": status or None,
                "duration_ms": round((time.perf_counter() - start) * 1000, 2), "request_id": rid}
            if state.client_id is not None:
                fields["client_id"] = state.client_id
            client = scope.get("client")
            if client:
                fields["ip"] = client[0]
            if withheld:
                fields["audit"] = "unavailable"
            if disconnected and not status:
                event = "client_disconnected"  # gone before the answer: not an error (web.guard sends nothing)
            self.access_log.add(event, fields)
