"""A protected deploy API: accepts only Ostiary access tokens for its audience with the ``deploy`` scope.

It neither knows nor cares that the caller is a CI job: it validates a normal access token with
``ostiary.resource.TokenVerifier``. The token's ``act`` claim (RFC 8693 §4.1) names the external identity
(the CI platform's ``iss`` and ``sub``) for the deploy log.

    python deploy_api.py --issuer http://127.0.0.1:8000 --audience https://deploy.example.com --port 9200
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ostiary.resource import AccessToken, ResourceError, TokenVerifier
from ostiary.resource.starlette import BearerAuthMiddleware


async def deploy(request: Request) -> JSONResponse:
    token: AccessToken = request.state.access_token
    try:
        token.require(["deploy"], service=True)
    except ResourceError as exc:
        return JSONResponse({"error": exc.error, "error_description": exc.description}, exc.status_code)
    body = await request.json() if await request.body() else {}
    act = token.claims.get("act", {})
    return JSONResponse({
        "deployed": body.get("version", "latest"),
        "by": token.subject,
        "external_identity": {"iss": act.get("iss"), "sub": act.get("sub")},
        "policy": token.claims.get("federation_policy"),
        "scopes": sorted(token.scopes),
    })


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def create_app(issuer: str, audience: str) -> Starlette:
    app = Starlette(routes=[Route("/deploy", deploy, methods=["POST"]), Route("/healthz", healthz)])
    app.add_middleware(BearerAuthMiddleware, verifier=TokenVerifier(issuer=issuer, audience=audience),
                       exempt={"/healthz"})
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--audience", required=True)
    parser.add_argument("--port", type=int, default=9200)
    args = parser.parse_args()
    uvicorn.run(create_app(args.issuer, args.audience), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
