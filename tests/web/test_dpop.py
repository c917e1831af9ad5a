"""DPoP (RFC 9449) at Ostiary's token and userinfo endpoints, over HTTP against a live server: proofs checked
(every negative the issue lists), tokens bound (``cnf.jkt``, ``token_type: DPoP``) for every grant, refresh
tokens and codes bound to the key, server nonces, and discovery."""

from __future__ import annotations

import base64
import json
import secrets
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from ..support import LiveServer, start_server
from ._codeflow import REDIRECT, Browser, approve_device, exchange, get_code, new_user, refresh, web_client
from ._dpop import DPoPKey, unverified

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp: Path = tmp_path_factory.mktemp("dpop")
    srv = start_server(f"sqlite+aiosqlite:///{tmp / 'dpop.db'}", tmp, extra_env={
        "OSTIARY_REGISTRATION__POLICY": "open", "OSTIARY_REGISTRATION__PER_IP": "1000"})
    yield srv
    srv.stop()


def _service(server: LiveServer, **spec: Any) -> dict[str, Any]:
    return server.create_client(grant_types=["client_credentials"], scopes=["read"], **spec)


def _cc(server: LiveServer, client: dict[str, Any], proof: str | list[str] | None) -> httpx.Response:
    headers: list[tuple[str, str]] = []
    for p in [proof] if isinstance(proof, str) else (proof or []):
        headers.append(("DPoP", p))
    return httpx.post(server.base_url + "/token", data={"grant_type": "client_credentials"},
                      auth=(client["client_id"], client["client_secret"]), headers=headers)


def _refused(r: httpx.Response, error: str = "invalid_dpop_proof", status: int = 400) -> str:
    assert r.status_code == status, r.text
    assert r.json()["error"] == error, r.text
    assert "access_token" not in r.json()
    if error in ("invalid_dpop_proof", "use_dpop_nonce"):  # RFC 9449 §7.1's challenge, beside the JSON error
        challenge = r.headers.get("www-authenticate", "")
        assert challenge.startswith(f'DPoP error="{error}"') and 'algs="ES256' in challenge, challenge
    return str(r.json().get("error_description", ""))


# --- client credentials: a valid proof binds the token ---------------------------------------------------------

