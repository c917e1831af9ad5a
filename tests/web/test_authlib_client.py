"""Authlib's OAuth 2 client as the relying party against a live server: discovery, PKCE S256, the code
exchange, userinfo and a refresh, with the sign-in pages driven over HTTP."""

from __future__ import annotations

import warnings

import httpx
import pytest
from authlib.common.security import generate_token
from joserfc import jwt
from joserfc.jwk import KeySet

from ..support import LiveServer
from ._codeflow import REDIRECT, Browser, forms, new_user, web_client


@pytest.mark.filterwarnings("ignore:The httpx module is deprecated")
def test_authlib_relying_party(server: LiveServer) -> None:
    with warnings.catch_warnings():  # Authlib announces a rename of its httpx integration
        warnings.simplefilter("ignore")
        from authlib.integrations.httpx_client import OAuth2Client
    meta = httpx.get(server.base_url + "/.well-known/openid-configuration").json()
    client_reg = web_client(server, name="Authlib RP")
    user = new_user(server)
    rp = OAuth2Client(client_id=client_reg["client_id"], redirect_uri=REDIRECT,
                      scope="openid profile email offline_access", code_challenge_method="S256",
                      token_endpoint_auth_method="none")
    code_verifier = generate_token(48)
    url, state = rp.create_authorization_url(meta["authorization_endpoint"], code_verifier=code_verifier,
                                             nonce="authlib-nonce")
    b = Browser(server)
    try:
        r = b.http.get(url)
        r = b.login(r, user["username"], user["password"])
        assert "consent-form" in forms(r.text)
        r = b.submit(r, "consent-form", decision="allow")
        callback = r.headers["location"]
    finally:
        b.close()
    token = rp.fetch_token(meta["token_endpoint"], authorization_response=callback, code_verifier=code_verifier,
                           state=state)
    assert token["token_type"] == "Bearer" and "refresh_token" in token
    jwks = KeySet.import_key_set(httpx.get(meta["jwks_uri"]).json())
    claims = jwt.decode(token["id_token"], jwks, algorithms=["ES256", "RS256", "EdDSA"]).claims
    jwt.JWTClaimsRegistry(iss={"essential": True, "value": server.issuer},
                          aud={"essential": True, "value": client_reg["client_id"]},
                          nonce={"essential": True, "value": "authlib-nonce"}).validate(claims)
    assert claims["sub"] == user["id"]
    info = rp.get(meta["userinfo_endpoint"]).json()
    assert info["sub"] == user["id"] and info["email"] == user["email"]
    new = rp.refresh_token(meta["token_endpoint"], refresh_token=token["refresh_token"])
    assert new["refresh_token"] != token["refresh_token"]
    assert rp.get(meta["userinfo_endpoint"]).status_code == 200
    rp.close()
