"""Framework-free HTTP pieces shared by the adapters: reading the bearer token and rendering errors.

RFC 6750 §2.1: the token is accepted only from ``Authorization: Bearer``. A token in the query string
(§2.3, ``access_token=``) is refused with 400 ``invalid_request`` because it has already leaked into
access logs and browser history; a token in a form body (§2.2) is never read, so a request carrying
only that gets 401 like any request without a token.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import parse_qsl

from .errors import InsufficientScope, InvalidRequest, InvalidToken, MissingToken, ResourceError

__all__ = ["bearer_from_scope", "bearer_token", "render_error"]

_B64TOKEN: Final = re.compile(r"[A-Za-z0-9\-._~+/]+=*")  # RFC 6750 §2.1 b64token


def bearer_token(authorization: Sequence[str], query_string: str) -> str:
    """The bearer token of a request, given its ``Authorization`` header values and raw query string."""
    if "access_token" in query_string and any(k == "access_token" for k, _ in parse_qsl(query_string)):
        raise InvalidRequest("access_token in the query string")
    if len(authorization) > 1:
        raise InvalidRequest("more than one Authorization header")
    if not authorization:
        raise MissingToken("no Authorization header")
    scheme, _, token = authorization[0].strip().partition(" ")
    if scheme.lower() != "bearer":
        raise MissingToken("Authorization scheme is not Bearer")
    token = token.strip()
    if not _B64TOKEN.fullmatch(token):
        raise InvalidToken("malformed bearer token")
    return token


def bearer_from_scope(scope: Mapping[str, Any]) -> str:
    """:func:`bearer_token` for an ASGI ``scope``."""
    authorization = [v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"]
    return bearer_token(authorization, scope.get("query_string", b"").decode("latin-1"))


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_error(error: ResourceError, realm: str | None = None) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and JSON body for ``error`` (RFC 6750 §3 challenge on 401 and insufficient_scope)."""
    params: list[str] = [f"realm={_quoted(realm)}"] if realm else []
    if error.error is not None:
        params.append(f"error={_quoted(error.error)}")
    if isinstance(error, InsufficientScope):
        params.append(f"scope={_quoted(' '.join(error.required))}")
    headers = [("content-type", "application/json"), ("cache-control", "no-store")]
    if error.status_code == 401 or isinstance(error, InsufficientScope | InvalidRequest):
        headers.append(("www-authenticate", " ".join(["Bearer", ", ".join(params)]).strip()))
    body = {"error": error.error or "unauthorized", "error_description": error.description}
    return error.status_code, headers, json.dumps(body).encode()
