"""The ``orders`` service: a person's orders, enriched with stock levels from ``inventory``.

``GET /orders`` accepts only *user* tokens (issued on behalf of a person through the web app) for this
API's audience with the ``orders:read`` scope; a service token is refused with 403 ``wrong_token_kind``.

To enrich each order it calls ``inventory`` **for that person**, without forwarding the person's token
(whose audience is orders, not inventory) and without its own client-credentials token (which would lose
the person: the seed's mistake 6). It exchanges the token it received at Ostiary's token endpoint (RFC 8693
token exchange, ``subject_token_type=…:access_token``) for a token that keeps the person's ``sub``, is for
inventory's audience with ``inventory:read`` only, names orders as the actor (``act: {"sub":
"orders-service"}``), lives no longer than the person's token and comes with no refresh token. Ostiary
allows it because orders' client serves ``https://orders.example.com`` (the person's token was sent to it)
and may exchange for ``https://inventory.example.com``.

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
from fastapi import Depends, FastAPI, HTTPException, Request

from ostiary.client import DiscoveryError, adiscover
from ostiary.resource import AccessToken, TokenVerifier
from ostiary.resource.fastapi import install, require_user

ORDERS: list[dict[str, Any]] = [
    {"id": "ord-1001", "item": "Mechanical keyboard", "sku": "SKU-KBD-01", "quantity": 1},
    {"id": "ord-1002", "item": "Enamel mug", "sku": "SKU-MUG-07", "quantity": 2},
    {"id": "ord-1003", "item": "Desk lamp", "sku": "SKU-LMP-13", "quantity": 1},
]


TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"


def create_app(issuer: str, audience: str, *, client_id: str, client_secret: str, inventory_url: str,
               inventory_audience: str) -> FastAPI:

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient(timeout=10) as http:
            app.state.http = http
            app.state.token_endpoint = None
            yield

    app = FastAPI(title="orders", docs_url=None, redoc_url=None, lifespan=lifespan)
    install(app, TokenVerifier(issuer=issuer, audience=audience))

    async def for_inventory(user_token: str) -> str:
        """RFC 8693 §2.1: the person's token in, a token for inventory on their behalf out."""
        http: httpx.AsyncClient = app.state.http
        if app.state.token_endpoint is None:
            app.state.token_endpoint = (await adiscover(issuer, http)).token_endpoint
        r = await http.post(app.state.token_endpoint, auth=(client_id, client_secret), data={
            "grant_type": TOKEN_EXCHANGE, "subject_token": user_token, "subject_token_type": ACCESS_TOKEN_TYPE,
            "audience": inventory_audience, "scope": "inventory:read"})
        if r.status_code != 200:
            error = r.json().get("error") if r.headers.get("content-type", "").startswith("application/json") else None
            raise HTTPException(502, f"token exchange refused ({error or r.status_code})")
        return str(r.json()["access_token"])

    async def with_stock(token: str, order: dict[str, Any]) -> dict[str, Any]:
        r = await app.state.http.get(inventory_url.rstrip("/") + "/stock", params={"sku": order["sku"]},
                                     headers={"Authorization": f"Bearer {token}"})
        if r.status_code != 200:
            raise HTTPException(502, f"inventory answered HTTP {r.status_code}")
        stock = r.json()
        return {**order, "stock": stock["available"], "warehouse": stock["warehouse"],
                "inventory_saw": stock["token"]}

    @app.get("/orders")
    async def list_orders(request: Request,
                          token: Annotated[AccessToken, Depends(require_user("orders:read"))]) -> dict[str, Any]:
        # the dependency verified the header's token; it is exchanged, never forwarded
        user_token = request.headers["authorization"].partition(" ")[2].strip()
        try:
            delegated = await for_inventory(user_token)
            enriched = await asyncio.gather(*(with_stock(delegated, order) for order in ORDERS))
        except (httpx.HTTPError, DiscoveryError) as exc:
            raise HTTPException(502, f"inventory or issuer unreachable: {type(exc).__name__}") from None
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
