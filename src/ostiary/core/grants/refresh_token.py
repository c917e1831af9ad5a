"""RFC 6749 §6 Refresh Token grant with rotation (OAuth 2.1 §4.3.1; RFC 9700 §4.14.2).

Every use returns a new refresh token and spends the old one, atomically: of two concurrent uses exactly
one wins. Any other presentation of a spent token, the loser of such a race included, is reuse: the loser
gets ``invalid_grant``, the whole family is revoked (refresh tokens dead, access-token jtis marked revoked)
and a security event is recorded. A thief and the legitimate client cannot both keep using a family.

Reuse window (``refresh_token.reuse_window`` seconds, default 0 = strict): within it, the same client
repeating the *same* request (same scope; and the same DPoP key when the refresh token is DPoP-bound) gets the
very same successor tokens back, kept sealed (AES-GCM) on the spent token for that purpose. This forgives
multi-tab apps and lost responses, at the price that a thief who replays the exact request within the window
obtains the successor instead of triggering revocation.

Without a window (the default) a rotation is one call to the store, ``rotate_refresh_token_once`` (one
statement on PostgreSQL): the new access token's jti and the successor are chosen first, the store finds,
checks (``core.tokens.rotation_refusal``), spends and succeeds the token at once, and the tokens are signed
afterwards; a refused rotation is explained by the same checks, in the same order, on what the store found. With
a window the successor must be sealed on the spent token, so it is signed before the write: read, sign, rotate.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace

from ..._secrets import constant_time_equals, sha256_b64url, token_hash
from ..audit import AuditEvent
from ..clients import Client
from ..context import EngineContext
from ..dpop import CNF_JKT
from ..errors import InvalidGrant, InvalidScope
from ..issuance import TokenResponse, new_jti
from ..mtls import certificate_der, certificate_thumbprint
from ..requests import form_value, scope_set
from ..resources import Resource
from ..sealing import SealError, seal, sealing_key, unseal
from ..targets import limit_scopes, narrow_audience
from ..tokens import RefreshRotation, RefreshToken, TokenFamily, registered_grant, rotation_refusal
from ..user_tokens import PreparedIds, mint_user_tokens, new_refresh_token, revoke_family
from . import GrantRequest

__all__ = ["RefreshTokenGrant", "RefreshTokenReused"]

_INVALID = "the refresh token is invalid, expired or revoked"


def _response_from(data: bytes) -> TokenResponse:
    body = json.loads(data)
    return TokenResponse(access_token=body["access_token"], expires_in=int(body["expires_in"]),
                         token_type=body.get("token_type", "Bearer"), scope=body.get("scope"),
                         refresh_token=body.get("refresh_token"), id_token=body.get("id_token"))


def _as_registered_now(family: TokenFamily, client: Client, issuer: str,
                       registry: frozenset[str] = frozenset()) -> TokenFamily | None:
    """The family as the client's *current* registration allows it: scopes and audiences the administrator has
    removed since the grant are not minted again (RFC 6749 §6: never more than originally granted; and never
    more than the client may have now). The userinfo audience stays while ``openid`` does; the client itself
    (the audience of a grant without any) always."""
    grant = registered_grant(family.scopes, family.audience, client.scopes, _audiences(client, registry),
                             issuer + "/userinfo")
    if grant is None:
        return None  # refused by the caller (after the reuse check: a replay still revokes the family)
    return replace(family, scopes=grant[0], audience=grant[1])


def _audiences(client: Client, registry: frozenset[str] = frozenset()) -> frozenset[str]:
    """What a grant's audience may still hold: the client's registered audiences, itself, and the resources of
    the registry (RFC 8707; removed from it, a resource is not minted again)."""
    return frozenset({*client.audiences, client.client_id, *registry})


def _check_found(rt: RefreshToken | None, family: TokenFamily | None, client: Client, requested: frozenset[str],
                 client_cert: bytes | None, dpop_jkt: str | None) -> tuple[RefreshToken, TokenFamily]:
    """The checks before the reuse check: the token is this client's, its family live (and, bound to a
    certificate, presented with it), the scope not widened."""
    if rt is None or rt.client_id != client.client_id:
        # bound to the client: another client's attempt is refused and does not harm the family
        raise InvalidGrant(_INVALID, debug="unknown refresh token or another client's")
    if family is None or family.revoked_at is not None:
        raise InvalidGrant(_INVALID, debug="family revoked")
    if family.x5t_s256 is not None and not _same_certificate(family.x5t_s256, client_cert):
        # RFC 8705 §4: refused, and the family is left alone (the presenter may simply lack the certificate)
        raise InvalidGrant("the refresh token is bound to a TLS client certificate, and this connection "
                           "did not present it", debug="refresh token certificate mismatch")
    if family.dpop_jkt is not None and (dpop_jkt is None or not constant_time_equals(dpop_jkt, family.dpop_jkt)):
        # RFC 9449 §5: refused, and the family is left alone (the grant is bound; the presenter lacks the key)
        raise InvalidGrant("the refresh token is bound to a DPoP key: send a DPoP proof signed by that key",
                           debug="refresh token DPoP key mismatch")
    if requested - family.scopes:
        raise InvalidScope("the scope may be narrowed on refresh, never widened")
    return rt, family


def _check_live(rt: RefreshToken, family: TokenFamily, client: Client, requested: frozenset[str], now: float,
                issuer: str, registry: frozenset[str]) -> TokenFamily:
    """The checks after the reuse check (the token is unspent): unexpired, and still registered for the client.
    The family as the client's registration allows it now."""
    if now >= rt.expires_at or now >= family.expires_at:
        raise InvalidGrant(_INVALID, debug="refresh token expired")
    if requested - client.scopes:
        raise InvalidScope("scope no longer allowed for this client: "
                           + " ".join(sorted(requested - client.scopes))[:200])
    narrowed = _as_registered_now(family, client, issuer, registry)
    if narrowed is None:
        raise InvalidGrant(_INVALID, debug="nothing of the grant is still registered for the client")
    return narrowed


