"""Request parsing and response rendering shared by every route. Errors are rendered here, once."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from time import perf_counter
from typing import Any
from urllib.parse import parse_qsl, unquote

import orjson
from starlette.requests import ClientDisconnect, Request
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
from ..core.requests import storable_text
from . import metrics

__all__ = ["COUNTED", "NO_STORE", "JsonResponse", "claimed_client_id", "error_response", "has_nul", "json_response",
           "parse_query", "protocol_route", "read_form", "unavailable_error"]

log = logging.getLogger("ostiary.web")

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_NO_STORE_RAW = [(b"cache-control", b"no-store"), (b"pragma", b"no-cache")]
#: set in the ASGI scope by :func:`protocol_route`, which counts its responses itself (the guard counts the rest)
COUNTED = "ostiary.counted"
FORM = "application/x-www-form-urlencoded"


class RequestTooLarge(InvalidRequest):
    status = 413


class WrongContentType(InvalidRequest):
    """A body that is not a UTF-8 form, or none at all: ``invalid_request`` with 400, as RFC 6749 §5.2,
    RFC 7662 §2.3 and RFC 7009 §2.2.1 say (not 415: a client library reads the RFC's error JSON)."""


class JsonResponse(Response):
    """A JSON ``Response`` whose raw headers are built directly (Starlette's ``init_headers`` re-encodes and
    re-scans every header of every response); the same headers, in the same order, as ``Response(body,
    status_code, headers, media_type="application/json")``."""

    media_type = "application/json"

    def __init__(self, body: bytes, status: int, raw: list[tuple[bytes, bytes]]) -> None:
        self.status_code = status
        self.background = None
        self.body = body
        self.raw_headers = [*raw, (b"content-length", str(len(body)).encode()), _JSON_TYPE]


_JSON_TYPE = (b"content-type", b"application/json")


def _raw_headers(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    if status < 200 or status in (204, 304):  # no Content-Length on these: Starlette's rules
        return Response(orjson.dumps(data), status_code=status, headers=dict(headers or {}),
                        media_type="application/json")
    if headers is NO_STORE:
        raw = _NO_STORE_RAW
    elif not headers:
        raw = []
    else:
        raw = _raw_headers(headers)
        if any(k in (b"content-length", b"content-type") for k, _ in raw):  # as Starlette: the caller's win
            return Response(orjson.dumps(data), status_code=status, headers=dict(headers),
                            media_type="application/json")
    return JsonResponse(orjson.dumps(data), status, raw)


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
    ctype = length = None
    for name, value in request.scope["headers"]:  # the first of each, as Starlette's Headers.get
        if name == b"content-type":
            if ctype is None:
                ctype = value.decode("latin-1")
        elif name == b"content-length" and length is None:
            length = value.decode("latin-1")
    mime, _, rest = (ctype or "").partition(";")
    if mime.strip().lower() != FORM:
        raise WrongContentType("the body must be application/x-www-form-urlencoded")
    charset = rest.strip().lower()
    if charset and charset.replace(" ", "") not in ("charset=utf-8", 'charset="utf-8"'):
        raise WrongContentType("the body must be UTF-8")
    if length is not None and (not length.isdigit() or int(length) > max_bytes):
        raise RequestTooLarge("request body too large")
    body = await _read_body(request, max_bytes)
    try:
        text = body.decode("utf-8")
        if 1 + text.count("&") > MAX_FORM_FIELDS:  # as parse_qsl's max_num_fields
            raise InvalidRequest("too many parameters")
        pairs = [_form_pair(piece) for piece in text.split("&") if piece]
    except UnicodeDecodeError as exc:
        raise InvalidRequest("the body is not valid UTF-8") from exc
    for name, value in pairs:
        if "\x00" in name or "\x00" in value:
            raise InvalidRequest("parameters must not contain NUL characters")
    return tuple(pairs)


MAX_FORM_FIELDS = 200


def _form_pair(piece: str) -> tuple[str, str]:
    """One ``name=value`` of a form, decoded as ``parse_qsl(keep_blank_values=True, errors="strict")`` does
    (``+`` is a space, then percent-decoding as UTF-8; no ``=``: an empty value); the common case of a piece
    with nothing to decode costs no call to ``unquote``."""
    name, _, value = piece.partition("=")
    if "+" in name or "%" in name:
        name = unquote(name.replace("+", " "), errors="strict")
    if "+" in value or "%" in value:
        value = unquote(value.replace("+", " "), errors="strict")
    return name, value


async def _read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, at most ``max_bytes``: Starlette's ``Request.stream`` without its async generator
    (one ``receive`` for the usual one-message body). The body is kept on the request as ``Request.body`` keeps
    it, so a later ``request.body()`` or ``request.form()`` still finds it."""
    cached: bytes | None = getattr(request, "_body", None)
    if cached is not None:  # read before (as Request.stream, which yields it)
        if len(cached) > max_bytes:
            raise RequestTooLarge("request body too large")
        return cached
    if request._stream_consumed:  # as Request.stream
        raise RuntimeError("Stream consumed")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise RequestTooLarge("request body too large")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    request._stream_consumed = True
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    request._body = body  # Starlette's cache of the body (Request.body / Request.stream read it)
    return body


def has_nul(document: Any) -> bool:
    """Whether a parsed JSON document has, in any string, key or value, text no store keeps
    (:func:`~ostiary.core.requests.storable_text`: a NUL, ``\\u0000``, is valid JSON but PostgreSQL text refuses
    it; orjson already refuses lone surrogates). Iterative: orjson nests up to 1,024 levels."""
    stack = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not storable_text(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


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
