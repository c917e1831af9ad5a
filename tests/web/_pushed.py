"""Helpers for pushed authorization requests (RFC 9126), request objects (RFC 9101) and FAPI 2.0 mode over HTTP:
clients with keys, client assertions, request objects, DPoP proofs, and the browser-free code flow through /par."""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

import httpx
from joserfc import jwt as jose_jwt
from joserfc.jwk import ECKey

from ..support import LiveServer
from ._codeflow import REDIRECT, Browser, auth_params, forms, pkce, query

ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ERROR_CODE = re.compile(r'id="error-code">([^<]+)<')


def new_key() -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": secrets.token_hex(4)})


def keyed_client(server: LiveServer, key: ECKey, **spec: Any) -> dict[str, Any]:
    """A confidential code-flow client that authenticates with private_key_jwt (its JWKS registered)."""
    spec.setdefault("grant_types", ["authorization_code", "refresh_token"])
    spec.setdefault("scopes", ["openid", "profile", "email", "offline_access"])
    spec.setdefault("redirect_uris", [REDIRECT])
    spec.setdefault("token_endpoint_auth_method", "private_key_jwt")
    spec.setdefault("first_party", True)
    return server.create_client(jwks={"keys": [key.as_dict(private=False)]}, **spec)


def assertion(server: LiveServer, key: ECKey, client_id: str) -> dict[str, str]:
    """private_key_jwt (RFC 7523): the form fields that authenticate the client."""
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": server.issuer, "iat": now, "exp": now + 60,
              "jti": secrets.token_urlsafe(16)}
    return {"client_assertion_type": ASSERTION,
            "client_assertion": jose_jwt.encode({"alg": "ES256", "kid": key.kid}, claims, key)}


def request_object(server: LiveServer, key: Any, client_id: str, params: dict[str, str],
                   header: dict[str, Any] | None = None, **claims: Any) -> str:
    """A signed request object (RFC 9101 §4) carrying ``params``; ``claims`` override (None removes)."""
    now = int(time.time())
    body: dict[str, Any] = {"iss": client_id, "aud": server.issuer, "exp": now + 300, "nbf": now, "iat": now,
                            "jti": secrets.token_urlsafe(12), **params}
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    hdr = {"alg": "ES256", "kid": getattr(key, "kid", None), "typ": "oauth-authz-req+jwt", **(header or {})}
    return jose_jwt.encode({k: v for k, v in hdr.items() if v is not None}, body, key)


def dpop_proof(url: str, method: str = "POST") -> str:
    """A DPoP proof (RFC 9449 §4.2) by a fresh key."""
    key = ECKey.generate_key("P-256")
    claims = {"jti": secrets.token_urlsafe(16), "htm": method, "htu": url, "iat": int(time.time())}
    return jose_jwt.encode({"alg": "ES256", "typ": "dpop+jwt", "jwk": key.as_dict(private=False)}, claims, key)


def push(server: LiveServer, form: dict[str, str], **kw: Any) -> httpx.Response:
    return httpx.post(server.base_url + "/par", data=form, **kw)


def assert_request_object_refused(server: LiveServer, client: dict[str, Any], token: str, redirect_uri: str) -> None:
    """RFC 9101 §6.3: ``invalid_request_object`` at /par (400) and at /authorize, redirected to the registered
    ``redirect_uri`` with the outer ``state`` and no code."""
    r = push(server, {"client_id": client["client_id"], "request": token},
             auth=(client["client_id"], client["client_secret"]))
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_request_object", r.text
    with Browser(server).http as http:
        r = http.get("/authorize", params={"client_id": client["client_id"], "request": token,
                                           "redirect_uri": redirect_uri, "state": "outer"})
    assert r.status_code == 302, r.text[:300]
    q = query(r.headers["location"])
    assert q["error"] == "invalid_request_object" and q["state"] == "outer" and "code" not in q, q


def pushed_uri(server: LiveServer, client: dict[str, Any], key: ECKey, params: dict[str, str]) -> str:
    r = push(server, {**params, "client_id": client["client_id"], **assertion(server, key, client["client_id"])})
    assert r.status_code == 201, r.text
    return str(r.json()["request_uri"])


def finish(b: Browser, r: httpx.Response, user: dict[str, Any]) -> dict[str, str]:
    """Sign in and consent from the page ``r``; the redirect's query."""
    if r.status_code == 200 and "login-form" in forms(r.text):
        r = b.login(r, user["username"], user["password"])
    if r.status_code == 200 and "consent-form" in forms(r.text):
        r = b.submit(r, "consent-form", decision="allow")
    assert r.status_code in (302, 303), r.text[:2000]
    return query(r.headers["location"])


def pushed_code(server: LiveServer, b: Browser, client: dict[str, Any], key: ECKey,
                user: dict[str, Any], **extra: str) -> tuple[str, str, str]:
    """Push, open /authorize with the request_uri, sign in, consent: (code, verifier, request_uri)."""
    verifier, challenge = pkce()
    params = auth_params(client, challenge, **extra)
    uri = pushed_uri(server, client, key, params)
    q = finish(b, b.authorize(client_id=client["client_id"], request_uri=uri), user)
    assert "code" in q, q
    assert q["state"] == params["state"] and q["iss"] == server.issuer
    return q["code"], verifier, uri


def redeem(server: LiveServer, client: dict[str, Any], key: ECKey, code: str, verifier: str,
           headers: dict[str, str] | None = None) -> httpx.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier,
            **assertion(server, key, client["client_id"])}
    return httpx.post(server.base_url + "/token", data=data, headers=headers or {})


def error_code(page: httpx.Response) -> str | None:
    m = ERROR_CODE.search(page.text)
    return m.group(1) if m else None
