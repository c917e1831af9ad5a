"""Token, introspection and revocation endpoints, discovery and JWKS: a few lines each."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...core.errors import InvalidClient, TooManyRequests
from ...core.grants.refresh_token import RefreshTokenReused
from ...core.requests import EndpointRequest
from .. import metrics
from ..http import NO_STORE, claimed_client_id, json_response, protocol_route, read_form
from ..ratelimit import Bucket, Lockout, client_network, retry_after
from ..runtime import Runtime

__all__ = ["routes"]


def _rt(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


async def _endpoint_request(request: Request, rt: Runtime, url: str) -> EndpointRequest:
    ip = request.client.host if request.client else None
    params = await read_form(request, rt.settings.server.max_body_bytes)
    authorization = request.headers.get("authorization")
    limits = rt.settings.rate_limits
    if limits.enabled:
        # per IP, then the claimed client's lock-out after failed authentications, then per client: checked
        # in one step (one Redis round trip)
        steps: list[Bucket | Lockout] = []
        net = client_network(ip) if ip else None  # IPv6: the /64
        if net:
            steps.append(Bucket("ip", "ip:" + net, limits.per_ip, limits.per_ip_burst))
        claimed = claimed_client_id(params, authorization)
        if claimed is not None:
            steps += [Lockout("failed_auth", f"{claimed}|{net}", limits.failed_auth_max, limits.failed_auth_window),
                      Bucket("client", "client:" + claimed, limits.per_client, limits.per_client_burst)]
        refused = await rt.limiter.admit(steps)
        if refused is not None:
            metrics.RATE_LIMITED.labels(refused[0]).inc()
            raise TooManyRequests(retry_after(refused[1]))
    return EndpointRequest(endpoint=url, params=params, authorization=authorization,
                           dpop=request.headers.get("dpop"), client_ip=ip)


async def _record_failure(rt: Runtime, req: EndpointRequest) -> None:
    metrics.AUTH_FAILURES.inc()
    claimed = claimed_client_id(req.params, req.authorization)
    if claimed is not None and rt.settings.rate_limits.enabled:
        net = client_network(req.client_ip) if req.client_ip else None
        await rt.limiter.record_failure(f"{claimed}|{net}", rt.settings.rate_limits.failed_auth_window)


@protocol_route("token")
async def token(request: Request) -> Response:
    """RFC 6749 §3.2."""
    rt = _rt(request)
    req = await _endpoint_request(request, rt, rt.policy.token_endpoint)
    try:
        result = await rt.token.handle(req)
    except InvalidClient:
        await _record_failure(rt, req)
        raise
    except RefreshTokenReused as exc:
        metrics.REFRESH_TOKEN_REUSE.labels("true" if exc.family_revoked else "false").inc()
        raise
    metrics.tokens_issued(result.grant_type)
    return json_response(result.body(), headers=NO_STORE)


@protocol_route("introspect")
async def introspect(request: Request) -> Response:
    """RFC 7662 §2."""
    rt = _rt(request)
    req = await _endpoint_request(request, rt, rt.policy.introspection_endpoint)
    try:
        result = await rt.introspection.handle(req)
    except InvalidClient:
        await _record_failure(rt, req)
        raise
    return json_response(result, headers=NO_STORE)


@protocol_route("revoke")
async def revoke(request: Request) -> Response:
    """RFC 7009 §2."""
    rt = _rt(request)
    req = await _endpoint_request(request, rt, rt.policy.revocation_endpoint)
    try:
        await rt.revocation.handle(req)
    except InvalidClient:
        await _record_failure(rt, req)
        raise
    return Response(b"", status_code=200, headers=NO_STORE)


@protocol_route("metadata")
async def metadata(request: Request) -> Response:
    """RFC 8414 §3 and OIDC Discovery §4."""
    return Response(_rt(request).metadata_bytes, media_type="application/json",
                    headers={"Cache-Control": "public, max-age=300"})


@protocol_route("jwks")
async def jwks(request: Request) -> Response:
    rt = _rt(request)
    max_age = max(0, min(300, rt.policy.key_publish_delay // 2))
    return json_response(rt.keyring().jwks, headers={"Cache-Control": f"public, max-age={max_age}"})


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    rt = _rt(request)
    checks = {"database": False, "keys": rt.ready}
    try:
        checks["database"] = await rt.db.ping()
    except Exception:  # any driver error means not ready
        checks["database"] = False
    ok = all(checks.values())
    status = "ready" if ok else "not ready"
    if rt.redis is not None:
        # not a readiness condition: while Redis is away the limits fall back to each process (degraded)
        checks["redis"] = await rt.redis.ping()
        if ok and not checks["redis"]:
            status = "degraded"
    return json_response({"status": status, "checks": checks}, 200 if ok else 503)


async def metrics_route(request: Request) -> Response:
    settings = _rt(request).settings
    if not settings.metrics or settings.server.metrics_address:  # off, or served on its own listener
        return json_response({"error": "not_found"}, 404)
    return Response(metrics.render(), media_type=metrics.CONTENT_TYPE_LATEST)


routes = [
    Route("/token", token, methods=["POST"]),
    Route("/introspect", introspect, methods=["POST"]),
    Route("/revoke", revoke, methods=["POST"]),
    Route("/.well-known/openid-configuration", metadata, methods=["GET"]),
    Route("/.well-known/oauth-authorization-server", metadata, methods=["GET"]),
    Route("/jwks", jwks, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics_route, methods=["GET"]),
]
