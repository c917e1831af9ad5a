"""A user's tokens within a family, shared by the user-token grants (authorization code, device code, refresh
token), the refresh-token introspection and revocation endpoints and the account pages: minting them, the first
tokens of a new family, and revoking a whole family (RFC 6749 §4.1.2 code replay; RFC 9700 §4.14.2
refresh-token reuse)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

from .._secrets import new_token, token_hash
from .audit import AuditEvent
from .clients import Client
from .context import EngineContext
from .dpop import CNF_JKT
from .issuance import TokenResponse
from .mtls import CNF_X5T
from .storage import Store
from .tokens import RefreshToken, TokenFamily
from .users import User

__all__ = ["REFRESH_TOKEN_PREFIX", "MintedTokens", "PreparedIds", "issue_in_new_family", "mint_user_tokens",
           "new_refresh_token", "revoke_family", "revoke_user_families", "store_minted", "wants_refresh_token"]

REFRESH_TOKEN_PREFIX = "ost_rt_"


@dataclass(frozen=True, slots=True)
class MintedTokens:
    response: TokenResponse
    jti: str
    access_expires_at: int
    refresh: RefreshToken | None = field(default=None, repr=False)


def new_refresh_token() -> str:
    """A fresh refresh token (opaque, 256 bits)."""
    return new_token(32, REFRESH_TOKEN_PREFIX)


def wants_refresh_token(client: Client, scopes: frozenset[str]) -> bool:
    """Refresh tokens go to clients allowed the grant; with OpenID Connect only for ``offline_access``
    (OIDC Core §11)."""
    return "refresh_token" in client.grant_types and ("offline_access" in scopes or "openid" not in scopes)


@dataclass(frozen=True, slots=True)
class PreparedIds:
    """What a rotation chooses before it stores anything and signs the tokens after: the access token's
    ``jti`` and issue time (its expiry follows), and the successor refresh token (used when one is due)."""

    jti: str
    issued_at: int
    refresh_token: str = field(repr=False)


def mint_user_tokens(ctx: EngineContext, client: Client, family: TokenFamily, user_id: str,
                     scopes: frozenset[str], *, nonce: str | None, parent_hash: str | None,
                     prepared: PreparedIds | None = None, audience: tuple[str, ...] | None = None) -> MintedTokens:
    """An access token (RFC 9068), an id_token when ``openid`` was granted (OIDC Core §3.1.3.3), and a new
    refresh token when the client may have one. Nothing is stored here. ``audience``: the access token's, when
    the request narrowed the grant's with ``resource`` (RFC 8707 §2.2)."""
    now = ctx.clock.now()
    at = ctx.issuer.access_token(subject=user_id, client_id=client.client_id, audience=audience or family.audience,
                                 scopes=sorted(scopes), extra_claims={"auth_time": int(family.auth_time)},
                                 jti=prepared.jti if prepared else None,
                                 issued_at=prepared.issued_at if prepared else None)
    id_token = None
    if "openid" in scopes:
        id_token = ctx.issuer.id_token(subject=user_id, client_id=client.client_id,
                                       auth_time=family.auth_time, nonce=nonce, amr=family.amr, acr=family.acr,
                                       access_token=at.token, sid=family.session_id,
                                       alg=client.id_token_signed_response_alg)
    refresh_plain: str | None = None
    refresh: RefreshToken | None = None
    if wants_refresh_token(client, family.scopes):
        refresh_plain = prepared.refresh_token if prepared else new_refresh_token()
        expires = min(family.expires_at, now + ctx.policy.refresh_token_idle_ttl)
        refresh = RefreshToken(token_hash=token_hash(refresh_plain, ctx.secret_hash_key),
                               family_id=family.family_id, client_id=client.client_id, user_id=user_id,
                               scopes=family.scopes, created_at=now, expires_at=expires, parent_hash=parent_hash,
                               dpop_jkt=family.dpop_jkt)
    response = TokenResponse(access_token=at.token, expires_in=at.expires_in, scope=at.scope or None,
                             refresh_token=refresh_plain, id_token=id_token)
    return MintedTokens(response=response, jti=at.jti, access_expires_at=at.expires_at, refresh=refresh)


async def store_minted(ctx: EngineContext, family: TokenFamily, minted: MintedTokens) -> None:
    await ctx.store.add_family_jti(family.family_id, minted.jti, minted.access_expires_at)
    if minted.refresh is not None:
        await ctx.store.add_refresh_token(minted.refresh)


async def issue_in_new_family(ctx: EngineContext, family: TokenFamily, client: Client, user: User, *,
                              spend: Callable[[], Awaitable[bool]], grant_type: str, nonce: str | None,
                              ip: str | None, audience: tuple[str, ...] | None = None,
                              scopes: frozenset[str] | None = None) -> TokenResponse | None:
    """The first tokens of a new family (a code exchanged, a device code redeemed), in one unit of work:
    ``spend()`` spends the code, then the family, its access token's id and its refresh token are stored. None
    (and nothing written) when ``spend()`` finds the code already spent. Records ``token.issued``."""
    if client.is_public and ctx.confirmation:
        # RFC 8705 §4, RFC 9449 §5: a public client's refresh tokens are bound to the certificate or DPoP key it
        # used (a confidential client's are bound to the client, which authenticates on every refresh)
        family = replace(family, x5t_s256=ctx.confirmation.get(CNF_X5T), dpop_jkt=ctx.confirmation.get(CNF_JKT))
    minted = mint_user_tokens(ctx, client, family, user.user_id, scopes or family.scopes, nonce=nonce,
                              parent_hash=None, audience=audience)
    async with ctx.store.transaction():
        if not await spend():
            return None
        await ctx.store.add_family(family)
        await store_minted(ctx, family, minted)
    ctx.audit.emit(AuditEvent(type="token.issued", outcome="success", at=family.created_at,
                              client_id=client.client_id, subject=user.user_id, grant_type=grant_type,
                              jti=minted.jti, ip=ip,
                              detail={"scope": minted.response.scope or "", "family_id": family.family_id,
                                      "refresh_token": minted.refresh is not None}))
    return minted.response


async def revoke_family(ctx: EngineContext, family_id: str, *, event: str, client_id: str | None,
                        ip: str | None, once: bool = False) -> bool:
    """Kill every refresh token of the family and mark every access token it produced revoked, in one unit of
    work, so that introspection reports them inactive. Records a security event; with ``once``, only when this
    call is the one that revoked the family (concurrent replays then record one event, not one each). True
    when it was."""
    now = ctx.clock.now()
    async with ctx.store.transaction():
        revoked = await ctx.store.revoke_family(family_id, now)  # the write first: it locks the family
        family = await ctx.store.get_family(family_id)
        owner = family.client_id if family is not None else (client_id or "")
        jtis = await ctx.store.family_jtis(family_id)
        for jti, exp in jtis:
            if exp > now:
                await ctx.store.revoke_access_token(jti, owner, exp)
    if once and not revoked:
        return False
    ctx.audit.emit(AuditEvent(type=event, outcome="failure" if event.startswith("security.") else "success",
                              at=now, client_id=owner or None,
                              subject=family.user_id if family is not None else None, ip=ip,
                              detail={"family_id": family_id, "access_tokens_revoked": len(jtis)}))
    return revoked


async def revoke_user_families(store: Store, user_id: str, now: float, client_id: str | None = None) -> int:
    """Revoke every live family of a user (for one client, or all) with the access tokens they produced: the
    account page's "revoke access", and what disabling or deleting a user does."""
    return (await store.revoke_user_tokens(user_id, now, client_id)).families
