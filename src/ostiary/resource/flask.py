"""A Flask view decorator that requires a verified access token, stored on ``flask.g.access_token``.

Failures are answered per RFC 6750 §3 with a JSON body; the view is not called. With the API's
:class:`~ostiary.resource.metadata.ProtectedResourceMetadata` (``metadata=``), every challenge names it
(RFC 9728 §5.1); :func:`serve_metadata` publishes the document itself.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import ParamSpec, TypeVar

from flask import Flask, Response, g, request

from ._http import credentials, is_form, render_error
from ._mtls import ClientCertificates
from .dpop import DpopRequest, raw_request_path
from .errors import ResourceError
from .metadata import ProtectedResourceMetadata
from .verifier import TokenVerifier

__all__ = ["require_token", "serve_metadata"]

P = ParamSpec("P")
R = TypeVar("R")


def require_token(verifier: TokenVerifier, scopes: str | Iterable[str] = (), *, user: bool = False,
                  service: bool = False, realm: str | None = None, certificates: ClientCertificates | None = None,
                  metadata: ProtectedResourceMetadata | None = None,
                  ) -> Callable[[Callable[P, R]], Callable[P, R | Response]]:
    """Decorate a view so it runs only for a valid token with ``scopes`` (and of the right kind).
    ``certificates``: where the client certificate comes from (certificate-bound tokens, RFC 8705);
    ``metadata``: the API's RFC 9728 document, named in every challenge (serve it with ``serve_metadata``)."""
    source = certificates or ClientCertificates()
    wanted = tuple(scopes.split()) if isinstance(scopes, str) else tuple(scopes)

    def decorator(view: Callable[P, R]) -> Callable[P, R | Response]:
        @functools.wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | Response:
            dpop = verifier.dpop
            scheme: str | None = None
            try:
                authorization = request.headers.getlist("Authorization")
                # RFC 6750 §2: a token in the header and in the form body too is refused
                form_token = bool(authorization) and is_form(request.method, request.content_type) \
                    and "access_token" in request.form
                scheme, raw = credentials(authorization, request.query_string.decode("latin-1"),
                                          form_token=form_token, dpop=dpop is not None)
                proofs = tuple(request.headers.getlist("DPoP"))
                raw_uri = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
                url = dpop.request_url(request.scheme, request.host, raw_request_path(
                    raw_uri if isinstance(raw_uri, str) else None, request.script_root + request.path)
                ) if dpop is not None else ""
                token = verifier.verify(raw, client_cert=source.from_environ(request.environ),
                                        request=DpopRequest(scheme, proofs, request.method, url))
                token.require(wanted, user=user, service=service)
            except ResourceError as exc:
                status, headers, body = render_error(exc, realm, metadata.url if metadata is not None else None,
                                                     dpop=dpop, scheme=scheme)
                return Response(body, status=status, headers=headers)
            g.access_token = token
            return view(*args, **kwargs)

        return wrapper

    return decorator


def serve_metadata(app: Flask, metadata: ProtectedResourceMetadata) -> None:
    """Answer ``GET`` on the document's well-known paths (RFC 9728 §3) with the document, no token needed."""
    status, headers, body = metadata.response()

    def protected_resource_metadata() -> Response:
        return Response(body, status=status, headers=headers)

    for i, path in enumerate(metadata.paths):
        app.add_url_rule(path, endpoint=f"ostiary_protected_resource_metadata_{i}",
                         view_func=protected_resource_metadata, methods=["GET"])
