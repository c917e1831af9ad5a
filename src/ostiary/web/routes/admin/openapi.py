"""``GET /admin/api/openapi.json``: the OpenAPI 3.1 document of every admin route (tests/web/test_admin_api.py
checks that it describes each route the admin modules serve, and nothing else)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ....admin.federation import ExplainRequest, TrustPolicyCreate
from ....admin.resources import ResourceCreate
from ....admin.service import ClientCreate, ClientUpdate
from ....admin.users import UserUpdate
from ...http import json_response
from ...runtime import Runtime
from .users import PasswordChange, UserCreateWithPassword

__all__ = ["openapi", "routes"]


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema(ref_template="#/components/schemas/{model}")


def openapi(issuer: str) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Ostiary admin API", "version": "1"},
        "servers": [{"url": issuer + "/admin/api"}],
        "security": [{"bearer": []}],
        "paths": {**_client_paths(), **_federation_paths(), **_user_paths(), **_resource_paths()},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"ClientCreate": _schema(ClientCreate), "ClientUpdate": _schema(ClientUpdate),
                        **_federation_schemas()},
            "responses": {"Error": {"description": "error", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"error": {"type": "string"},
                                                 "error_description": {"type": "string"}}}}}}},
        },
    }


def _client_paths() -> dict[str, Any]:
    ok = {"description": "OK", "content": {"application/json": {}}}
    err = {"$ref": "#/components/responses/Error"}
    client_id = [{"name": "client_id", "in": "path", "required": True, "schema": {"type": "string"}}]

    def body(name: str) -> dict[str, Any]:
        return {"required": True, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}}

    return {
        "/clients": {
            "get": {"summary": "List clients (dynamic=true: only those registered by themselves, RFC 7591; "
                               "dynamic=false: only those an administrator registered)",
                    "parameters": [{"name": "dynamic", "in": "query", "schema": {"type": "boolean"}}],
                    "responses": {"200": ok, "401": err, "429": err}},
            "post": {"summary": "Register a client; the secret is in the response, once",
                     "requestBody": body("ClientCreate"), "responses": {"201": ok, "401": err, "409": err,
                                                                      "422": err}},
        },
        "/clients/{client_id}": {
            "parameters": client_id,
            "get": {"summary": "Show a client", "responses": {"200": ok, "401": err, "404": err}},
            "patch": {"summary": "Change a client (disabled=true: refused at every endpoint until enabled again)",
                      "requestBody": body("ClientUpdate"),
                      "responses": {"200": ok, "401": err, "404": err, "422": err}},
            "delete": {"summary": "Delete a client", "responses": {"204": {"description": "deleted"},
                                                                   "401": err, "404": err}},
        },
        "/clients/{client_id}/rotate-secret": {
            "parameters": client_id,
            "post": {"summary": "New secret; old ones stay valid for the configured overlap",
                     "responses": {"200": ok, "401": err, "404": err, "409": err}},
        },
        "/keys": {"get": {"summary": "List signing keys", "responses": {"200": ok, "401": err}}},
        "/keys/rotate": {"post": {
            "summary": "Add a key per signing algorithm, or for alg only (published now, signing after "
                       "keys.publish_delay, or at once with now=1); answers the list of new keys",
            "parameters": [{"name": "now", "in": "query", "schema": {"type": "boolean"}},
                           {"name": "alg", "in": "query", "schema": {"enum": ["ES256", "RS256", "EdDSA"]}}],
            "responses": {"201": ok, "401": err, "409": err}}},
        "/keys/{kid}/retire": {"post": {
            "summary": "Stop signing with a key; it stays published until its tokens expire",
            "parameters": [{"name": "kid", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": ok, "401": err, "404": err, "409": err}}},
    }


def _federation_schemas() -> dict[str, Any]:
    schemas = {"TrustPolicyCreate": _schema(TrustPolicyCreate), "ExplainRequest": _schema(ExplainRequest)}
    for model in list(schemas.values()):  # nested definitions, hoisted to components
        schemas.update(model.pop("$defs", {}))
    return schemas


def _federation_paths() -> dict[str, Any]:
    ok = {"description": "OK", "content": {"application/json": {}}}
    err = {"$ref": "#/components/responses/Error"}

    def body(name: str) -> dict[str, Any]:
        return {"required": True, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}}

    return {
        "/federation/trust": {
            "get": {"summary": "List trust policies (workload identity federation)",
                    "parameters": [{"name": "issuer", "in": "query", "schema": {"type": "string"}}],
                    "responses": {"200": ok, "401": err}},
            "post": {"summary": "Add a trust policy for an external OIDC issuer",
                     "requestBody": body("TrustPolicyCreate"),
                     "responses": {"201": ok, "401": err, "409": err, "422": err}},
        },
        "/federation/trust/{policy_id}": {
            "parameters": [{"name": "policy_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "get": {"summary": "Show a trust policy", "responses": {"200": ok, "401": err, "404": err}},
            "delete": {"summary": "Remove a trust policy (takes effect at once)",
                       "responses": {"204": {"description": "removed"}, "401": err, "404": err}},
        },
        "/federation/explain": {
            "post": {"summary": "Explain how the trust policies judge an external token; issues nothing",
                     "requestBody": body("ExplainRequest"), "responses": {"200": ok, "401": err, "422": err}},
        },
    }


def _resource_paths() -> dict[str, Any]:
    ok = {"description": "OK", "content": {"application/json": {}}}
    err = {"$ref": "#/components/responses/Error"}
    return {
        "/resources": {
            "get": {"summary": "List registered resources (RFC 8707: the APIs tokens may be for)",
                    "responses": {"200": ok, "401": err}},
            "post": {"summary": "Register a resource and the scopes its tokens may carry",
                     "requestBody": {"required": True, "content": {"application/json": {
                         "schema": ResourceCreate.model_json_schema()}}},
                     "responses": {"201": ok, "401": err, "409": err, "422": err}},
            "delete": {"summary": "Remove a resource (new authorizations for it get invalid_target at once)",
                       "parameters": [{"name": "uri", "in": "query", "required": True,
                                       "schema": {"type": "string"}}],
                       "responses": {"204": {"description": "removed"}, "400": err, "401": err, "404": err}},
        },
    }


def _user_paths() -> dict[str, Any]:
    ok = {"description": "OK", "content": {"application/json": {}}}
    err = {"$ref": "#/components/responses/Error"}
    ref = [{"name": "ref", "in": "path", "required": True, "schema": {"type": "string"},
            "description": "user id, username or email"}]

    def body(model: type[BaseModel]) -> dict[str, Any]:
        return {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}

    return {
        "/users": {
            "get": {"summary": "List users", "responses": {"200": ok, "401": err}},
            "post": {"summary": "Create a user (password hashed with argon2id)",
                     "requestBody": body(UserCreateWithPassword),
                     "responses": {"201": ok, "401": err, "409": err, "422": err}},
        },
        "/users/{ref}": {
            "parameters": ref,
            "get": {"summary": "Show a user", "responses": {"200": ok, "401": err, "404": err}},
            "patch": {"summary": "Change a user (disabled=true ends their sessions and revokes their tokens; "
                                 "see signed_out)",
                      "requestBody": body(UserUpdate), "responses": {"200": ok, "401": err, "404": err, "422": err}},
            "delete": {"summary": "Delete a user and revoke their tokens",
                       "responses": {"204": {"description": "deleted"}, "401": err, "404": err}},
        },
        "/users/{ref}/password": {
            "parameters": ref,
            "post": {"summary": "Set the password; ends the user's sessions and revokes every "
                                 "refresh and access token they hold (see signed_out)",
                     "requestBody": body(PasswordChange),
                     "responses": {"200": ok, "401": err, "404": err, "409": err}},
        },
        "/users/{ref}/reset-totp": {
            "parameters": ref,
            "post": {"summary": "Remove the user's second factor and recovery codes; ends their "
                                 "sessions and revokes their tokens (see signed_out)",
                     "responses": {"200": ok, "401": err, "404": err}},
        },
    }


async def openapi_route(request: Request) -> Response:
    rt: Runtime = request.app.state.runtime
    return json_response(openapi(rt.policy.issuer))


routes = [Route("/admin/api/openapi.json", openapi_route, methods=["GET"])]
