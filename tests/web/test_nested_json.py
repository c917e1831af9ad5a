"""JSON nested deeper than Python's recursion limit, wherever the server reads a token or a document a stranger
controls: a 4xx with the RFC's error, never a 500.

``json.loads`` raises ``RecursionError`` (not ``ValueError``) for about a thousand nested arrays: 2 KB of ``[``
in a JWT's header or claims. Before ``ostiary._json`` every surface below answered 500 to such a token, most
of them without any authentication (a client assertion, a DPoP proof, a bearer token, an ``id_token_hint``).
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from ostiary._json import loads
from ostiary.core import jose

from ..support import LiveServer
from ._codeflow import auth_params, pkce
from ._pushed import assert_request_object_refused, keyed_client, new_key

API = "https://api.example.com"
ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DEEP = b"[" * 3000 + b"]" * 3000  # 6 KB; 3,000 levels, three times the default recursion limit


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def deep_header() -> str:
    """A compact JWS whose header is an array nested 3,000 deep."""
    return b64(b"[" * 1500 + b"]" * 1500) + "." + b64(b"{}") + "." + b64(b"sig")


def deep_claims(header: dict[str, Any]) -> str:
    """A compact JWS with a plausible header and claims nested 3,000 deep (the signature is garbage)."""
    return b64(json.dumps(header).encode()) + "." + b64(b'{"a":' + DEEP + b"}") + "." + b64(b"x" * 64)


def test_the_parser_raises_value_error_only() -> None:
    with pytest.raises(ValueError, match="nested too deeply"):
        loads(DEEP)
    with pytest.raises(ValueError):
        loads(b"\xff")
    assert loads(b"[" * 100 + b"]" * 100) == loads("[" * 100 + "]" * 100)


def test_jose_refuses_deep_documents_with_its_own_error() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    public = jose.PublicJwk(kid="k", alg="ES256", key=key.public_key(), jwk={})
    for token in (deep_header(), deep_claims({"alg": "ES256", "kid": "k"})):
        with pytest.raises(jose.JoseError):
            jose.decode_unverified(token)
    with pytest.raises(jose.JoseError):
        jose.verify_jwt(deep_header(), [public])
    with pytest.raises(jose.JoseError):
        jose.embedded_header(deep_header().split(".")[0])
    # correctly signed by the key, claims nested 3,000 deep: PyJWT parses them after the signature checks out
    signing_input = b64(b'{"alg":"ES256","kid":"k","typ":"JWT"}') + "." + b64(b'{"exp":' + str(
        int(time.time()) + 60).encode() + b',"a":' + DEEP + b"}")
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    token = signing_input + "." + b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
    with pytest.raises(jose.JoseError):
        jose.verify_jwt(token, [public])


@pytest.mark.parametrize("where", ["header", "claims"])
def test_client_assertion(server: LiveServer, where: str) -> None:
    token = deep_header() if where == "header" else deep_claims({"alg": "ES256", "typ": "JWT"})
    r = httpx.post(server.base_url + "/token", data={"grant_type": "client_credentials", "client_assertion_type":
                                                     ASSERTION, "client_assertion": token})
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "invalid_client"


def test_dpop_proof_at_the_token_endpoint(server: LiveServer) -> None:
    client = server.create_client(audiences=[API])
    r = httpx.post(server.base_url + "/token", data={"grant_type": "client_credentials"},
                   auth=(client["client_id"], client["client_secret"]), headers={"DPoP": deep_header()})
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_dpop_proof"


@pytest.mark.parametrize("scheme", ["Bearer", "DPoP"])
def test_userinfo_and_admin_api(server: LiveServer, scheme: str) -> None:
    for path in ("/userinfo", "/admin/api/clients"):
        headers = {"Authorization": f"{scheme} {deep_header()}"}
        if scheme == "DPoP":
            headers["DPoP"] = deep_header()
        r = httpx.get(server.base_url + path, headers=headers)
        assert r.status_code in (400, 401), (path, r.status_code, r.text)
        assert r.json()["error"] in ("invalid_token", "invalid_dpop_proof", "invalid_request"), (path, r.text)


def test_introspection_and_revocation(server: LiveServer) -> None:
    client = server.create_client(audiences=[API])
    auth = (client["client_id"], client["client_secret"])
    for token in (deep_header(), deep_claims({"alg": "ES256", "typ": "at+jwt", "kid": "x"})):
        r = httpx.post(server.base_url + "/introspect", data={"token": token}, auth=auth)
        assert r.status_code == 200 and r.json() == {"active": False}, r.text
        r = httpx.post(server.base_url + "/revoke", data={"token": token}, auth=auth)
        assert r.status_code == 200, r.text  # RFC 7009 §2.2: an invalid token is not an error


def test_logout_hint(server: LiveServer) -> None:
    for token in (deep_header(), deep_claims({"alg": "RS256", "typ": "JWT"})):
        r = httpx.get(server.base_url + "/logout", params={"id_token_hint": token})
        assert r.status_code == 400, r.text
        assert "id_token_hint" in r.text


def test_request_objects_at_par_and_authorize(server: LiveServer) -> None:
    client = keyed_client(server, new_key(), token_endpoint_auth_method="client_secret_basic")
    params = auth_params(client, pkce()[1])
    for token in (deep_header(), deep_claims({"alg": "ES256", "typ": "oauth-authz-req+jwt"})):
        assert_request_object_refused(server, client, token, params["redirect_uri"])
