"""RFC 6749 §6 Refresh Token grant with rotation (OAuth 2.1 §4.3.1; RFC 9700 §4.14.2).

Every use returns a new refresh token and spends the old one, atomically: of two concurrent uses exactly
one wins. Any other presentation of a spent token, the loser of such a race included, is reuse: the loser
gets ``invalid_grant``, the whole family is revoked (refresh tokens dead, access-token jtis marked revoked)
and a security event is recorded. A thief and the legitimate client cannot both keep using a family.

Reuse window (``refresh_token.reuse_window`` seconds, default 0 = strict): within it, the same client
repeating the *same* request (same scope; and the same DPoP key once refresh tokens are DPoP-bound) gets the
very same successor tokens back, kept sealed (AES-GCM) on the spent token for that purpose. This forgives
multi-tab apps and lost responses, at the price that a thief who replays the exact request within the window
obtains the successor instead of triggering revocation.
"""

from __future__ import annotations

import json
from dataclasses import replace

from ..._secrets import constant_time_equals, sha256_b64url, token_hash
from ..audit import AuditEvent
from ..clients import Client
from ..context import EngineContext
from ..errors import InvalidGrant, InvalidScope
from ..issuance import TokenResponse
from ..mtls import certificate_der, certificate_thumbprint
from ..requests import form_value, scope_set
from ..sealing import SealError, seal, sealing_key, unseal
from ..tokens import RefreshToken, TokenFamily
from ..user_tokens import mint_user_tokens, revoke_family
from . import GrantRequest

__all__ = ["RefreshTokenGrant", "RefreshTokenReused"]

_INVALID = "the refresh token is invalid, expired or revoked"


def _response_from(data: bytes) -> TokenResponse:
    body = json.loads(data)
    return TokenResponse(access_token=body["access_token"], expires_in=int(body["expires_in"]),
                         token_type=body.get("token_type", "Bearer"), scope=body.get("scope"),
                         refresh_token=body.get("refresh_token"), id_token=body.get("id_token"))


def _as_registered_now(family: TokenFamily, client: Client, issuer: str) -> TokenFamily | None:
    """The family as the client's *current* registration allows it: scopes and audiences the administrator has
    removed since the grant are not minted again (RFC 6749 §6: never more than originally granted; and never
    more than the client may have now). The userinfo audience stays while ``openid`` does; the client itself
    (the audience of a grant without any) always."""
    scopes = family.scopes & client.scopes
    allowed = {*client.audiences, client.client_id, *((issuer + "/userinfo",) if "openid" in scopes else ())}
    audience = tuple(a for a in family.audience if a in allowed)
    if not scopes or not audience:
        return None  # refused by the caller (after the reuse check: a replay still revokes the family)
    return replace(family, scopes=scopes, audience=audience)


def _same_certificate(thumbprint: str, client_cert: bytes | None) -> bool:
    if client_cert is None:
        return False
    try:
        presented = certificate_thumbprint(certificate_der(client_cert))
    except ValueError:
        return False
    return constant_time_equals(presented, thumbprint)


class RefreshTokenReused(InvalidGrant):
    """A spent refresh token was presented again (RFC 9700 §4.14.2). ``family_revoked``: this request revoked
    the family (and recorded the security event); False when a concurrent or earlier reuse already had."""

    def __init__(self, family_revoked: bool) -> None:
        super().__init__("the refresh token was already used; every token of its family is revoked",
                         debug="refresh token reuse" + ("" if family_revoked else "; family already revoked"))
        self.family_revoked = family_revoked


