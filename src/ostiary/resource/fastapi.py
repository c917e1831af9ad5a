"""FastAPI dependencies that require a verified access token.

Set up once with :func:`install`, which keeps the verifier in ``app.state`` and registers the
RFC 6750 §3 error renderer::

    install(app, TokenVerifier(issuer=..., audience=...))

    @app.get("/orders")
    async def orders(token: AccessToken = Depends(require_scopes("orders:read"))): ...

If :class:`~ostiary.resource.starlette.BearerAuthMiddleware` already verified the request, the
dependencies reuse its ``request.state.access_token`` instead of verifying again.

``install(app, verifier, metadata=ProtectedResourceMetadata(...))`` also serves the API's RFC 9728 document
at its well-known paths and names it in every challenge (``resource_metadata="…"``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from starlette.exceptions import HTTPException

from ._http import (
    credentials_from_scope,
    dpop_request_from_scope,
    form_has_access_token,
    needs_form_check,
    render_error,
)
from ._mtls import ClientCertificates
from .dpop import DpopPolicy
from .errors import ResourceError
from .metadata import ProtectedResourceMetadata
from .token import AccessToken
from .verifier import TokenVerifier

__all__ = ["BearerError", "install", "require_scopes", "require_service", "require_token", "require_user"]

STATE_KEY = "ostiary_token_verifier"
CERTS_KEY = "ostiary_client_certificates"
METADATA_KEY = "ostiary_resource_metadata"


class BearerError(HTTPException):
    """A refused request. Without :func:`install` FastAPI still renders the right status and challenge."""

    def __init__(self, error: ResourceError, realm: str | None = None, resource_metadata: str | None = None, *,
                 dpop: DpopPolicy | None = None, scheme: str | None = None) -> None:
        status, headers, body = render_error(error, realm, resource_metadata, dpop=dpop, scheme=scheme)
        challenges = ", ".join(v for k, v in headers if k == "www-authenticate")
        single = {k: v for k, v in headers if k not in ("content-type", "www-authenticate")}
        super().__init__(status, detail=error.description,
                         headers=single | ({"www-authenticate": challenges} if challenges else {}))
        self.body = body
        self.header_list = [(k, v) for k, v in headers if k != "content-type"]  # one line per challenge


async def _render(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BearerError)
    response = Response(exc.body, status_code=exc.status_code, media_type="application/json")
    for name, value in exc.header_list:
        response.headers.append(name, value)
    return response


def install(app: FastAPI, verifier: TokenVerifier, *, certificates: ClientCertificates | None = None,
            metadata: ProtectedResourceMetadata | None = None) -> None:
    """Keep ``verifier`` in ``app.state`` for the dependencies and render errors as RFC 6750 JSON.
    ``certificates``: where the client certificate comes from (certificate-bound tokens, RFC 8705). With
    ``metadata``, serve that RFC 9728 document (``GET``, no token needed, left out of the OpenAPI schema) and
    point every challenge at it."""
    setattr(app.state, STATE_KEY, verifier)
    setattr(app.state, CERTS_KEY, certificates or ClientCertificates())
    setattr(app.state, METADATA_KEY, metadata)
    app.add_exception_handler(BearerError, _render)
    if metadata is not None:
        document = metadata.document()
        _, headers, _ = metadata.response()

        async def protected_resource_metadata() -> JSONResponse:
            return JSONResponse(document, headers={k: v for k, v in headers if k != "content-type"})

        for path in metadata.paths:
            app.add_api_route(path, protected_resource_metadata, methods=["GET"], include_in_schema=False)


class _RequireToken(HTTPBearer):
    """The dependency itself is an ``HTTPBearer`` scheme, so OpenAPI documents the bearer requirement
    without a second dependency per request."""

    def __init__(self, scopes: tuple[str, ...], user: bool, service: bool) -> None:
        super().__init__(scheme_name="BearerToken", auto_error=False,
                         description="An access token from the issuer (RFC 6750).")
        self._scopes, self._user, self._service = scopes, user, service

    async def __call__(self, request: Request) -> AccessToken:  # type: ignore[override]
        verifier: TokenVerifier | None = getattr(request.app.state, STATE_KEY, None)
        scheme: str | None = None
        try:
            token: AccessToken | None = request.scope.get("state", {}).get("access_token")
            if token is None:  # not verified by BearerAuthMiddleware
                if verifier is None:
                    raise RuntimeError("call ostiary.resource.fastapi.install(app, verifier) first")
                certificates: ClientCertificates = getattr(request.app.state, CERTS_KEY, ClientCertificates())
                scheme, raw = credentials_from_scope(request.scope, form_token=await _form_token(request),
                                                     dpop=verifier.dpop is not None)
                token = await verifier.averify(raw, client_cert=certificates.from_scope(request.scope),
                                               request=dpop_request_from_scope(request.scope, scheme, verifier.dpop))
                request.scope.setdefault("state", {})["access_token"] = token
            token.require(self._scopes, user=self._user, service=self._service)
        except ResourceError as exc:
            metadata: ProtectedResourceMetadata | None = getattr(request.app.state, METADATA_KEY, None)
            raise BearerError(exc, resource_metadata=metadata.url if metadata is not None else None,
                              dpop=verifier.dpop if verifier is not None else None, scheme=scheme) from None
        return token


async def _form_token(request: Request) -> bool:
    """RFC 6750 §2: whether a request with an Authorization header also has a token in its form body. The
    body stays readable by the endpoint (Starlette keeps what it read on the request)."""
    if not needs_form_check(request.scope):
        return False
    try:
        return form_has_access_token(await request.body())
    except RuntimeError:  # FastAPI already parsed the body as the endpoint's form parameters
        return "access_token" in await request.form()


def require_token() -> Callable[[Request], Awaitable[AccessToken]]:
    """Any valid access token for this API."""
    return _RequireToken((), False, False)


def require_scopes(*scopes: str) -> Callable[[Request], Awaitable[AccessToken]]:
    """A valid token carrying all of ``scopes`` (403 ``insufficient_scope`` otherwise)."""
    return _RequireToken(scopes, False, False)


def require_user(*scopes: str) -> Callable[[Request], Awaitable[AccessToken]]:
    """A token issued on behalf of a user (403 for service tokens), with all of ``scopes``."""
    return _RequireToken(scopes, True, False)


def require_service(*scopes: str) -> Callable[[Request], Awaitable[AccessToken]]:
    """A token issued to a service (client credentials or federation), with all of ``scopes``."""
    return _RequireToken(scopes, False, True)
