"""Admin HTTP API for the RFC 8707 resource registry, under ``/admin/api/resources``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ....admin.resources import ResourceCreate, ResourceService, resource_view
from ....admin.service import AdminService
from ...http import NO_STORE, json_response
from .api import admin_route, json_body

__all__ = ["routes"]


def _svc(svc: AdminService) -> ResourceService:
    return ResourceService(svc.store, svc.clock)


@admin_route
async def list_resources(request: Request, svc: AdminService) -> Response:
    return json_response([resource_view(r) for r in await _svc(svc).list_resources()], headers=NO_STORE)


@admin_route
async def add_resource(request: Request, svc: AdminService) -> Response:
    spec = ResourceCreate.model_validate(await json_body(request))
    return json_response(resource_view(await _svc(svc).add(spec)), 201, NO_STORE)


@admin_route
async def remove_resource(request: Request, svc: AdminService) -> Response:
    uri = request.query_params.get("uri")
    if not uri:
        return json_response({"error": "invalid_request", "error_description": "uri is required"}, 400, NO_STORE)
    await _svc(svc).remove(uri)
    return Response(status_code=204)


routes = [
    Route("/admin/api/resources", list_resources, methods=["GET"]),
    Route("/admin/api/resources", add_resource, methods=["POST"]),
    Route("/admin/api/resources", remove_resource, methods=["DELETE"]),
]
