"""Response headers: security headers on every response, and CORS for browser-based clients: only on /token,
/userinfo, /jwks and /.well-known/*, only for origins registered on some client (``allowed_origins``). Never on
/authorize or the pages. One middleware, so a response passes through one ``send`` wrapper, not two."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CORS_PATHS", "ResponseHeaders"]

CORS_PATHS = ("/token", "/userinfo", "/jwks")
ALLOW_HEADERS = b"Authorization, Content-Type, DPoP"
EXPOSE_HEADERS = b"WWW-Authenticate, DPoP-Nonce"


def cors_path(path: str) -> bool:
    return path in CORS_PATHS or path.startswith("/.well-known/")


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
    """Pure ASGI middleware, one wrapper for every response: security headers everywhere, and CORS on
    ``CORS_PATHS`` for origins registered on some client (answering CORS preflights itself)."""

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
        if cors_path(scope["path"]):
            origin = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"origin"), None)
            allowed = origin is not None and await self._allowed(scope, origin)
            if scope["method"] == "OPTIONS" and origin is not None and any(
                    k == b"access-control-request-method" for k, _ in scope["headers"]):
                headers = [(b"vary", b"Origin"), (b"cache-control", b"no-store")]
                status = 403
                if allowed:
                    status = 204
                    headers += [(b"access-control-allow-origin", origin.encode("latin-1")),
                                (b"access-control-allow-methods", b"GET, POST"),
                                (b"access-control-allow-headers", ALLOW_HEADERS),
                                (b"access-control-max-age", b"600")]
                await send({"type": "http.response.start", "status": status, "headers": _secure(headers)})
                await send({"type": "http.response.body", "body": b""})
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
