"""Admin HTTP API under ``/admin/api``: the guard every admin route goes through (``admin_route``), and the
client and key routes.

Bearer-protected: the configured admin token (``OSTIARY_ADMIN_TOKEN``), or a client-credentials access token
of a client flagged ``admin`` (``ostiary client create --admin``): signed by this server, audience
``{issuer}/admin``, scope ``admin``, subject = the client itself (no user), not revoked. A user's token is never
accepted, whatever its scope. Failed authentications are counted per IP address and locked out
(``rate_limits.admin_failed_auth_max`` per ``rate_limits.admin_failed_auth_window``); every call is an audit
event (``admin.request``) naming who made it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...._secrets import constant_time_equals, token_hash
from ....admin.service import (
    ADMIN_SCOPE,
    USER_FACING_GRANTS,
    AdminError,
    AdminService,
    ClientCreate,
    ClientUpdate,
    InvalidMetadata,
    NotFound,
    client_view,
    key_view,
)
from ....core import jose
from ....core.audit import AuditEvent
from ....core.clients import GRANT_CLIENT_CREDENTIALS
from ....core.errors import StoreUnavailable
from ....core.issuance import verify_own_access_token
from ....core.keys import KeyNotFound, KeyRingError
from ....core.ratelimit import Lockout, client_network
from ...http import NO_STORE, error_response, has_nul, json_response, unavailable_error
from ...ratelimit import retry_after
from ...runtime import Runtime

__all__ = ["ADMIN_TOKEN_ACTOR", "BadBody", "Handler", "admin_route", "json_body", "routes"]

ADMIN_TOKEN_ACTOR = "admin-token"
log = logging.getLogger("ostiary.admin")
Handler = Callable[[Request, AdminService], Awaitable[Response]]


def _problem(status: int, error: str, description: str, headers: dict[str, str] | None = None) -> Response:
    out = {**NO_STORE, **(headers or {})}
    if status == 401:
        out["WWW-Authenticate"] = 'Bearer realm="ostiary-admin"'
    return json_response({"error": error, "error_description": description}, status, out)


async def _admin_client(rt: Runtime, token: str) -> str | None:
    """The id of the admin client whose client-credentials token this is, or None."""
    try:
        claims = verify_own_access_token(token, rt.keyring(), rt.policy, rt.clock.now(),
                                         audience=rt.policy.issuer + "/admin")
    except jose.JoseError:
        return None
    client_id = str(claims["client_id"])
    if ADMIN_SCOPE not in str(claims.get("scope", "")).split():
        return None
    # a client-credentials token: the client acting as itself, for no user (user tokens carry auth_time;
    # federated ones an act claim)
    if str(claims["sub"]) != client_id or "auth_time" in claims or "act" in claims:
        return None
    client = await rt.db.get_client(client_id)  # not the per-process cache: a revoked flag counts at once
    if (client is None or not client.admin or ADMIN_SCOPE not in client.scopes
            or GRANT_CLIENT_CREDENTIALS not in client.grant_types or client.grant_types & USER_FACING_GRANTS):
        return None
    if await rt.store.is_access_token_revoked(str(claims["jti"])):
        return None
    return client_id


async def _actor(request: Request, rt: Runtime) -> str | None:
    """Who calls: ``admin-token``, ``client:<id>`` of an admin client, or None (refused)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 16_384:
        return None
    admin = rt.settings.admin_token
    if admin is not None:
        expected = token_hash(admin.get_secret_value(), rt.admin_hash_key)
        if constant_time_equals(token_hash(token, rt.admin_hash_key), expected):
            return ADMIN_TOKEN_ACTOR
    client_id = await _admin_client(rt, token)
    return None if client_id is None else "client:" + client_id


def _audit(rt: Runtime, request: Request, actor: str | None, status: int, reason: str | None = None) -> None:
    detail: dict[str, Any] = {"actor": actor or "anonymous", "method": request.method,
                              "path": request.url.path[:300], "status": status}
    if reason:
        detail["reason"] = reason
    client_id = actor.removeprefix("client:") if actor and actor.startswith("client:") else None
    rt.audit.emit(AuditEvent(type="admin.request", outcome="success" if status < 400 else "failure",
                             at=rt.clock.now(), client_id=client_id, subject=actor,
                             ip=request.client.host if request.client else None, detail=detail))


async def _authenticate(request: Request, rt: Runtime) -> str | Response:
    """The actor, or the refusal: 429 while this address is locked out, 401 for anything but a valid admin
    credential (counted towards the lock-out)."""
    limits = rt.settings.rate_limits
    key = "admin:ip:" + (client_network(request.client.host) if request.client else "-")  # IPv6: the /64
    if limits.enabled:
        refused = await rt.limiter.admit([Lockout("admin_auth", key, limits.admin_failed_auth_max,
                                                  limits.admin_failed_auth_window)])
        if refused is not None:
            _audit(rt, request, None, 429, "locked out after failed admin authentications")
            return _problem(429, "too_many_requests", "too many failed admin authentications from this address; "
                            "try again later", {"Retry-After": str(retry_after(refused[1]))})
    actor = await _actor(request, rt)
    if actor is None:
        if limits.enabled:
            await rt.limiter.record_failure(key, limits.admin_failed_auth_window)
        _audit(rt, request, None, 401, "no valid admin credential")
        return _problem(401, "invalid_token", "the admin token, or a client-credentials token of an admin client "
                        "(audience {issuer}/admin, scope admin), is required")
    return actor


