"""Request parsing and response rendering shared by every route. Errors are rendered here, once."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from time import perf_counter
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ..core import jose
from ..core.client_auth import parse_basic_authorization
from ..core.errors import (
    InvalidClient,
    InvalidRequest,
    OAuthError,
    ServerError,
    StoreUnavailable,
    TemporarilyUnavailable,
)
from . import metrics

__all__ = ["COUNTED", "NO_STORE", "claimed_client_id", "error_response", "json_response", "parse_query",
           "protocol_route", "read_form", "unavailable_error"]

log = logging.getLogger("ostiary.web")

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
#: set in the ASGI scope by :func:`protocol_route`, which counts its responses itself (the guard counts the rest)
COUNTED = "ostiary.counted"
FORM = "application/x-www-form-urlencoded"


class RequestTooLarge(InvalidRequest):
    status = 413


class WrongContentType(InvalidRequest):
    """A body that is not a UTF-8 form, or none at all: ``invalid_request`` with 400, as RFC 6749 §5.2,
    RFC 7662 §2.3 and RFC 7009 §2.2.1 say (not 415: a client library reads the RFC's error JSON)."""


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, headers=dict(headers or {}),
                    media_type="application/json")


def error_response(exc: OAuthError, extra_headers: Mapping[str, str] | None = None) -> Response:
    headers = dict(NO_STORE)
    headers.update(exc.headers)
    if extra_headers:
        headers.update(extra_headers)
    return json_response(exc.body(), exc.status, headers)


def unavailable_error(exc: StoreUnavailable) -> TemporarilyUnavailable:
    """RFC 6749 §4.1.2.1 ``temporarily_unavailable`` as a 503 with ``Retry-After`` (RFC 9110 §10.2.3): what every
    endpoint answers while the database cannot be reached. The cause is logged by the store, once per outage."""
    return TemporarilyUnavailable("the service is temporarily unavailable; retry later",
                                  headers={"Retry-After": str(exc.retry_after)})


def parse_query(query: str, max_fields: int = 200) -> tuple[tuple[str, str], ...]:
    """A query string's parameters (undecodable bytes replaced); more than ``max_fields`` is ``invalid_request``."""
    try:
        return tuple(parse_qsl(query, keep_blank_values=True, max_num_fields=max_fields))
    except ValueError as exc:  # "Max number of fields exceeded"
        raise InvalidRequest("too many parameters") from exc


async def read_form(request: Request, max_bytes: int) -> tuple[tuple[str, str], ...]:
    """Only ``application/x-www-form-urlencoded`` (RFC 6749 §3.2), UTF-8, at most ``max_bytes``.

    The query string is ignored: parameters in a URL end up in logs and histories.
    """
    ctype = request.headers.get("content-type", "")
    mime, _, rest = ctype.partition(";")
    if mime.strip().lower() != FORM:
        raise WrongContentType("the body must be application/x-www-form-urlencoded")
    charset = rest.strip().lower()
    if charset and charset.replace(" ", "") not in ("charset=utf-8", 'charset="utf-8"'):
        raise WrongContentType("the body must be UTF-8")
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > max_bytes):
        raise RequestTooLarge("request body too large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise RequestTooLarge("request body too large")
        chunks.append(chunk)
    body = b"".join(chunks)
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False, errors="strict",
                          max_num_fields=200)
    except UnicodeDecodeError as exc:
        raise InvalidRequest("the body is not valid UTF-8") from exc
    except ValueError as exc:
        raise InvalidRequest("too many parameters") from exc
    for name, value in pairs:
        if "\x00" in name or "\x00" in value:
            raise InvalidRequest("parameters must not contain NUL characters")
    return tuple(pairs)


def claimed_client_id(params: tuple[tuple[str, str], ...], authorization: str | None) -> str | None:
    """The client id a request *claims* (unverified), to key rate limits on."""
    if authorization and authorization[:6].lower() == "basic ":
        try:
            return parse_basic_authorization(authorization)[0][:256]
        except InvalidClient:
            return None
    assertion = None
    for name, value in params:
        if name == "client_id":
            return value[:256]
        if name == "client_assertion":
            assertion = value
    if assertion is not None:  # private_key_jwt without client_id: the assertion's (unverified) iss
        try:
            iss = jose.decode_unverified(assertion)[1].get("iss")
        except jose.JoseError:
            return None
        return iss[:256] if isinstance(iss, str) else None
    return None


Handler = Callable[[Request], Awaitable[Response]]


def protocol_route(name: str) -> Callable[[Handler], Handler]:
    """Render ``OAuthError`` as RFC 6749 §5.2 JSON; anything else becomes a logged ``server_error``."""
    hist = metrics.latency(name)
    counters: dict[int, Any] = {}

    def deco(fn: Handler) -> Handler:
        async def route(request: Request) -> Response:
            start = perf_counter()
            request.scope[COUNTED] = True
            try:
                resp = await fn(request)
            except StoreUnavailable as exc:
                resp = error_response(unavailable_error(exc))
            except OAuthError as exc:
                if exc.status >= 500:
                    log.error("%s: %s", name, exc.debug or exc.description)
                resp = error_response(exc)
            except Exception:
                log.exception("unhandled error in %s", name)
                resp = error_response(ServerError("the server could not handle this request"))
            hist.observe(perf_counter() - start)
            counter = counters.get(resp.status_code)
            if counter is None:
                counter = counters[resp.status_code] = metrics.REQUESTS.labels(name, str(resp.status_code))
            counter.inc()
            return resp

        route.__name__ = fn.__name__
        return route

    return deco
