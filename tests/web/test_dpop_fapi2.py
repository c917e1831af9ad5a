"""FAPI 2.0 mode with DPoP (RFC 9449): the sender-constraint rule relies on the verified proof (an invalid one is
refused, a valid one binds the tokens), and a proof sent to /par binds the code to its key (RFC 9449 §10.1)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ..support import LiveServer, start_server
from ._codeflow import Browser, auth_params, new_user, pkce
from ._dpop import DPoPKey, unverified
from ._pushed import assertion, finish, keyed_client, new_key, push, pushed_code, redeem


@pytest.fixture(scope="module")
def fapi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp: Path = tmp_path_factory.mktemp("fapi2-dpop")
    srv = start_server(f"sqlite+aiosqlite:///{tmp / 'fapi2.db'}", tmp, extra_env={"OSTIARY_PROFILE": "fapi2"})
    yield srv
    srv.stop()


def test_an_invalid_proof_is_refused_and_a_valid_one_binds_the_token(fapi: LiveServer) -> None:
    key, dpop = new_key(), DPoPKey()
    client, user = keyed_client(fapi, key), new_user(fapi)
    b = Browser(fapi)
    try:
        code, verifier, _ = pushed_code(fapi, b, client, key, user)
    finally:
        b.close()
    url = fapi.issuer + "/token"
    # a DPoP header is no longer enough: it must be a valid proof (before, its presence was the rule)
    for bad in ("not-a-proof", dpop.proof(url, "GET"), dpop.proof(fapi.issuer + "/par")):
        r = redeem(fapi, client, key, code, verifier, headers={"DPoP": bad})
        assert r.status_code == 400 and r.json()["error"] == "invalid_dpop_proof", r.text
    r = redeem(fapi, client, key, code, verifier, headers={"DPoP": dpop.proof(url)})
    assert r.status_code == 200, r.text
    assert r.json()["token_type"] == "DPoP" and unverified(r.json()["access_token"])["cnf"] == {"jkt": dpop.jkt}


def test_a_proof_at_par_binds_the_code_to_its_key(fapi: LiveServer) -> None:
    key, dpop = new_key(), DPoPKey()
    client, user = keyed_client(fapi, key), new_user(fapi)
    verifier, challenge = pkce()
    r = push(fapi, {**auth_params(client, challenge), **assertion(fapi, key, client["client_id"])},
             headers={"DPoP": dpop.proof(fapi.issuer + "/par")})
    assert r.status_code == 201, r.text
    b = Browser(fapi)
    try:
        q = finish(b, b.authorize(client_id=client["client_id"], request_uri=r.json()["request_uri"]), user)
    finally:
        b.close()
    url = fapi.issuer + "/token"
    r = redeem(fapi, client, key, q["code"], verifier, headers={"DPoP": DPoPKey().proof(url)})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant", r.text
    r = redeem(fapi, client, key, q["code"], verifier, headers={"DPoP": dpop.proof(url)})
    assert r.status_code == 200, r.text
    assert unverified(r.json()["access_token"])["cnf"] == {"jkt": dpop.jkt}


def test_an_invalid_proof_at_par_is_refused(fapi: LiveServer) -> None:
    key = new_key()
    client = keyed_client(fapi, key)
    r = push(fapi, {**auth_params(client, pkce()[1]), **assertion(fapi, key, client["client_id"])},
             headers={"DPoP": DPoPKey().proof(fapi.issuer + "/token")})
    assert r.status_code == 400 and r.json()["error"] == "invalid_dpop_proof", r.text
