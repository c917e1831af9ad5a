"""RFC 6749 §4.4 Client Credentials: a service acting as itself. No refresh token (§4.4.3)."""

from __future__ import annotations

from urllib.parse import urlsplit

from ..context import EngineContext
from ..errors import InvalidRequest, InvalidScope, InvalidTarget, UnauthorizedClient
from ..issuance import TokenResponse
from ..models import GRANT_CLIENT_CREDENTIALS, AuditEvent, Client
from ..requests import scope_set
from . import GrantRequest

__all__ = ["ClientCredentialsGrant", "resolve_audience", "resolve_scopes"]


def resolve_scopes(client: Client, requested: str | None) -> frozenset[str]:
    """RFC 6749 §3.3: the requested scopes must all be allowed; none requested → the client's allowed set."""
    scopes = scope_set(requested)
    if not scopes:
        return client.scopes
    extra = scopes - client.scopes
    if extra:
        raise InvalidScope("scope not allowed for this client: " + " ".join(sorted(extra))[:200])
    return scopes


def resolve_audience(client: Client, resources: list[str]) -> tuple[str, ...]:
    """RFC 8707 §2: ``resource`` (absolute URI, no fragment) names the audience; else the client's default."""
    if not resources:
        if client.default_audience is None:
            raise InvalidTarget("this client has no audience; register one (ostiary client update --audience)")
        return (client.default_audience,)
    for res in resources:
        parts = urlsplit(res)
        if not parts.scheme or parts.fragment:
            raise InvalidTarget("resource must be an absolute URI without a fragment")
        if res not in client.audiences:
            raise InvalidTarget("resource not allowed for this client")
    return tuple(dict.fromkeys(resources))


class ClientCredentialsGrant:
    grant_type = GRANT_CLIENT_CREDENTIALS
    requires_client = True

    async def handle(self, req: GrantRequest, ctx: EngineContext) -> TokenResponse:
        assert req.client is not None
        client = req.client.client
        if client.is_public:
            raise UnauthorizedClient("public clients cannot use client_credentials; use the device or "
                                     "authorization code flow")
        if "refresh_token" in req.params or "code" in req.params:
            raise InvalidRequest("unexpected parameter for client_credentials")
        if req.request.multi("audience") or "audience" in req.params:
            # RFC 8693's parameter, not this grant's: refused rather than ignored, so a client asking for an
            # audience never silently gets a token for another one
            raise InvalidRequest("client_credentials names the API with resource (RFC 8707), not audience")
        scopes = resolve_scopes(client, req.params.get("scope"))
        audience = resolve_audience(client, req.request.multi("resource"))
        at = ctx.issuer.access_token(subject=client.client_id, client_id=client.client_id, audience=audience,
                                     scopes=sorted(scopes))
        ctx.audit.emit(AuditEvent(type="token.issued", outcome="success", at=ctx.clock.now(),
                                  client_id=client.client_id, subject=client.client_id,
                                  grant_type=self.grant_type, jti=at.jti, ip=req.request.client_ip,
                                  detail={"aud": list(audience), "scope": at.scope, "exp": at.expires_at}))
        return TokenResponse(access_token=at.token, expires_in=at.expires_in, scope=at.scope or None,
                             grant_type=self.grant_type)
