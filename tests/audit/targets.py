"""Deliberately insecure (and secure) targets for the audits, served on loopback ports from a thread.

Each target is a small Starlette app whose every mistake is a switch, so that a test names the one mistake it
expects the audit to find.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ostiary.core import jose

from ..support import free_port


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve an ASGI app on 127.0.0.1 from a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise AssertionError("target did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@dataclass
class IssuerConfig:
    """A toy authorization server. Defaults are secure; each field turns one mistake on."""

    response_types: list[str] = field(default_factory=lambda: ["code"])
    grant_types: list[str] = field(default_factory=lambda: ["authorization_code", "client_credentials",
                                                            "refresh_token"])
    pkce_methods: list[str] | None = field(default_factory=lambda: ["S256"])
    auth_methods: list[str] = field(default_factory=lambda: ["client_secret_basic", "none"])
    iss_parameter: bool = True
    revocation: bool = True
    dpop: bool = True
    public_host: str | None = None  # advertise endpoints on this http:// host instead of the real ones
    id_token_algs: list[str] = field(default_factory=lambda: ["ES256"])
    rsa_bits: int | None = None  # publish an RSA key of this size as well
    publish_private: bool = False
    cors_authorize: bool = False
    lifetime: int = 900
    typ: str = "at+jwt"
    aud: Any = "https://api.example.com"
    no_store: bool = True
    userinfo_accepts_service_tokens: bool = False
    query_tokens: bool = False
    rotate: bool = True
    refuse_reuse: bool = True
    revoke_family: bool = True
    raw_metadata: dict[str, Any] | None = None  # served instead of the metadata ("{base}" replaced)
    raw_jwks: Any = None  # served instead of the JWKS
    raw_token: bytes | None = None  # served instead of every token response (200, application/json)


class ToyIssuer:
    client_id = "svc"
    client_secret = "svc-secret-" + secrets.token_hex(8)

    def __init__(self, config: IssuerConfig) -> None:
        self.c = config
        self.key = jose.generate_private_key("ES256")
        self.kid = "k1"
        self.base = ""
        self.refresh: dict[str, dict[str, Any]] = {}  # token -> {"family": str, "used": bool}
        self.revoked_families: set[str] = set()
        self.app = Starlette(routes=[
            Route("/.well-known/openid-configuration", self.metadata),
            Route("/jwks", self.jwks),
            Route("/authorize", self.authorize, methods=["GET", "OPTIONS"]),
            Route("/token", self.token, methods=["POST"]),
            Route("/userinfo", self.userinfo),
        ])

    def new_refresh_token(self, family: str | None = None) -> str:
        token = "rt-" + secrets.token_urlsafe(16)
        self.refresh[token] = {"family": family or secrets.token_hex(4), "used": False}
        return token

    async def metadata(self, request: Request) -> Response:
        c = self.c
        if c.raw_metadata is not None:
            return Response(json.dumps(c.raw_metadata).replace("{base}", self.base), media_type="application/json")
        base = c.public_host or self.base
        doc: dict[str, Any] = {
            "issuer": self.base, "authorization_endpoint": base + "/authorize", "token_endpoint": base + "/token",
            "jwks_uri": self.base + "/jwks", "userinfo_endpoint": self.base + "/userinfo",
            "response_types_supported": c.response_types, "grant_types_supported": c.grant_types,
            "token_endpoint_auth_methods_supported": c.auth_methods,
            "id_token_signing_alg_values_supported": c.id_token_algs,
        }
        if c.pkce_methods is not None:
            doc["code_challenge_methods_supported"] = c.pkce_methods
        if c.iss_parameter:
            doc["authorization_response_iss_parameter_supported"] = True
        if c.revocation:
            doc["revocation_endpoint"] = base + "/revoke"
        if c.dpop:
            doc["dpop_signing_alg_values_supported"] = ["ES256"]
        return JSONResponse(doc)

    async def jwks(self, request: Request) -> Response:
        if self.c.raw_jwks is not None:
            return JSONResponse(self.c.raw_jwks)
        keys = [jose.public_jwk(self.key, self.kid)]
        if self.c.rsa_bits:
            from cryptography.hazmat.primitives.asymmetric import rsa

            keys.append(jose.public_jwk(rsa.generate_private_key(public_exponent=65537, key_size=self.c.rsa_bits),
                                        "rsa"))
        if self.c.publish_private:
            keys[0] = {**keys[0], "d": "c2VjcmV0LXByaXZhdGUtc2NhbGFy"}
        return JSONResponse({"keys": keys})

    async def authorize(self, request: Request) -> Response:
        headers = {"Access-Control-Allow-Origin": "*"} if self.c.cors_authorize else {}
        return Response("sign in", headers=headers)

    def access_token(self, sub: str) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {"iss": self.base, "sub": sub, "client_id": self.client_id, "iat": now,
                                  "exp": now + self.c.lifetime, "jti": secrets.token_hex(8)}
        if self.c.aud is not None:
            claims["aud"] = self.c.aud
        token = jose.sign_jwt(claims, self.key, alg="ES256", kid=self.kid, typ=self.c.typ)
        return {"access_token": token, "token_type": "Bearer", "expires_in": self.c.lifetime}

    async def token(self, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        if self.c.raw_token is not None:
            return Response(self.c.raw_token, media_type="application/json")
        headers = {"Cache-Control": "no-store"} if self.c.no_store else {}
        grant = form.get("grant_type")
        if grant == "client_credentials":
            import base64

            basic = request.headers.get("authorization", "")
            expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
            if basic != f"Basic {expected}":
                return JSONResponse({"error": "invalid_client"}, 401)
            return JSONResponse(self.access_token(self.client_id), headers=headers)
        if grant == "refresh_token":
            token = str(form.get("refresh_token"))
            entry = self.refresh.get(token)
            if entry is None or entry["family"] in self.revoked_families:
                return JSONResponse({"error": "invalid_grant"}, 400)
            if entry["used"] and self.c.refuse_reuse:
                if self.c.revoke_family:
                    self.revoked_families.add(entry["family"])
                return JSONResponse({"error": "invalid_grant"}, 400)
            body = self.access_token("user-1")
            if self.c.rotate:
                entry["used"] = True
                body["refresh_token"] = self.new_refresh_token(entry["family"])
            else:
                body["refresh_token"] = token
            return JSONResponse(body, headers=headers)
        return JSONResponse({"error": "unsupported_grant_type"}, 400)

    async def userinfo(self, request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else None
        if token is None and self.c.query_tokens:
            token = request.query_params.get("access_token")
        if token is None:
            return Response(status_code=401, headers={"WWW-Authenticate": 'Bearer realm="toy"'})
        try:
            claims = jose.verify_jwt(token, jose.parse_jwks({"keys": [jose.public_jwk(self.key, self.kid)]}),
                                     issuer=self.base).claims
        except jose.JoseError:
            return Response(status_code=401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        if claims["sub"] == self.client_id and not self.c.userinfo_accepts_service_tokens:
            return Response(status_code=401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return JSONResponse({"sub": claims["sub"]})


@contextmanager
def toy_issuer(**config: Any) -> Iterator[ToyIssuer]:
    issuer = ToyIssuer(IssuerConfig(**config))
    with serve(issuer.app) as base:
        issuer.base = base
        yield issuer


# -- APIs (resource servers) ------------------------------------------------------------------------------------

def secure_api(issuer: str, audience: str, scope: str = "api:read", *, user_only: bool = False) -> Starlette:
    """An API built with ostiary.resource, as the README shows; ``user_only`` routes refuse service tokens."""
    from starlette.middleware import Middleware

    from ostiary.resource import TokenVerifier
    from ostiary.resource.starlette import BearerAuthMiddleware

    async def orders(request: Request) -> Response:
        token = request.state.access_token
        if user_only and token.is_service:
            return Response(status_code=403, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        if scope not in token.scopes:
            return Response(status_code=403, headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", '
                                                                          f'scope="{scope}"'})
        return JSONResponse({"orders": [], "sub": token.subject})

    verifier = TokenVerifier(issuer, audience)
    return Starlette(routes=[Route("/orders", orders, methods=["GET", "POST"])],
                     middleware=[Middleware(BearerAuthMiddleware, verifier=verifier)])


def insecure_api(issuer: str, audience: str, mistake: str) -> Starlette:
    """A hand-written API with one mistake: ``no-signature`` (decodes without verifying), ``no-aud``,
    ``any-issuer`` (keys from whatever issuer the token names), ``jku`` (keys from the token's jku header),
    ``query`` (reads ?access_token= too), ``always-401``, ``open`` (needs no token at all); ``proper`` verifies
    everything but, on a user route, takes service tokens too."""
    import httpx

    async def keys_of(iss: str, jku: str | None = None) -> list[jose.PublicJwk]:
        async with httpx.AsyncClient(timeout=10) as c:
            url = jku or (await c.get(iss + "/.well-known/openid-configuration")).json()["jwks_uri"]
            return jose.parse_jwks((await c.get(url)).json())

    def refuse() -> Response:
        return Response(status_code=401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})

    served = [0]

    async def orders(request: Request) -> Response:
        served[0] += 1
        if mistake == "quota" and served[0] > 2:  # rate-limited after the first two requests
            return Response(status_code=429)
        if mistake == "open":
            return JSONResponse({"orders": []})
        if mistake == "always-401":
            return refuse()
        auth = request.headers.get("authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else None
        if token is None and mistake == "query":
            token = request.query_params.get("access_token")
        if not token:
            return Response(status_code=401, headers={"WWW-Authenticate": "Bearer"})
        try:
            header, claims = jose.decode_unverified(token)
            if mistake == "no-signature":
                now = time.time()
                if claims.get("iss") != issuer or audience not in ([claims.get("aud")] if isinstance(
                        claims.get("aud"), str) else claims.get("aud") or []) or claims.get("exp", 0) < now \
                        or claims.get("nbf", 0) > now + 30:
                    return refuse()
            elif mistake == "any-issuer":
                jose.verify_jwt(token, await keys_of(str(claims["iss"])), issuer=str(claims["iss"]),
                                audience=audience, typ="at+jwt")
            elif mistake == "jku":
                jose.verify_jwt(token, await keys_of(issuer, header.get("jku")), issuer=issuer, audience=audience,
                                typ="at+jwt")
            else:
                jose.verify_jwt(token, await keys_of(issuer), issuer=issuer, typ="at+jwt",
                                audience=None if mistake == "no-aud" else audience)
        except (jose.JoseError, KeyError, ValueError, httpx.HTTPError):
            return refuse()
        return JSONResponse({"orders": []})

    return Starlette(routes=[Route("/orders", orders, methods=["GET", "POST"])])
