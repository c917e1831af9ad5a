"""RFC 8628 §3.4-3.5 Device Access Token Request: polling for the user's decision.

A poll that finds the authorization still pending writes nothing: poll timing lives in the
:class:`~ostiary.core.device.PollTracker` (Redis or process memory), the row is only read, and not even read
when the tracker knows it is still pending (Redis). The only writes are the user's decision and the single
``approved → consumed`` transition that releases the tokens.
"""

from __future__ import annotations

from ..._secrets import new_token, token_hash
from ..context import EngineContext
from ..device import GRANT_DEVICE_CODE, DeviceAuthorization
from ..errors import AccessDenied, AuthorizationPending, ExpiredToken, InvalidGrant, SlowDown
from ..issuance import TokenResponse
from ..requests import form_value
from ..tokens import TokenFamily
from ..user_tokens import issue_in_new_family
from ..users import acr_for
from . import GrantRequest

__all__ = ["DeviceCodeGrant"]

_INVALID = "the device code is invalid or was issued to another client"


class DeviceCodeGrant:
    grant_type = GRANT_DEVICE_CODE
    requires_client = True
    parameters = frozenset({"device_code"})  # RFC 8628 §3.4

    async def handle(self, req: GrantRequest, ctx: EngineContext) -> TokenResponse:
        assert req.client is not None
        client = req.client.client
        device_code = form_value(req.params, "device_code")
        if len(device_code) > 512:
            raise InvalidGrant(_INVALID, debug="device code too long")
        code_hash = token_hash(device_code, ctx.secret_hash_key)
        now = ctx.clock.now()
        tracker = ctx.poll_tracker
        if tracker is not None:  # known pending, not decided since: answered without the database
            known = await tracker.poll_pending(code_hash, client.client_id, now)
            if known == "slow_down":
                raise SlowDown("polling too fast: wait 5 seconds longer between requests")
            if known == "ok":
                raise AuthorizationPending("waiting for the user to approve")
        auth = await ctx.store.get_device_authorization(code_hash)
        if auth is None or auth.client_id != client.client_id:
            raise InvalidGrant(_INVALID, debug="unknown device code or another client's")
        if auth.status == "consumed":
            raise InvalidGrant("the device code was already used", debug="device code reused")
        if auth.expired(now):
            raise ExpiredToken("the device code expired; start again")
        if auth.status == "denied":
            raise AccessDenied("the user denied the request")
        if auth.status == "pending":
            if tracker is not None and await tracker.poll(
                    code_hash, auth.interval, now, auth.expires_at, auth.client_id) == "slow_down":
                raise SlowDown("polling too fast: wait 5 seconds longer between requests")
            raise AuthorizationPending("waiting for the user to approve")
        return await self._redeem(req, ctx, auth)

    async def _redeem(self, req: GrantRequest, ctx: EngineContext, auth: DeviceAuthorization) -> TokenResponse:
        assert req.client is not None
        client = req.client.client
        now = ctx.clock.now()
        user = await ctx.store.get_user(auth.user_id) if auth.user_id else None
        if user is None or user.disabled:
            raise AccessDenied("the account that approved this request is not available", debug="user gone")
        family = TokenFamily(family_id=new_token(16), client_id=client.client_id, user_id=user.user_id,
                             scopes=auth.scopes, audience=auth.audience, created_at=now,
                             expires_at=now + ctx.policy.refresh_token_ttl, auth_time=auth.auth_time or now,
                             amr=auth.amr, acr=acr_for(auth.amr), session_id=auth.session_id)
        issued = await issue_in_new_family(
            ctx, family, client, user, spend=lambda: ctx.store.consume_device_authorization(auth.device_code_hash, now),
            grant_type=self.grant_type, nonce=None, ip=req.request.client_ip)
        if issued is None:
            raise InvalidGrant("the device code was already used", debug="lost the consume race")
        if ctx.poll_tracker is not None:
            await ctx.poll_tracker.forget(auth.device_code_hash)
        return issued
