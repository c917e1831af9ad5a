"""RFC 8707 resource indicators in the code flow and on refresh, with the resource registry (``ostiary resource``),
against real server processes: a registered resource may be targeted, an unknown one is ``invalid_target`` at
/authorize and /token; ``resource`` at /token makes the access token's ``aud`` that resource; a refresh may
narrow the audience but not widen it; a resource's registered scopes limit a token for it. The CLI and the
admin API manage the registry."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest

from ..conftest import db_url_for
from ..support import LiveServer, start_server
from ._codeflow import Browser, exchange, get_code, new_user, query, refresh, web_client

TOOLS = "https://tools.example.com/mcp"  # registered with scopes
FILES = "https://files.example.com/mcp"  # registered without scopes
OTHER = "https://other.example.com/mcp"  # registered, never part of the grant below
UNKNOWN = "https://unknown.example.com/mcp"
SCOPES = ["openid", "profile", "offline_access", "tools.read", "tools.write", "files.read"]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def rsrv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
         pg_url_factory: object) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp(f"resources-{request.param}")
    srv = start_server(db_url_for(request.param, tmp, pg_url_factory), tmp)
    srv.cli("resource", "add", TOOLS, "--scope", "tools.read", "--scope", "tools.write")
    srv.cli("resource", "add", FILES)
    srv.cli("resource", "add", OTHER)
    yield srv
    srv.stop()


def aud(token: str) -> list[str]:
    claims = jwt.decode(token, options={"verify_signature": False})
    value = claims["aud"]
    return [value] if isinstance(value, str) else list(value)


def scopes_of(token: str) -> set[str]:
    return set(jwt.decode(token, options={"verify_signature": False})["scope"].split())


def code_for(srv: LiveServer, client: dict[str, Any], scope: str, *resources: str) -> tuple[str, str]:
    user = new_user(srv)
    b = Browser(srv)
    try:
        params: dict[str, Any] = {"scope": scope}
        # several resource parameters: the query string repeats the name
        verifier = ""
        if resources:
            from ._codeflow import auth_params, forms, pkce
            verifier, challenge = pkce()
            p = auth_params(client, challenge, scope=scope)
            pairs = [*p.items(), *(("resource", r) for r in resources)]
            r = b.http.get("/authorize", params=pairs)
            r = b.login(r, user["username"], user["password"])
            if "consent-form" in forms(r.text):
                r = b.submit(r, "consent-form", decision="allow")
            assert r.status_code in (302, 303), r.text[:1000]
            return query(r.headers["location"])["code"], verifier
        code, verifier, _ = get_code(b, client, user, **params)
        return code, verifier
    finally:
        b.close()


def test_unknown_resource_at_authorize_is_invalid_target(rsrv: LiveServer) -> None:
    client = web_client(rsrv, scopes=SCOPES, first_party=True)
    b = Browser(rsrv)
    try:
        from ._codeflow import auth_params, pkce
        _, challenge = pkce()
        r = b.authorize(**auth_params(client, challenge, scope="openid", resource=UNKNOWN))
        assert r.status_code in (302, 303)
        assert query(r.headers["location"])["error"] == "invalid_target"
    finally:
        b.close()


def test_registered_resource_code_flow_narrow_and_refresh(rsrv: LiveServer) -> None:
    client = web_client(rsrv, scopes=SCOPES, first_party=True)
    code, verifier = code_for(rsrv, client, "openid offline_access tools.read files.read", TOOLS, FILES)
    # resource at /token: not part of the grant -> invalid_target, and the code is not spent
    r = exchange(rsrv, client, code, verifier, resource=OTHER)
    assert r.status_code == 400 and r.json()["error"] == "invalid_target", r.text
    r = exchange(rsrv, client, code, verifier, resource=UNKNOWN)
    assert r.status_code == 400 and r.json()["error"] == "invalid_target", r.text
    r = exchange(rsrv, client, code, verifier, resource=FILES)
    assert r.status_code == 200, r.text
    body = r.json()
    assert aud(body["access_token"]) == [FILES]
    rt = body["refresh_token"]
    # a refresh may narrow to another resource of the grant ...
    r = refresh(rsrv, client, rt, resource=TOOLS)
    assert r.status_code == 200, r.text
    assert aud(r.json()["access_token"]) == [TOOLS]
    # ... whose registered scopes limit the token (files.read is not one of TOOLS's)
    assert scopes_of(r.json()["access_token"]) == {"openid", "offline_access", "tools.read"}
    rt = r.json()["refresh_token"]
    # widening is refused, and leaves the refresh token usable
    for target in (OTHER, UNKNOWN):
        r = refresh(rsrv, client, rt, resource=target)
        assert r.status_code == 400 and r.json()["error"] == "invalid_target", r.text
    r = refresh(rsrv, client, rt)
    assert r.status_code == 200, r.text
    assert set(aud(r.json()["access_token"])) >= {TOOLS, FILES}  # no resource: the whole grant


def test_scopes_registered_for_a_resource_limit_the_request(rsrv: LiveServer) -> None:
    client = web_client(rsrv, scopes=SCOPES, first_party=True)
    b = Browser(rsrv)
    user = new_user(rsrv)
    try:
        from ._codeflow import auth_params, pkce
        _, challenge = pkce()
        r = b.authorize(**auth_params(client, challenge, scope="openid files.read", resource=TOOLS))
        if r.status_code == 200:
            r = b.login(r, user["username"], user["password"])
        assert query(r.headers["location"])["error"] == "invalid_scope"
    finally:
        b.close()


def test_cli_manages_the_registry(rsrv: LiveServer) -> None:
    uri = f"https://mcp-{secrets.token_hex(4)}.example.com"
    out = json.loads(rsrv.cli("resource", "add", uri, "--scope", "a b", "--scope", "c", "--json").stdout)
    assert out["uri"] == uri and out["scopes"] == ["a", "b", "c"]
    listed = json.loads(rsrv.cli("resource", "list", "--json").stdout)
    assert {"uri": uri, "scopes": ["a", "b", "c"]}.items() <= next(r for r in listed if r["uri"] == uri).items()
    assert uri in rsrv.cli("resource", "list").stdout
    dup = rsrv.cli("resource", "add", uri, check=False)
    assert dup.returncode == 1 and "already registered" in dup.stderr
    bad = rsrv.cli("resource", "add", "https://x.example/#frag", check=False)
    assert bad.returncode == 1
    assert rsrv.cli("resource", "remove", uri).returncode == 0
    assert uri not in [r["uri"] for r in json.loads(rsrv.cli("resource", "list", "--json").stdout)]
    gone = rsrv.cli("resource", "remove", uri, check=False)
    assert gone.returncode == 1 and "no resource" in gone.stderr


def test_admin_api_manages_the_registry(rsrv: LiveServer) -> None:
    uri = f"https://api-{secrets.token_hex(4)}.example.com"
    with rsrv.admin() as c:
        r = c.post("/resources", json={"uri": uri, "scopes": ["x"]})
        assert r.status_code == 201, r.text
        assert c.post("/resources", json={"uri": uri}).status_code == 409
        assert c.post("/resources", json={"uri": "not a uri"}).status_code in (400, 422)
        assert any(x["uri"] == uri for x in c.get("/resources").json())
        assert c.request("DELETE", "/resources", params={"uri": uri}).status_code == 204
        assert c.request("DELETE", "/resources", params={"uri": uri}).status_code == 404
    # removed: an authorization naming it is invalid_target at once
    client = web_client(rsrv, scopes=SCOPES, first_party=True)
    b = Browser(rsrv)
    try:
        from ._codeflow import auth_params, pkce
        _, challenge = pkce()
        r = b.authorize(**auth_params(client, challenge, scope="openid", resource=uri))
        assert query(r.headers["location"])["error"] == "invalid_target"
    finally:
        b.close()


def test_client_credentials_may_target_a_registered_resource(rsrv: LiveServer) -> None:
    svc = rsrv.create_client(client_type="confidential", grant_types=["client_credentials"],
                             scopes=["tools.read", "files.read"])
    r = httpx.post(rsrv.base_url + "/token", data={"grant_type": "client_credentials", "resource": TOOLS},
                   auth=(svc["client_id"], svc["client_secret"]))
    assert r.status_code == 200, r.text
    assert aud(r.json()["access_token"]) == [TOOLS]
    assert scopes_of(r.json()["access_token"]) == {"tools.read"}  # files.read is not TOOLS's
    r = httpx.post(rsrv.base_url + "/token", data={"grant_type": "client_credentials", "resource": UNKNOWN},
                   auth=(svc["client_id"], svc["client_secret"]))
    assert r.status_code == 400 and r.json()["error"] == "invalid_target"


def test_a_grant_for_registered_resources_only_refreshes_until_the_resource_is_removed(rsrv: LiveServer) -> None:
    """No openid, no audience of the client's own: the grant's only audience is a registered resource."""
    uri = f"https://solo-{secrets.token_hex(4)}.example.com/mcp"
    rsrv.cli("resource", "add", uri, "--scope", "solo.read")
    client = web_client(rsrv, scopes=["solo.read", "files.read"], first_party=True)
    code, verifier = code_for(rsrv, client, "solo.read", uri)
    r = exchange(rsrv, client, code, verifier)
    assert r.status_code == 200, r.text
    assert aud(r.json()["access_token"]) == [uri]
    r = refresh(rsrv, client, r.json()["refresh_token"])
    assert r.status_code == 200, r.text
    assert aud(r.json()["access_token"]) == [uri] and scopes_of(r.json()["access_token"]) == {"solo.read"}
    rt = r.json()["refresh_token"]
    rsrv.cli("resource", "remove", uri)
    r = refresh(rsrv, client, rt)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant", r.text
