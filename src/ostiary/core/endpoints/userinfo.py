"""The UserInfo endpoint (OIDC Core §5.3): claims about the user, by scope (§5.4), for a Bearer access token
sent in the Authorization header only (RFC 6750 §2.1; query-string tokens are refused, §2.3)."""

from __future__ import annotations

from typing import Any

from ..context import EngineContext
from ..errors import InvalidRequest, InvalidToken, OAuthError
from ..issuance import verify_own_access_token
from ..jose import JoseError
from ..mtls import bound_certificate_presented

__all__ = ["CLAIMS_SUPPORTED", "SCOPES_SUPPORTED", "InsufficientScope", "UserinfoEndpoint", "claims_for"]

SCOPES_SUPPORTED = ("openid", "profile", "email", "offline_access")
CLAIMS_SUPPORTED = ("sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "at_hash", "sid",
                    "name", "preferred_username", "updated_at", "email", "email_verified")


class InsufficientScope(OAuthError):
    """RFC 6750 §3.1."""

    error = "insufficient_scope"
    status = 403


def _bearer_error(exc_type: type[OAuthError], description: str) -> OAuthError:
    header = f'Bearer realm="ostiary", error="{exc_type.error}", error_description="{description}"'
    return exc_type(description, headers={"WWW-Authenticate": header})


def claims_for(user: Any, scopes: frozenset[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"sub": user.user_id}
    if "profile" in scopes:
        out.update({"name": user.name, "preferred_username": user.username, "updated_at": int(user.updated_at)})
    if "email" in scopes and user.email:
        out.update({"email": user.email, "email_verified": user.email_verified})
    return out


class UserinfoEndpoint:
    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx

    async def handle(self, authorization: str | None, *, token_elsewhere: bool = False,
                     client_cert: bytes | None = None) -> dict[str, Any]:
        """``client_cert``: the request's TLS client certificate, which a certificate-bound token needs."""
        ctx = self.ctx
        if token_elsewhere:
            raise _bearer_error(InvalidRequest, "send the access token in the Authorization header only")
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise InvalidToken("a Bearer access token is required",
                               headers={"WWW-Authenticate": 'Bearer realm="ostiary"'})
        try:
            claims = verify_own_access_token(token.strip(), ctx.keyring(), ctx.policy, ctx.clock.now(),
                                             audience=ctx.policy.issuer + "/userinfo")
        except JoseError as exc:
            raise _bearer_error(InvalidToken, "the access token is invalid or expired") from exc
        if await ctx.store.is_access_token_revoked(str(claims["jti"])):
            raise _bearer_error(InvalidToken, "the access token is revoked")
        if not bound_certificate_presented(claims, client_cert):
            raise _bearer_error(InvalidToken, "the access token is bound to a TLS client certificate (RFC 8705), "
                                              "and this request did not present it")
        scopes = frozenset(str(claims.get("scope", "")).split())
        if "openid" not in scopes:
            raise _bearer_error(InsufficientScope, "the access token lacks the openid scope")
        user = await ctx.store.get_user(str(claims["sub"]))
        if user is None or user.disabled:
            raise _bearer_error(InvalidToken, "the user no longer exists or is disabled")
        return claims_for(user, scopes)
