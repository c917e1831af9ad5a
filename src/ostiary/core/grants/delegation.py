"""RFC 8693 Token Exchange on a user's behalf (delegation): service A, called with a user's access token, gets
a token for service B that still names the user.

The web app's backend calls service A with the user's access token; A must call B *for that user*. Client
credentials would lose the user (B sees only A); forwarding the user's token would make A's audience valid
at B. Instead A exchanges the token it received (RFC 8693 §2.1, ``subject_token_type``
``urn:ietf:params:oauth:token-type:access_token``) and gets a new access token that

* keeps the user's ``sub`` (and ``auth_time``), with ``client_id`` = A and ``act`` = ``{"sub": A}``
  (RFC 8693 §4.1; an ``act`` already on the subject token is nested inside, so a chain stays visible);
* is for an audience A is allowed to exchange for (``Client.may_exchange_for``), scopes within both the
  subject token's and A's, and never outlives the subject token;
* comes without a refresh token (RFC 8693 §2.2.1: the subject token's holder asks again).

The subject token must be one of this server's own, unexpired, unrevoked user access tokens whose ``aud``
names the caller: one of the audiences A serves (``Client.resource_audiences``, ``--serves``), so a
client can only exchange tokens that were sent to it. A refresh token is never accepted as a subject.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..audit import AuditEvent
from ..context import EngineContext
from ..errors import InvalidClient, InvalidGrant, InvalidScope, InvalidTarget, UnauthorizedClient
from ..federation import TOKEN_TYPE_ACCESS_TOKEN
from ..issuance import TokenResponse, verify_own_access_token
from ..jose import JoseError
from ..requests import is_audience_uri, scope_set
from . import GrantRequest

__all__ = ["AUDIT_TYPE", "MAX_ACT_DEPTH", "exchange_on_behalf"]

AUDIT_TYPE = "token.exchanged"
MAX_ACT_DEPTH = 5  # services calling services for one user: a longer chain is refused
_INVALID = "the subject token is invalid, expired or revoked"


def _audiences(claims: Mapping[str, Any]) -> list[str]:
    aud = claims.get("aud")
    if isinstance(aud, str):
        return [aud]
    return [a for a in aud if isinstance(a, str)] if isinstance(aud, list) else []


def _depth(act: Any) -> int:
    depth = 0
    while isinstance(act, Mapping):
        depth += 1
        act = act.get("act")
    return depth


async def exchange_on_behalf(req: GrantRequest, ctx: EngineContext, token: str) -> TokenResponse:
    """RFC 8693 §2.1-§2.2 with one of our own access tokens as ``subject_token``; the caller is the actor."""
    if req.client is None:
        raise InvalidClient("client authentication required to exchange an access token")
    client = req.client.client
    if req.client.method == "none" or client.is_public:
        raise UnauthorizedClient("public clients cannot exchange tokens; a confidential service must")
    now = ctx.clock.now()
    try:
        claims = verify_own_access_token(token, ctx.keyring(), ctx.policy, now)
    except JoseError as exc:
        raise InvalidGrant(_INVALID, debug=f"subject token: {exc}") from None
    subject, jti, exp = claims["sub"], claims["jti"], claims["exp"]
    if not isinstance(subject, str) or not isinstance(jti, str) or not isinstance(exp, int | float):
        raise InvalidGrant(_INVALID, debug="subject token: sub, jti or exp malformed")
    if not set(_audiences(claims)) & set(client.resource_audiences):
        raise InvalidGrant("the subject token was not issued for this client: its aud must name an API this "
                           "client serves (ostiary client update --serves)", debug="foreign audience")
    if await ctx.store.is_access_token_revoked(jti):
        raise InvalidGrant(_INVALID, debug="subject token revoked")
    user = await ctx.store.get_user(subject)
    if user is None or user.disabled:
        # client-credentials and federated tokens name no user: there is nobody to act for
        raise InvalidGrant("only a token issued on behalf of a user can be exchanged",
                           debug="subject is not an active user")
    if _depth(claims.get("act")) >= MAX_ACT_DEPTH:
        raise InvalidGrant("the delegation chain is too long", debug="act nested too deeply")

    subject_scopes = frozenset(claims.get("scope", "").split()) if isinstance(claims.get("scope"), str) \
        else frozenset()
    allowed = subject_scopes & client.scopes
    requested = scope_set(req.params.get("scope"))
    if requested - allowed:
        raise InvalidScope("scope not in both the subject token and this client's scopes: "
                           + " ".join(sorted(requested - allowed))[:200])
    scopes = requested or allowed
    if not scopes:
        raise InvalidScope("the subject token and this client have no scope in common")

    targets = [*req.request.multi("audience"), *req.request.multi("resource")]
    for target in targets:
        if not is_audience_uri(target):
            raise InvalidTarget("audience and resource must be absolute URIs without a fragment")
        if target not in client.may_exchange_for:
            raise InvalidTarget("this client may not exchange tokens for that audience "
                                "(ostiary client update --may-exchange-for)")
    audience = tuple(dict.fromkeys(targets)) or client.may_exchange_for[:1]
    if not audience:
        raise InvalidTarget("this client may exchange tokens for no audience; register one "
                            "(ostiary client update --may-exchange-for URI)")

    lifetime = int(exp - now)  # never beyond the subject token
    if lifetime < 1:
        raise InvalidGrant(_INVALID, debug="subject token expires within a second")
    act: dict[str, Any] = {"sub": client.client_id}
    if isinstance(claims.get("act"), Mapping):
        act["act"] = dict(claims["act"])
    extra: dict[str, Any] = {"act": act}
    if isinstance(claims.get("auth_time"), int | float):
        extra["auth_time"] = claims["auth_time"]
    at = ctx.issuer.access_token(subject=subject, client_id=client.client_id, audience=audience,
                                 scopes=sorted(scopes), lifetime=lifetime, extra_claims=extra)
    ctx.audit.emit(AuditEvent(type=AUDIT_TYPE, outcome="success", at=now, client_id=client.client_id,
                              subject=subject, grant_type=req.params.get("grant_type"), jti=at.jti,
                              ip=req.request.client_ip,
                              detail={"actor": client.client_id, "aud": list(audience), "scope": at.scope,
                                      "exp": at.expires_at, "subject_jti": jti,
                                      "subject_client_id": claims.get("client_id"),
                                      "chain": _depth(act)}))
    return TokenResponse(access_token=at.token, expires_in=at.expires_in, scope=at.scope or None,
                         issued_token_type=TOKEN_TYPE_ACCESS_TOKEN)