def _same_certificate(thumbprint: str, client_cert: bytes | None) -> bool:
    if client_cert is None:
        return False
    try:
        presented = certificate_thumbprint(certificate_der(client_cert))
    except ValueError:
        return False
    return constant_time_equals(presented, thumbprint)


def _thumbprint(client_cert: bytes | None) -> str | None:
    """``x5t#S256`` of the certificate this request came with; None without one (or unreadable)."""
    if client_cert is None:
        return None
    try:
        return certificate_thumbprint(certificate_der(client_cert))
    except ValueError:
        return None


def _proof_jkt(ctx: EngineContext) -> str | None:
    """The thumbprint of this request's checked DPoP proof key (the token endpoint put it in ``cnf``)."""
    return ctx.confirmation.get(CNF_JKT) if ctx.confirmation else None


def _outside(client: Client, audience: tuple[str, ...], issuer: str) -> list[str]:
    own = _audiences(client)
    return [a for a in audience if a not in own and a != issuer + "/userinfo"]


async def _registered(ctx: EngineContext, client: Client, audience: tuple[str, ...]) -> dict[str, Resource]:
    """The registered resources among the audiences of a grant that are not the client's own."""
    found: dict[str, Resource] = {}
    for uri in _outside(client, audience, ctx.policy.issuer):
        resource = await ctx.store.get_resource(uri)
        if resource is not None:
            found[uri] = resource
    return found