class RefreshTokenGrant:
    grant_type = "refresh_token"
    requires_client = True
    parameters = frozenset({"refresh_token"})  # RFC 6749 §6

    async def handle(self, req: GrantRequest, ctx: EngineContext) -> TokenResponse:
        assert req.client is not None
        client = req.client.client
        presented = form_value(req.params, "refresh_token")
        rt_hash = token_hash(presented, ctx.secret_hash_key)
        rt = await ctx.store.get_refresh_token(rt_hash) if len(presented) <= 512 else None
        if rt is None or rt.client_id != client.client_id:
            # bound to the client: another client's attempt is refused and does not harm the family
            raise InvalidGrant(_INVALID, debug="unknown refresh token or another client's")
        family = await ctx.store.get_family(rt.family_id)
        if family is None or family.revoked_at is not None:
            raise InvalidGrant(_INVALID, debug="family revoked")
        if family.x5t_s256 is not None and not _same_certificate(family.x5t_s256, req.request.client_cert):
            # RFC 8705 §4: refused, and the family is left alone (the presenter may simply lack the certificate)
            raise InvalidGrant("the refresh token is bound to a TLS client certificate, and this connection "
                               "did not present it", debug="refresh token certificate mismatch")
        requested = scope_set(req.params.get("scope"))
        if requested - family.scopes:
            raise InvalidScope("the scope may be narrowed on refresh, never widened")
        narrowed = _as_registered_now(family, client, ctx.policy.issuer)
        scopes = requested or (narrowed.scopes if narrowed is not None else family.scopes)
        fp = sha256_b64url(f"{client.client_id}|{' '.join(sorted(scopes))}|{family.dpop_jkt or ''}")
        now = ctx.clock.now()
        key = sealing_key(ctx.secret_hash_key, "refresh-successor")
        if rt.used_at is not None:
            again = self._within_window(ctx, rt, fp, now, key, rt_hash)
            if again is not None:
                return again
            return await self._reused(ctx, rt.family_id, client.client_id, req)
        if now >= rt.expires_at or now >= family.expires_at:
            raise InvalidGrant(_INVALID, debug="refresh token expired")
        if requested - client.scopes:
            raise InvalidScope("scope no longer allowed for this client: "
                               + " ".join(sorted(requested - client.scopes))[:200])
        if narrowed is None:
            raise InvalidGrant(_INVALID, debug="nothing of the grant is still registered for the client")
        family = narrowed
        user = await ctx.store.get_user(rt.user_id)
        if user is None or user.disabled:
            raise InvalidGrant(_INVALID, debug="user gone or disabled")
        minted = mint_user_tokens(ctx, client, family, user, scopes, nonce=None, parent_hash=rt_hash)
        sealed = None
        if ctx.policy.refresh_token_reuse_window > 0:
            sealed = seal(json.dumps(minted.response.body()).encode(), key, rt_hash)
        if not await ctx.store.rotate_refresh_token(rt_hash, now, fp, sealed, family.family_id, minted.jti,
                                                    minted.access_expires_at, minted.refresh):
            latest = await ctx.store.get_refresh_token(rt_hash)
            if latest is not None and latest.used_at is None:
                # not spent: its family was revoked meanwhile (a password reset, say)
                raise InvalidGrant(_INVALID, debug="family revoked")
            # a concurrent request with the same token won the race: this one is a reuse like any other
            again = self._within_window(ctx, latest, fp, now, key, rt_hash) if latest is not None else None
            if again is not None:
                return again
            return await self._reused(ctx, rt.family_id, client.client_id, req)
        ctx.audit.emit(AuditEvent(type="token.issued", outcome="success", at=now, client_id=client.client_id,
                                  subject=user.user_id, grant_type=self.grant_type, jti=minted.jti,
                                  ip=req.request.client_ip,
                                  detail={"scope": minted.response.scope or "", "family_id": family.family_id}))
        return minted.response

    async def _reused(self, ctx: EngineContext, family_id: str, client_id: str, req: GrantRequest) -> TokenResponse:
        # one security event per family revocation: of several concurrent reuses only the one that revoked the
        # family records it; the others are counted (the web layer's metric) so alerts are not flooded
        revoked = await revoke_family(ctx, family_id, event="security.refresh_token_reuse", client_id=client_id,
                                      ip=req.request.client_ip, once=True)
        raise RefreshTokenReused(revoked)

    def _within_window(self, ctx: EngineContext, rt: RefreshToken, fp: str, now: float, key: bytes,
                       rt_hash: str) -> TokenResponse | None:
        window = ctx.policy.refresh_token_reuse_window
        if (window <= 0 or rt.used_at is None or now > rt.used_at + window or rt.successor_sealed is None
                or rt.request_fp != fp):
            return None
        try:
            return _response_from(unseal(rt.successor_sealed, key, rt_hash))
        except (SealError, ValueError, KeyError):
            return None
