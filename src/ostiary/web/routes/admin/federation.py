"""Admin HTTP API for workload identity federation: trust policies and explain, under ``/admin/api/federation``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ....admin.federation import ExplainRequest, FederationService, TrustPolicyCreate, trust_policy_view
from ....admin.service import AdminService
from ...http import NO_STORE, json_response
from ...runtime import Runtime
from .api import admin_route, json_body

__all__ = ["routes"]


def _svc(svc: AdminService) -> FederationService:
    return FederationService(svc.store, svc.policy, svc.clock)


@admin_route
async def list_trust(request: Request, svc: AdminService) -> Response:
    policies = await _svc(svc).list_policies(request.query_params.get("issuer"))
    return json_response([trust_policy_view(p) for p in policies], headers=NO_STORE)


@admin_route
async def add_trust(request: Request, svc: AdminService) -> Response:
    spec = TrustPolicyCreate.model_validate(await json_body(request))
    policy = await _svc(svc).add(spec)
    return json_response(trust_policy_view(policy), 201, NO_STORE)


@admin_route
async def show_trust(request: Request, svc: AdminService) -> Response:
    policy = await _svc(svc).get(request.path_params["policy_id"])
    return json_response(trust_policy_view(policy), headers=NO_STORE)


@admin_route
async def remove_trust(request: Request, svc: AdminService) -> Response:
    await _svc(svc).remove(request.path_params["policy_id"])
    return Response(status_code=204)


@admin_route
async def explain(request: Request, svc: AdminService) -> Response:
    body = ExplainRequest.model_validate(await json_body(request))
    rt: Runtime = request.app.state.runtime
    report = await _svc(svc).explain(body.token, rt.external_keys, client_id=body.client_id, scope=body.scope,
                                     audiences=body.audience)
    return json_response(report.as_dict(), headers=NO_STORE)


routes = [
    Route("/admin/api/federation/trust", list_trust, methods=["GET"]),
    Route("/admin/api/federation/trust", add_trust, methods=["POST"]),
    Route("/admin/api/federation/trust/{policy_id}", show_trust, methods=["GET"]),
    Route("/admin/api/federation/trust/{policy_id}", remove_trust, methods=["DELETE"]),
    Route("/admin/api/federation/explain", explain, methods=["POST"]),
]
