"""Response headers: security headers on every response, and CORS for browser-based clients (one middleware,
so a response passes through one ``send`` wrapper, not two).

=================================  =====================================================================
Path                               Which origins may read the answer from a browser
=================================  =====================================================================
``/.well-known/*``, ``/jwks``      any: ``Access-Control-Allow-Origin: *``, no credentials. Public
                                   documents, for relying parties and resource servers of any origin.
``/token``, ``/userinfo``,         the origins registered on some client (``allowed_origins``), echoed,
``/revoke``                        with ``Vary: Origin``; a preflight from another origin gets 403.
everything else (``/authorize``,   none: no CORS headers at all.
``/introspect``, the pages)
=================================  =====================================================================
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CORS_PATHS", "PUBLIC_CORS_PATHS", "ResponseHeaders"]

#: registered origins only
CORS_PATHS = ("/token", "/userinfo", "/revoke")
#: any origin (``*``), besides everything under /.well-known/
PUBLIC_CORS_PATHS = ("/jwks",)
ALLOW_HEADERS = b"Authorization, Content-Type, DPoP"
EXPOSE_HEADERS = b"WWW-Authenticate, DPoP-Nonce"


def cors_path(path: str) -> bool:
    return path in CORS_PATHS


def public_cors_path(path: str) -> bool:
    return path in PUBLIC_CORS_PATHS or path.startswith("/.well-known/")


def _is_preflight(scope: Scope) -> bool:
    return scope["method"] == "OPTIONS" and any(k == b"origin" for k, _ in scope["headers"]) and any(
        k == b"access-control-request-method" for k, _ in scope["headers"])


async def _answer_preflight(send: Send, status: int, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": _secure(headers)})
    await send({"type": "http.response.body", "body": b""})


_SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
)


def _secure(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Security headers on every response; a page that sets one itself (its own CSP) keeps its own."""
    present = {k for k, _ in headers}  # Starlette's header names are already lower case
    headers.extend(h for h in _SECURITY_HEADERS if h[0] not in present)
    return headers


class ResponseHeaders:
    """Pure ASGI middleware, one wrapper for every response: security headers everywhere, CORS for any origin
    on the public documents and for registered origins on ``CORS_PATHS`` (answering preflights itself)."""

    def __init__(self, app: ASGIApp, origins: Callable[[], Awaitable[frozenset[str]]] | None = None,
                 ttl: float = 5.0) -> None:
        self.app = app
        self._origins = origins
        self._ttl = ttl
        self._cache: tuple[float, frozenset[str]] = (0.0, frozenset())

    async def _allowed(self, scope: Scope, origin: str) -> bool:
        loader = self._origins
        if loader is None:
            app = scope.get("app")
            runtime = getattr(getattr(app, "state", None), "runtime", None)
            if runtime is None:
                return False
            loader = runtime.flows.allowed_origins
        now = time.monotonic()
        if now >= self._cache[0]:
            self._cache = (now + self._ttl, await loader())
        return origin in self._cache[1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra: list[tuple[bytes, bytes]] = []
        path = scope["path"]
        if public_cors_path(path):
            if _is_preflight(scope):  # any request header: "*" is a wildcard when there are no credentials
                await _answer_preflight(send, 204, [
                    (b"access-control-allow-origin", b"*"), (b"access-control-allow-methods", b"GET"),
                    (b"access-control-allow-headers", b"*"), (b"access-control-max-age", b"600")])
                return
            extra.append((b"access-control-allow-origin", b"*"))
        elif cors_path(path):
            origin = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"origin"), None)
            allowed = origin is not None and await self._allowed(scope, origin)
            if _is_preflight(scope):
                headers = [(b"vary", b"Origin"), (b"cache-control", b"no-store")]
                if not allowed or origin is None:
                    await _answer_preflight(send, 403, headers)
                    return
                await _answer_preflight(send, 204, [
                    *headers, (b"access-control-allow-origin", origin.encode("latin-1")),
                    (b"access-control-allow-methods", b"GET, POST"),
                    (b"access-control-allow-headers", ALLOW_HEADERS), (b"access-control-max-age", b"600")])
                return
            extra.append((b"vary", b"Origin"))
            if allowed and origin is not None:
                extra += [(b"access-control-allow-origin", origin.encode("latin-1")),
                          (b"access-control-expose-headers", EXPOSE_HEADERS)]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = _secure([*message.get("headers", ()), *extra])
            await send(message)

        await self.app(scope, receive, send_with_headers)
