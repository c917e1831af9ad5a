"""The admin HTTP API under /admin/api, on SQLite and PostgreSQL: authentication, clients, keys, OpenAPI."""

from __future__ import annotations

import base64
import importlib
import json
import pkgutil
import re
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.routing import Route

import ostiary.web.routes.admin

from ..support import LiveServer

API = "https://api.example.com"


@pytest.fixture
def admin(server: LiveServer) -> Iterator[httpx.Client]:
    with server.admin() as c:
        yield c


def bearer(server: LiveServer, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.Client(base_url=server.base_url + "/admin/api", timeout=30, headers=headers)


def client_token(server: LiveServer, client: dict[str, Any], **form: str) -> httpx.Response:
    return httpx.post(server.base_url + "/token", data={"grant_type": "client_credentials", **form},
                      auth=(client["client_id"], client["client_secret"]), timeout=30)


def assert_unauthorized(r: httpx.Response) -> None:
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"].lower().startswith("bearer")
    assert r.headers["content-type"].startswith("application/json")
    assert isinstance(r.json()["error"], str)


def assert_json_problem(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert isinstance(body["error"], str)
    assert "Traceback" not in r.text
    description: str = body["error_description"]
    assert description
    return description


# ---------------------------------------------------------------- authentication

@pytest.mark.parametrize("header", [None, "Bearer wrong-token", "Bearer", "Basic YWRtaW46YWRtaW4=", "Bearer a.b.c",
                                    "admin-token"])
def test_requests_without_a_valid_admin_token_are_401(server: LiveServer, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    with httpx.Client(base_url=server.base_url + "/admin/api", timeout=30, headers=headers) as c:
        for method, path in [("GET", "/clients"), ("POST", "/clients"), ("GET", "/clients/x"),
                             ("PATCH", "/clients/x"), ("DELETE", "/clients/x"), ("POST", "/clients/x/rotate-secret"),
                             ("GET", "/keys"), ("POST", "/keys/rotate"), ("POST", "/keys/x/retire")]:
            assert_unauthorized(c.request(method, path, json={"name": "x"} if method in ("POST", "PATCH") else None))


def test_the_admin_token_in_another_scheme_or_altered_is_401(server: LiveServer) -> None:
    for header in (f"Basic {server.admin_token}", f"Bearer {server.admin_token}x", f"Bearer {server.admin_token[:-1]}",
                   f"Token {server.admin_token}"):
        with httpx.Client(base_url=server.base_url + "/admin/api", timeout=30,
                          headers={"Authorization": header}) as c:
            assert_unauthorized(c.get("/clients"))


def test_the_configured_admin_token_works(admin: httpx.Client) -> None:
    r = admin.get("/clients")
    assert r.status_code == 200, r.text
    assert isinstance(r.json(), list)
    assert r.headers["cache-control"] == "no-store"


def test_an_admin_clients_token_works_and_stops_working_when_revoked(server: LiveServer) -> None:
    admin_client = server.create_client(scopes=["admin"], audiences=[server.issuer + "/admin"], admin=True)
    r = client_token(server, admin_client)
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    with bearer(server, token) as c:
        assert c.get("/clients").status_code == 200
        assert c.get("/keys").status_code == 200
        created = c.post("/clients", json={"name": "made by a service", "audiences": [API]})
        assert created.status_code == 201, created.text
    # RFC 7009: the admin client revokes its own token; the admin API then refuses it
    r = httpx.post(server.base_url + "/revoke", data={"token": token, "token_type_hint": "access_token"},
                   auth=(admin_client["client_id"], admin_client["client_secret"]))
    assert r.status_code == 200, r.text
    with bearer(server, token) as c:
        assert_unauthorized(c.get("/clients"))
    # a fresh token of the same client still works
    with bearer(server, client_token(server, admin_client).json()["access_token"]) as c:
        assert c.get("/clients").status_code == 200


def test_a_token_without_the_admin_scope_is_401(server: LiveServer) -> None:
    client = server.create_client(scopes=["api:read"], audiences=[server.issuer + "/admin"], admin=True)
    r = client_token(server, client)
    assert r.status_code == 200, r.text
    with bearer(server, r.json()["access_token"]) as c:
        assert_unauthorized(c.get("/clients"))


def test_an_admin_scoped_token_for_another_audience_is_401(server: LiveServer) -> None:
    client = server.create_client(scopes=["admin"], audiences=[API, server.issuer + "/admin"], admin=True)
    r = client_token(server, client, resource=API)
    assert r.status_code == 200, r.text
    with bearer(server, r.json()["access_token"]) as c:
        assert_unauthorized(c.get("/clients"))


# ---------------------------------------------------------------- clients

def test_client_lifecycle(server: LiveServer, admin: httpx.Client) -> None:
    r = admin.post("/clients", json={"name": "billing", "scopes": ["api:read"], "audiences": [API]})
    assert r.status_code == 201, r.text
    created = r.json()
    cid, secret = created["client_id"], created["client_secret"]
    assert secret.startswith("ost_cs_")
    assert created["scopes"] == ["api:read"]
    assert r.headers["cache-control"] == "no-store"

    # the secret is shown once: never by get or list
    shown = admin.get(f"/clients/{cid}")
    assert shown.status_code == 200
    assert "client_secret" not in shown.json() and secret not in shown.text
    assert shown.json()["name"] == "billing"
    listed = admin.get("/clients")
    assert cid in {c["client_id"] for c in listed.json()}
    assert secret not in listed.text

    # the secret works at the token endpoint
    assert client_token(server, created).status_code == 200

    # patch: scopes replaced; the change takes effect at the token endpoint
    r = admin.patch(f"/clients/{cid}", json={"scopes": ["api:read", "api:write"], "name": "billing v2"})
    assert r.status_code == 200, r.text
    assert r.json()["scopes"] == ["api:read", "api:write"] and r.json()["name"] == "billing v2"
    assert admin.get(f"/clients/{cid}").json()["scopes"] == ["api:read", "api:write"]
    assert client_token(server, created, scope="api:write").status_code == 200

    # rotate-secret: a new secret that works
    r = admin.post(f"/clients/{cid}/rotate-secret")
    assert r.status_code == 200, r.text
    new_secret = r.json()["client_secret"]
    assert new_secret.startswith("ost_cs_") and new_secret != secret
    assert client_token(server, {"client_id": cid, "client_secret": new_secret}).status_code == 200

    # delete: 204, then 404, then the client cannot get tokens with either secret
    r = admin.delete(f"/clients/{cid}")
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert_json_problem(admin.get(f"/clients/{cid}"), 404)
    assert_json_problem(admin.delete(f"/clients/{cid}"), 404)
    assert_json_problem(admin.patch(f"/clients/{cid}", json={"name": "x"}), 404)
    assert_json_problem(admin.post(f"/clients/{cid}/rotate-secret"), 404)
    for s in (secret, new_secret):
        r = client_token(server, {"client_id": cid, "client_secret": s})
        assert r.status_code == 401 and r.json()["error"] == "invalid_client", r.text


def test_create_with_a_chosen_client_id_and_duplicate_is_409(admin: httpx.Client) -> None:
    cid = "svc-" + secrets.token_hex(4)
    r = admin.post("/clients", json={"name": "chosen", "client_id": cid, "audiences": [API]})
    assert r.status_code == 201 and r.json()["client_id"] == cid
    desc = assert_json_problem(admin.post("/clients", json={"name": "again", "client_id": cid, "audiences": [API]}), 409)
    assert cid in desc


@pytest.mark.parametrize(("change", "field"), [
    ({"scopes": ["bad scope"]}, "scopes"),
    ({"scopes": ['quo"te']}, "scopes"),
    ({"grant_types": ["password"]}, "grant_types"),
    ({"grant_types": ["urn:example:nope"]}, "grant_types"),
    ({"audiences": ["not-a-uri"]}, "audiences"),
    ({"audiences": ["https://api.example.com/#frag"]}, "audiences"),
    ({"name": ""}, "name"),
    ({"scopes": "api:read"}, "scopes"),
    ({"first_party": "maybe"}, "first_party"),
])
def test_patch_with_invalid_values_is_422_with_a_message(admin: httpx.Client, server: LiveServer,
                                                         change: dict[str, Any], field: str) -> None:
    client = server.create_client(scopes=["api:read"], audiences=[API])
    desc = assert_json_problem(admin.patch(f"/clients/{client['client_id']}", json=change), 422)
    assert field in desc
    # nothing changed
    assert admin.get(f"/clients/{client['client_id']}").json()["scopes"] == ["api:read"]


@pytest.mark.parametrize("spec", [
    {},                                                          # no name
    {"name": "x", "client_type": "public", "grant_types": ["client_credentials"]},
    {"name": "x", "client_id": "a b"},
    {"name": "x", "token_endpoint_auth_method": "private_key_jwt"},  # without keys
    {"name": "x", "token_endpoint_auth_method": "client_secret_jwt"},
    {"name": "x", "jwks": {"keys": [{"kty": "oct", "k": "AAAA"}]}},
])
def test_create_with_invalid_values_is_422(admin: httpx.Client, spec: dict[str, Any]) -> None:
    assert_json_problem(admin.post("/clients", json=spec), 422)


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_unknown_fields_are_422(admin: httpx.Client, server: LiveServer, method: str) -> None:
    if method == "POST":
        r = admin.post("/clients", json={"name": "x", "client_secret": "chosen-by-me"})
    else:
        client = server.create_client(audiences=[API])
        r = admin.patch(f"/clients/{client['client_id']}", json={"client_type": "public"})
    desc = assert_json_problem(r, 422)
    assert "client_secret" in desc or "client_type" in desc


@pytest.mark.parametrize("body", [b"{not json", b"", b"\xff\xfe", b"[1, 2", b"null", b"[]", b"\"name\"", b"42"])
@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_malformed_or_non_object_json_is_a_4xx_json_error(admin: httpx.Client, server: LiveServer, body: bytes,
                                                          method: str) -> None:
    path = "/clients"
    if method == "PATCH":
        path = f"/clients/{server.create_client(audiences=[API])['client_id']}"
    r = admin.request(method, path, content=body, headers={"Content-Type": "application/json"})
    if body == b"" and method == "PATCH":  # an empty patch changes nothing
        assert r.status_code == 200, r.text
        return
    assert 400 <= r.status_code < 500, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert "Traceback" not in r.text
    if body in (b"{not json", b"\xff\xfe", b"[1, 2"):
        assert r.status_code == 400, f"malformed JSON is a bad request, not {r.status_code}: {r.text}"
    else:
        assert r.status_code == 422, r.text


@pytest.mark.parametrize("client_id", ["a%00b", "%ff%fe", "x" * 300, "%F0%9F%94%91", "a%0Ab"])
def test_odd_client_ids_in_the_path_are_404_json(admin: httpx.Client, client_id: str) -> None:
    for method in ("GET", "PATCH", "DELETE"):
        r = admin.request(method, f"/clients/{client_id}", json={"name": "x"} if method == "PATCH" else None)
        assert_json_problem(r, 404)
    assert_json_problem(admin.post(f"/clients/{client_id}/rotate-secret"), 404)


def test_rotate_secret_of_a_client_without_a_secret_is_409(admin: httpx.Client, server: LiveServer) -> None:
    public = server.create_client(client_type="public", grant_types=[])
    assert "client_secret" not in public
    desc = assert_json_problem(admin.post(f"/clients/{public['client_id']}/rotate-secret"), 409)
    assert "none" in desc


# ---------------------------------------------------------------- keys (a server of its own: rotation is global)

def test_keys_list_rotate_and_retire(make_server: Any) -> None:
    srv: LiveServer = make_server("sqlite")
    client = srv.create_client(audiences=[API])
    with srv.admin() as admin:
        keys = admin.get("/keys").json()
        # one active key per algorithm (ES256 access tokens, RS256 ID tokens); this test follows ES256
        assert sorted((k["alg"], k["state"]) for k in keys) == [("ES256", "active"), ("RS256", "active")]
        first = next(k["kid"] for k in keys if k["alg"] == "ES256")
        rs = next(k["kid"] for k in keys if k["alg"] == "RS256")

        # retiring the only active key is refused, naming the fix
        desc = assert_json_problem(admin.post(f"/keys/{first}/retire"), 409)
        assert "ostiary keys rotate --now" in desc

        # rotate now: the new key is published and signs at once; the old one retires but stays published
        r = admin.post("/keys/rotate", params={"now": "1", "alg": "ES256"})
        assert r.status_code == 201, r.text
        (new,) = r.json()  # a list: the new key of each algorithm rotated
        assert new["state"] == "active" and new["kid"] != first and new["alg"] == "ES256"
        states = {k["kid"]: k["state"] for k in admin.get("/keys").json()}
        assert states == {first: "retired", new["kid"]: "active", rs: "active"}
        jwks = {k["kid"] for k in httpx.get(srv.base_url + "/jwks").json()["keys"]}
        assert {first, new["kid"]} <= jwks
        token = client_token(srv, client).json()["access_token"]
        header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
        assert header["kid"] == new["kid"]

        # the new key is now the only active one
        desc = assert_json_problem(admin.post(f"/keys/{new['kid']}/retire"), 409)
        assert "ostiary keys rotate --now" in desc
        assert_json_problem(admin.post(f"/keys/{first}/retire"), 409)  # already retired

        # rotate with the configured publish delay (0 for test servers): the newest key signs
        r = admin.post("/keys/rotate")  # every algorithm, each on its own
        assert r.status_code == 201, r.text
        newest = {k["alg"]: k["kid"] for k in r.json()}
        states = {k["kid"]: k["state"] for k in admin.get("/keys").json()}
        assert states == {first: "retired", new["kid"]: "retired", newest["ES256"]: "active", rs: "retired",
                          newest["RS256"]: "active"}
        assert_json_problem(admin.post("/keys/rotate", params={"alg": "EdDSA"}), 409)  # not in keys.algorithms


def test_retiring_an_unknown_key_is_404(admin: httpx.Client) -> None:
    """The OpenAPI document promises 404 for an unknown kid; the message points at the list."""
    desc = assert_json_problem(admin.post("/keys/no-such-kid/retire"), 404)
    assert "ostiary keys list" in desc


# ---------------------------------------------------------------- OpenAPI

def served_admin_routes() -> set[tuple[str, str]]:
    """(path under /admin/api, method) for every route the ``ostiary.web.routes.admin`` modules serve."""

    served: set[tuple[str, str]] = set()
    for info in pkgutil.iter_modules(ostiary.web.routes.admin.__path__):
        module = importlib.import_module(f"ostiary.web.routes.admin.{info.name}")
        for route in getattr(module, "routes", []):
            if not isinstance(route, Route) or route.path == "/admin/api/openapi.json":
                continue
            assert route.path.startswith("/admin/api/")
            for method in route.methods or ():
                if method != "HEAD":
                    served.add((route.path.removeprefix("/admin/api"), method.lower()))
    return served


def test_openapi_document_describes_every_route(server: LiveServer) -> None:
    r = httpx.get(server.base_url + "/admin/api/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert re.fullmatch(r"3\.1\.\d+", doc["openapi"])
    assert doc["info"]["title"] and doc["info"]["version"]
    assert doc["servers"][0]["url"] == server.issuer + "/admin/api"
    paths = doc["paths"]
    assert paths and all(p.startswith("/") for p in paths)

    served = served_admin_routes()
    assert ("/clients", "post") in served and ("/keys/rotate", "post") in served
    documented = {(p, m) for p, item in paths.items() for m in item
                  if m in ("get", "put", "post", "delete", "patch", "head", "options", "trace")}
    assert served <= documented, f"served but not documented: {sorted(served - documented)}"

    def resolve(ref: str) -> Any:
        assert ref.startswith("#/"), ref
        node: Any = doc
        for part in ref[2:].split("/"):
            node = node[part]
        return node

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                resolve(node["$ref"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
    for path, item in paths.items():
        params = set(re.findall(r"{(\w+)}", path))
        for method, op in item.items():
            if method == "parameters":
                continue
            assert op["responses"] and all(re.fullmatch(r"[1-5]\d\d|default", s) for s in op["responses"])
            declared = {p["name"] for p in [*item.get("parameters", []), *op.get("parameters", [])]
                        if p["in"] == "path"}
            assert declared == params, (path, method)
    assert "bearer" in doc["components"]["securitySchemes"]
    assert doc["components"]["schemas"]["ClientCreate"]["type"] == "object"
