"""Token, introspection and revocation endpoints, discovery and JWKS: a few lines each."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...core.dpop import InvalidDpopProof, UseDpopNonce, resource_challenge
from ...core.errors import InvalidClient
from ...core.grants.refresh_token import RefreshTokenReused
from .. import metrics
from ..http import NO_STORE, json_response, protocol_route
from .common import endpoint_request, record_failure, runtime

__all__ = ["routes"]


@protocol_route("token")
async def token(request: Request) -> Response:
    """RFC 6749 §3.2."""
    rt = runtime(request)
    req = await endpoint_request(request, rt, rt.policy.token_endpoint, proof=True)
    try:
        result = await rt.token.handle(req)
    except InvalidClient:
        await record_failure(rt, req)
        raise
    except RefreshTokenReused as exc:
        metrics.REFRESH_TOKEN_REUSE.labels("true" if exc.family_revoked else "false").inc()
        raise
    except (InvalidDpopProof, UseDpopNonce) as exc:
        _dpop_challenge(exc, rt.policy.dpop_algs)
        raise
    metrics.tokens_issued(result.grant_type)
    if result.dpop_nonce is not None:
        return json_response(result.body(), headers={**NO_STORE, "DPoP-Nonce": result.dpop_nonce})
    return json_response(result.body(), headers=NO_STORE)


def _dpop_challenge(exc: InvalidDpopProof | UseDpopNonce, algs: tuple[str, ...]) -> None:
    """RFC 9449 §7.1's challenge also on the token and PAR endpoints' 400 (the body is RFC 6749 §5.2's JSON):
    a client library that reads ``WWW-Authenticate`` learns the error and the algorithms accepted."""
    exc.headers.setdefault("WWW-Authenticate", resource_challenge(algs, exc.error))


@protocol_route("par")
async def par(request: Request) -> Response:
    """RFC 9126 §2: 201 with the request_uri."""
    rt = runtime(request)
    req = await endpoint_request(request, rt, rt.policy.pushed_authorization_request_endpoint, proof=True)
    try:
        result = await rt.par.handle(req)
    except InvalidClient:
        await record_failure(rt, req)
        raise
    except (InvalidDpopProof, UseDpopNonce) as exc:
        _dpop_challenge(exc, rt.policy.dpop_algs)
        raise
    return json_response(result.body(), 201, headers=NO_STORE)


@protocol_route("introspect")
async def introspect(request: Request) -> Response:
    """RFC 7662 §2."""
    rt = runtime(request)
    req = await endpoint_request(request, rt, rt.policy.introspection_endpoint)
    try:
        result = await rt.introspection.handle(req)
    except InvalidClient:
        await record_failure(rt, req)
        raise
    return json_response(result, headers=NO_STORE)


@protocol_route("revoke")
async def revoke(request: Request) -> Response:
    """RFC 7009 §2."""
    rt = runtime(request)
    req = await endpoint_request(request, rt, rt.policy.revocation_endpoint)
    try:
        await rt.revocation.handle(req)
    except InvalidClient:
        await record_failure(rt, req)
        raise
    return Response(b"", status_code=200, headers=NO_STORE)


@protocol_route("metadata")
async def metadata(request: Request) -> Response:
    """RFC 8414 §3 and OIDC Discovery §4."""
    return Response(runtime(request).metadata_bytes, media_type="application/json",
                    headers={"Cache-Control": "public, max-age=300"})


@protocol_route("jwks")
async def jwks(request: Request) -> Response:
    rt = runtime(request)
    max_age = max(0, min(300, rt.policy.key_publish_delay // 2))
    return json_response(rt.keyring().jwks, headers={"Cache-Control": f"public, max-age={max_age}"})


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    rt = runtime(request)
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
    settings = runtime(request).settings
    if not settings.metrics or settings.server.metrics_address:  # off, or served on its own listener
        return json_response({"error": "not_found"}, 404)
    return Response(metrics.render(), media_type=metrics.CONTENT_TYPE_LATEST)


routes = [
    Route("/token", token, methods=["POST"]),
    Route("/par", par, methods=["POST"]),
    Route("/introspect", introspect, methods=["POST"]),
    Route("/revoke", revoke, methods=["POST"]),
    Route("/.well-known/openid-configuration", metadata, methods=["GET"]),
    Route("/.well-known/oauth-authorization-server", metadata, methods=["GET"]),
    Route("/jwks", jwks, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics_route, methods=["GET"]),
]