def admin_route(fn: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def route(request: Request) -> Response:
        rt: Runtime = request.app.state.runtime
        actor = await _authenticate(request, rt)
        if isinstance(actor, Response):
            return actor
        resp = await _handle(fn, request, rt)
        _audit(rt, request, actor, resp.status_code)
        return resp

    route.__name__ = fn.__name__
    return route


async def _handle(fn: Handler, request: Request, rt: Runtime) -> Response:
    service = AdminService(rt.store, rt.policy, rt.clock, rt.secret_hash_key, rt.kek)
    try:
        resp = await fn(request, service)
    except BadBody as exc:
        return _problem(exc.status, "invalid_request", str(exc))
    except (NotFound, KeyNotFound) as exc:
        return _problem(404, "not_found", str(exc))
    except InvalidMetadata as exc:
        return _problem(422, "invalid_client_metadata", str(exc))
    except (AdminError, KeyRingError) as exc:
        return _problem(409, "conflict", str(exc))
    except StoreUnavailable as exc:
        return error_response(unavailable_error(exc))
    except ValidationError as exc:
        msgs = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
        return _problem(422, "invalid_request", msgs[:2000])
    except Exception:
        log.exception("unhandled error in admin API %s", fn.__name__)
        return _problem(500, "server_error", "the server could not handle this request")
    if request.method != "GET":
        await rt.reload_keys()
    return resp


class BadBody(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


async def json_body(request: Request) -> Any:
    body = await request.body()
    if len(body) > 256 * 1024:
        raise BadBody("body too large (256 KiB at most)", 413)
    try:
        document = orjson.loads(body or b"{}")
    except orjson.JSONDecodeError as exc:
        raise BadBody("the body must be JSON") from exc
    if has_nul(document):
        raise BadBody("the body must not contain NUL characters", 422)  # as any other invalid field value
    return document


@admin_route
async def list_clients(request: Request, svc: AdminService) -> Response:
    now = svc.clock.now()
    flag = request.query_params.get("dynamic")
    if flag not in (None, "true", "false"):
        raise BadBody("dynamic must be true or false")
    dynamic = None if flag is None else flag == "true"
    return json_response([client_view(c, now) for c in await svc.list_clients(dynamic=dynamic)], headers=NO_STORE)


@admin_route
async def create_client(request: Request, svc: AdminService) -> Response:
    spec = ClientCreate.model_validate(await json_body(request))
    client, secret = await svc.create_client(spec)
    out = client_view(client, svc.clock.now())
    if secret is not None:
        out["client_secret"] = secret
    return json_response(out, 201, NO_STORE)


@admin_route
async def get_client(request: Request, svc: AdminService) -> Response:
    client = await svc.get_client(request.path_params["client_id"])
    return json_response(client_view(client, svc.clock.now()), headers=NO_STORE)


@admin_route
async def update_client(request: Request, svc: AdminService) -> Response:
    changes = ClientUpdate.model_validate(await json_body(request))
    client = await svc.update_client(request.path_params["client_id"], changes)
    return json_response(client_view(client, svc.clock.now()), headers=NO_STORE)


@admin_route
async def delete_client(request: Request, svc: AdminService) -> Response:
    await svc.delete_client(request.path_params["client_id"])
    return Response(status_code=204)


@admin_route
async def rotate_secret(request: Request, svc: AdminService) -> Response:
    client, secret = await svc.rotate_secret(request.path_params["client_id"])
    out = client_view(client, svc.clock.now())
    out["client_secret"] = secret
    return json_response(out, headers=NO_STORE)


@admin_route
async def list_keys(request: Request, svc: AdminService) -> Response:
    now = svc.clock.now()
    return json_response([key_view(k, now, svc.policy) for k in await svc.list_keys()], headers=NO_STORE)


@admin_route
async def rotate_keys(request: Request, svc: AdminService) -> Response:
    immediate = request.query_params.get("now") in ("1", "true")
    keys = await svc.rotate_keys(immediate=immediate, alg=request.query_params.get("alg") or None)
    return json_response([key_view(k, svc.clock.now(), svc.policy) for k in keys], 201, NO_STORE)


@admin_route
async def retire_key(request: Request, svc: AdminService) -> Response:
    key = await svc.retire_key(request.path_params["kid"])
    return json_response(key_view(key, svc.clock.now(), svc.policy), headers=NO_STORE)


routes = [
    Route("/admin/api/clients", list_clients, methods=["GET"]),
    Route("/admin/api/clients", create_client, methods=["POST"]),
    Route("/admin/api/clients/{client_id}", get_client, methods=["GET"]),
    Route("/admin/api/clients/{client_id}", update_client, methods=["PATCH"]),
    Route("/admin/api/clients/{client_id}", delete_client, methods=["DELETE"]),
    Route("/admin/api/clients/{client_id}/rotate-secret", rotate_secret, methods=["POST"]),
    Route("/admin/api/keys", list_keys, methods=["GET"]),
    Route("/admin/api/keys/rotate", rotate_keys, methods=["POST"]),
    Route("/admin/api/keys/{kid}/retire", retire_key, methods=["POST"]),
]
