"""POST /par: pushed authorization requests (RFC 9126).

The client authenticates as at the token endpoint (``core/client_auth.py``), sends the authorization request's
parameters in the body (or a signed request object in ``request``, RFC 9101), and gets back a single-use
``request_uri`` valid for at most a minute (RFC 9126 §2.2). The request is checked exactly as ``/authorize``
would check it (:func:`~ostiary.core.endpoints.authorize.check_authorization_request`), so a bad request is
refused here, to the client, rather than in the user's browser (RFC 9126 §2.3).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..._secrets import constant_time_equals, new_token, token_hash
from ..audit import AuditEvent
from ..client_auth import authenticate_client
from ..context import EngineContext
from ..dpop import InvalidDpopProof
from ..errors import InvalidClient, InvalidRequest
from ..fapi import fapi2_client_refusal
from ..pushed import REQUEST_URI_PREFIX, PushedRequest
from ..request_object import open_request_object
from ..requests import EndpointRequest, single_params
from ..targets import registered_resources
from .authorize import RESPONSE_MODES, check_authorization_request, resolve_redirect_uri

__all__ = ["CLIENT_AUTH_PARAMETERS", "PushedAuthorizationEndpoint", "PushedAuthorizationResponse"]

#: client authentication parameters (RFC 6749 §2.3.1, RFC 7523 §2.2): not part of the stored request
CLIENT_AUTH_PARAMETERS = frozenset({"client_secret", "client_assertion", "client_assertion_type"})


@dataclass(frozen=True, slots=True)
class PushedAuthorizationResponse:
    """RFC 9126 §2.2: 201 with ``request_uri`` and ``expires_in``."""

    request_uri: str
    expires_in: int

    def body(self) -> dict[str, str | int]:
        return {"request_uri": self.request_uri, "expires_in": self.expires_in}


class PushedAuthorizationEndpoint:
    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx

    async def handle(self, request: EndpointRequest) -> PushedAuthorizationResponse:
        ctx = self.ctx
        policy = ctx.policy
        params = request.single()
        try:
            # RFC 9126 §2: as at the token endpoint, the TLS client certificate included (RFC 8705 §2)
            authenticated = await authenticate_client(params, request.authorization,
                                                      ctx.client_auth(policy.pushed_authorization_request_endpoint),
                                                      request.client_cert)
        except InvalidClient as exc:
            ctx.audit.emit(AuditEvent(type="client.auth_failed", outcome="failure", at=ctx.clock.now(),
                                      ip=request.client_ip, detail={"reason": exc.debug[:200], "endpoint": "par"}))
            raise
        if authenticated is None:
            raise InvalidClient("client authentication required (RFC 9126 §2): send client_id, and the client's "
                                "credentials if it has any")
        client = authenticated.client
        if policy.fapi2:
            refusal = fapi2_client_refusal(client, authenticated.method)
            if refusal is not None:
                raise InvalidClient(refusal)
        if "request_uri" in params:
            raise InvalidRequest("request_uri cannot be pushed (RFC 9126 §2.1)")
        pairs = tuple((k, v) for k, v in request.params if k not in CLIENT_AUTH_PARAMETERS)
        if "request" in params:
            pairs = await open_request_object(params["request"], client, policy, ctx.jwks_fetcher, ctx.clock.now())
        elif "client_id" not in params:  # authenticated by the Authorization header: keep who pushed it
            pairs = (("client_id", client.client_id), *pairs)
        if request.dpop is not None:
            pairs = await self._bind_to_proof(request, pairs, client.dpop_require_nonce)
        auth_params = single_params(pairs)
        if policy.fapi2 and "redirect_uri" not in auth_params:
            raise InvalidRequest("FAPI 2.0 mode: redirect_uri is required in pushed authorization requests "
                                 "(FAPI 2.0 Security Profile 5.3.2.2)")
        redirect_uri = resolve_redirect_uri(auth_params, client)
        mode = auth_params.get("response_mode", "query")
        if mode not in RESPONSE_MODES:
            raise InvalidRequest("response_mode must be query or form_post")
        resources = [v for k, v in pairs if k == "resource"]
        check_authorization_request(auth_params, resources, client, redirect_uri, mode, auth_params.get("state"),
                                    policy, await registered_resources(ctx.store, resources))
        now = ctx.clock.now()
        reference = new_token(32)
        await ctx.store.add_pushed_request(PushedRequest(
            request_id=token_hash(reference, ctx.secret_hash_key), client_id=client.client_id, params=pairs,
            created_at=now, expires_at=now + policy.par_expires_in))
        ctx.audit.emit(AuditEvent(type="authorization.pushed", outcome="success", at=now, client_id=client.client_id,
                                  ip=request.client_ip, detail={"request_object": "request" in params}))
        return PushedAuthorizationResponse(REQUEST_URI_PREFIX + reference, policy.par_expires_in)

    async def _bind_to_proof(self, request: EndpointRequest, pairs: tuple[tuple[str, str], ...],
                             client_nonce: bool) -> tuple[tuple[str, str], ...]:
        """RFC 9449 §10.1: a DPoP proof sent to /par binds the code to its key, as ``dpop_jkt`` would (both sent:
        they must agree)."""
        if self.ctx.dpop is None:
            raise InvalidDpopProof("DPoP proofs are not accepted by this server")
        proof = await self.ctx.dpop.verify(request.dpop, method="POST", url=request.endpoint,
                                           first_use=request.dpop_first_use,
                                           require_nonce=self.ctx.policy.dpop_require_nonce or client_nonce)
        given = [v for k, v in pairs if k == "dpop_jkt"]
        if given and (len(given) > 1 or not constant_time_equals(given[0], proof.jkt)):
            raise InvalidDpopProof("dpop_jkt is not the thumbprint of the DPoP proof's key")
        return pairs if given else (*pairs, ("dpop_jkt", proof.jkt))
