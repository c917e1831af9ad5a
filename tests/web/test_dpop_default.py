"""New public clients are DPoP-bound unless registered otherwise (issue 12 item 2, RFC 9449 §5.2): by the admin
API and by ``ostiary client create --public``; ``--no-dpop`` and confidential clients are not; an RFC 7591
registration that omits the field gets false."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..support import LiveServer, start_server
from ._dpop import DPoPKey, unverified

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp: Path = tmp_path_factory.mktemp("dpop-default")
    srv = start_server(f"sqlite+aiosqlite:///{tmp / 'o.db'}", tmp, extra_env={
        "OSTIARY_REGISTRATION__POLICY": "open", "OSTIARY_REGISTRATION__PER_IP": "1000"})
    yield srv
    srv.stop()


def _admin_create(server: LiveServer, **spec: Any) -> dict[str, Any]:
    with server.admin() as c:  # not LiveServer.create_client: it asks for unbound public clients
        r = c.post("/clients", json={"name": "default test", **spec})
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def _device_token(server: LiveServer, client_id: str, proof: str | None) -> httpx.Response:
    """A token request of a public device client (the device code is bogus: the DPoP rule comes first)."""
    return httpx.post(server.base_url + "/token", headers={"DPoP": proof} if proof else {},
                      data={"grant_type": DEVICE_GRANT, "client_id": client_id, "device_code": "bogus"})


def test_a_public_client_made_by_the_admin_api_is_dpop_bound(server: LiveServer) -> None:
    client = _admin_create(server, client_type="public", grant_types=[DEVICE_GRANT, "refresh_token"],
                           scopes=["openid"])
    assert client["dpop_bound_access_tokens"] is True
    r = _device_token(server, client["client_id"], None)
    assert r.status_code == 400 and r.json()["error"] == "invalid_dpop_proof", r.text
    # with a proof the request gets as far as the (bogus) device code
    r = _device_token(server, client["client_id"], DPoPKey().proof(server.issuer + "/token"))
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant", r.text


def test_unbound_public_and_confidential_clients_get_bearer_tokens_without_a_proof(server: LiveServer) -> None:
    unbound = _admin_create(server, client_type="public", grant_types=[DEVICE_GRANT], scopes=["openid"],
                            dpop_bound_access_tokens=False)
    assert unbound["dpop_bound_access_tokens"] is False
    r = _device_token(server, unbound["client_id"], None)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant", r.text
    service = _admin_create(server, grant_types=["client_credentials"], scopes=["read"],
                            audiences=["https://api.test.example"])
    assert service["dpop_bound_access_tokens"] is False
    r = httpx.post(server.base_url + "/token", data={"grant_type": "client_credentials"},
                   auth=(service["client_id"], service["client_secret"]))
    assert r.status_code == 200 and r.json()["token_type"] == "Bearer", r.text
    assert "cnf" not in unverified(r.json()["access_token"])


def test_the_cli_binds_public_clients_unless_told_no_dpop(server: LiveServer) -> None:
    common = ["--grant-type", DEVICE_GRANT, "--scope", "openid", "--json"]
    bound = json.loads(server.cli("client", "create", "--name", "cli", "--public", *common).stdout)
    unbound = json.loads(server.cli("client", "create", "--name", "mcp", "--public", "--no-dpop", *common).stdout)
    assert bound["dpop_bound_access_tokens"] is True and unbound["dpop_bound_access_tokens"] is False
    assert "--no-dpop" in server.cli("client", "create", "--help").stdout


def test_a_registration_that_omits_the_field_is_not_bound(server: LiveServer) -> None:
    r = httpx.post(server.base_url + "/register", json={
        "redirect_uris": ["http://127.0.0.1:9/cb"], "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code"], "response_types": ["code"], "scope": "openid"})
    assert r.status_code == 201, r.text
    assert r.json()["dpop_bound_access_tokens"] is False
