"""``/admin/api/users``: the admin API for users (same rules as ``ostiary user …``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ....admin.service import AdminError, AdminService
from ....admin.users import SignedOut, UserAdmin, UserCreate, UserUpdate, signed_out_view, user_view
from ....core.users import User
from ...http import NO_STORE, json_response
from .api import admin_route, json_body

__all__ = ["PasswordChange", "UserCreateWithPassword", "routes"]


class UserCreateWithPassword(UserCreate):
    model_config = ConfigDict(extra="forbid", frozen=True)

    password: str


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    password: str


def _with_sign_out(user: User, signed_out: SignedOut) -> Response:
    """The user, and what was ended (``signed_out``): sessions, grants, access tokens."""
    return json_response({**user_view(user), "signed_out": signed_out_view(signed_out)}, headers=NO_STORE)


def _users(svc: AdminService) -> UserAdmin:
    return UserAdmin(svc.store, svc.clock)


@admin_route
async def list_users(request: Request, svc: AdminService) -> Response:
    return json_response([user_view(u) for u in await _users(svc).list_users()], headers=NO_STORE)


@admin_route
async def create_user(request: Request, svc: AdminService) -> Response:
    body = await json_body(request)
    if not isinstance(body, dict):
        raise AdminError("the body must be a JSON object")
    spec = UserCreateWithPassword.model_validate(body)
    user = await _users(svc).create_user(UserCreate(**spec.model_dump(exclude={"password"})), spec.password)
    return json_response(user_view(user), 201, NO_STORE)


@admin_route
async def get_user(request: Request, svc: AdminService) -> Response:
    return json_response(user_view(await _users(svc).get_user(request.path_params["ref"])), headers=NO_STORE)


@admin_route
async def update_user(request: Request, svc: AdminService) -> Response:
    changes = UserUpdate.model_validate(await json_body(request))
    return _with_sign_out(*await _users(svc).update_user(request.path_params["ref"], changes))


@admin_route
async def delete_user(request: Request, svc: AdminService) -> Response:
    await _users(svc).delete_user(request.path_params["ref"])
    return Response(status_code=204)


@admin_route
async def set_password(request: Request, svc: AdminService) -> Response:
    change = PasswordChange.model_validate(await json_body(request))
    return _with_sign_out(*await _users(svc).set_password(request.path_params["ref"], change.password))


@admin_route
async def reset_totp(request: Request, svc: AdminService) -> Response:
    return _with_sign_out(*await _users(svc).reset_totp(request.path_params["ref"]))


routes = [
    Route("/admin/api/users", list_users, methods=["GET"]),
    Route("/admin/api/users", create_user, methods=["POST"]),
    Route("/admin/api/users/{ref}", get_user, methods=["GET"]),
    Route("/admin/api/users/{ref}", update_user, methods=["PATCH"]),
    Route("/admin/api/users/{ref}", delete_user, methods=["DELETE"]),
    Route("/admin/api/users/{ref}/password", set_password, methods=["POST"]),
    Route("/admin/api/users/{ref}/reset-totp", reset_totp, methods=["POST"]),
]
