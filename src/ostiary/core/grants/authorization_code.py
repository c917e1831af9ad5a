"""RFC 6749 §4.1.3 Authorization Code grant with PKCE (RFC 7636 §4.5-4.6) and OpenID Connect (OIDC Core §3.1.3)."""

from __future__ import annotations

from typing import NoReturn

from ..._secrets import constant_time_equals, token_hash
from ..context import EngineContext
from ..dpop import CNF_JKT
from ..errors import InvalidGrant, OAuthError
from ..issuance import TokenResponse
from ..pkce import verify_code_verifier
from ..requests import form_value
from ..targets import limit_scopes, narrow_audience, registered_resources
from ..tokens import AuthorizationCode, TokenFamily
from ..user_tokens import issue_in_new_family, revoke_family
from . import GrantRequest

__all__ = ["AuthorizationCodeGrant"]

_INVALID = "the authorization code is invalid or expired, or was issued to another client"


class AuthorizationCodeGrant:
    grant_type = "authorization_code"
    requires_client = True
    parameters = frozenset({"code", "redirect_uri", "code_verifier"})  # RFC 6749 §4.1.3, RFC 7636 §4.5

    async def handle(self, req: GrantRequest, ctx: EngineContext) -> TokenResponse:
        assert req.client is not None
        client = req.client.client
        params = req.params
        code = form_value(params, "code")
        code_hash = token_hash(code, ctx.secret_hash_key)
        record = await ctx.store.get_code(code_hash) if len(code) <= 512 else None
        if record is None or record.client_id != client.client_id:
            raise InvalidGrant(_INVALID, debug="unknown code or another client's code")
        now = ctx.clock.now()
        if record.used_at is not None:
            await self._replayed(ctx, record, req)
        if now >= record.expires_at:
            raise InvalidGrant(_INVALID, debug="code expired")
        if params.get("redirect_uri") != record.redirect_uri:
            raise InvalidGrant("redirect_uri must be the one used in the authorization request")
        verify_code_verifier(params.get("code_verifier"), record.code_challenge)
        if record.dpop_jkt is not None:
            # RFC 9449 §10: the code was bound to a DPoP key at the authorization endpoint (dpop_jkt, or the
            # proof sent to /par): only a proof by that key exchanges it
            jkt = ctx.confirmation.get(CNF_JKT) if ctx.confirmation else None
            if jkt is None or not constant_time_equals(jkt, record.dpop_jkt):
                raise InvalidGrant("the authorization code is bound to a DPoP key (dpop_jkt): send a DPoP proof "
                                   "signed by that key", debug="code DPoP key mismatch")
        # RFC 8707 §2.2: resource narrows the access token's audience to part of what was authorized
        audience = narrow_audience(req.request.multi("resource"), record.audience)
        scopes = None
        if audience is not None:
            registered = await registered_resources(ctx.store, audience)
            scopes = limit_scopes(record.scopes, audience, registered, requested=False)
        user = await ctx.store.get_user(record.user_id)
        if user is None or user.disabled:
            raise InvalidGrant(_INVALID, debug="user gone or disabled")
        family = TokenFamily(family_id=record.family_id, client_id=client.client_id, user_id=user.user_id,
                             scopes=record.scopes, audience=record.audience, created_at=now,
                             expires_at=now + ctx.policy.refresh_token_ttl, auth_time=record.auth_time,
                             amr=record.amr, acr=record.acr, session_id=record.session_id)
        issued = await issue_in_new_family(ctx, family, client, user, spend=lambda: ctx.store.use_code(code_hash, now),
                                           grant_type=self.grant_type, nonce=record.nonce, ip=req.request.client_ip,
                                           audience=audience, scopes=scopes)
        if issued is None:
            await self._replayed(ctx, record, req)  # lost the race; redirect_uri and verifier were checked
        return issued

    async def _replayed(self, ctx: EngineContext, record: AuthorizationCode, req: GrantRequest) -> NoReturn:
        """RFC 6749 §4.1.2: a code used twice is refused, and the tokens issued from it are revoked.

        Revoking is only for a replay that proves it comes from the client: authenticated as the client
        (the endpoint did that, as for any exchange), with the code's ``redirect_uri`` and the PKCE
        ``code_verifier`` (RFC 7636 §4.6). Anything less is a plain ``invalid_grant``: otherwise whoever saw a
        spent code (in a log, a referrer, a browser history) could revoke the user's tokens at will.
        """
        assert req.client is not None
        try:
            if req.params.get("redirect_uri") != record.redirect_uri:
                raise InvalidGrant(_INVALID)
            verify_code_verifier(req.params.get("code_verifier"), record.code_challenge)
        except OAuthError as exc:
            raise InvalidGrant(_INVALID, debug="used code replayed without proof; its tokens are kept") from exc
        await revoke_family(ctx, record.family_id, event="security.authorization_code_replay",
                            client_id=req.client.client.client_id, ip=req.request.client_ip)
        raise InvalidGrant("the authorization code was already used; the tokens issued from it are revoked")
