"""The code flow driven by an independent relying party: panva's openid-client v6 (Node) does discovery, PKCE
S256, state and nonce, the code exchange (with its own checks of state, nonce, PKCE and RFC 9207 ``iss``),
userinfo and a refresh; Chromium plays the person who signs in and consents. The same relying party pushes its
authorization request (PAR, RFC 9126) with ``--par``."""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from ..support import LiveServer
from ..web._codeflow import new_user
from ._flow import RelyingParty, jwk_thumbprint, register, sign_in, verify_id_token
from ._node_rp import StartRp, ensure_installed, read_line, rp_processes, send_callback

pytestmark = pytest.mark.browser

@pytest.fixture(scope="module")
def node_rp() -> Path:
    return ensure_installed()


@pytest.fixture
def rp_process(node_rp: Path) -> Iterator[StartRp]:
    with rp_processes(node_rp) as start:
        yield start


def test_openid_client_signs_a_user_in(live: LiveServer, rp: RelyingParty, page: Any, rp_process: Any) -> None:
    client = register(live, rp, name="Node RP")
    user = new_user(live, name="Node User")
    proc = rp_process(live.issuer, client["client_id"], rp.callback)
    start = read_line(proc)
    url = start["authorization_url"]
    assert url.startswith(live.base_url + "/authorize?") and "code_challenge_method=S256" in url
    page.goto(url)
    sign_in(page, user)
    page.wait_for_selector("#consent-form")
    assert page.text_content("#consent-client").strip() == "Node RP"
    page.click("#consent-allow")
    page.wait_for_selector("#rp-callback")
    callback = page.url
    q = rp.last()
    assert q["state"] == start["state"] and q["iss"] == live.issuer
    assert proc.stdin is not None
    proc.stdin.write(callback + "\n")
    proc.stdin.flush()
    result = read_line(proc)
    assert proc.wait(timeout=30) == 0
    assert result["issuer"] == live.issuer
    assert result["token_type"].lower() == "bearer"
    assert set(result["scope"].split()) == {"openid", "profile", "email", "offline_access"}
    claims = result["claims"]
    assert claims["sub"] == user["id"] and claims["nonce"] == start["nonce"]
    assert claims["aud"] == client["client_id"] and claims["iss"] == live.issuer
    assert verify_id_token(live, result["id_token"]) == claims
    # RS256, the ID-token algorithm every relying party accepts (OIDC Registration §2 default)
    assert json.loads(base64.urlsafe_b64decode(result["id_token"].split(".")[0] + "=="))["alg"] == "RS256"
    assert result["userinfo"]["sub"] == user["id"] and result["userinfo"]["name"] == "Node User"
    assert result["userinfo"]["email"] == user["email"]
    assert result["refresh_rotated"] is True and result["refreshed_access_token"] is True
    assert result["end_session_url"].startswith(live.base_url + "/logout?")


def test_openid_client_rejects_a_callback_with_the_wrong_state(live: LiveServer, rp: RelyingParty, page: Any,
                                                               rp_process: Any) -> None:
    """The relying party's own checks run: a callback from another authorization request is refused."""
    client = register(live, rp)
    user = new_user(live)
    proc = rp_process(live.issuer, client["client_id"], rp.callback)
    start = read_line(proc)
    page.goto(start["authorization_url"].replace("state=" + start["state"], "state=someone-else"))
    sign_in(page, user)
    page.wait_for_selector("#consent-form")
    page.click("#consent-allow")
    page.wait_for_selector("#rp-callback")
    assert rp.last()["state"] == "someone-else"
    assert proc.stdin is not None
    proc.stdin.write(page.url + "\n")
    proc.stdin.flush()
    assert proc.wait(timeout=30) != 0
    assert proc.stderr is not None and "state" in proc.stderr.read().lower()


def test_openid_client_pushes_its_authorization_request(live: LiveServer, rp: RelyingParty, page: Any,
                                                        rp_process: Any) -> None:
    """openid-client's buildAuthorizationUrlWithPAR: the request (PKCE S256, state, nonce, scope, redirect_uri)
    goes to /par, the browser carries only client_id and the request_uri, which works once."""
    client = register(live, rp, name="Node PAR RP")
    user = new_user(live)
    proc = rp_process(live.issuer, client["client_id"], rp.callback, "--par")
    start = read_line(proc)
    url = start["authorization_url"]
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == live.base_url + "/authorize"
    sent = parse_qs(parts.query)
    assert set(sent) == {"client_id", "request_uri"}, sent  # nothing else travels through the browser
    assert sent["client_id"] == [client["client_id"]]
    assert sent["request_uri"][0].startswith("urn:ietf:params:oauth:request_uri:")
    page.goto(url)
    sign_in(page, user)
    page.wait_for_selector("#consent-form")
    assert page.text_content("#consent-client").strip() == "Node PAR RP"
    page.click("#consent-allow")
    page.wait_for_selector("#rp-callback")
    q = rp.last()
    assert q["state"] == start["state"] and q["iss"] == live.issuer and "code" in q  # the pushed state came back
    result = send_callback(proc, page.url)
    assert result["claims"]["sub"] == user["id"] and result["claims"]["nonce"] == start["nonce"]
    assert set(result["scope"].split()) == {"openid", "profile", "email", "offline_access"}
    assert result["userinfo"]["sub"] == user["id"]
    assert result["refresh_rotated"] is True
    # the request_uri was single use: the same authorization URL again is refused, no second code
    again = page.goto(url)
    assert again is not None and again.status == 400
    assert page.text_content("#error-code").strip() == "invalid_request_uri"
    assert len([h for h in rp.hits if h[1] == "/callback" and h[2].get("state") == start["state"]]) == 1


