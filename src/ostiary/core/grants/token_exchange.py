"""RFC 8693 Token Exchange, two cases told apart by ``subject_token_type``:

* ``…:token-type:access_token``: one of this server's own user access tokens, exchanged by the service it
  was sent to, to call another service on the user's behalf (delegation, :mod:`.delegation`);
* ``…:token-type:jwt`` or ``…:id_token``: workload identity federation, below: a CI job's OIDC token in, a
  short-lived access token out, as a cloud STS does (AssumeRoleWithWebIdentity). Trust comes from a trust
  policy (:mod:`ostiary.core.federation`), so client authentication is optional; when present it is checked.

A refresh token is never accepted as a subject token.

Every refusal of the external token is ``invalid_grant`` with one generic description: the precise reason
goes to the audit log and to ``ostiary federation explain``, never to the caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..audit import AuditEvent
from ..context import EngineContext
from ..errors import InvalidGrant, InvalidRequest, InvalidScope, InvalidTarget, OAuthError
from ..federation import (
    SUBJECT_TOKEN_TYPES,
    TOKEN_EXCHANGE_GRANT,
    TOKEN_TYPE_ACCESS_TOKEN,
    FederationReport,
    evaluate,
    jti_replay_key,
)
from ..issuance import TokenResponse
from ..requests import scope_set
from . import GrantRequest
from .delegation import exchange_on_behalf

__all__ = ["GENERIC_REFUSAL", "TOKEN_TYPE_REFRESH_TOKEN", "TokenExchangeGrant"]

GENERIC_REFUSAL = ("the subject token was not accepted by any trust policy; a platform administrator can "
                   "see why with `ostiary federation explain`")
AUDIT_TYPE = "federation.exchange"
TOKEN_TYPE_REFRESH_TOKEN = "urn:ietf:params:oauth:token-type:refresh_token"  # RFC 8693 §3


class TokenExchangeGrant:
    grant_type = TOKEN_EXCHANGE_GRANT
    requires_client = False
    #: RFC 8693 §2.1; ``actor_token`` is read to be refused with a reason (the caller is the actor)
    parameters = frozenset({"subject_token", "subject_token_type", "requested_token_type", "actor_token",
                            "actor_token_type"})

    async def handle(self, req: GrantRequest, ctx: EngineContext) -> TokenResponse:
        """RFC 8693 §2.1 request, §2.2 response (``issued_token_type``; no refresh token)."""
        token_type = req.params.get("subject_token_type")
        if token_type == TOKEN_TYPE_REFRESH_TOKEN:
            raise InvalidRequest("a refresh token is never exchanged: send an access token "
                                 f"(subject_token_type={TOKEN_TYPE_ACCESS_TOKEN})")
        if token_type == TOKEN_TYPE_ACCESS_TOKEN:
            return await self._delegate(req, ctx)
        return await self._federate(req, ctx)

    async def _delegate(self, req: GrantRequest, ctx: EngineContext) -> TokenResponse:
        return await exchange_on_behalf(req, ctx, _subject_token(req.params))

    async def _federate(self, req: GrantRequest, ctx: EngineContext) -> TokenResponse:
        detail: dict[str, Any] = {}
        client_id = req.client.client.client_id if req.client is not None else None
        try:
            return await self._exchange(req, ctx, detail)
        except OAuthError as exc:
            detail.update(error=exc.error, reason=(exc.debug or exc.description)[:300])
            ctx.audit.emit(AuditEvent(type=AUDIT_TYPE, outcome="failure", at=ctx.clock.now(), client_id=client_id,
                                      grant_type=self.grant_type, ip=req.request.client_ip, detail=detail))
            raise

    async def _exchange(self, req: GrantRequest, ctx: EngineContext, detail: dict[str, Any]) -> TokenResponse:
        params = req.params
        token = _subject_token(params)
        if params.get("subject_token_type") not in SUBJECT_TOKEN_TYPES:
            raise InvalidRequest("subject_token_type must be " + " or ".join(sorted(SUBJECT_TOKEN_TYPES | {
                TOKEN_TYPE_ACCESS_TOKEN})))
        scope_set(params.get("scope"))  # malformed → invalid_request
        # only an authenticated client counts: a public client's bare client_id proves nothing
        client = req.client
        authenticated = client.client.client_id if client is not None and client.method != "none" else None
        now = ctx.clock.now()
        report = await evaluate(token, policies=ctx.store, keys=ctx.external_keys, now=now,
                                leeway=ctx.policy.leeway, server_ttl=ctx.policy.access_token_ttl,
                                client_id=authenticated, scope=params.get("scope"),
                                audiences=[*req.request.multi("audience"), *req.request.multi("resource")])
        detail.update(_describe(report))
        if report.error == "invalid_scope":
            raise InvalidScope(report.reason or "scope not allowed")
        if report.error == "invalid_target":
            raise InvalidTarget(report.reason or "audience not allowed")
        if report.grant is None or report.issuer is None or report.external_exp is None:
            raise InvalidGrant(GENERIC_REFUSAL, debug=report.reason or "refused")
        grant = report.grant
        if grant.one_time_jti:
            assert report.external_jti is not None
            namespace, value = jti_replay_key(report.issuer, report.external_jti)
            if not await ctx.store.use_once(namespace, value, report.external_exp + ctx.policy.leeway, now):
                raise InvalidGrant(GENERIC_REFUSAL, debug="jti_unused: this token was already exchanged")
        client_id = grant.client_id  # the authenticated client, or "federation:<policy_id>"
        at = ctx.issuer.access_token(subject=grant.subject, client_id=client_id, audience=grant.audience,
                                     scopes=grant.scopes, lifetime=grant.lifetime,
                                     extra_claims={"act": dict(grant.act), "federation_policy": grant.policy_id})
        detail.update(lifetime=at.expires_in, exp=at.expires_at)
        ctx.audit.emit(AuditEvent(type=AUDIT_TYPE, outcome="success", at=now, client_id=client_id,
                                  subject=grant.subject, grant_type=self.grant_type, jti=at.jti,
                                  ip=req.request.client_ip, detail=detail))
        return TokenResponse(access_token=at.token, expires_in=at.expires_in, scope=at.scope or None,
                             issued_token_type=TOKEN_TYPE_ACCESS_TOKEN)


def _describe(report: FederationReport) -> dict[str, Any]:
    """Audit detail: identifiers only, never the token."""
    out: dict[str, Any] = {"issuer": (report.issuer or "")[:300] or None,
                           "external_subject": (report.external_subject or "")[:300] or None,
                           "external_jti": (report.external_jti or "")[:100] or None,
                           "policy": report.selected}
    if report.grant is not None:
        out.update(aud=list(report.grant.audience), scope=" ".join(report.grant.scopes))
    return out


def _subject_token(params: Mapping[str, str]) -> str:
    """What both cases require of an RFC 8693 §2.1 request: no ``actor_token`` (the authenticated client is the
    actor), a ``subject_token``, and an access token as the requested type. The federation case calls it inside
    its audited block, so its refusals are audited too."""
    if "actor_token" in params or "actor_token_type" in params:
        raise InvalidRequest("actor_token is not supported: the authenticated client is the actor; "
                             "send only a subject_token")
    token = params.get("subject_token")
    if not token:
        raise InvalidRequest("missing parameter 'subject_token'")
    requested = params.get("requested_token_type")
    if requested is not None and requested != TOKEN_TYPE_ACCESS_TOKEN:
        raise InvalidRequest("requested_token_type must be " + TOKEN_TYPE_ACCESS_TOKEN)
    return token
