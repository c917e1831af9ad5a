"""Token exchange on a user's behalf (RFC 8693) over real HTTP, and the one audience rule for clients and trust
policies (absolute URIs, URNs included), against a live server on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from ostiary.core.federation import TOKEN_EXCHANGE_GRANT, TOKEN_TYPE_ACCESS_TOKEN
from ostiary.resource import TokenVerifier

from ..federation_support import start_ci, trust_spec
from ..support import LiveServer
from ._codeflow import Browser, exchange, get_code, new_user, web_client

ORDERS = "https://orders.example.com"
INVENTORY = "urn:example:inventory"  # a URN audience: as good as a URL (RFC 3986 §4.3)
SCOPE = "openid orders:read inventory:read"


def user_access_token(server: LiveServer) -> tuple[str, dict[str, Any]]:
    user = new_user(server)
    client = web_client(server, scopes=SCOPE.split(), audiences=[ORDERS])
    b = Browser(server)
    try:
        code, verifier, _ = get_code(b, client, user, scope=SCOPE)
    finally:
        b.close()
    r = exchange(server, client, code, verifier)
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"]), user


def exchange_for(server: LiveServer, auth: tuple[str, str], subject: str, **form: str) -> httpx.Response:
    return httpx.post(server.base_url + "/token", auth=auth, timeout=30, data={
        "grant_type": TOKEN_EXCHANGE_GRANT, "subject_token": subject,
        "subject_token_type": TOKEN_TYPE_ACCESS_TOKEN, **form})


def test_a_service_exchanges_the_users_token_to_call_another_for_that_user(server: LiveServer) -> None:
    subject, user = user_access_token(server)
    orders = server.create_client(grant_types=[TOKEN_EXCHANGE_GRANT], scopes=["inventory:read"],
                                  resource_audiences=[ORDERS], may_exchange_for=[INVENTORY])
    assert orders["may_exchange_for"] == [INVENTORY]
    auth = (orders["client_id"], orders["client_secret"])
    r = exchange_for(server, auth, subject)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["issued_token_type"] == TOKEN_TYPE_ACCESS_TOKEN and "refresh_token" not in body
    # inventory, with the resource toolkit: the user is the subject, orders the actor
    verifier = TokenVerifier(issuer=server.issuer, audience=INVENTORY)
    try:
        token = verifier.verify(body["access_token"])
    finally:
        verifier.close()
    assert token.subject == jwt.decode(subject, options={"verify_signature": False})["sub"]
    assert token.actor == orders["client_id"] and token.actor_chain == (orders["client_id"],)
    assert token.client_id == orders["client_id"] and token.is_user and token.scopes == {"inventory:read"}

    # refused over HTTP with the RFC's errors: a refresh token as subject, a foreign audience, widening
    stranger = server.create_client(grant_types=[TOKEN_EXCHANGE_GRANT], scopes=["inventory:read"],
                                    resource_audiences=["https://billing.example.com"],
                                    may_exchange_for=[INVENTORY])
    r = exchange_for(server, (stranger["client_id"], stranger["client_secret"]), subject)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    r = exchange_for(server, auth, subject, subject_token_type="urn:ietf:params:oauth:token-type:refresh_token")
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    r = exchange_for(server, auth, subject, scope="inventory:read orders:read")
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"
    r = exchange_for(server, auth, subject, audience=ORDERS)
    assert r.status_code == 400 and r.json()["error"] == "invalid_target"
    r = exchange_for(server, ("nobody", "x"), subject)
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


def test_the_admin_api_and_cli_set_may_exchange_for(server: LiveServer) -> None:
    with server.admin() as admin:
        r = admin.post("/clients", json={"name": "no grant", "may_exchange_for": [INVENTORY],
                                         "audiences": [INVENTORY]})
        assert r.status_code == 422 and TOKEN_EXCHANGE_GRANT in r.text
        cid = "svc-" + secrets.token_hex(4)
        r = admin.post("/clients", json={"name": "svc", "client_id": cid, "grant_types": [TOKEN_EXCHANGE_GRANT]})
        assert r.status_code == 201, r.text
        r = admin.patch(f"/clients/{cid}", json={"may_exchange_for": ["https://a.example.com", INVENTORY]})
        assert r.status_code == 200 and r.json()["may_exchange_for"] == ["https://a.example.com", INVENTORY]
    out = server.cli("client", "update", cid, "--may-exchange-for", ORDERS, "--json")
    assert json.loads(out.stdout)["may_exchange_for"] == [ORDERS]
    with server.admin() as admin:
        assert admin.get(f"/clients/{cid}").json()["may_exchange_for"] == [ORDERS]


@pytest.mark.parametrize("audience", ["urn:example:api", "https://api.example.com/v1", "mailto:ops@example.com"])
def test_urn_and_other_absolute_uris_are_audiences_for_clients_and_trust_policies(
        server: LiveServer, tmp_path: Path, audience: str) -> None:
    ci = start_ci(tmp_path)
    try:
        with server.admin() as admin:
            r = admin.post("/federation/trust", json=trust_spec(ci, server, audiences=[audience]))
            assert r.status_code == 201, r.text
            assert r.json()["audiences"] == [audience]
            r = admin.post("/clients", json={"name": "c", "audiences": [audience], "resource_audiences": [audience]})
            assert r.status_code == 201, r.text
    finally:
        ci.stop()


@pytest.mark.parametrize("audience", ["api.example.com", "https://api.example.com/#frag", "https://", "urn",
                                      "https://api example.com"])
def test_what_is_not_an_absolute_uri_is_refused_alike(server: LiveServer, tmp_path: Path, audience: str) -> None:
    ci = start_ci(tmp_path)
    try:
        with server.admin() as admin:
            for r in (admin.post("/federation/trust", json=trust_spec(ci, server, audiences=[audience])),
                      admin.post("/clients", json={"name": "c", "audiences": [audience]})):
                assert r.status_code == 422, r.text
                assert "each audience must be an absolute URI" in r.text
    finally:
        ci.stop()
