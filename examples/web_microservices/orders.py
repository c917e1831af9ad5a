"""The ``orders`` service: a person's orders, enriched with stock levels from ``inventory``.

``GET /orders`` accepts only *user* tokens (issued on behalf of a person through the web app) for this
API's audience with the ``orders:read`` scope; a service token is refused with 403 ``wrong_token_kind``.

To enrich each order it calls ``inventory`` with **its own** identity, not the user's token: a client
credentials token for inventory's audience with ``inventory:read`` (``ostiary.client.ServiceTokenClient``
caches it, renews it before it expires, and makes one token request however many calls run at once).
The user's token never leaves this service, and inventory never accepts a user token.

    ORDERS_CLIENT_SECRET=… python orders.py --issuer http://127.0.0.1:8000 --audience https://orders.example.com \\
        --client-id orders-service --inventory-url http://127.0.0.1:9302 \\
        --inventory-audience https://inventory.example.com --port 9301
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import httpx
import uvicorn
from fastapi import Depends, FastAPI, HTTPException

from ostiary.client import ServiceTokenClient
from ostiary.resource import AccessToken, TokenVerifier
from ostiary.resource.fastapi import install, require_user

ORDERS: list[dict[str, Any]] = [
    {"id": "ord-1001", "item": "Mechanical keyboard", "sku": "SKU-KBD-01", "quantity": 1},
    {"id": "ord-1002", "item": "Enamel mug", "sku": "SKU-MUG-07", "quantity": 2},
    {"id": "ord-1003", "item": "Desk lamp", "sku": "SKU-LMP-13", "quantity": 1},
]


def create_app(issuer: str, audience: str, *, client_id: str, client_secret: str, inventory_url: str,
               inventory_audience: str) -> FastAPI:
    tokens = ServiceTokenClient(issuer, client_id, client_secret=client_secret)
    # Every request to inventory carries orders' own token for inventory's audience and scope.
    inventory_auth = tokens.auth("inventory:read", resource=inventory_audience)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient(base_url=inventory_url, auth=inventory_auth, timeout=10) as client:
            app.state.inventory = client
            yield
        tokens.close()

    app = FastAPI(title="orders", docs_url=None, redoc_url=None, lifespan=lifespan)
    install(app, TokenVerifier(issuer=issuer, audience=audience))

    async def with_stock(client: httpx.AsyncClient, order: dict[str, Any]) -> dict[str, Any]:
        r = await client.get("/stock", params={"sku": order["sku"]})
        if r.status_code != 200:
            raise HTTPException(502, f"inventory answered HTTP {r.status_code}")
        stock = r.json()
        return {**order, "stock": stock["available"], "warehouse": stock["warehouse"]}

    @app.get("/orders")
    async def list_orders(token: Annotated[AccessToken, Depends(require_user("orders:read"))]) -> dict[str, Any]:
        client: httpx.AsyncClient = app.state.inventory
        try:
            enriched = await asyncio.gather(*(with_stock(client, order) for order in ORDERS))
        except httpx.HTTPError as exc:
            raise HTTPException(502, f"inventory unreachable: {type(exc).__name__}") from None
        return {"customer": token.subject, "orders": list(enriched)}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="The orders service of the web + microservices example.")
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--audience", required=True)
    parser.add_argument("--client-id", required=True, help="orders' own client id (secret: $ORDERS_CLIENT_SECRET)")
    parser.add_argument("--inventory-url", required=True)
    parser.add_argument("--inventory-audience", required=True)
    parser.add_argument("--port", type=int, default=9301)
    args = parser.parse_args()
    app = create_app(args.issuer, args.audience, client_id=args.client_id,
                     client_secret=os.environ["ORDERS_CLIENT_SECRET"], inventory_url=args.inventory_url,
                     inventory_audience=args.inventory_audience)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
