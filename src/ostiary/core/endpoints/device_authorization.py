"""POST /device_authorization (RFC 8628 §3.1, §3.2): start a device flow.

The client authenticates as at the token endpoint (public clients identify themselves with ``client_id``)
and must be allowed the device_code grant. The device code carries 256 bits; the user code is short, for
people to type, and guarded by attempt limits (RFC 8628 §5.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ..._secrets import constant_time_equals, new_token, token_hash
from ..audit import AuditEvent
from ..client_auth import authenticate_client
from ..clients import Client
from ..context import EngineContext
from ..device import (
    GRANT_DEVICE_CODE,
    DeviceAuthorization,
    format_user_code,
    new_user_code,
    normalise_user_code,
    user_code_locator,
)
from ..errors import InvalidClient, InvalidScope, ServerError, UnauthorizedClient
from ..requests import EndpointRequest, scope_set
from ..targets import resolve_audience

__all__ = ["DeviceAuthorizationEndpoint", "DevicePolicy", "DeviceVerification", "device_audience", "device_scopes"]


@dataclass(frozen=True, slots=True)
class DevicePolicy:
    """RFC 8628 §3.2 ``expires_in`` and ``interval``; attempt limits for the verification page (§5.1)."""

    verification_uri: str
    expires_in: int = 600
    interval: int = 5
    max_attempts_per_code: int = 5


def device_scopes(client: Client, requested: str | None) -> frozenset[str]:
    """RFC 6749 §3.3 as at the authorization endpoint: every requested scope must be allowed."""
    scopes = scope_set(requested) or client.scopes
    extra = scopes - client.scopes
    if extra:
        raise InvalidScope("scope not allowed for this client: " + " ".join(sorted(extra))[:200])
    if not scopes:
        raise InvalidScope("no scope requested and the client has none")
    return scopes


def device_audience(ctx: EngineContext, client: Client, resources: list[str], scopes: frozenset[str]
                    ) -> tuple[str, ...]:
    """RFC 8707 ``resource`` or the client's audiences; the userinfo endpoint too when ``openid`` is asked
    (the same rule as the authorization code flow)."""
    audience: tuple[str, ...] = resolve_audience(client, resources) if resources or client.audiences else ()
    if "openid" in scopes:
        audience = (*audience, ctx.policy.issuer + "/userinfo")
    return audience or (client.client_id,)


class DeviceAuthorizationEndpoint:
    def __init__(self, ctx: EngineContext, policy: DevicePolicy) -> None:
        self.ctx = ctx
        self.policy = policy

    async def handle(self, request: EndpointRequest) -> dict[str, Any]:
        """RFC 8628 §3.2 Device Authorization Response."""
        ctx = self.ctx
        params = request.single()
        client_auth = await authenticate_client(params, request.authorization, ctx.client_auth(request.endpoint),
                                                request.client_cert)
        if client_auth is None:
            raise InvalidClient("client authentication required (public clients send client_id)")
        client = client_auth.client
        if GRANT_DEVICE_CODE not in client.grant_types:
            raise UnauthorizedClient("this client may not use the device authorization grant")
        scopes = device_scopes(client, params.get("scope"))
        audience = device_audience(ctx, client, request.multi("resource"), scopes)
        now = ctx.clock.now()
        device_code = new_token(32)
        for _ in range(8):
            user_code = new_user_code()
            auth = DeviceAuthorization(
                device_code_hash=token_hash(device_code, ctx.secret_hash_key), user_code=user_code,
                client_id=client.client_id, scopes=scopes, audience=audience, created_at=now,
                expires_at=now + self.policy.expires_in, interval=self.policy.interval)
            try:
                await ctx.store.add_device_authorization(auth)
                break
            except ValueError:
                continue  # user code collision: draw another
        else:
            raise ServerError("could not allocate a user code")
        ctx.audit.emit(AuditEvent(type="device.started", outcome="success", at=now, client_id=client.client_id,
                                  grant_type=GRANT_DEVICE_CODE, ip=request.client_ip,
                                  detail={"scope": " ".join(sorted(scopes)), "expires_in": self.policy.expires_in}))
        shown = format_user_code(user_code)
        uri = self.policy.verification_uri
        return {
            "device_code": device_code,
            "user_code": shown,
            "verification_uri": uri,
            "verification_uri_complete": f"{uri}?user_code={quote(shown)}",
            "expires_in": self.policy.expires_in,
            "interval": self.policy.interval,
        }


class DeviceVerification:
    """RFC 8628 §3.3 User Interaction: find the authorization a typed user code names, record the decision.

    The first half of the code locates the live authorizations that could match; the whole code is then
    compared in constant time. A wrong code that shares a live code's first half counts against that
    authorization, which is denied (locked) after ``max_attempts_per_code`` such tries (§5.1). Throttling
    per IP, per browser session and globally is the web layer's job, before this is called.
    """

    def __init__(self, ctx: EngineContext, policy: DevicePolicy) -> None:
        self.ctx = ctx
        self.policy = policy

    async def lookup(self, typed: str, *, ip: str | None = None) -> DeviceAuthorization | None:
        ctx = self.ctx
        code = normalise_user_code(typed)
        if code is None:
            return None
        now = ctx.clock.now()
        candidates = await ctx.store.find_device_authorizations(user_code_locator(code), now)
        found = None
        for cand in candidates:
            if constant_time_equals(cand.user_code, code):
                found = cand
        if found is not None:
            return found
        for cand in candidates:
            count = await ctx.store.record_user_code_failure(cand.device_code_hash,
                                                             self.policy.max_attempts_per_code, now)
            if count == self.policy.max_attempts_per_code:
                if ctx.poll_tracker is not None:  # locked = denied: the device must hear it
                    await ctx.poll_tracker.decided(cand.device_code_hash, cand.expires_at)
                ctx.audit.emit(AuditEvent(type="security.device_code_locked", outcome="failure", at=now,
                                          client_id=cand.client_id, grant_type=GRANT_DEVICE_CODE, ip=ip,
                                          detail={"failed_attempts": count}))
        return None

    async def decide(self, auth: DeviceAuthorization, approve: bool, *, user_id: str, session_id: str | None,
                     auth_time: float, amr: tuple[str, ...], ip: str | None = None) -> bool:
        """Approve or deny, once: False when it was decided, locked or expired meanwhile."""
        ctx = self.ctx
        now = ctx.clock.now()
        ok = await ctx.store.decide_device_authorization(auth.device_code_hash, approve, user_id, session_id,
                                                         auth_time, amr, now)
        if ok:
            if ctx.poll_tracker is not None:  # the device's next poll reads the decision from the database
                await ctx.poll_tracker.decided(auth.device_code_hash, auth.expires_at)
            ctx.audit.emit(AuditEvent(type="device.approved" if approve else "device.denied", outcome="success",
                                      at=now, client_id=auth.client_id, subject=user_id,
                                      grant_type=GRANT_DEVICE_CODE, ip=ip,
                                      detail={"scope": " ".join(sorted(auth.scopes))}))
        return ok
