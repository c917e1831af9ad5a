"""Dynamic client registration (RFC 7591) and management (RFC 7592) over HTTP, against real server processes:
open registration then a full code flow with the new client, every refused redirect URI and metadata, the
per-address limit, initial access tokens (expired, used up), the registration access token on GET/PUT/DELETE,
consent for clients nobody vetted, and the CLI that lists and disables them."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from ostiary._secrets import token_hash
from ostiary.config import load_settings
from ostiary.core.audit import AuditEvent
from ostiary.store.sql import SqlStore
from ostiary.store.sql import tables as t

from ..conftest import db_url_for
from ..support import LiveServer, start_server
from ._codeflow import REDIRECT, Browser, auth_params, exchange, forms, new_user, pkce, query, refresh
from .conftest import MCP, OPEN_ENV


@pytest.fixture(scope="module")
def iat_server(tmp_path_factory: pytest.TempPathFactory, pg_url_factory: object) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("register-iat")
    srv = start_server(db_url_for("sqlite", tmp, pg_url_factory), tmp,
                       extra_env={"OSTIARY_REGISTRATION__POLICY": "initial_access_token"})
    yield srv
    srv.stop()


def register(server: LiveServer, metadata: dict[str, Any], token: str | None = None) -> httpx.Response:
    headers = {"Authorization": "Bearer " + token} if token else {}
    return httpx.post(server.base_url + "/register", json=metadata, headers=headers)


def agent_metadata(**kw: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"client_name": "Claude-like agent", "redirect_uris": [REDIRECT],
                            "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
                            "token_endpoint_auth_method": "none", "scope": "openid profile email offline_access"}
    meta.update(kw)
    return meta


def iat(server: LiveServer, *args: str) -> str:
    out = json.loads(server.cli("client", "registration-token", "create", "--json", *args).stdout)
    token: str = out["initial_access_token"]
    return token


def test_discovery_advertises_the_registration_endpoint_only_when_enabled(open_server: LiveServer,
                                                                          server: LiveServer) -> None:
    meta = httpx.get(open_server.base_url + "/.well-known/openid-configuration").json()
    assert meta["registration_endpoint"] == open_server.issuer + "/register"
    assert "registration_endpoint" not in httpx.get(server.base_url + "/.well-known/openid-configuration").json()
    # off by default: nothing there
    assert httpx.post(server.base_url + "/register", json=agent_metadata()).status_code == 404


def test_open_registration_then_a_full_code_flow(open_server: LiveServer) -> None:
    r = register(open_server, agent_metadata(tos_uri="https://agent.example/tos", software_id="x-unknown",
                                             first_party=True, admin=True))
    assert r.status_code == 201, r.text
    assert r.headers["cache-control"].startswith("no-store")
    reg = r.json()
    assert reg["token_endpoint_auth_method"] == "none" and "client_secret" not in reg
    assert reg["redirect_uris"] == [REDIRECT] and reg["grant_types"] == ["authorization_code", "refresh_token"]
    assert reg["registration_client_uri"] == f"{open_server.issuer}/register/{reg['client_id']}"
    assert reg["registration_access_token"] and isinstance(reg["client_id_issued_at"], int)
    assert "tos_uri" not in reg and "software_id" not in reg  # unknown or unused metadata is ignored
    with open_server.admin() as c:
        view = c.get("/clients/" + reg["client_id"]).json()
    assert view["dynamic"] is True and view["first_party"] is False and view["admin"] is False
    assert view["last_used_at"] is None

    client = {"client_id": reg["client_id"]}
    user = new_user(open_server)
    b = Browser(open_server)
    try:
        verifier, challenge = pkce()
        r = b.authorize(**auth_params(client, challenge))
        r = b.login(r, user["username"], user["password"])
        assert "consent-form" in forms(r.text)  # never skipped for a client nobody vetted
        assert "Not verified by the administrator" in r.text and "http://127.0.0.1:9" in r.text
        r = b.submit(r, "consent-form", decision="allow")
        code = query(r.headers["location"])["code"]
        tokens = exchange(open_server, client, code, verifier)
        assert tokens.status_code == 200, tokens.text
        assert refresh(open_server, client, tokens.json()["refresh_token"]).status_code == 200
        # consent again the next time, even for the same scopes; and prompt=none cannot skip it
        verifier, challenge = pkce()
        r = b.authorize(**auth_params(client, challenge))
        assert "consent-form" in forms(r.text)
        r = b.authorize(**auth_params(client, challenge, prompt="none"))
        assert query(r.headers["location"])["error"] == "consent_required"
    finally:
        b.close()
    with open_server.admin() as c:
        assert c.get("/clients/" + reg["client_id"]).json()["last_used_at"] is not None  # touched by /token


def test_a_registered_client_gets_tokens_for_the_configured_resource_only(open_server: LiveServer) -> None:
    reg = register(open_server, agent_metadata()).json()
    client = {"client_id": reg["client_id"]}
    user = new_user(open_server)
    b = Browser(open_server)
    try:
        verifier, challenge = pkce()
        r = b.authorize(**auth_params(client, challenge, resource=MCP))
        r = b.login(r, user["username"], user["password"])
        r = b.submit(r, "consent-form", decision="allow")
        code = query(r.headers["location"])["code"]
        tokens = exchange(open_server, client, code, verifier)
        assert tokens.status_code == 200, tokens.text
        part = tokens.json()["access_token"].split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
        assert MCP in ([claims["aud"]] if isinstance(claims["aud"], str) else claims["aud"])
        _, challenge = pkce()
        r = b.authorize(**auth_params(client, challenge, resource="https://other.example.com/api"))
        assert query(r.headers["location"])["error"] == "invalid_target"
    finally:
        b.close()


BAD_REDIRECTS = [
    "http://app.example.com/cb",  # http, not loopback
    "http://localhost:8080/cb",  # localhost is not a literal loopback address (RFC 8252 §8.3)
    "javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "https://app.example.com/cb#frag",
    "https://*.example.com/cb",
    "https://app.example.com/*",
    "https://user:pw@app.example.com/cb",
    "https://evil.example@app.example.com/cb",
    "/relative/cb",
    "cb",
    "com.example.app:/cb",  # private-use schemes: any app may claim them; not for self-registered clients
    "https:///nohost",
    "https://app.example.com/c b",
    "",
]


@pytest.mark.parametrize("uri", BAD_REDIRECTS)
def test_dangerous_redirect_uris_are_refused(open_server: LiveServer, uri: str) -> None:
    r = register(open_server, agent_metadata(redirect_uris=[REDIRECT, uri]))
    assert r.status_code == 400, r.text
    assert r.json()["error"] in ("invalid_redirect_uri", "invalid_client_metadata")
    if uri:
        assert r.json()["error"] == "invalid_redirect_uri"


@pytest.mark.parametrize(("change", "error"), [
    ({"grant_types": ["authorization_code", "implicit"]}, "invalid_client_metadata"),
    ({"grant_types": ["authorization_code", "password"]}, "invalid_client_metadata"),
    ({"grant_types": ["client_credentials"]}, "invalid_client_metadata"),
    ({"grant_types": ["authorization_code", "urn:example:unknown"]}, "invalid_client_metadata"),
    ({"response_types": ["token"]}, "invalid_client_metadata"),
    ({"token_endpoint_auth_method": "client_secret_basic"}, "invalid_client_metadata"),  # confidential: open
    ({"token_endpoint_auth_method": "private_key_jwt", "jwks_uri": "https://a.example/jwks"},
     "invalid_client_metadata"),
    ({"token_endpoint_auth_method": "magic"}, "invalid_client_metadata"),
    ({"scope": "openid admin"}, "invalid_client_metadata"),
    ({"scope": 42}, "invalid_client_metadata"),
    ({"redirect_uris": "https://a.example/cb"}, "invalid_client_metadata"),
    ({"redirect_uris": []}, "invalid_redirect_uri"),
    ({"client_name": "x" * 500}, "invalid_client_metadata"),
    ({"logo_uri": "javascript:alert(1)"}, "invalid_client_metadata"),
    ({"logo_uri": "http://tracker.example/pixel.gif"}, "invalid_client_metadata"),
    ({"id_token_signed_response_alg": "none"}, "invalid_client_metadata"),
])
def test_metadata_not_allowed_is_refused(open_server: LiveServer, change: dict[str, Any], error: str) -> None:
    r = register(open_server, agent_metadata(**change))
    assert r.status_code == 400, r.text
    assert r.json()["error"] == error


@pytest.mark.parametrize("change, says", [
    ({"token_endpoint_auth_method": "tls_client_auth", "tls_client_auth_subject_dn": "CN=app,O=Example"},
     "initial access token"),
    ({"token_endpoint_auth_method": "self_signed_tls_client_auth",
      "jwks": {"keys": [{"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                         "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}}, "initial access token"),
    ({"tls_client_certificate_bound_access_tokens": True}, "initial access token"),
    ({"tls_client_certificate_bound_access_tokens": "yes"}, "true or false"),
])
def test_open_registration_refuses_mtls_clients(open_server: LiveServer, change: dict[str, Any], says: str) -> None:
    """RFC 8705 clients and certificate-bound tokens are for registrations an administrator allowed (an initial
    access token); the open policy stays public clients only."""
    r = register(open_server, agent_metadata(**change))
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_client_metadata" and says in r.json()["error_description"], r.json()


def test_mtls_methods_need_a_server_that_receives_certificates(iat_server: LiveServer) -> None:
    """Without a TLS listener asking for client certificates or a trusted proxy forwarding them, the mTLS methods
    are not in the discovery document, and a registration asking for them is refused (RFC 7591 §3.2.2)."""
    meta = httpx.get(iat_server.base_url + "/.well-known/oauth-authorization-server").json()
    assert "tls_client_auth" not in meta["token_endpoint_auth_methods_supported"]
    token = iat(iat_server, "--uses", "3")
    for change in ({"token_endpoint_auth_method": "tls_client_auth", "tls_client_auth_san_dns": "app.example"},
                   {"token_endpoint_auth_method": "client_secret_basic",
                    "tls_client_certificate_bound_access_tokens": True}):
        r = register(iat_server, agent_metadata(**change), token)
        assert r.status_code == 400, r.text
        assert r.json()["error"] == "invalid_client_metadata" and "not available" in r.json()["error_description"]


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'"text"', b"\xff\xfe"])
def test_malformed_bodies_get_the_rfc_error(open_server: LiveServer, body: bytes) -> None:
    r = httpx.post(open_server.base_url + "/register", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_client_metadata"
    r = httpx.post(open_server.base_url + "/register", data={"redirect_uris": REDIRECT})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


def test_too_many_registrations_from_one_address(make_server: Callable[..., LiveServer]) -> None:
    srv = make_server(extra_env={**OPEN_ENV, "OSTIARY_REGISTRATION__PER_IP": "3"})
    codes = [register(srv, agent_metadata()).status_code for _ in range(4)]
    assert codes == [201, 201, 201, 429]
    r = register(srv, agent_metadata())
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1


def test_only_registrations_an_initial_access_token_allowed_are_not_counted(
        make_server: Callable[..., LiveServer]) -> None:
    srv = make_server(extra_env={"OSTIARY_REGISTRATION__POLICY": "initial_access_token",
                                 "OSTIARY_REGISTRATION__PER_IP": "2"})
    token = iat(srv, "--uses", "3")
    assert [register(srv, agent_metadata(), token).status_code for _ in range(3)] == [201, 201, 201]
    # made-up tokens count: they cannot be used to try without limit
    codes = [register(srv, agent_metadata(), "ost_iat_" + secrets.token_hex(8)).status_code for _ in range(3)]
    assert codes == [401, 401, 429]


def test_registration_access_token_guards_the_configuration_endpoint(open_server: LiveServer) -> None:
    mine = register(open_server, agent_metadata()).json()
    other = register(open_server, agent_metadata(client_name="other")).json()
    uri = mine["registration_client_uri"]
    for method in ("GET", "PUT", "DELETE"):
        body = {"json": {**agent_metadata(), "client_id": mine["client_id"]}} if method == "PUT" else {}
        for headers in ({}, {"Authorization": "Bearer wrong-token"},
                        {"Authorization": "Bearer " + other["registration_access_token"]},
                        {"Authorization": "Basic " + mine["registration_access_token"]}):
            r = httpx.request(method, uri, headers=headers, **body)  # type: ignore[arg-type]
            assert r.status_code == 401, (method, headers, r.text)
            assert r.json()["error"] == "invalid_token" and r.headers["www-authenticate"].startswith("Bearer")
    # my token on another client's configuration URI
    r = httpx.get(other["registration_client_uri"],
                  headers={"Authorization": "Bearer " + mine["registration_access_token"]})
    assert r.status_code == 401
    r = httpx.get(open_server.base_url + "/register/no-such-client",
                  headers={"Authorization": "Bearer " + mine["registration_access_token"]})
    assert r.status_code == 401


def test_read_update_delete(open_server: LiveServer) -> None:
    reg = register(open_server, agent_metadata()).json()
    auth = {"Authorization": "Bearer " + reg["registration_access_token"]}
    uri = reg["registration_client_uri"]
    r = httpx.get(uri, headers=auth)
    assert r.status_code == 200 and r.headers["cache-control"].startswith("no-store")
    assert r.json()["client_id"] == reg["client_id"] and r.json()["redirect_uris"] == [REDIRECT]
    assert r.json()["registration_access_token"] == reg["registration_access_token"]

    new_redirect = "https://agent.example.com/callback"
    update = {**agent_metadata(client_name="Renamed", logo_uri="https://agent.example.com/logo.png"),
              "client_id": reg["client_id"], "redirect_uris": [new_redirect]}
    r = httpx.put(uri, headers=auth, json=update)
    assert r.status_code == 200, r.text
    assert r.json()["client_name"] == "Renamed" and r.json()["redirect_uris"] == [new_redirect]
    assert httpx.get(uri, headers=auth).json()["logo_uri"] == "https://agent.example.com/logo.png"
    # refused updates change nothing
    for bad, error in (({**update, "redirect_uris": ["http://evil.example/cb"]}, "invalid_redirect_uri"),
                       ({**update, "client_id": "someone-else"}, "invalid_client_metadata"),
                       ({**update, "token_endpoint_auth_method": "client_secret_basic"}, "invalid_client_metadata"),
                       ({**update, "registration_access_token": "x"}, "invalid_request")):
        r = httpx.put(uri, headers=auth, json=bad)
        assert r.status_code == 400 and r.json()["error"] == error, r.text
    assert httpx.get(uri, headers=auth).json()["redirect_uris"] == [new_redirect]

    r = httpx.delete(uri, headers=auth)
    assert r.status_code == 204
    assert httpx.get(uri, headers=auth).status_code == 401
    with open_server.admin() as c:
        assert c.get("/clients/" + reg["client_id"]).status_code == 404
    # the deleted client can no longer start a flow
    _, challenge = pkce()
    r = httpx.get(open_server.base_url + "/authorize",
                  params=auth_params({"client_id": reg["client_id"]}, challenge))
    assert r.status_code == 400


def test_initial_access_token_policy(iat_server: LiveServer) -> None:
    # without a token: 401 (and so with a wrong one)
    r = register(iat_server, agent_metadata())
    assert r.status_code == 401 and r.json()["error"] == "invalid_token"
    assert register(iat_server, agent_metadata(), "ost_iat_wrong").status_code == 401
    # single use
    token = iat(iat_server)
    assert register(iat_server, agent_metadata(), token).status_code == 201
    r = register(iat_server, agent_metadata(), token)
    assert r.status_code == 401, r.text
    # N uses, and a confidential client with a secret
    token = iat(iat_server, "--uses", "2")
    r = register(iat_server, agent_metadata(token_endpoint_auth_method="client_secret_basic"), token)
    assert r.status_code == 201, r.text
    reg = r.json()
    assert reg["client_secret"] and reg["client_secret_expires_at"] == 0
    assert "client_secret" not in httpx.get(reg["registration_client_uri"], headers={
        "Authorization": "Bearer " + reg["registration_access_token"]}).json()  # shown once
    # a refused registration does not spend a use
    assert register(iat_server, agent_metadata(redirect_uris=["http://evil.example/cb"]), token).status_code == 400
    jwks = {"keys": [{"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                      "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0", "use": "sig", "kid": "k1"}]}
    r = register(iat_server, agent_metadata(token_endpoint_auth_method="private_key_jwt", jwks=jwks), token)
    assert r.status_code == 201, r.text
    assert "client_secret" not in r.json() and r.json()["jwks"] == jwks
    assert register(iat_server, agent_metadata(), token).status_code == 401  # used up


def test_expired_initial_access_token(iat_server: LiveServer) -> None:
    token = iat(iat_server, "--expires-in", "60")
    # make it expired in the database itself (no sleeping in tests): the server compares with its clock
    settings = load_settings(environ=iat_server.env)
    _, key, _ = settings.master_keys()

    async def expire() -> None:
        store = SqlStore.from_url(settings.database_url)
        async with store.engine.begin() as conn:
            await conn.execute(t.initial_access_tokens.update()
                               .where(t.initial_access_tokens.c.token_hash == token_hash(token, key))
                               .values(expires_at=1.0))
        await store.close()

    asyncio.run(expire())
    r = register(iat_server, agent_metadata(), token)
    assert r.status_code == 401 and "expired" in r.json()["error_description"]


def test_cli_lists_and_disables_dynamic_clients(open_server: LiveServer) -> None:
    reg = register(open_server, agent_metadata(client_name="Listed agent")).json()
    admin_made = open_server.create_client(name="vetted", client_type="public",
                                           grant_types=["authorization_code"], scopes=["openid"],
                                           redirect_uris=[REDIRECT])
    listed = json.loads(open_server.cli("client", "list", "--dynamic", "--json").stdout)
    ids = {c["client_id"] for c in listed}
    assert reg["client_id"] in ids and admin_made["client_id"] not in ids
    assert all(c["dynamic"] for c in listed)
    table = open_server.cli("client", "list", "--dynamic").stdout
    assert reg["client_id"] in table and admin_made["client_id"] not in table
    with open_server.admin() as c:
        api_ids = {x["client_id"] for x in c.get("/clients", params={"dynamic": "true"}).json()}
        assert reg["client_id"] in api_ids and admin_made["client_id"] not in api_ids
        assert c.get("/clients", params={"dynamic": "maybe"}).status_code == 400

    open_server.cli("client", "disable", reg["client_id"])
    _, challenge = pkce()
    r = httpx.get(open_server.base_url + "/authorize", params=auth_params({"client_id": reg["client_id"]}, challenge))
    assert r.status_code == 400  # refused while disabled
    open_server.cli("client", "disable", "--enable", reg["client_id"])
    r = httpx.get(open_server.base_url + "/authorize", params=auth_params({"client_id": reg["client_id"]}, challenge))
    assert r.status_code == 200
    with open_server.admin() as c:
        r = c.patch("/clients/" + reg["client_id"], json={"disabled": True})
        assert r.status_code == 200 and r.json()["disabled"] is True
        r = c.patch("/clients/" + reg["client_id"], json={"first_party": True})
        assert r.status_code == 422  # a client nobody vetted is never first-party
    open_server.cli("client", "delete", "--yes", reg["client_id"])
    assert reg["client_id"] not in {c["client_id"] for c in json.loads(
        open_server.cli("client", "list", "--dynamic", "--json").stdout)}


def _events(server: LiveServer, until: Callable[[list[AuditEvent]], bool]) -> list[AuditEvent]:
    """The server's ``client.*`` audit events, once ``until`` holds (events are written in batches)."""
    async def read() -> list[AuditEvent]:
        store = SqlStore.from_url(server.env["OSTIARY_DATABASE_URL"])
        try:
            return await store.list_events(1000, "client.")
        finally:
            await store.close()

    deadline = time.monotonic() + 20
    while True:
        events = asyncio.run(read())
        if until(events) or time.monotonic() > deadline:
            return events
        time.sleep(0.2)


