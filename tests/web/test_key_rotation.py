"""Key rotation with two server processes sharing PostgreSQL: no restart, every process follows."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet

from ..support import free_port, spawn

API = "https://api.example.com"


def _kids(url: str, alg: str = "ES256") -> set[str]:
    """The published kids of one algorithm (ES256: access tokens; the RS256 ID-token key rotates on its own)."""
    return {k["kid"] for k in httpx.get(url + "/jwks").json()["keys"] if k["alg"] == alg}


def _token_kid(url: str, client: dict) -> str:
    r = httpx.post(url + "/token", data={"grant_type": "client_credentials"}, auth=(client["client_id"], client["client_secret"]))
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    jose_jwt.decode(token, KeySet.import_key_set(httpx.get(url + "/jwks").json()))  # verifies against this process's JWKS
    return str(jose_jwt.decode(token, KeySet.import_key_set(httpx.get(url + "/jwks").json())).header["kid"])


def _until(predicate, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("condition not reached in time")


def test_rotation_is_published_before_use_and_followed_by_every_process(make_server) -> None:
    srv = make_server("postgres", extra_env={"OSTIARY_KEYS__PUBLISH_DELAY": "4", "OSTIARY_ACCESS_TOKEN_TTL": "60"})
    second_port = free_port()
    spawn(srv, second_port)  # a second process on the same database (same issuer, as behind a load balancer)
    a, b = srv.base_url, f"http://127.0.0.1:{second_port}"
    client = srv.create_client(audiences=[API])
    (old_kid,) = _kids(a)
    assert _kids(b) == {old_kid}

    rotated = json.loads(srv.cli("keys", "rotate", "--alg", "ES256", "--json").stdout)
    assert [k["alg"] for k in rotated] == ["ES256"]  # --json lists the new keys, one per algorithm rotated
    new_kid = rotated[0]["kid"]
    assert rotated[0]["state"] == "pending"
    # both processes publish the new key before either signs with it
    _until(lambda: _kids(a) == _kids(b) == {old_kid, new_kid})
    assert _token_kid(a, client) == old_kid
    assert _token_kid(b, client) == old_kid
    # after the publish delay both sign with it, and the old key stays published for the old tokens
    _until(lambda: _token_kid(a, client) == new_kid and _token_kid(b, client) == new_kid)
    assert _kids(a) == _kids(b) == {old_kid, new_kid}

    states = {k["kid"]: k["state"] for k in json.loads(srv.cli("keys", "list", "--json").stdout)
              if k["alg"] == "ES256"}
    assert states == {old_kid: "retired", new_kid: "active"}


def test_emergency_rotation_and_retire(make_server) -> None:
    srv = make_server("postgres", extra_env={"OSTIARY_KEYS__PUBLISH_DELAY": "600"})
    client = srv.create_client(audiences=[API])
    (old_kid,) = _kids(srv.base_url)
    refused = srv.cli("keys", "retire", old_kid, check=False)
    assert refused.returncode == 1 and "ostiary keys rotate --now" in refused.stderr
    rotated = json.loads(srv.cli("keys", "rotate", "--now", "--json").stdout)  # every algorithm
    assert sorted(k["alg"] for k in rotated) == ["ES256", "RS256"]
    new_kid = next(k["kid"] for k in rotated if k["alg"] == "ES256")
    _until(lambda: _token_kid(srv.base_url, client) == new_kid)
    assert old_kid in _kids(srv.base_url)  # still verifies the tokens it signed


@pytest.mark.filterwarnings("ignore:EdDSA is deprecated")  # RFC 9864 names Ed25519; EdDSA is what verifiers know
def test_rs256_and_eddsa_are_selectable(make_server) -> None:
    for alg, jose_alg in (("RS256", "RS256"), ("EdDSA", "EdDSA")):
        srv = make_server(extra_env={"OSTIARY_KEYS__ALGORITHM": alg})
        client = srv.create_client(audiences=[API])
        r = httpx.post(srv.base_url + "/token", data={"grant_type": "client_credentials"},
                       auth=(client["client_id"], client["client_secret"]))
        token = r.json()["access_token"]
        jwks = KeySet.import_key_set(httpx.get(srv.base_url + "/jwks").json())
        assert jose_jwt.decode(token, jwks, algorithms=[jose_alg]).header["alg"] == jose_alg
        srv.stop()
