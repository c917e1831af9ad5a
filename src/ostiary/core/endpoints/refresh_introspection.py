"""Introspection (RFC 7662) and revocation (RFC 7009 §2.1) of opaque refresh tokens, looked up by hash.
Revoking a refresh token revokes its whole family, access tokens included."""

from __future__ import annotations

from typing import Any

from ..._secrets import token_hash
from ..clients import Client
from ..context import EngineContext
from ..user_tokens import REFRESH_TOKEN_PREFIX, revoke_family

__all__ = ["REFRESH_TOKEN_PREFIX", "introspect_refresh_token", "revoke_refresh_token"]


async def introspect_refresh_token(token: str, client: Client, ctx: EngineContext) -> dict[str, Any]:
    rt = await ctx.store.get_refresh_token(token_hash(token, ctx.secret_hash_key)) if len(token) <= 512 else None
    now = ctx.clock.now()
    if rt is None or rt.client_id != client.client_id or rt.used_at is not None or now >= rt.expires_at:
        return {"active": False}
    family = await ctx.store.get_family(rt.family_id)
    if family is None or family.revoked_at is not None or now >= family.expires_at:
        return {"active": False}
    return {"active": True, "token_type": "refresh_token", "client_id": rt.client_id, "sub": rt.user_id,
            "scope": " ".join(sorted(rt.scopes)), "iss": ctx.policy.issuer, "iat": int(rt.created_at),
            "exp": int(rt.expires_at)}


async def revoke_refresh_token(token: str, client: Client, ctx: EngineContext, ip: str | None) -> None:
    rt = await ctx.store.get_refresh_token(token_hash(token, ctx.secret_hash_key)) if len(token) <= 512 else None
    if rt is None or rt.client_id != client.client_id:
        return  # RFC 7009 §2.2: unknown tokens and other clients' tokens are left alone, answered with 200
    await revoke_family(ctx, rt.family_id, event="token.family_revoked", client_id=client.client_id, ip=ip)
