"""The ``inventory`` service: stock levels, for a person, asked by the ``orders`` service on their behalf.

``GET /stock?sku=…`` accepts only a *person's* token for this API's audience with ``inventory:read`` that
the ``orders`` service obtained by token exchange (RFC 8693): its ``sub`` is the person and its ``act``
claim names orders (``token.actor == "orders-service"``). Everything else gets 403 ``wrong_token_kind``:
a service's own client-credentials token (it names no person), and a person's token used first-hand (people
reach stock levels only through orders), even with the right audience and scope.

The answer says whose token it was (``sub`` and ``act``), so the whole chain can be checked end to end.

    python inventory.py --issuer http://127.0.0.1:8000 --audience https://inventory.example.com \\
        --caller orders-service --port 9302
"""

from __future__ import annotations

import argparse
from typing import Annotated, Any

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Query, Request

from ostiary.resource import AccessToken, ResourceError, TokenVerifier
from ostiary.resource.fastapi import BearerError, install, require_user

STOCK: dict[str, dict[str, int | str]] = {
    "SKU-KBD-01": {"available": 42, "warehouse": "Lyon"},
    "SKU-MUG-07": {"available": 7, "warehouse": "Rotterdam"},
    "SKU-LMP-13": {"available": 0, "warehouse": "Lyon"},
}


class NotOnBehalf(ResourceError):
    """403: a person's token that the trusted caller did not obtain by token exchange."""

    status_code = 403
    error = "wrong_token_kind"


async def on_behalf(request: Request,
                    token: Annotated[AccessToken, Depends(require_user("inventory:read"))]) -> AccessToken:
    """A person's token with ``inventory:read`` whose actor (RFC 8693 §4.1 ``act``) is the trusted caller."""
    caller: str = request.app.state.caller
    if token.actor != caller:
        raise BearerError(NotOnBehalf(f"actor {token.actor!r}", description=(
            f"This endpoint requires a person's token exchanged by {caller} (RFC 8693); "
            + ("this one was exchanged by another service." if token.actor else "this one is used first-hand."))))
    return token


def create_app(issuer: str, audience: str, caller: str) -> FastAPI:
    app = FastAPI(title="inventory", docs_url=None, redoc_url=None)
    install(app, TokenVerifier(issuer=issuer, audience=audience))
    app.state.caller = caller

    @app.get("/stock")
    async def stock(sku: Annotated[str, Query(max_length=64)],
                    token: Annotated[AccessToken, Depends(on_behalf)]) -> dict[str, Any]:
        level = STOCK.get(sku)
        if level is None:
            raise HTTPException(404, "unknown sku")
        return {"sku": sku, **level, "token": {"sub": token.subject, "act": token.claims.get("act")}}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="The inventory service of the web + microservices example.")
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--audience", required=True)
    parser.add_argument("--caller", required=True,
                        help="client id of the service that may call for people (its token exchange's act)")
    parser.add_argument("--port", type=int, default=9302)
    args = parser.parse_args()
    uvicorn.run(create_app(args.issuer, args.audience, args.caller), host="127.0.0.1", port=args.port,
                log_level="warning")


if __name__ == "__main__":
    main()
