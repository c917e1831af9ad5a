"""The outermost middleware: what keeps Ostiary safe without a reverse proxy in front, and the last safety net.

- **Body timeout**: a request body must arrive within ``server.body_timeout`` seconds of the request's headers;
  a client that sends less than its ``Content-Length``, or drips it, gets ``408`` and its connection is closed
  (otherwise it holds a connection, and graceful shutdown, for ever).
- **Connection recycling**: a keep-alive connection is closed (``Connection: close`` on a response) after
  ``server.keep_alive_max_requests`` requests or ``server.keep_alive_max_age`` seconds, so clients reconnect
  now and then and the kernel (``SO_REUSEPORT``) spreads them again, e.g. onto a worker that replaced one that
  died.
- **Safety net**: an error that escaped a route becomes a response, never a traceback: the database being
  unreachable a ``503`` with ``Retry-After`` (``temporarily_unavailable``); an ``OAuthError`` its own status; a
  bug a JSON ``server_error`` and one log line. Browser pages (``Accept: text/html``) get the HTML error page.

Pure ASGI (one ``receive`` and one ``send`` wrapper per request), like the other middleware.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..core.errors import OAuthError, ServerError, StoreUnavailable
from . import metrics
from .http import COUNTED, NO_STORE, unavailable_error

__all__ = ["COUNTED", "RequestAborted", "RequestGuard"]

log = logging.getLogger("ostiary.web")

_SWEEP_EVERY = 4096


class RequestAborted(BaseException):
    """The request body did not arrive in time (``status`` 408) or the client went away (``status`` None).

    A ``BaseException``, like ``CancelledError``: it ends the request wherever the body was being read, past the
    routes' own ``except Exception`` handlers, up to :class:`RequestGuard`, which answers."""

    def __init__(self, status: int | None) -> None:
        super().__init__(status)
        self.status = status


class RequestGuard:
    def __init__(self, app: ASGIApp, *, body_timeout: float = 5.0, max_requests: int = 1000,
                 max_age: float = 30.0) -> None:
        self.app = app
        self.body_timeout = body_timeout
        self.max_requests = max_requests
        self.max_age = max_age
        # per connection (client address and port): (first request's time, requests so far)
        self._connections: dict[Any, tuple[float, int]] = {}
        self._until_sweep = _SWEEP_EVERY

    def _recycle(self, scope: Scope, now: float) -> bool:
        """Count this request on its connection; True if the connection should close after the response."""
        client = scope.get("client")
        if not client:
            return False
        key = (client[0], client[1])
        conns = self._connections
        first, count = conns.get(key) or (now, 0)
        count += 1
        if count >= self.max_requests or now - first >= self.max_age:
            conns.pop(key, None)
            return True
        conns[key] = (first, count)
        self._until_sweep -= 1
        if self._until_sweep <= 0:  # forget connections that closed (idle ones close after a few seconds)
            self._until_sweep = _SWEEP_EVERY
            stale = now - self.max_age - 60
            for k in [k for k, (t, _) in conns.items() if t < stale]:
                del conns[k]
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        now = time.monotonic()
        close = self._recycle(scope, now)
        deadline = now + self.body_timeout
        body_done = False
        started = False
        aborted = False  # the 408 carries its own Connection: close

        async def guarded_receive() -> Message:
            nonlocal body_done
            if body_done:
                return await receive()
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise TimeoutError
                async with asyncio.timeout(remaining):
                    message = await receive()
            except TimeoutError:
                raise RequestAborted(408) from None
            if message["type"] == "http.disconnect":
                raise RequestAborted(None)
            if not message.get("more_body", False):
                body_done = True
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if close and not aborted:
                    message["headers"] = [*message.get("headers", ()), (b"connection", b"close")]
                if not scope.get(COUNTED):  # protocol routes count their own, with their latency
                    route = scope.get("route")
                    metrics.REQUESTS.labels(getattr(route, "name", None) or "unmatched",
                                            str(message["status"])).inc()
            await send(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except RequestAborted as exc:
            aborted = True
            if exc.status is not None and not started:
                description = f"the request body did not arrive within {self.body_timeout:g} seconds"
                await self._answer(guarded_send, 408, {"error": "invalid_request", "error_description": description},
                                   {"Connection": "close"})
        except StoreUnavailable as exc:
            if not started:
                await self._error(scope, guarded_send, unavailable_error(exc))
        except OAuthError as exc:  # raised by a page's form parsing (too large, wrong content type...)
            if not started:
                await self._error(scope, guarded_send, exc)
        except Exception:
            log.error("unhandled error in %s %s", scope.get("method"), scope.get("path"), exc_info=True)
            if not started:
                await self._error(scope, guarded_send, ServerError("the server could not handle this request"))

    async def _error(self, scope: Scope, send: Send, exc: OAuthError) -> None:
        headers = dict(exc.headers)
        request = Request(scope)
        runtime = getattr(getattr(scope.get("app"), "state", None), "runtime", None)
        if runtime is not None and "text/html" in request.headers.get("accept", ""):
            try:
                page = runtime.flows.render(request, "error.html", {
                    "error": exc.error, "description": exc.description or exc.error, "title": "Cannot continue"},
                    status=exc.status)
            except Exception:  # no page then: the JSON below
                log.error("error page failed", exc_info=True)
            else:
                page.headers.update(headers)
                await page(scope, _no_receive, send)
                return
        await self._answer(send, exc.status, exc.body(), headers)

    @staticmethod
    async def _answer(send: Send, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
        raw = orjson.dumps(body)
        out = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode()),
               (b"x-content-type-options", b"nosniff")]
        out += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in {**NO_STORE, **headers}.items()]
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": raw})


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}
