"""The ``inventory`` service: stock levels, for other services only.

``GET /stock?sku=…`` accepts only *service* tokens (client credentials) issued for this API's audience
with the ``inventory:read`` scope. A token issued on behalf of a person is refused with 403
``wrong_token_kind`` even when its audience and scope are right: people reach stock levels only through
the ``orders`` service, which calls this one with its own identity.

    python inventory.py --issuer http://127.0.0.1:8000 --audience https://inventory.example.com --port 9302
"""

from __future__ import annotations

import argparse
from typing import Annotated

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Query

from ostiary.resource import AccessToken, TokenVerifier
from ostiary.resource.fastapi import install, require_service

STOCK: dict[str, dict[str, int | str]] = {
    "SKU-KBD-01": {"available": 42, "warehouse": "Lyon"},
    "SKU-MUG-07": {"available": 7, "warehouse": "Rotterdam"},
    "SKU-LMP-13": {"available": 0, "warehouse": "Lyon"},
}


def create_app(issuer: str, audience: str) -> FastAPI:
    app = FastAPI(title="inventory", docs_url=None, redoc_url=None)
    install(app, TokenVerifier(issuer=issuer, audience=audience))

    @app.get("/stock")
    async def stock(sku: Annotated[str, Query(max_length=64)],
                    token: Annotated[AccessToken, Depends(require_service("inventory:read"))]) -> dict[str, object]:
        level = STOCK.get(sku)
        if level is None:
            raise HTTPException(404, "unknown sku")
        return {"sku": sku, **level, "checked_for": token.client_id}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="The inventory service of the web + microservices example.")
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--audience", required=True)
    parser.add_argument("--port", type=int, default=9302)
    args = parser.parse_args()
    uvicorn.run(create_app(args.issuer, args.audience), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