def test_registration_events_are_audited(open_server: LiveServer) -> None:
    reg = register(open_server, agent_metadata(client_name="audited " + secrets.token_hex(3))).json()
    refused = register(open_server, agent_metadata(redirect_uris=["javascript:alert(1)"]))
    assert refused.status_code == 400
    httpx.delete(reg["registration_client_uri"],
                 headers={"Authorization": "Bearer " + reg["registration_access_token"]})

    def kinds(es: list[AuditEvent]) -> set[tuple[str, str | None]]:
        return {(e.type, e.client_id) for e in es}

    events = _events(open_server, lambda es: ("client.registration_deleted", reg["client_id"]) in kinds(es))
    assert ("client.registered", reg["client_id"]) in kinds(events)
    assert ("client.registration_deleted", reg["client_id"]) in kinds(events)
    assert any(e.type == "client.registration_refused" and e.detail["error"] == "invalid_redirect_uri"
               for e in events)
    assert not any(reg["registration_access_token"] in str(e.detail) for e in events)  # never a token value


def test_a_client_may_register_to_require_pushed_requests(open_server: LiveServer) -> None:
    """RFC 9126 §6: ``require_pushed_authorization_requests`` is client metadata. Registration ignored it, so a
    client that asked for PAR-only got a plain /authorize accepted in its name (and no sign in the response)."""
    r = register(open_server, agent_metadata(require_pushed_authorization_requests=True))
    assert r.status_code == 201, r.text
    reg = r.json()
    assert reg["require_pushed_authorization_requests"] is True
    b = Browser(open_server)
    try:
        page = b.authorize(**auth_params({"client_id": reg["client_id"]}, pkce()[1]))
        assert page.status_code == 302 and query(page.headers["location"])["error"] == "invalid_request"
    finally:
        b.close()
    assert register(open_server, agent_metadata()).json()["require_pushed_authorization_requests"] is False
    bad = register(open_server, agent_metadata(require_pushed_authorization_requests="yes"))
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_client_metadata"
