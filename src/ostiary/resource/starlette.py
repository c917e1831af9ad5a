"""Pure ASGI middleware (not ``BaseHTTPMiddleware``) that verifies the bearer token of each request.

The verified :class:`~ostiary.resource.AccessToken` goes to ``scope["state"]["access_token"]``, which
Starlette and FastAPI expose as ``request.state.access_token``. Failures are answered per RFC 6750 §3.
Given the API's :class:`~ostiary.resource.metadata.ProtectedResourceMetadata`, the middleware also serves
that document (RFC 9728) and names it in every challenge.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._http import (
    FORM_SCAN_LIMIT,
    credentials_from_scope,
    dpop_request_from_scope,
    form_has_access_token,
    needs_form_check,
    render_error,
)
from ._mtls import ClientCertificates
from .errors import MissingToken, ResourceError
from .metadata import ProtectedResourceMetadata
from .token import AccessToken
from .verifier import TokenVerifier

__all__ = ["BearerAuthMiddleware", "ProtectedResourceMetadataApp"]

log = logging.getLogger("ostiary.resource")


class BearerAuthMiddleware:
    """Verify ``Authorization: Bearer`` (or ``DPoP`` with its proof, RFC 9449, when the verifier accepts DPoP)
    on HTTP and WebSocket requests.

    With ``required=True`` (the default) a request without a token gets 401; with ``required=False``
    it passes with ``access_token = None`` (a token that is present but bad is always refused).
    Paths in ``exempt`` (exact match, e.g. ``/healthz``) are not checked at all. ``certificates`` says where
    the client's TLS certificate comes from, which certificate-bound tokens must match (RFC 8705 §3).

    With ``metadata``, ``GET`` on its well-known paths answers the RFC 9728 document without a token, and
    every challenge carries ``resource_metadata="…"`` (RFC 9728 §5.1).
    """

    def __init__(self, app: ASGIApp, verifier: TokenVerifier, *, required: bool = True,
                 realm: str | None = None, exempt: Collection[str] = (),
                 certificates: ClientCertificates | None = None,
                 metadata: ProtectedResourceMetadata | None = None) -> None:
        self.app = app
        self.certificates = certificates or ClientCertificates()
        self.verifier = verifier
        self.required = required
        self.realm = realm
        self.exempt = frozenset(exempt)
        self.metadata = metadata
        self._metadata_app = ProtectedResourceMetadataApp(metadata) if metadata is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._metadata_app is not None and scope["type"] == "http" and self._metadata_app.serves(scope):
            await self._metadata_app(scope, receive, send)
            return
        if scope["type"] not in ("http", "websocket") or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        access: AccessToken | None = None
        form_token = False
        scheme: str | None = None
        if needs_form_check(scope):  # RFC 6750 §2: a token in the header and in the form body is refused
            form_token, receive = await _scan_form(receive)
        dpop = self.verifier.dpop
        try:
            scheme, token = credentials_from_scope(scope, form_token=form_token, dpop=dpop is not None)
            access = await self.verifier.averify(token, client_cert=self.certificates.from_scope(scope),
                                                 request=dpop_request_from_scope(scope, scheme, dpop))
        except MissingToken as exc:
            if self.required:
                await self._reject(exc, scope, send, scheme)
                return
        except ResourceError as exc:
            log.info("access token refused: %s", exc.reason)
            await self._reject(exc, scope, send, scheme)
            return
        scope.setdefault("state", {})["access_token"] = access
        await self.app(scope, receive, send)

    async def _reject(self, error: ResourceError, scope: Scope, send: Send, scheme: str | None) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # RFC 6455 §7.4.1 policy violation
            return
        status, headers, body = render_error(error, self.realm,
                                             self.metadata.url if self.metadata is not None else None,
                                             dpop=self.verifier.dpop, scheme=scheme)
        await _respond(send, status, headers, body)


class ProtectedResourceMetadataApp:
    """An ASGI app answering ``GET``/``HEAD`` on the document's well-known paths (RFC 9728 §3) with the
    document, ``OPTIONS`` there with a CORS preflight answer, and 405 for other methods. Mount it, or let
    :class:`BearerAuthMiddleware` serve it (``metadata=``)."""

    def __init__(self, metadata: ProtectedResourceMetadata) -> None:
        self.metadata = metadata
        self._paths = frozenset(metadata.paths)

    def serves(self, scope: Scope) -> bool:
        """Whether the request is for one of the document's paths (with or without the mount's root path)."""
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        return path in self._paths or (bool(root) and path.startswith(root) and path[len(root):] in self._paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope.get("method", "GET")
        if method in ("GET", "HEAD"):
            status, headers, body = self.metadata.response()
            await _respond(send, status, headers, b"" if method == "HEAD" else body,
                           length=len(body))
        elif method == "OPTIONS":
            await _respond(send, 204, [("access-control-allow-origin", "*"),
                                       ("access-control-allow-methods", "GET, HEAD, OPTIONS"),
                                       ("access-control-max-age", "3600")], b"")
        else:
            await _respond(send, 405, [("allow", "GET, HEAD, OPTIONS"), ("content-type", "application/json")],
                           b'{"error": "method_not_allowed"}')


async def _respond(send: Send, status: int, headers: list[tuple[str, str]], body: bytes, *,
                   length: int | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
                + [(b"content-length", str(len(body) if length is None else length).encode())]})
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
