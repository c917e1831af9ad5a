"""Dynamic client registration (RFC 7591 §3) and management (RFC 7592 §2): JSON in, JSON out, a few lines each.
The rules are in :mod:`ostiary.admin.registration`."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...core.errors import InvalidClientMetadata, InvalidRequest, TooManyRequests
from ...core.ratelimit import Attempt, client_network
from .. import metrics
from ..http import NO_STORE, RequestTooLarge, has_nul, json_response, protocol_route
from ..ratelimit import retry_after
from .common import client_ip, runtime

__all__ = ["routes"]


async def _json(request: Request, max_bytes: int) -> Any:
    """RFC 7591 §3.1: an ``application/json`` body, at most ``max_bytes``."""
    mime = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if mime != "application/json":
        raise InvalidRequest("the body must be application/json")
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > max_bytes):
        raise RequestTooLarge("request body too large")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise RequestTooLarge("request body too large")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidClientMetadata("the body is not valid JSON") from None
    if has_nul(document):
        raise InvalidClientMetadata("the metadata must not contain NUL characters")
    return document


@protocol_route("register")
async def register(request: Request) -> Response:
    """RFC 7591 §3.1. Registrations count towards a per-address limit, except those an initial access token
    allowed."""
    rt = runtime(request)
    ip = client_ip(request)
    cfg = rt.settings.registration
    if cfg.policy == "off":
        return Response(status_code=404)
    authorization = request.headers.get("authorization")
    # every attempt counts (a made-up Bearer token must not get around the limit); one that registered a
    # client with a valid initial access token is given back, so an operator's script is not limited
    attempt = [Attempt("registration_ip", "register:ip:" + client_network(ip), cfg.per_ip, cfg.window)] if ip else []
    refused = await rt.limiter.reserve(attempt)
    if refused is not None:
        metrics.RATE_LIMITED.labels(refused[0]).inc()
        raise TooManyRequests(retry_after(refused[1]))
    metadata = await _json(request, rt.settings.server.max_body_bytes)
    out = await rt.registration.register(metadata, authorization, ip)
    if authorization:
        await rt.limiter.release(attempt)
    return json_response(out, 201, NO_STORE)


@protocol_route("register_client")
async def client_configuration(request: Request) -> Response:
    """RFC 7592 §2: read (GET), update (PUT), delete (DELETE) with the registration access token."""
    rt = runtime(request)
    if rt.settings.registration.policy == "off":
        return Response(status_code=404)
    client_id = request.path_params["client_id"]
    authorization = request.headers.get("authorization")
    if request.method == "GET":
        return json_response(await rt.registration.read(client_id, authorization), headers=NO_STORE)
    if request.method == "PUT":
        metadata = await _json(request, rt.settings.server.max_body_bytes)
        out = await rt.registration.update(client_id, authorization, metadata, client_ip(request))
        return json_response(out, headers=NO_STORE)
    await rt.registration.delete(client_id, authorization, client_ip(request))
    return Response(status_code=204, headers=NO_STORE)


routes = [
    Route("/register", register, methods=["POST"]),
    Route("/register/{client_id}", client_configuration, methods=["GET", "PUT", "DELETE"]),
]
