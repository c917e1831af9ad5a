"""Framework-free HTTP pieces shared by the adapters: reading the access token and rendering errors.

RFC 6750 §2.1: the token is accepted only from the ``Authorization`` header: ``Bearer``, or ``DPoP`` with a
proof in the ``DPoP`` header (RFC 9449 §7.1) when the verifier accepts DPoP.

* A token in the query string (§2.3, ``access_token=``) is never used: the request gets 400
  ``invalid_request`` with a description that says why (the URL, token included, is already in access logs,
  browser history and ``Referer`` headers), whether or not a header came too.
* A token in a form body (§2.2) is never read as the token. A request that sends one *and* the header
  uses more than one method, which §2 forbids: 400 ``invalid_request`` as well. A request with only a form
  token has no token for this API: 401 like any other.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import parse_qsl

from .dpop import DpopPolicy, DpopRequest, raw_request_path
from .errors import (
    InsufficientScope,
    InvalidDpopProof,
    InvalidRequest,
    InvalidToken,
    MissingToken,
    ResourceError,
    UseDpopNonce,
)

__all__ = ["FORM_SCAN_LIMIT", "bearer_from_scope", "bearer_token", "credentials", "credentials_from_scope",
           "dpop_request_from_scope", "form_has_access_token", "is_form", "needs_form_check", "render_error"]

_B64TOKEN: Final = re.compile(r"[A-Za-z0-9\-._~+/]+=*")  # RFC 6750 §2.1 b64token
#: Form bodies up to this size are checked for a second token; larger ones are passed on unread.
FORM_SCAN_LIMIT: Final = 1 << 20
_FORM_TYPE: Final = "application/x-www-form-urlencoded"
_IN_URL: Final = ("An access token in the URL is never accepted: URLs are kept in access logs, browser history "
                  "and Referer headers, so that token should be treated as leaked. Send it in the "
                  "Authorization header (Authorization: Bearer <token>), RFC 6750 §2.1.")
_TWO_WAYS: Final = ("The access token was sent in more than one way (RFC 6750 §2 allows one per request): "
                    "send it only in the Authorization header.")


def _has_access_token(urlencoded: str) -> bool:
    return bool(urlencoded) and any(k == "access_token" for k, _ in parse_qsl(urlencoded, keep_blank_values=True))


def is_form(method: str, content_type: str | None) -> bool:
    """Whether a request may carry an RFC 6750 §2.2 form-body token (a urlencoded body, not GET)."""
    if method.upper() in ("GET", "HEAD") or not content_type:
        return False
    return content_type.split(";", 1)[0].strip().lower() == _FORM_TYPE


def form_has_access_token(body: bytes) -> bool:
    """Whether a urlencoded body has an ``access_token`` parameter (percent-encoded names included)."""
    return _has_access_token(body.decode("latin-1"))


def bearer_token(authorization: Sequence[str], query_string: str, *, form_token: bool = False) -> str:
    """The bearer token of a request, given its ``Authorization`` header values, raw query string and whether
    its form body has an ``access_token`` (only worth checking when a header is present)."""
    return credentials(authorization, query_string, form_token=form_token)[1]


def credentials(authorization: Sequence[str], query_string: str, *, form_token: bool = False,
                dpop: bool = False) -> tuple[str, str]:
    """The scheme (``Bearer``, or ``DPoP`` when ``dpop``) and the access token of a request, as for
    :func:`bearer_token`."""
    if _has_access_token(query_string):
        two = bool(authorization) or form_token
        raise InvalidRequest("access_token in the query string" + (" and elsewhere" if two else ""),
                             description=(_TWO_WAYS + " " if two else "") + _IN_URL)
    if len(authorization) > 1:
        raise InvalidRequest("more than one Authorization header", description=_TWO_WAYS)
    if authorization and form_token:
        raise InvalidRequest("access_token in the Authorization header and the form body", description=_TWO_WAYS)
    if not authorization:
        raise MissingToken("no Authorization header")
    scheme, _, token = authorization[0].strip().partition(" ")
    if scheme.lower() == "dpop" and dpop:
        scheme = "DPoP"
    elif scheme.lower() == "bearer":
        scheme = "Bearer"
    else:
        raise MissingToken(f"Authorization scheme is not {'Bearer or DPoP' if dpop else 'Bearer'}")
    token = token.strip()
    if not _B64TOKEN.fullmatch(token):
        raise InvalidToken("malformed access token")
    return scheme, token


def bearer_from_scope(scope: Mapping[str, Any], *, form_token: bool = False) -> str:
    """:func:`bearer_token` for an ASGI ``scope``."""
    return credentials_from_scope(scope, form_token=form_token)[1]


def credentials_from_scope(scope: Mapping[str, Any], *, form_token: bool = False,
                           dpop: bool = False) -> tuple[str, str]:
    """:func:`credentials` for an ASGI ``scope``."""
    authorization = [v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"]
    return credentials(authorization, scope.get("query_string", b"").decode("latin-1"), form_token=form_token,
                       dpop=dpop)


def dpop_request_from_scope(scope: Mapping[str, Any], scheme: str, policy: DpopPolicy | None) -> DpopRequest:
    """The scheme, ``DPoP`` headers, method and URL of an ASGI request (WebSockets count as ``GET`` on the
    ``http(s)`` URL of the handshake)."""
    headers = scope["headers"]
    proofs = tuple(v.decode("latin-1") for k, v in headers if k == b"dpop")
    if policy is None or scheme != "DPoP":
        return DpopRequest(scheme=scheme, proofs=proofs)
    url_scheme = {"ws": "http", "wss": "https"}.get(scope.get("scheme", "http"), scope.get("scheme", "http"))
    host = next((v.decode("latin-1") for k, v in headers if k == b"host"), None)
    if host is None:
        server = scope.get("server") or ("localhost", None)
        host = server[0] if server[1] in (None, 80, 443) else f"{server[0]}:{server[1]}"
    return DpopRequest(scheme=scheme, proofs=proofs, method=scope.get("method", "GET"),
                       url=policy.request_url(url_scheme, host, raw_request_path(scope.get("raw_path"),
                                                                                 scope.get("path", "/"))))


def needs_form_check(scope: Mapping[str, Any]) -> bool:
    """An HTTP request with an Authorization header and a urlencoded body: its body must be checked for a
    second token."""
    if scope.get("type") != "http":
        return False
    headers = scope["headers"]
    if not any(k == b"authorization" for k, _ in headers):
        return False
    content_type = next((v.decode("latin-1") for k, v in headers if k == b"content-type"), None)
    return is_form(scope.get("method", "GET"), content_type)


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_error(error: ResourceError, realm: str | None = None, resource_metadata: str | None = None, *,
                 dpop: DpopPolicy | None = None, scheme: str | None = None
                 ) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and JSON body for ``error`` (RFC 6750 §3 challenge on 401 and insufficient_scope).

    ``resource_metadata`` is the URL of the API's RFC 9728 document, named in the challenge (RFC 9728 §5.1) so
    a client that has no token yet, or a token without the scope, finds the authorization server to ask.

    With ``dpop`` (the verifier's DPoP policy) a ``DPoP`` challenge with ``algs`` follows the ``Bearer`` one
    (RFC 9449 §7.1; ``Bearer`` is left out when DPoP is required); the error goes in the challenge of the scheme
    the request used (``scheme``), DPoP proof errors always in the DPoP one, and ``use_dpop_nonce`` comes with
    a ``DPoP-Nonce`` header (§9)."""
    dpop_error = isinstance(error, InvalidDpopProof | UseDpopNonce) or (dpop is not None and scheme == "DPoP")
    error_in_dpop = dpop is not None and (dpop_error or dpop.required)

    def challenge(name: str, with_error: bool, extra: list[str]) -> str:
        params: list[str] = [f"realm={_quoted(realm)}"] if realm else []
        if with_error and error.error is not None:
            params.append(f"error={_quoted(error.error)}")
        if with_error and isinstance(error, InsufficientScope):
            params.append(f"scope={_quoted(' '.join(error.required))}")
        params += extra
        if resource_metadata:
            params.append(f"resource_metadata={_quoted(resource_metadata)}")
        return " ".join([name, ", ".join(params)]).strip()

    headers = [("content-type", "application/json"), ("cache-control", "no-store")]
    if error.status_code == 401 or isinstance(error, InsufficientScope | InvalidRequest):
        if dpop is None or not dpop.required:
            headers.append(("www-authenticate", challenge("Bearer", not error_in_dpop, [])))
        if dpop is not None:
            algs = [f"algs={_quoted(' '.join(dpop.algorithms))}"]
            headers.append(("www-authenticate", challenge("DPoP", error_in_dpop, algs)))
    if isinstance(error, UseDpopNonce):
        headers.append(("dpop-nonce", error.nonce))
    body = {"error": error.error or "unauthorized", "error_description": error.description}
    return error.status_code, headers, json.dumps(body).encode()
