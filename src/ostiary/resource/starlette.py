"""Pure ASGI middleware (not ``BaseHTTPMiddleware``) that verifies the bearer token of each request.

The verified :class:`~ostiary.resource.AccessToken` goes to ``scope["state"]["access_token"]``, which
Starlette and FastAPI expose as ``request.state.access_token``. Failures are answered per RFC 6750 §3.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from starlette.types import ASGIApp, Receive, Scope, Send

from ._http import bearer_from_scope, render_error
from .errors import MissingToken, ResourceError
from .token import AccessToken
from .verifier import TokenVerifier

__all__ = ["BearerAuthMiddleware"]

log = logging.getLogger("ostiary.resource")


class BearerAuthMiddleware:
    """Verify ``Authorization: Bearer`` on HTTP and WebSocket requests.

    With ``required=True`` (the default) a request without a token gets 401; with ``required=False``
    it passes with ``access_token = None`` (a token that is present but bad is always refused).
    Paths in ``exempt`` (exact match, e.g. ``/healthz``) are not checked at all.
    """

    def __init__(self, app: ASGIApp, verifier: TokenVerifier, *, required: bool = True,
                 realm: str | None = None, exempt: Collection[str] = ()) -> None:
        self.app = app
        self.verifier = verifier
        self.required = required
        self.realm = realm
        self.exempt = frozenset(exempt)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        access: AccessToken | None = None
        try:
            access = await self.verifier.averify(bearer_from_scope(scope))
        except MissingToken as exc:
            if self.required:
                await self._reject(exc, scope, send)
                return
        except ResourceError as exc:
            log.info("bearer token refused: %s", exc.reason)
            await self._reject(exc, scope, send)
            return
        scope.setdefault("state", {})["access_token"] = access
        await self.app(scope, receive, send)

    async def _reject(self, error: ResourceError, scope: Scope, send: Send) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # RFC 6455 §7.4.1 policy violation
            return
        status, headers, body = render_error(error, self.realm)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
                    + [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
