"""What several route modules share: the runtime and the client address of a request, the messages of the
sign-in pages, the rate-limited :class:`EndpointRequest` of the client-authenticated endpoints, and the count of
failed client authentications. (A route module's own ``_names`` stay its own.)
"""

from __future__ import annotations

from starlette.requests import Request

from ...core.errors import TooManyRequests
from ...core.ratelimit import Bucket, Lockout, client_network
from ...core.requests import EndpointRequest
from .. import metrics
from ..client_cert import presented_certificate
from ..http import claimed_client_id, read_form
from ..ratelimit import retry_after
from ..runtime import Runtime

__all__ = ["CSRF_FAILED", "WRONG_CODE", "WRONG_PASSWORD", "client_ip", "dpop_header", "endpoint_request",
           "record_failure", "runtime"]

CSRF_FAILED = "The form expired. Go back and try again."
WRONG_PASSWORD = "Incorrect username or password."
WRONG_CODE = "That code is not valid."


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


async def endpoint_request(request: Request, rt: Runtime, url: str, *, proof: bool = False) -> EndpointRequest:
    """The form of a client-authenticated endpoint (token, introspection, revocation, device authorization),
    after the rate limits: per IP, then the claimed client's lock-out after failed authentications, then per
    client, checked in one step (one Redis round trip). ``proof``: the endpoint checks DPoP proofs (token, PAR),
    whose ids are then recorded in that same round trip."""
    ip = client_ip(request)
    params = await read_form(request, rt.settings.server.max_body_bytes)
    authorization = request.headers.get("authorization")
    dpop = dpop_header(request)
    first_use: tuple[str, bool] | None = None
    limits = rt.settings.rate_limits
    if limits.enabled:
        steps: list[Bucket | Lockout] = []
        net = client_network(ip) if ip else None  # IPv6: the /64
        if net:
            steps.append(Bucket("ip", "ip:" + net, limits.per_ip, limits.per_ip_burst))
        claimed = claimed_client_id(params, authorization)
        if claimed is not None:
            steps += [Lockout("failed_auth", f"{claimed}|{net}", limits.failed_auth_max, limits.failed_auth_window),
                      Bucket("client", "client:" + claimed, limits.per_client, limits.per_client_burst)]
        refused, first_use = await rt.admit(steps, dpop if proof else None)
        if refused is not None:
            metrics.RATE_LIMITED.labels(refused[0]).inc()
            raise TooManyRequests(retry_after(refused[1]))
    return EndpointRequest(endpoint=url, params=params, authorization=authorization, dpop=dpop, client_ip=ip,
                           client_cert=presented_certificate(request.scope), dpop_first_use=first_use)


def dpop_header(request: Request) -> str | None:
    """The ``DPoP`` header (RFC 9449 §4.3): repeated ones joined with commas, which the check refuses (a proof
    never contains one)."""
    values = request.headers.getlist("dpop")
    return ",".join(values) if values else None


async def record_failure(rt: Runtime, req: EndpointRequest) -> None:
    """A failed client authentication: counted towards the claimed client's lock-out from that address."""
    metrics.AUTH_FAILURES.inc()
    claimed = claimed_client_id(req.params, req.authorization)
    if claimed is not None and rt.settings.rate_limits.enabled:
        net = client_network(req.client_ip) if req.client_ip else None
        await rt.limiter.record_failure(f"{claimed}|{net}", rt.settings.rate_limits.failed_auth_window)
