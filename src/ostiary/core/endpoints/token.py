"""POST /token (RFC 6749 §3.2): authenticate the client, pick the grant, delegate."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from ..audit import AuditEvent
from ..client_auth import AuthenticatedClient, ClientAuthContext, authenticate_client
from ..clients import TOUCH_INTERVAL, Client
from ..context import EngineContext
from ..dpop import CNF_JKT, DPoPProof, InvalidDpopProof, UseDpopNonce
from ..errors import (
    AuthorizationPending,
    InvalidClient,
    InvalidRequest,
    OAuthError,
    SlowDown,
    UnauthorizedClient,
    UnsupportedGrantType,
)
from ..fapi import fapi2_client_refusal
from ..grants import COMMON_PARAMETERS, GrantRequest, TokenGrant, unexpected_parameter
from ..issuance import TokenResponse
from ..mtls import certificate_confirmation
from ..requests import EndpointRequest

__all__ = ["REFUSED_GRANTS", "TokenEndpoint"]

#: Grants OAuth 2.1 removes, with the flow to use instead. There is no setting that enables them.
REFUSED_GRANTS: Mapping[str, str] = {
    "password": "the resource owner password grant is not supported (OAuth 2.1 removes it): use the "
                "authorization code flow with PKCE for apps with a user, or the device authorization grant "
                "(urn:ietf:params:oauth:grant-type:device_code) for CLIs and devices",
    "implicit": "the implicit flow is not supported (OAuth 2.1 removes it): use the authorization code flow "
                "with PKCE",
}


class TokenEndpoint:
    def __init__(self, ctx: EngineContext, grants: Mapping[str, TokenGrant]) -> None:
        self.ctx = ctx
        self.grants = dict(grants)
        #: per grant type, the parameters only other grants declare (``unexpected_parameter``'s set, computed once)
        self._foreign = {name: frozenset().union(*(g.parameters for g in self.grants.values())) - g.parameters
                         - COMMON_PARAMETERS for name, g in self.grants.items()}
        self._client_auth: dict[str, ClientAuthContext] = {}  # per endpoint URL: what never changes

    def _auth_context(self, endpoint: str) -> ClientAuthContext:
        auth = self._client_auth.get(endpoint)
        if auth is None:
            auth = self.ctx.client_auth(endpoint)
            if len(self._client_auth) < 16:
                self._client_auth[endpoint] = auth
        return auth

    async def handle(self, request: EndpointRequest) -> TokenResponse:
        params = request.single()
        grant_type = params.get("grant_type")
        if not grant_type:
            raise InvalidRequest("missing parameter 'grant_type'")
        ctx = self.ctx
        try:
            client = await authenticate_client(params, request.authorization, self._auth_context(request.endpoint),
                                               request.client_cert)
        except InvalidClient as exc:
            ctx.audit.emit(AuditEvent(type="client.auth_failed", outcome="failure", at=ctx.clock.now(),
                                      grant_type=grant_type[:100], ip=request.client_ip,
                                      detail={"reason": exc.debug[:200]}))
            raise
        grant = self.grants.get(grant_type)
        if grant is None:
            raise UnsupportedGrantType(REFUSED_GRANTS.get(grant_type, "unsupported grant_type"))
        if client is None and grant.requires_client:
            raise InvalidClient("client authentication required")
        if ctx.policy.fapi2:
            self._fapi2(client)
        if client is not None and grant_type not in client.client.grant_types:
            raise UnauthorizedClient(f"this client may not use the {grant_type} grant")
        confirmation: dict[str, str] = {}
        if client is not None and client.client.tls_client_certificate_bound_access_tokens:
            # RFC 8705 §3: this request's tokens are bound to the certificate of the connection
            confirmation.update(certificate_confirmation(request.client_cert))
        proof: DPoPProof | None = None
        try:
            # RFC 9449 §5: a valid proof binds this request's tokens to its key (``cnf.jkt``, token_type DPoP)
            proof = await self._proof(request, client)
            if proof is not None:
                confirmation[CNF_JKT] = proof.jkt
            if ctx.policy.fapi2 and not confirmation:
                raise InvalidRequest("FAPI 2.0 mode: access tokens must be sender-constrained (FAPI 2.0 Security "
                                     "Profile 5.3.2.2): send a DPoP proof (RFC 9449), or register the client for "
                                     "certificate-bound tokens and use mutual TLS (RFC 8705)")
            if confirmation:
                ctx = replace(ctx, confirmation=confirmation)
            foreign = self._foreign.get(grant_type)
            unexpected = (None if foreign is not None and foreign.isdisjoint(params)
                          else unexpected_parameter(grant, self.grants.values(), params))
            if unexpected is not None:
                raise InvalidRequest(f"unexpected parameter {unexpected} for the {grant_type} grant")
            response = await grant.handle(GrantRequest(request=request, params=params, client=client), ctx)
        except (AuthorizationPending, SlowDown, UseDpopNonce):
            # RFC 8628 polling, RFC 9449 §8 nonce hand-out: routine, not audited (no database write for them)
            raise
        except OAuthError as exc:
            ctx.audit.emit(AuditEvent(type="token.refused", outcome="failure", at=ctx.clock.now(),
                                      client_id=client.client.client_id if client else None,
                                      grant_type=grant_type, ip=request.client_ip,
                                      detail={"error": exc.error, "reason": (exc.debug or exc.description)[:200]}))
            raise
        if client is not None and client.client.dynamic:
            await _touch(client.client, ctx)
        if proof is not None:
            nonce = ctx.dpop.new_nonce() if ctx.dpop is not None and self._nonce_required(client) else None
            return replace(response, token_type="DPoP", dpop_nonce=nonce, grant_type=response.grant_type or grant_type)
        return response if response.grant_type else replace(response, grant_type=grant_type)

    def _nonce_required(self, client: AuthenticatedClient | None) -> bool:
        return self.ctx.policy.dpop_require_nonce or (client is not None and client.client.dpop_require_nonce)

    async def _proof(self, request: EndpointRequest, client: AuthenticatedClient | None) -> DPoPProof | None:
        """The request's checked DPoP proof (RFC 9449 §4.3), or None when it sent none and may do without."""
        if request.dpop is None:
            if client is not None and client.client.dpop_bound_access_tokens:
                raise InvalidDpopProof("this client's access tokens are DPoP-bound (dpop_bound_access_tokens, RFC "
                                       "9449 §5.2): send a DPoP proof")
            return None
        if self.ctx.dpop is None:
            raise InvalidDpopProof("DPoP proofs are not accepted by this server")
        return await self.ctx.dpop.verify(request.dpop, method="POST", url=request.endpoint,
                                          first_use=request.dpop_first_use,
                                          require_nonce=self._nonce_required(client))

    @staticmethod
    def _fapi2(client: AuthenticatedClient | None) -> None:
        """FAPI 2.0 Security Profile §5.3.2.1 (client authentication). §5.3.2.2 item 6 (sender-constrained
        access tokens: DPoP, RFC 9449, or mTLS, RFC 8705) is checked once the proof is verified: an invalid
        proof is refused (``invalid_dpop_proof``), a valid one binds the tokens; a certificate alone binds
        nothing (the client must be registered for certificate-bound tokens)."""
        if client is None:
            raise InvalidClient("FAPI 2.0 mode: public clients are not allowed (FAPI 2.0 Security Profile 5.3.2.1)")
        refusal = fapi2_client_refusal(client.client, client.method)
        if refusal is not None:
            raise InvalidClient(refusal)

async def _touch(client: Client, ctx: EngineContext) -> None:
    """A dynamic client that obtains tokens is in use: its idle expiry starts again. Written at most once per
    ``TOUCH_INTERVAL`` (the cached client's ``last_used_at`` may be stale; the UPDATE's own condition keeps it
    at one write)."""
    now = ctx.clock.now()
    if client.metadata_document:
        return  # never stored: nothing to keep alive
    if client.last_used_at is None or now - client.last_used_at >= TOUCH_INTERVAL:
        await ctx.store.touch_client(client.client_id, now, TOUCH_INTERVAL)
