"""A stand-in authorization server on 127.0.0.1 for the resource and client toolkit tests.

It serves discovery, a JWKS the test controls, a client-credentials token endpoint (client_secret_basic
and private_key_jwt) and RFC 7662 introspection, and counts every request. It runs a real uvicorn
server in a background thread so the code under test speaks real HTTP.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ostiary._clock import Clock, FixedClock
from ostiary._secrets import new_token
from ostiary.core.jose import (
    JoseError,
    PrivateKey,
    generate_private_key,
    jwk_thumbprint,
    parse_jwks,
    public_jwk,
    sign_jwt,
    verify_jwt,
)

AUDIENCE = "https://api.example.test"
T0 = 1_800_000_000.0


@dataclass
class SigningKey:
    kid: str
    alg: str
    key: PrivateKey

    @property
    def jwk(self) -> dict[str, Any]:
        return public_jwk(self.key, self.kid, self.alg)


def new_key(alg: str = "ES256", kid: str | None = None) -> SigningKey:
    return SigningKey(kid or f"{alg.lower()}-{new_token(16)[:8]}", alg, generate_private_key(alg))  # type: ignore[arg-type]


@dataclass
class IssuerState:
    keys: list[SigningKey] = field(default_factory=list)  # signing keys (first signs by default)
    published: list[dict[str, Any]] | None = None  # JWKS override; None → public keys of ``keys``
    clock: Clock = field(default_factory=lambda: FixedClock(T0))
    counts: Counter[str] = field(default_factory=Counter)
    jwks_delay: float = 0.0
    token_delay: float = 0.0
    discovery_issuer: str | None = None  # a different "issuer" in the metadata document
    oidc_discovery: bool = True  # False → only RFC 8414 metadata
    secrets: dict[str, str] = field(default_factory=dict)  # client_id → secret
    client_jwks: dict[str, dict[str, Any]] = field(default_factory=dict)  # client_id → JWKS
    token_script: list[int] = field(default_factory=list)  # statuses to answer before succeeding
    token_lifetime: int = 300
    token_requests: list[dict[str, str]] = field(default_factory=list)
    assertions: list[dict[str, Any]] = field(default_factory=list)
    opaque: dict[str, dict[str, Any]] = field(default_factory=dict)  # introspection answers
    ignore_resource: bool = False  # True → like a server that ignores RFC 8707 resource (mints the default aud)
    dpop: bool = False  # advertise DPoP; a token request with a proof gets a DPoP-bound token (RFC 9449)
    dpop_nonce: str | None = None  # the token endpoint demands this nonce in proofs (RFC 9449 §8)
    dpop_proofs: list[dict[str, Any]] = field(default_factory=list)  # claims of the proofs received
    refresh_tokens: dict[str, dict[str, Any]] = field(default_factory=dict)  # refresh token → client_id, jkt, sub


class StandInIssuer:
    def __init__(self) -> None:
        self.state = IssuerState()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        app = Starlette(routes=[
            Route("/.well-known/openid-configuration", self._oidc),
            Route("/.well-known/oauth-authorization-server", self._rfc8414),
            Route("/jwks", self._jwks),
            Route("/token", self._token, methods=["POST"]),
            Route("/introspect", self._introspect, methods=["POST"]),
        ])
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> StandInIssuer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("stand-in issuer did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(5)
        self._sock.close()

    def reset(self) -> IssuerState:
        self.state = IssuerState(keys=[new_key("ES256", "key-es"), new_key("RS256", "key-rs"),
                                       new_key("EdDSA", "key-ed")])
        return self.state

    # -- helpers for tests ---------------------------------------------------------------------

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(self.state.clock.now())
        claims: dict[str, Any] = {"iss": self.url, "sub": "user-1", "aud": AUDIENCE, "client_id": "web-app",
                                  "scope": "orders:read profile", "iat": now, "nbf": now, "exp": now + 300,
                                  "jti": new_token(16), "auth_time": now}
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def mint(self, key: SigningKey | None = None, *, typ: str = "at+jwt", headers: dict[str, Any] | None = None,
             claims: dict[str, Any] | None = None, **overrides: Any) -> str:
        """An access token signed by ``key`` (default: the first key) with default claims plus overrides."""
        key = key or self.state.keys[0]
        return sign_jwt(claims if claims is not None else self.claims(**overrides), key.key, alg=key.alg,
                        kid=key.kid, typ=typ, extra_headers=headers)

    def service_claims(self, client_id: str = "billing", **overrides: Any) -> dict[str, Any]:
        return self.claims(sub=client_id, client_id=client_id, auth_time=None, **overrides)

    # -- endpoints -----------------------------------------------------------------------------

    def _metadata(self) -> dict[str, Any]:
        doc = {"issuer": self.state.discovery_issuer or self.url, "jwks_uri": f"{self.url}/jwks",
               "token_endpoint": f"{self.url}/token", "introspection_endpoint": f"{self.url}/introspect"}
        if self.state.dpop:
            doc["dpop_signing_alg_values_supported"] = ["ES256", "EdDSA"]
        return doc

    async def _oidc(self, request: Request) -> Response:
        self.state.counts["oidc"] += 1
        if not self.state.oidc_discovery:
            return Response(status_code=404)
        return JSONResponse(self._metadata())

    async def _rfc8414(self, request: Request) -> Response:
        self.state.counts["rfc8414"] += 1
        return JSONResponse(self._metadata())

    async def _jwks(self, request: Request) -> Response:
        self.state.counts["jwks"] += 1
        if self.state.jwks_delay:
            await asyncio.sleep(self.state.jwks_delay)
        keys = self.state.published if self.state.published is not None else [k.jwk for k in self.state.keys]
        return JSONResponse({"keys": keys})

    @staticmethod
    async def _form(request: Request) -> dict[str, str]:
        return dict(parse_qsl((await request.body()).decode()))

    @staticmethod
    def _basic(request: Request) -> tuple[str, str] | None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        cid, _, secret = base64.b64decode(value).decode().partition(":")
        return unquote_plus(cid), unquote_plus(secret)

    @staticmethod
    def _error(status: int, error: str, description: str) -> Response:
        return JSONResponse({"error": error, "error_description": description}, status_code=status)

    def _authenticate(self, request: Request, form: dict[str, str]) -> str | None:
        basic = self._basic(request)
        if basic is not None:
            cid, secret = basic
            return cid if self.state.secrets.get(cid) == secret else None
        if form.get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
            return None
        assertion = form.get("client_assertion", "")
        for cid, jwks in self.state.client_jwks.items():
            try:
                verified = verify_jwt(assertion, parse_jwks(jwks), issuer=cid, audience=self.url,
                                      now=self.state.clock.now(), require=("exp", "iat", "jti", "sub"))
            except JoseError:
                continue
            claims = dict(verified.claims)
            if claims["sub"] != cid or claims["exp"] - claims["iat"] > 300:
                return None
            self.state.assertions.append(claims)
            return cid
        return None

    async def _token(self, request: Request) -> Response:
        self.state.counts["token"] += 1
        if self.state.token_delay:
            await asyncio.sleep(self.state.token_delay)
        form = await self._form(request)
        self.state.token_requests.append(form)
        if self.state.token_script:
            status = self.state.token_script.pop(0)
            return self._error(status, "server_error" if status >= 500 else "invalid_client", "scripted")
        proofs = request.headers.getlist("dpop")
        jkt: str | None = None
        if proofs:
            if len(proofs) != 1:
                return self._error(400, "invalid_dpop_proof", "one DPoP header")
            checked = self._check_proof(proofs[0])
            if isinstance(checked, Response):
                return checked
            jkt = checked
        if form.get("grant_type") == "refresh_token":
            return self._refresh(form, jkt)
        client_id = self._authenticate(request, form)
        if client_id is None:
            return self._error(401, "invalid_client", "client authentication failed")
        if form.get("grant_type") != "client_credentials":
            return self._error(400, "unsupported_grant_type", "only client_credentials here")
        token = self.mint(claims=self.service_claims(client_id, scope=form.get("scope"),
                                                aud=(None if self.state.ignore_resource else form.get("resource"))
                                                or AUDIENCE, cnf={"jkt": jkt} if jkt else None,
                                                exp=int(self.state.clock.now()) + self.state.token_lifetime))
        return JSONResponse({"access_token": token, "token_type": "DPoP" if jkt else "Bearer",
                             "expires_in": self.state.token_lifetime, "scope": form.get("scope", "")},
                            headers={"Cache-Control": "no-store"})

    def _check_proof(self, proof: str) -> str | Response:
        """A token-endpoint proof (RFC 9449 §4.3), checked enough for a stand-in: signature by its jwk, typ,
        htm, htu, the nonce when one is demanded. Returns the key's thumbprint."""
        import jwt as pyjwt

        try:
            header = pyjwt.get_unverified_header(proof)
            key = pyjwt.PyJWK(header["jwk"]).key
            claims = pyjwt.decode(proof, key, algorithms=["ES256", "EdDSA"])
        except (pyjwt.PyJWTError, KeyError, TypeError, ValueError):
            return self._error(400, "invalid_dpop_proof", "bad proof")
        if header.get("typ") != "dpop+jwt" or claims.get("htm") != "POST" or claims.get("htu") != f"{self.url}/token":
            return self._error(400, "invalid_dpop_proof", "wrong typ, htm or htu")
        self.state.dpop_proofs.append(claims)
        if self.state.dpop_nonce is not None and claims.get("nonce") != self.state.dpop_nonce:
            return JSONResponse({"error": "use_dpop_nonce", "error_description": "nonce"}, status_code=400,
                                headers={"DPoP-Nonce": self.state.dpop_nonce, "Cache-Control": "no-store"})
        return jwk_thumbprint(header["jwk"])

    def _refresh(self, form: dict[str, str], jkt: str | None) -> Response:
        """Refresh tokens of a public client (no client authentication), bound to the DPoP key of the request
        that got them (RFC 9449 §5); rotated on use."""
        grant = self.state.refresh_tokens.pop(form.get("refresh_token", ""), None)
        if grant is None or grant["client_id"] != form.get("client_id"):
            return self._error(400, "invalid_grant", "unknown refresh token")
        if grant["jkt"] is not None and grant["jkt"] != jkt:
            return self._error(400, "invalid_grant", "refresh token bound to another DPoP key")
        bound = grant["jkt"] or jkt
        now = int(self.state.clock.now())
        token = self.mint(claims=self.claims(sub=grant["sub"], client_id=grant["client_id"], iat=now, nbf=now,
                                             exp=now + self.state.token_lifetime, auth_time=now,
                                             cnf={"jkt": bound} if bound else None))
        refresh = new_token()
        self.state.refresh_tokens[refresh] = {**grant, "jkt": bound}
        return JSONResponse({"access_token": token, "token_type": "DPoP" if bound else "Bearer",
                             "refresh_token": refresh, "expires_in": self.state.token_lifetime},
                            headers={"Cache-Control": "no-store"})

    async def _introspect(self, request: Request) -> Response:
        self.state.counts["introspect"] += 1
        basic = self._basic(request)
        if basic is None or self.state.secrets.get(basic[0]) != basic[1]:
            return self._error(401, "invalid_client", "client authentication failed")
        form = await self._form(request)
        answer = self.state.opaque.get(str(form.get("token")), {"active": False})
        return JSONResponse(answer)
