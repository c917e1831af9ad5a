"""RFC 6749 §4.4 Client Credentials: a service acting as itself. No refresh token (§4.4.3)."""

from __future__ import annotations

from ..audit import AuditEvent
from ..clients import GRANT_CLIENT_CREDENTIALS
from ..context import EngineContext
from ..errors import InvalidRequest, UnauthorizedClient
from ..issuance import TokenResponse
from ..targets import limit_scopes, registered_resources, resolve_audience, resolve_scopes
from . import GrantRequest

__all__ = ["ClientCredentialsGrant"]


class ClientCredentialsGrant:
    grant_type = GRANT_CLIENT_CREDENTIALS
    requires_client = True
    parameters: frozenset[str] = frozenset()  # RFC 6749 §4.4.2: scope (and resource) only

    async def handle(self, req: GrantRequest, ctx: EngineContext) -> TokenResponse:
        assert req.client is not None
        client = req.client.client
        if client.is_public:
            raise UnauthorizedClient("public clients cannot use client_credentials; use the device or "
                                     "authorization code flow")
        if req.request.multi("audience") or "audience" in req.params:
            # RFC 8693's parameter, not this grant's: refused rather than ignored, so a client asking for an
            # audience never silently gets a token for another one
            raise InvalidRequest("client_credentials names the API with resource (RFC 8707), not audience")
        resources = req.request.multi("resource")
        registered = await registered_resources(ctx.store, resources)
        scopes = resolve_scopes(client, req.params.get("scope"))
        audience = resolve_audience(client, resources, registered)
        scopes = limit_scopes(scopes, audience, registered, requested="scope" in req.params)
        at = ctx.issuer.access_token(subject=client.client_id, client_id=client.client_id, audience=audience,
                                     scopes=sorted(scopes))
        ctx.audit.emit(AuditEvent(type="token.issued", outcome="success", at=ctx.clock.now(),
                                  client_id=client.client_id, subject=client.client_id,
                                  grant_type=self.grant_type, jti=at.jti, ip=req.request.client_ip,
                                  detail={"aud": list(audience), "scope": at.scope, "exp": at.expires_at}))
        return TokenResponse(access_token=at.token, expires_in=at.expires_in, scope=at.scope or None,
                             grant_type=self.grant_type)
