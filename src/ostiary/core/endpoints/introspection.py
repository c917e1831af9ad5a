"""POST /introspect (RFC 7662) and POST /revoke (RFC 7009) for JWT access tokens."""

from __future__ import annotations

from typing import Any

from ..audit import AuditEvent
from ..client_auth import AuthenticatedClient, authenticate_client
from ..context import EngineContext
from ..errors import InvalidClient, InvalidRequest, UnsupportedTokenType
from ..fapi import fapi2_client_refusal
from ..issuance import verify_own_access_token
from ..jose import JoseError
from ..requests import EndpointRequest, form_value
from .refresh_introspection import REFRESH_TOKEN_PREFIX, introspect_refresh_token, revoke_refresh_token

__all__ = ["IntrospectionEndpoint", "RevocationEndpoint"]

INACTIVE: dict[str, Any] = {"active": False}
KNOWN_HINTS = frozenset({"access_token", "refresh_token"})


async def _require_client(request: EndpointRequest, ctx: EngineContext, *, allow_public: bool = False
                          ) -> tuple[AuthenticatedClient, dict[str, str]]:
    params = request.single()
    try:
        client = await authenticate_client(params, request.authorization, ctx.client_auth(request.endpoint),
                                           request.client_cert)
    except InvalidClient as exc:
        ctx.audit.emit(AuditEvent(type="client.auth_failed", outcome="failure", at=ctx.clock.now(),
                                  ip=request.client_ip, detail={"reason": exc.debug[:200],
                                                                "endpoint": request.endpoint}))
        raise
    if client is None:
        raise InvalidClient("client authentication required")
    if client.method == "none" and not allow_public:
        raise InvalidClient("public clients cannot use this endpoint")
    if ctx.policy.fapi2:  # FAPI 2.0 Security Profile §5.3.2.1, at every endpoint that authenticates clients
        refusal = fapi2_client_refusal(client.client, client.method)
        if refusal is not None:
            raise InvalidClient(refusal)
    return client, params


def _verify_own(token: str, ctx: EngineContext) -> dict[str, Any] | None:
    try:
        return verify_own_access_token(token, ctx.keyring(), ctx.policy, ctx.clock.now())
    except JoseError:
        return None


class IntrospectionEndpoint:
    """A client learns about the tokens issued to it, and a resource server about tokens for its audience."""

    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx

    async def handle(self, request: EndpointRequest) -> dict[str, Any]:
        client, params = await _require_client(request, self.ctx)
        token = form_value(params, "token")
        if token.startswith(REFRESH_TOKEN_PREFIX):
            return await introspect_refresh_token(token, client.client, self.ctx)
        claims = _verify_own(token, self.ctx)
        if claims is None:
            return INACTIVE
        aud = claims.get("aud")
        auds = [aud] if isinstance(aud, str) else list(aud or [])
        c = client.client
        if claims.get("client_id") != c.client_id and not set(auds) & set(c.resource_audiences):
            return INACTIVE
        if await self.ctx.store.is_access_token_revoked(str(claims["jti"])):
            return INACTIVE
        cnf = claims.get("cnf")
        # RFC 9449 §6.2: a DPoP-bound token is introspected as token_type DPoP, with its cnf.jkt
        out = {"active": True, "token_type": "DPoP" if isinstance(cnf, dict) and "jkt" in cnf else "Bearer"}
        # cnf: RFC 8705 §3.2, the resource server learns the certificate the token is bound to
        for name in ("scope", "client_id", "sub", "aud", "iss", "exp", "iat", "nbf", "jti", "act", "cnf"):
            if name in claims:
                out[name] = claims[name]
        return out


class RevocationEndpoint:
    """RFC 7009 §2: revoke a token issued to the calling client, access or refresh. Unknown tokens and other
    clients' tokens answer 200 all the same and are left alone (§2.2).

    RFC 7009 §2.1 and §5: a confidential client authenticates; a public client (an SPA or a CLI logging out)
    identifies itself with ``client_id`` and may revoke any token issued to it. Holding the token is what
    lets anyone revoke it, so the client_id only decides whose tokens are in reach."""

    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx

    async def handle(self, request: EndpointRequest) -> None:
        client, params = await _require_client(request, self.ctx, allow_public=True)
        token = form_value(params, "token")
        hint = params.get("token_type_hint")
        if hint is not None and hint not in KNOWN_HINTS:
            raise UnsupportedTokenType("token_type_hint must be access_token or refresh_token")
        if len(token) > 16_384:
            raise InvalidRequest("token is too long")
        if token.startswith(REFRESH_TOKEN_PREFIX):
            await revoke_refresh_token(token, client.client, self.ctx, request.client_ip)
            return
        claims = _verify_own(token, self.ctx)
        if claims is None or claims.get("client_id") != client.client.client_id:
            return  # RFC 7009 §2.2: invalid tokens do not cause an error; others' tokens are left alone
        await self.ctx.store.revoke_access_token(str(claims["jti"]), client.client.client_id, float(claims["exp"]))
        self.ctx.audit.emit(AuditEvent(type="token.revoked", outcome="success", at=self.ctx.clock.now(),
                                       client_id=client.client.client_id, jti=str(claims["jti"]),
                                       ip=request.client_ip))
