"""Pure ASGI middleware (not ``BaseHTTPMiddleware``) that verifies the bearer token of each request.

The verified :class:`~ostiary.resource.AccessToken` goes to ``scope["state"]["access_token"]``, which
Starlette and FastAPI expose as ``request.state.access_token``. Failures are answered per RFC 6750 §3.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._http import FORM_SCAN_LIMIT, bearer_from_scope, form_has_access_token, needs_form_check, render_error
from ._mtls import ClientCertificates
from .errors import MissingToken, ResourceError
from .token import AccessToken
from .verifier import TokenVerifier

__all__ = ["BearerAuthMiddleware"]

log = logging.getLogger("ostiary.resource")


class BearerAuthMiddleware:
    """Verify ``Authorization: Bearer`` on HTTP and WebSocket requests.

    With ``required=True`` (the default) a request without a token gets 401; with ``required=False``
    it passes with ``access_token = None`` (a token that is present but bad is always refused).
    Paths in ``exempt`` (exact match, e.g. ``/healthz``) are not checked at all. ``certificates`` says where
    the client's TLS certificate comes from, which certificate-bound tokens must match (RFC 8705 §3).
    """

    def __init__(self, app: ASGIApp, verifier: TokenVerifier, *, required: bool = True,
                 realm: str | None = None, exempt: Collection[str] = (),
                 certificates: ClientCertificates | None = None) -> None:
        self.app = app
        self.certificates = certificates or ClientCertificates()
        self.verifier = verifier
        self.required = required
        self.realm = realm
        self.exempt = frozenset(exempt)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        access: AccessToken | None = None
        form_token = False
        if needs_form_check(scope):  # RFC 6750 §2: a token in the header and in the form body is refused
            form_token, receive = await _scan_form(receive)
        try:
            access = await self.verifier.averify(bearer_from_scope(scope, form_token=form_token),
                                                 client_cert=self.certificates.from_scope(scope))
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


async def _scan_form(receive: Receive) -> tuple[bool, Receive]:
    """Read a urlencoded body (up to ``FORM_SCAN_LIMIT``) to see whether it has an ``access_token``, and
    return a ``receive`` that hands the same messages to the app. A larger body is passed on unchecked."""
    messages: list[Message] = []
    body = bytearray()
    complete = False
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        body += message.get("body", b"")
        if not message.get("more_body", False):
            complete = True
            break
        if len(body) > FORM_SCAN_LIMIT:
            break
    found = complete and form_has_access_token(bytes(body))

    async def replay() -> Message:
        return messages.pop(0) if messages else await receive()

    return found, replay
