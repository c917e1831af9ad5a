"""RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0 §2-§3).

``post_logout_redirect_uri`` must be registered exactly for the client named by ``id_token_hint`` (or
``client_id``); otherwise nothing redirects. The hint may have expired, but it must be our signature and an
ID Token (``typ`` ``JWT``): an access token (``at+jwt``) is not a hint.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from ..clients import Client
from ..context import EngineContext
from ..errors import InvalidRequest
from ..jose import JoseError, decode_unverified, numeric_date, verify_jwt
from ..requests import single_params

__all__ = ["LogoutDecision", "LogoutEndpoint"]


@dataclass(frozen=True, slots=True)
class LogoutDecision:
    client: Client | None
    #: where to send the browser afterwards (state appended), or None to show the signed-out page
    redirect: str | None
    #: the user the id_token_hint names, if any: when it is the signed-in user, no confirmation is needed
    hint_subject: str | None
    hint_sid: str | None


class LogoutEndpoint:
    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx

    async def check(self, pairs: tuple[tuple[str, str], ...]) -> LogoutDecision:
        """Validate the request; raises :class:`InvalidRequest` (shown as an error page, never redirected)."""
        ctx = self.ctx
        params = single_params(pairs)
        hint = params.get("id_token_hint")
        client_id = params.get("client_id")
        subject = sid = None
        if hint is not None:
            try:
                _, unverified = decode_unverified(hint)
                exp = unverified.get("exp")
                # numeric_date: a 400-digit exp would make float() raise OverflowError
                at = min(ctx.clock.now(), float(exp) - 1) if numeric_date(exp) else ctx.clock.now()
                # an ID Token (typ JWT, as issuance signs it), never an access token (typ at+jwt)
                verified = verify_jwt(hint, ctx.keyring().verification_keys, issuer=ctx.policy.issuer, now=at,
                                      typ="JWT", require=("sub", "aud", "iat"))
            except (JoseError, ValueError) as exc:
                raise InvalidRequest("id_token_hint is not an ID Token issued here") from exc
            aud = verified.claims["aud"]
            auds = [aud] if isinstance(aud, str) else list(aud)
            if client_id is not None and client_id not in auds:
                raise InvalidRequest("client_id does not match the id_token_hint")
            client_id = client_id or (auds[0] if auds else None)
            subject = str(verified.claims["sub"])
            sid = verified.claims.get("sid") if isinstance(verified.claims.get("sid"), str) else None
        client = await ctx.store.get_client(client_id) if client_id and len(client_id) <= 256 else None
        if client_id and client is None:
            raise InvalidRequest("unknown client")
        target = params.get("post_logout_redirect_uri")
        redirect = None
        if target is not None:
            if client is None:
                raise InvalidRequest("post_logout_redirect_uri needs id_token_hint or client_id")
            if target not in client.post_logout_redirect_uris:
                raise InvalidRequest("post_logout_redirect_uri is not registered for this client")
            redirect = target
            state = params.get("state")
            if state is not None:
                redirect += ("&" if "?" in target else "?") + urlencode({"state": state})
        return LogoutDecision(client=client, redirect=redirect, hint_subject=subject, hint_sid=sid)
