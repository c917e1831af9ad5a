"""Strings a database cannot keep as text, arriving where the form reader's rule (no NUL) does not reach: a JSON
body's ``\\u0000``, a signed request object's ``\\u0000`` or lone ``\\ud800``. PostgreSQL text refuses NUL, and
neither PostgreSQL nor SQLite (nor UTF-8) takes a lone surrogate. Each was a 500 when it reached the store; each is
now the RFC's error: ``invalid_request_object`` (RFC 9101 §6.3), ``invalid_client_metadata`` (RFC 7591 §3.2.2), the
admin API's 422 for an invalid field value.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import jwt as pyjwt
import pytest

from ..support import LiveServer
from ._codeflow import auth_params, pkce
from ._pushed import assert_request_object_refused, keyed_client, new_key, push
from .test_registration import agent_metadata

VALUES = {"nul": "a\x00b", "surrogate": "a\ud800b"}




def _request_object(server: LiveServer, key: Any, client_id: str, params: dict[str, Any]) -> str:
    """Signed with PyJWT, which writes a lone surrogate as the JSON escape ``\\ud800`` (Python reads it back)."""
    now = int(time.time())
    claims = {"iss": client_id, "aud": server.issuer, "exp": now + 60, "nbf": now, **params}
    return pyjwt.encode(claims, key.private_key, algorithm="ES256", headers={"kid": key.kid,
                                                                            "typ": "oauth-authz-req+jwt"})


@pytest.mark.parametrize("value", VALUES.values(), ids=VALUES.keys())
@pytest.mark.parametrize("where", ["state", "nonce", "login_hint", "resource", "name"])
def test_request_objects(open_server: LiveServer, where: str, value: str) -> None:
    server = open_server
    key = new_key()
    client = keyed_client(server, key, token_endpoint_auth_method="client_secret_basic")
    params: dict[str, Any] = auth_params(client, pkce()[1])
    if where == "name":
        params["x" + value] = "1"  # an unknown parameter is ignored, but its name is stored with the others
    else:
        params[where] = value
    token = _request_object(server, key, client["client_id"], params)
    assert_request_object_refused(server, client, token, params["redirect_uri"])


def test_request_objects_still_carry_any_other_text(open_server: LiveServer) -> None:
    """Not a blanket refusal of non-ASCII: the refused values are exactly those no store keeps."""
    server = open_server
    key = new_key()
    client = keyed_client(server, key, token_endpoint_auth_method="client_secret_basic")
    params = {**auth_params(client, pkce()[1]), "login_hint": "zoë😀@example.com", "state": "état"}
    r = push(server, {"client_id": client["client_id"], "request": _request_object(server, key, client["client_id"],
                                                                                     params)},
             auth=(client["client_id"], client["client_secret"]))
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("field", ["client_name", "redirect_uris", "key"])
def test_dynamic_registration(open_server: LiveServer, field: str) -> None:
    if field == "redirect_uris":
        metadata = agent_metadata(redirect_uris=["https://app.example.com/cb\x00"])
    elif field == "key":
        metadata = {**agent_metadata(), "x\x00": "y"}
    else:
        metadata = agent_metadata(client_name="agent\x00")
    r = httpx.post(open_server.base_url + "/register", json=metadata)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_client_metadata", r.text
    assert httpx.post(open_server.base_url + "/register", json=agent_metadata()).status_code == 201


def test_admin_api(open_server: LiveServer) -> None:
    with open_server.admin() as c:
        r = c.post("/clients", json={"name": "n\x00", "grant_types": ["client_credentials"],
                                     "audiences": ["https://api.example.com"]})
        assert r.status_code == 422, r.text  # an invalid field value, as the admin API answers any other
        assert "NUL" in r.text