def _access_claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def _other_key_proof(url: str, nonce: str | None = None) -> str:
    """A well-formed DPoP proof (RFC 9449 §4.2) for ``url``, by a key that is not the relying party's."""
    key = ec.generate_private_key(ec.SECP256R1())
    numbers = key.public_key().public_numbers()
    jwk = {"kty": "EC", "crv": "P-256",
           "x": base64.urlsafe_b64encode(numbers.x.to_bytes(32, "big")).rstrip(b"=").decode(),
           "y": base64.urlsafe_b64encode(numbers.y.to_bytes(32, "big")).rstrip(b"=").decode()}
    claims = {"jti": secrets.token_urlsafe(16), "htm": "POST", "htu": url, "iat": int(time.time()),
              **({"nonce": nonce} if nonce else {})}
    return jwt.encode(claims, key, algorithm="ES256", headers={"typ": "dpop+jwt", "jwk": jwk})


@pytest.mark.parametrize("nonce", [False, True], ids=["no-nonce", "server-nonce"])
def test_openid_client_with_dpop(live: LiveServer, rp: RelyingParty, page: Any, rp_process: Any,
                                 nonce: bool) -> None:
    """openid-client's DPoP (getDPoPHandle): proofs at /par (binding the code, RFC 9449 §10.1), at the token
    endpoint, at /userinfo and for the refresh, all by the key openid-client made; with ``server-nonce`` the
    client must carry Ostiary's nonces (RFC 9449 §8), which openid-client picks up and retries with."""
    client = register(live, rp, name="Node DPoP RP", dpop_bound_access_tokens=True, dpop_require_nonce=nonce)
    user = new_user(live)
    proc = rp_process(live.issuer, client["client_id"], rp.callback, "--par", "--dpop")
    start = read_line(proc)
    assert set(parse_qs(urlsplit(start["authorization_url"]).query)) == {"client_id", "request_uri"}
    page.goto(start["authorization_url"])
    sign_in(page, user)
    page.wait_for_selector("#consent-form")
    page.click("#consent-allow")
    page.wait_for_selector("#rp-callback")
    assert rp.last()["iss"] == live.issuer
    result = send_callback(proc, page.url)

    jkt = jwk_thumbprint(result["dpop_public_jwk"])
    assert result["token_type"].lower() == "dpop" and result["refreshed_token_type"].lower() == "dpop"
    assert _access_claims(result["access_token"])["cnf"] == {"jkt": jkt}
    assert _access_claims(result["refreshed"]["access_token"])["cnf"] == {"jkt": jkt}
    # /userinfo answered openid-client's DPoP requests, before and after the refresh by the same key
    assert result["userinfo"]["sub"] == user["id"] and result["refreshed_userinfo_sub"] == user["id"]
    assert result["refresh_rotated"] is True

    # what a thief with the tokens but not the key gets: nothing
    downgrade = httpx.get(live.base_url + "/userinfo",
                          headers={"Authorization": "Bearer " + result["refreshed"]["access_token"]})
    assert downgrade.status_code == 401, downgrade.text
    assert downgrade.headers["www-authenticate"].startswith("DPoP ")  # RFC 9449 §7.1
    refresh = {"grant_type": "refresh_token", "refresh_token": result["refreshed"]["refresh_token"],
               "client_id": client["client_id"]}
    no_proof = httpx.post(live.base_url + "/token", data=refresh)
    assert no_proof.status_code == 400 and no_proof.json()["error"] == "invalid_dpop_proof", no_proof.text
    server_nonce = None
    if nonce:  # the server did insist on nonces (openid-client coped): a proof without one is turned away
        asked = httpx.post(live.base_url + "/token", data=refresh,
                           headers={"DPoP": _other_key_proof(live.issuer + "/token")})
        assert asked.status_code == 400 and asked.json()["error"] == "use_dpop_nonce", asked.text
        server_nonce = asked.headers["dpop-nonce"]
    # a valid proof, by another key: the refresh token is bound to openid-client's key (public client, RFC 9449 §5)
    other_key = httpx.post(live.base_url + "/token", data=refresh,
                           headers={"DPoP": _other_key_proof(live.issuer + "/token", server_nonce)})
    assert other_key.status_code == 400 and other_key.json()["error"] == "invalid_grant", other_key.text
