"""GET/POST /userinfo (OIDC Core §5.3): Bearer or DPoP (RFC 9449 §7) token in the Authorization header only."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..client_cert import presented_certificate
from ..http import NO_STORE, json_response, protocol_route, read_form
from .authorize import flows
from .common import dpop_header

__all__ = ["routes"]


@protocol_route("userinfo")
async def userinfo(request: Request) -> Response:
    f = flows(request)
    elsewhere = "access_token" in request.query_params
    if request.method == "POST" and request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"):
        form = await read_form(request, f.settings.server.max_body_bytes)
        elsewhere = elsewhere or any(k == "access_token" for k, _ in form)
    authorization = request.headers.getlist("authorization")
    claims = await f.userinfo.handle(authorization[0] if authorization else None, token_elsewhere=elsewhere,
                                     client_cert=presented_certificate(request.scope), dpop=dpop_header(request),
                                     method=request.method, repeated_authorization=len(authorization) > 1)
    return json_response(claims, headers=NO_STORE)


routes = [Route("/userinfo", userinfo, methods=["GET", "POST"])]
