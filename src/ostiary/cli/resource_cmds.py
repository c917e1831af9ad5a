"""``ostiary resource …``: the RFC 8707 resource registry (the APIs, e.g. MCP servers, tokens may be for)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import typer

from .._clock import SystemClock
from ..admin.resources import ResourceCreate, ResourceService, resource_view
from ._common import console, id_table, print_json, with_store

T = TypeVar("T")

resource_app = typer.Typer(
    help="Register the APIs (RFC 8707 resources, e.g. MCP servers) that clients may ask tokens for with "
         "resource=…; an unregistered one gets invalid_target.",
    no_args_is_help=True,
)


def _with_service(fn: Callable[[ResourceService], Awaitable[T]]) -> T:
    return with_store(lambda s, store: fn(ResourceService(store, SystemClock())))


def _p(text: str) -> None:
    console.print(text, markup=False, soft_wrap=True, highlight=False)


@resource_app.command("add")
def resource_add(
    uri: str = typer.Argument(..., help="The resource's URI, the aud of its tokens, e.g. https://mcp.example.com"),
    scope: list[str] = typer.Option([], "--scope", help="A scope its tokens may carry (repeatable); none: any "
                                                        "scope the client may have."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Register a resource. Example: ostiary resource add https://mcp.example.com --scope tools.read"""
    async def go(svc: ResourceService) -> dict[str, Any]:
        spec = ResourceCreate(uri=uri, scopes=[s for item in scope for s in item.split()])
        return resource_view(await svc.add(spec))

    view = _with_service(go)
    if as_json:
        print_json(view)
    else:
        _p(f"registered {view['uri']} (scopes: {' '.join(view['scopes']) or 'any'})")


@resource_app.command("list")
def resource_list(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List registered resources."""
    async def go(svc: ResourceService) -> list[dict[str, Any]]:
        return [resource_view(r) for r in await svc.list_resources()]

    views = _with_service(go)
    if as_json:
        print_json(views)
        return
    table = id_table("uri", "scopes", ids=[v["uri"] for v in views])
    for v in views:
        table.add_row(v["uri"], " ".join(v["scopes"]) or "(any)")
    console.print(table)


@resource_app.command("remove")
def resource_remove(uri: str, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Remove a resource. New authorizations and refreshes for it get invalid_target at once (unless a client
    has it among its own audiences); tokens already issued expire on their own."""
    async def go(svc: ResourceService) -> None:
        await svc.remove(uri)

    _with_service(go)
    print_json({"removed": uri}) if as_json else _p(f"removed {uri}")