def test_client_credentials_with_a_proof_gets_a_dpop_bound_token(server: LiveServer) -> None:
    client, key = _service(server), DPoPKey()
    r = _cc(server, client, key.proof(server.issuer + "/token"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "DPoP"
    assert unverified(body["access_token"])["cnf"] == {"jkt": key.jkt}
    assert r.headers["cache-control"] == "no-store"
    # introspection (RFC 9449 §6.2) tells a resource server the key: token_type DPoP and cnf.jkt
    seen = httpx.post(server.base_url + "/introspect", data={"token": body["access_token"]},
                      auth=(client["client_id"], client["client_secret"])).json()
    assert seen["active"] is True and seen["token_type"] == "DPoP" and seen["cnf"] == {"jkt": key.jkt}
    plain = _cc(server, client, None).json()  # without a proof: Bearer, unbound, as before
    assert plain["token_type"] == "Bearer" and "cnf" not in unverified(plain["access_token"])


def test_htu_is_compared_without_query_and_with_case_insensitive_scheme_and_host(server: LiveServer) -> None:
    client, key = _service(server), DPoPKey()
    url = server.issuer.replace("http://", "HTTP://").replace("127.0.0.1", "127.0.0.1") + "/token?x=1#frag"
    r = _cc(server, client, key.proof(url))
    assert r.status_code == 200, r.text


def test_a_client_registered_for_dpop_must_send_a_proof(server: LiveServer) -> None:
    client = _service(server, dpop_bound_access_tokens=True)
    assert "dpop" in _refused(_cc(server, client, None)).lower()
    r = _cc(server, client, DPoPKey().proof(server.issuer + "/token"))
    assert r.status_code == 200 and r.json()["token_type"] == "DPoP"


def test_the_cli_switches_dpop_binding_on_and_off(server: LiveServer) -> None:
    client = _service(server)
    out = json.loads(server.cli("client", "update", client["client_id"], "--dpop", "--json").stdout)
    assert out["dpop_bound_access_tokens"] is True
    _refused(_cc(server, client, None))
    out = json.loads(server.cli("client", "update", client["client_id"], "--no-dpop", "--json").stdout)
    assert out["dpop_bound_access_tokens"] is False
    assert _cc(server, client, None).status_code == 200


def test_a_registered_client_can_ask_for_dpop_bound_tokens(server: LiveServer) -> None:
    r = httpx.post(server.base_url + "/register", json={"redirect_uris": [REDIRECT], "dpop_bound_access_tokens": "yes"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_client_metadata"
    r = httpx.post(server.base_url + "/register", json={"redirect_uris": [REDIRECT], "dpop_bound_access_tokens": True,
                                                        "scope": "openid offline_access"})
    assert r.status_code == 201, r.text
    client = r.json()
    assert client["dpop_bound_access_tokens"] is True
    user = new_user(server)
    b = Browser(server)
    try:
        code, verifier, _ = get_code(b, client, user, scope="openid offline_access")
    finally:
        b.close()
    _refused(_exchange(server, client, code, verifier, None))
    r = _exchange(server, client, code, verifier, DPoPKey().proof(server.issuer + "/token"))
    assert r.status_code == 200 and r.json()["token_type"] == "DPoP", r.text


# --- every negative of the issue ----------------------------------------------------------------------------

def _other_key_jwk() -> tuple[Any, dict[str, Any]]:
    k = ec.generate_private_key(ec.SECP256R1())
    return k, json.loads(ECAlgorithm.to_jwk(k.public_key()))


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize("case", [
    "two headers", "not a jwt", "no htm", "wrong htm", "no htu", "wrong htu", "no iat", "stale iat", "future iat",
    "no jti", "alg none", "hmac", "private jwk", "no jwk", "oct jwk", "wrong typ", "signed by another key",
    "rsa 1024",
])
def test_invalid_proofs_are_refused(server: LiveServer, case: str) -> None:
    client, key = _service(server), DPoPKey()
    url = server.issuer + "/token"
    now = int(time.time())
    proof: str | list[str]
    if case == "two headers":
        proof = [key.proof(url), key.proof(url)]
    elif case == "not a jwt":
        proof = "not-a-jwt"
    elif case == "no htm":
        proof = key.proof(url, htm=None)
    elif case == "wrong htm":
        proof = key.proof(url, "GET")
    elif case == "no htu":
        proof = key.proof(url, htu=None)
    elif case == "wrong htu":
        proof = key.proof(server.issuer + "/userinfo")
    elif case == "no iat":
        proof = key.proof(url, iat=None)
    elif case == "stale iat":
        proof = key.proof(url, iat=now - 600)
    elif case == "future iat":
        proof = key.proof(url, iat=now + 600)
    elif case == "no jti":
        proof = key.proof(url, jti=None)
    elif case == "alg none":
        proof = _b64({"alg": "none", "typ": "dpop+jwt", "jwk": key.jwk}) + "." + _b64(
            {"jti": "j" + secrets.token_hex(8), "htm": "POST", "htu": url, "iat": now}) + "."
    elif case == "hmac":
        proof = jwt.encode({"jti": secrets.token_hex(8), "htm": "POST", "htu": url, "iat": now}, "s" * 32,
                           algorithm="HS256", headers={"typ": "dpop+jwt", "jwk": {"kty": "oct", "k": "c2VjcmV0"}})
    elif case == "private jwk":
        proof = key.proof(url, header={"jwk": {**key.jwk, "d": json.loads(ECAlgorithm.to_jwk(key.key))["d"]}})
    elif case == "no jwk":
        proof = key.proof(url, header={"jwk": None})
    elif case == "oct jwk":
        proof = key.proof(url, header={"jwk": {"kty": "oct", "k": "c2VjcmV0"}})
    elif case == "wrong typ":
        proof = key.proof(url, header={"typ": "JWT"})
    elif case == "signed by another key":
        _, other = _other_key_jwk()
        proof = key.proof(url, header={"jwk": {k: other[k] for k in ("kty", "crv", "x", "y")}})
    else:  # rsa 1024: too weak a key
        small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            proof = jwt.encode({"jti": secrets.token_hex(8), "htm": "POST", "htu": url, "iat": now}, small,
                               algorithm="RS256", headers={
                                   "typ": "dpop+jwt", "jwk": json.loads(RSAAlgorithm.to_jwk(small.public_key()))})
    _refused(_cc(server, client, proof))


def test_a_replayed_proof_is_refused(server: LiveServer) -> None:
    client, key = _service(server), DPoPKey()
    proof = key.proof(server.issuer + "/token")
    assert _cc(server, client, proof).status_code == 200
    assert "already used" in _refused(_cc(server, client, proof))


@pytest.mark.parametrize("size", [100_000, 20_000, 5_000])
def test_huge_proofs_are_refused_with_400_not_5xx(server: LiveServer, size: int) -> None:
    client, key = _service(server), DPoPKey()
    proof = key.proof(server.issuer + "/token", pad="x" * size)
    r = _cc(server, client, proof)
    assert r.status_code == 400, r.text  # the server's header limit or the proof's own cap: never a 5xx
    if r.headers.get("content-type", "").startswith("application/json") and "error" in r.text:
        assert r.json()["error"] in ("invalid_dpop_proof", "invalid_request")
    assert "access_token" not in r.text


def test_discovery_advertises_the_algorithms(server: LiveServer) -> None:
    meta = httpx.get(server.base_url + "/.well-known/openid-configuration").json()
    assert "ES256" in meta["dpop_signing_alg_values_supported"]
    assert not {"none", "HS256"} & set(meta["dpop_signing_alg_values_supported"])


# --- authorization code, refresh, userinfo --------------------------------------------------------------------

def _code_tokens(server: LiveServer, key: DPoPKey, **extra: str) -> tuple[dict[str, Any], dict[str, Any]]:
    client, user = web_client(server), new_user(server)
    b = Browser(server)
    try:
        code, verifier, _ = get_code(b, client, user, **extra)
    finally:
        b.close()
    r = _exchange(server, client, code, verifier, key.proof(server.issuer + "/token"))
    assert r.status_code == 200, r.text
    return client, r.json()


def _exchange(server: LiveServer, client: dict[str, Any], code: str, verifier: str,
              proof: str | None) -> httpx.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier,
            "client_id": client["client_id"]}
    return httpx.post(server.base_url + "/token", data=data, headers={"DPoP": proof} if proof else {})


def _refresh(server: LiveServer, client: dict[str, Any], token: str, proof: str | None) -> httpx.Response:
    return httpx.post(server.base_url + "/token", headers={"DPoP": proof} if proof else {},
                      data={"grant_type": "refresh_token", "refresh_token": token, "client_id": client["client_id"]})


def test_code_flow_binds_access_and_refresh_tokens_to_the_key(server: LiveServer) -> None:
    key = DPoPKey()
    client, tokens = _code_tokens(server, key)
    assert tokens["token_type"] == "DPoP" and unverified(tokens["access_token"])["cnf"] == {"jkt": key.jkt}
    rt = tokens["refresh_token"]
    # RFC 9449 §5: the public client's refresh token is bound to the key: without a proof, or with another
    # key's, refused (invalid_grant) and the family left alone
    _refused(_refresh(server, client, rt, None), "invalid_grant")
    _refused(_refresh(server, client, rt, DPoPKey().proof(server.issuer + "/token")), "invalid_grant")
    r = _refresh(server, client, rt, key.proof(server.issuer + "/token"))
    assert r.status_code == 200, r.text
    assert r.json()["token_type"] == "DPoP" and unverified(r.json()["access_token"])["cnf"] == {"jkt": key.jkt}
    # the successor is bound too
    _refused(_refresh(server, client, r.json()["refresh_token"], DPoPKey().proof(server.issuer + "/token")),
             "invalid_grant")


def test_dpop_jkt_at_authorize_binds_the_code(server: LiveServer) -> None:
    key = DPoPKey()
    client, user = web_client(server), new_user(server)
    b = Browser(server)
    try:
        code, verifier, _ = get_code(b, client, user, dpop_jkt=key.jkt)
    finally:
        b.close()
    _refused(_exchange(server, client, code, verifier, None), "invalid_grant")
    _refused(_exchange(server, client, code, verifier, DPoPKey().proof(server.issuer + "/token")), "invalid_grant")
    r = _exchange(server, client, code, verifier, key.proof(server.issuer + "/token"))
    assert r.status_code == 200, r.text
    assert unverified(r.json()["access_token"])["cnf"] == {"jkt": key.jkt}


def test_unbound_code_flow_still_works_with_bearer(server: LiveServer) -> None:
    client, user = web_client(server), new_user(server)
    b = Browser(server)
    try:
        code, verifier, _ = get_code(b, client, user)
    finally:
        b.close()
    r = exchange(server, client, code, verifier)
    assert r.status_code == 200 and r.json()["token_type"] == "Bearer"
    assert refresh(server, client, r.json()["refresh_token"]).status_code == 200


def _userinfo(server: LiveServer, token: str, scheme: str = "DPoP", proof: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"{scheme} {token}"}
    if proof is not None:
        headers["DPoP"] = proof
    return httpx.get(server.base_url + "/userinfo", headers=headers)


def test_userinfo_accepts_a_dpop_token_with_its_proof_only(server: LiveServer) -> None:
    key = DPoPKey()
    _, tokens = _code_tokens(server, key)
    at, url = tokens["access_token"], server.issuer + "/userinfo"
    r = _userinfo(server, at, proof=key.proof(url, "GET", access_token=at))
    assert r.status_code == 200, r.text
    assert r.json()["sub"]
    # presented as a Bearer token: refused, with a DPoP challenge (RFC 9449 §7.2)
    r = _userinfo(server, at, "Bearer")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("DPoP ")
    # without a proof, with a wrong ath, by another key, for another method, replayed
    for proof in (None, key.proof(url, "GET", access_token="other"), DPoPKey().proof(url, "GET", access_token=at),
                  key.proof(url, "POST", access_token=at)):
        r = _userinfo(server, at, proof=proof)
        assert r.status_code == 401, r.text
        assert r.json()["error"] == "invalid_dpop_proof"
        assert r.headers["www-authenticate"].startswith('DPoP error="invalid_dpop_proof"')
        assert 'algs="' in r.headers["www-authenticate"]
    once = key.proof(url, "GET", access_token=at)
    assert _userinfo(server, at, proof=once).status_code == 200
    assert _userinfo(server, at, proof=once).status_code == 401



def test_userinfo_refuses_two_authorization_headers(server: LiveServer) -> None:
    """RFC 6750 §3.1: a request that repeats the Authorization header (a singleton field, RFC 9110 §11.6.2) is
    ``invalid_request`` (400), whichever header comes first; the token in the first one is not used."""
    key = DPoPKey()
    _, tokens = _code_tokens(server, key)
    at, url = tokens["access_token"], server.issuer + "/userinfo"
    for first, second in ((f"DPoP {at}", f"Bearer {at}"), (f"Bearer {at}", f"DPoP {at}"),
                          (f"DPoP {at}", f"DPoP {at}")):
        r = httpx.get(url, headers=[("Authorization", first), ("Authorization", second),
                                    ("DPoP", key.proof(url, "GET", access_token=at))])
        assert r.status_code == 400, r.text
        assert r.json()["error"] == "invalid_request"
        assert 'error="invalid_request"' in r.headers["www-authenticate"]


def test_userinfo_challenges_keep_error_description_to_the_rfc_6750_characters(server: LiveServer) -> None:
    """RFC 6750 §3: ``error_description`` in ``WWW-Authenticate`` MUST NOT include characters outside
    %x20-21 / %x23-5B / %x5D-7E (the JSON body's already holds to RFC 6749 §5.2's same set)."""
    key = DPoPKey()
    _, tokens = _code_tokens(server, key)
    at, url = tokens["access_token"], server.issuer + "/userinfo"
    two = [("Authorization", f"DPoP {at}"), ("DPoP", key.proof(url, "GET", access_token=at)),
           ("DPoP", key.proof(url, "GET", access_token=at))]
    for headers in (two, {"Authorization": f"DPoP {at}", "DPoP": key.proof(url, "GET", access_token=at)[:-4]}):
        r = httpx.get(url, headers=headers)
        assert r.status_code == 401 and r.json()["error"] == "invalid_dpop_proof", r.text
        raw = dict(r.headers.raw)[b"www-authenticate"]
        description = raw.split(b'error_description="', 1)[1].split(b'"', 1)[0]
        assert all(0x20 <= c <= 0x7E and c not in b'"\\' for c in description), raw

def test_userinfo_without_credentials_offers_both_schemes(server: LiveServer) -> None:
    r = httpx.get(server.base_url + "/userinfo")
    assert r.status_code == 401
    assert "Bearer" in r.headers["www-authenticate"] and "DPoP algs=" in r.headers["www-authenticate"]


# --- the device grant and token exchange ------------------------------------------------------------------------

def test_device_grant_binds_tokens_to_the_proof_key(server: LiveServer) -> None:
    client = server.create_client(client_type="public", grant_types=[DEVICE_GRANT, "refresh_token"],
                                  scopes=["openid", "offline_access"])
    user, key = new_user(server), DPoPKey()
    r = httpx.post(server.base_url + "/device_authorization",
                   data={"client_id": client["client_id"], "scope": "openid offline_access"})
    assert r.status_code == 200, r.text
    auth = r.json()
    approve_device(server.base_url, auth["user_code"], user)
    r = httpx.post(server.base_url + "/token", headers={"DPoP": key.proof(server.issuer + "/token")},
                   data={"grant_type": DEVICE_GRANT, "device_code": auth["device_code"],
                         "client_id": client["client_id"]})
    assert r.status_code == 200, r.text
    assert r.json()["token_type"] == "DPoP" and unverified(r.json()["access_token"])["cnf"] == {"jkt": key.jkt}
    _refused(_refresh(server, client, r.json()["refresh_token"], None), "invalid_grant")
    assert _refresh(server, client, r.json()["refresh_token"],
                    key.proof(server.issuer + "/token")).status_code == 200


def test_token_exchange_binds_the_new_token(server: LiveServer) -> None:
    orders, inventory, scope = "https://orders.example.com", "urn:example:inventory", "openid orders:read inventory:read"
    user, key = new_user(server), DPoPKey()
    app = web_client(server, scopes=scope.split(), audiences=[orders])
    b = Browser(server)
    try:
        code, verifier, _ = get_code(b, app, user, scope=scope)
    finally:
        b.close()
    subject = exchange(server, app, code, verifier).json()["access_token"]
    exchanger = server.create_client(grant_types=["urn:ietf:params:oauth:grant-type:token-exchange"],
                                     scopes=["inventory:read"], resource_audiences=[orders],
                                     may_exchange_for=[inventory])
    r = httpx.post(server.base_url + "/token", auth=(exchanger["client_id"], exchanger["client_secret"]),
                   headers={"DPoP": key.proof(server.issuer + "/token")},
                   data={"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange", "subject_token": subject,
                         "subject_token_type": "urn:ietf:params:oauth:token-type:access_token"})
    assert r.status_code == 200, r.text
    assert r.json()["token_type"] == "DPoP" and unverified(r.json()["access_token"])["cnf"] == {"jkt": key.jkt}


# --- server nonces (RFC 9449 §8) --------------------------------------------------------------------------------

def test_a_client_flagged_for_nonces_must_use_the_servers_nonce(server: LiveServer) -> None:
    client, key = _service(server, dpop_require_nonce=True), DPoPKey()
    url = server.issuer + "/token"
    r = _cc(server, client, key.proof(url))
    _refused(r, "use_dpop_nonce")
    nonce = r.headers["dpop-nonce"]
    _refused(_cc(server, client, key.proof(url, nonce="forged" + nonce[6:])), "use_dpop_nonce")
    r = _cc(server, client, key.proof(url, nonce=nonce))
    assert r.status_code == 200, r.text
    assert r.json()["token_type"] == "DPoP" and r.headers["dpop-nonce"]


# --- two workers sharing Redis, nonces required for everyone ------------------------------------------------------

@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    from ..support import create_pg_database, drop_pg_database

    name, url = create_pg_database()
    srv = start_server(url, tmp_path_factory.mktemp("dpop-shared"), workers=2, extra_env={
        "OSTIARY_REDIS_URL": "redis://127.0.0.1:6379/0", "OSTIARY_DPOP__REQUIRE_NONCE": "true"})
    yield srv
    srv.stop()
    drop_pg_database(name)


def test_a_proof_is_single_use_across_workers_and_nonces_work_on_every_worker(shared: LiveServer) -> None:
    client, key = _service(shared), DPoPKey()
    url = shared.issuer + "/token"
    r = _cc(shared, client, key.proof(url))  # the global switch: no nonce, no token
    _refused(r, "use_dpop_nonce")
    nonce = r.headers["dpop-nonce"]
    proof = key.proof(url, nonce=nonce)
    # every attempt on a new connection (the workers share the port): the nonce is accepted whichever worker
    # answers, and the proof's jti only once, whichever worker saw it first
    statuses = [_cc(shared, client, proof).status_code for _ in range(8)]
    assert statuses.count(200) == 1 and statuses.count(400) == 7, statuses
    for _ in range(4):
        r = _cc(shared, client, key.proof(url, nonce=nonce))
        assert r.status_code == 200, r.text


def test_userinfo_asks_for_a_nonce_when_required(shared: LiveServer) -> None:
    key = DPoPKey()
    _, tokens = _code_tokens_with_nonce(shared, key)
    at, url = tokens["access_token"], shared.issuer + "/userinfo"
    r = _userinfo(shared, at, proof=key.proof(url, "GET", access_token=at))
    assert r.status_code == 401 and r.json()["error"] == "use_dpop_nonce"
    assert r.headers["www-authenticate"].startswith('DPoP error="use_dpop_nonce"') and r.headers["dpop-nonce"]
    r = _userinfo(shared, at, proof=key.proof(url, "GET", access_token=at, nonce=r.headers["dpop-nonce"]))
    assert r.status_code == 200, r.text


def _code_tokens_with_nonce(server: LiveServer, key: DPoPKey) -> tuple[dict[str, Any], dict[str, Any]]:
    client, user = web_client(server), new_user(server)
    b = Browser(server)
    try:
        code, verifier, _ = get_code(b, client, user)
    finally:
        b.close()
    url = server.issuer + "/token"
    r = _exchange(server, client, code, verifier, key.proof(url))
    _refused(r, "use_dpop_nonce")  # the code is not spent by a refused proof
    r = _exchange(server, client, code, verifier, key.proof(url, nonce=r.headers["dpop-nonce"]))
    assert r.status_code == 200, r.text
    return client, r.json()
