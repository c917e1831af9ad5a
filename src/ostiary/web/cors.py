"""CORS for browser-based clients (pure ASGI): only on /token, /userinfo, /jwks and /.well-known/*, only for
origins registered on some client (``allowed_origins``). Never on /authorize or the pages."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CORS_PATHS", "Cors"]

CORS_PATHS = ("/token", "/userinfo", "/jwks")
ALLOW_HEADERS = b"Authorization, Content-Type, DPoP"
EXPOSE_HEADERS = b"WWW-Authenticate, DPoP-Nonce"


def cors_path(path: str) -> bool:
    return path in CORS_PATHS or path.startswith("/.well-known/")


class Cors:
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
        if scope["type"] != "http" or not cors_path(scope["path"]):
            await self.app(scope, receive, send)
            return
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
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"vary", b"Origin"))
                if allowed and origin is not None:
                    headers += [(b"access-control-allow-origin", origin.encode("latin-1")),
                                (b"access-control-expose-headers", EXPOSE_HEADERS)]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_cors)