@dataclass(frozen=True, slots=True)
class _Target:
    """The resource registry as this request sees it, and the audience ``resource`` narrowed to (None: the
    grant's)."""

    registry: frozenset[str]
    registered: Mapping[str, Resource]
    audience: tuple[str, ...] | None = None

    async def covering(self, ctx: EngineContext, client: Client, audience: tuple[str, ...]) -> _Target:
        """This target, knowing which of ``audience`` are registered resources (read only when some audience
        is not the client's own: a grant for its registered audiences costs no read)."""
        if self.registry or not _outside(client, audience, ctx.policy.issuer):
            return self
        registered = await _registered(ctx, client, audience)
        return _Target(frozenset(registered), registered, self.audience) if registered else self

    def scopes(self, scopes: frozenset[str], requested: frozenset[str]) -> frozenset[str]:
        if self.audience is None:
            return scopes
        return limit_scopes(scopes, self.audience, self.registered, requested=bool(requested))


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
        if len(presented) > 512:
            raise InvalidGrant(_INVALID, debug="unknown refresh token or another client's")
        rt_hash = token_hash(presented, ctx.secret_hash_key)
        requested = scope_set(req.params.get("scope"))
        target = _Target(frozenset(), {})
        resources = req.request.multi("resource")
        if resources:
            target = await self._narrowing(ctx, client, rt_hash, requested, resources, target)
        if ctx.policy.refresh_token_reuse_window > 0:
            return await self._with_reuse_window(req, ctx, client, rt_hash, requested, target)
        return await self._in_one_trip(req, ctx, client, rt_hash, requested, target)

    async def _narrowing(self, ctx: EngineContext, client: Client, rt_hash: str, requested: frozenset[str],
                         resources: list[str], target: _Target) -> _Target:
        """RFC 8707 §2.2: ``resource`` on a refresh narrows the access token's audience to part of the grant's,
        never widens it (``invalid_target``), checked before the token is spent. A token that is unknown,
        spent or another client's is left to the usual checks (a replay still revokes its family)."""
        rt = await ctx.store.get_refresh_token(rt_hash)
        family = await ctx.store.get_family(rt.family_id) if rt is not None else None
        if rt is None or family is None or rt.client_id != client.client_id or rt.used_at is not None:
            return target
        registered = await _registered(ctx, client, family.audience)
        target = _Target(frozenset(registered), registered)
        now_family = _as_registered_now(family, client, ctx.policy.issuer, target.registry) or family
        audience = narrow_audience(resources, now_family.audience)
        assert audience is not None
        limit_scopes(requested or now_family.scopes, audience, target.registered, requested=bool(requested))
        return _Target(target.registry, target.registered, audience)

    async def _in_one_trip(self, req: GrantRequest, ctx: EngineContext, client: Client, rt_hash: str,
                           requested: frozenset[str], target: _Target) -> TokenResponse:
        """Strict rotation (no reuse window): the store finds, checks, spends and succeeds the token at once
        (one round trip on PostgreSQL) with ids chosen here; the tokens are signed afterwards."""
        now = ctx.clock.now()
        prepared = PreparedIds(jti=new_jti(), issued_at=int(now), refresh_token=new_refresh_token())
        rotation = RefreshRotation(
            token_hash=rt_hash, client_id=client.client_id, now=now, requested=requested,
            client_scopes=client.scopes, client_audiences=_audiences(client, target.registry),
            userinfo_audience=ctx.policy.issuer + "/userinfo", refresh_allowed="refresh_token" in client.grant_types,
            jti=prepared.jti, access_expires_at=prepared.issued_at + ctx.policy.access_token_ttl,
            successor_hash=token_hash(prepared.refresh_token, ctx.secret_hash_key),
            idle_ttl=ctx.policy.refresh_token_idle_ttl, x5t_s256=_thumbprint(req.request.client_cert),
            dpop_jkt=_proof_jkt(ctx))
        out = await ctx.store.rotate_refresh_token_once(rotation)
        if (not out.rotated and out.token is not None and out.family is not None and not target.registry
                and rotation_refusal(out.token, out.family, out.user_enabled, rotation) == "nothing registered"):
            # the grant's audiences may be registered resources (the registry is read only when needed, so
            # that a rotation stays one round trip): nothing was written; try again with them
            registered = await _registered(ctx, client, out.family.audience)
            if registered:
                target = _Target(frozenset(registered), registered, target.audience)
                rotation = replace(rotation, client_audiences=_audiences(client, target.registry))
                out = await ctx.store.rotate_refresh_token_once(rotation)
        # the grant's own checks, on what the store found: they say why a refused rotation was refused, and
        # a rotation the store made passes them (the store applies the same rules: rotation_refusal)
        rt, family = _check_found(out.token, out.family, client, requested, req.request.client_cert,
                                  _proof_jkt(ctx))
        if not out.rotated and rt.used_at is not None:
            return await self._reused(ctx, rt.family_id, client.client_id, req)
        target = await target.covering(ctx, client, family.audience)
        family = _check_live(rt, family, client, requested, now, ctx.policy.issuer, target.registry)
        if not out.rotated:
            if not out.user_enabled:
                raise InvalidGrant(_INVALID, debug="user gone or disabled")
            # every check passed on what was found, yet nothing was rotated: the token changed since (not
            # on PostgreSQL, where the statement locks it first). Spent meanwhile: a reuse like any other
            latest = await ctx.store.get_refresh_token(rt_hash)
            if latest is not None and latest.used_at is None:
                raise InvalidGrant(_INVALID, debug="family revoked")
            return await self._reused(ctx, rt.family_id, client.client_id, req)
        scopes = target.scopes(requested or family.scopes, requested)
        minted = mint_user_tokens(ctx, client, family, rt.user_id, scopes, nonce=None, parent_hash=rt_hash,
                                  prepared=prepared, audience=target.audience)
        if (minted.refresh is None) != (out.successor is None):  # the store's rules and the grant's differ
            raise InvalidGrant(_INVALID, debug="refresh token successor disagrees with the store")
        self._issued(ctx, req, client, rt.user_id, family, minted.jti, minted.response, now)
        return minted.response

    def _issued(self, ctx: EngineContext, req: GrantRequest, client: Client, user_id: str, family: TokenFamily,
                jti: str, response: TokenResponse, now: float) -> None:
        ctx.audit.emit(AuditEvent(type="token.issued", outcome="success", at=now, client_id=client.client_id,
                                  subject=user_id, grant_type=self.grant_type, jti=jti, ip=req.request.client_ip,
                                  detail={"scope": response.scope or "", "family_id": family.family_id}))

    async def _with_reuse_window(self, req: GrantRequest, ctx: EngineContext, client: Client, rt_hash: str,
                                 requested: frozenset[str], target: _Target) -> TokenResponse:
        """With a reuse window the spent token keeps its successor sealed, which needs the signed tokens
        before the write: read, sign, then rotate (several round trips)."""
        found = await ctx.store.get_refresh_token(rt_hash)
        family = await ctx.store.get_family(found.family_id) if found is not None else None
        rt, family = _check_found(found, family, client, requested, req.request.client_cert, _proof_jkt(ctx))
        target = await target.covering(ctx, client, family.audience)
        narrowed = _as_registered_now(family, client, ctx.policy.issuer, target.registry)
        scopes = target.scopes(requested or (narrowed.scopes if narrowed is not None else family.scopes), requested)
        fp = sha256_b64url(f"{client.client_id}|{' '.join(sorted(scopes))}|{family.dpop_jkt or ''}"
                           + ("|" + " ".join(target.audience) if target.audience else ""))
        now = ctx.clock.now()
        key = sealing_key(ctx.secret_hash_key, "refresh-successor")
        if rt.used_at is not None:
            again = self._within_window(ctx, rt, fp, now, key, rt_hash)
            if again is not None:
                return again
            return await self._reused(ctx, rt.family_id, client.client_id, req)
        family = _check_live(rt, family, client, requested, now, ctx.policy.issuer, target.registry)
        user = await ctx.store.get_user(rt.user_id)
        if user is None or user.disabled:
            raise InvalidGrant(_INVALID, debug="user gone or disabled")
        minted = mint_user_tokens(ctx, client, family, user.user_id, scopes, nonce=None, parent_hash=rt_hash,
                                  audience=target.audience)
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
        self._issued(ctx, req, client, user.user_id, family, minted.jti, minted.response, now)
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
