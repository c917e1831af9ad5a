"""The UserInfo endpoint (OIDC Core §5.3): claims about the user, by scope (§5.4), for a Bearer access token
sent in the Authorization header only (RFC 6750 §2.1; query-string tokens are refused, §2.3)."""

from __future__ import annotations

from typing import Any

from ..._secrets import constant_time_equals
from ..context import EngineContext
from ..dpop import CNF_JKT, DPOP_ALGS, InvalidDpopProof, UseDpopNonce, resource_challenge
from ..errors import InvalidRequest, InvalidToken, OAuthError, safe_description
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


class _ProofRefused(InvalidDpopProof):
    """RFC 9449 §7.1: at a protected resource, ``invalid_dpop_proof`` is a 401 with a ``DPoP`` challenge."""

    status = 401


class _NonceWanted(UseDpopNonce):
    """RFC 9449 §9: at a protected resource, ``use_dpop_nonce`` is a 401 with a ``DPoP`` challenge."""

    status = 401


def _bearer_error(exc_type: type[OAuthError], description: str) -> OAuthError:
    header = f'Bearer realm="ostiary", error="{exc_type.error}", error_description="{safe_description(description)}"'
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

    def _challenge(self, exc_type: type[OAuthError], description: str, dpop: bool) -> OAuthError:
        """RFC 6750 §3 / RFC 9449 §7.1: the challenge of the scheme the request used (DPoP-bound tokens: DPoP)."""
        if not dpop:
            return _bearer_error(exc_type, description)
        header = resource_challenge(self._algs, exc_type.error, description)
        if exc_type is InvalidDpopProof:
            exc_type = _ProofRefused
        return exc_type(description, headers={"WWW-Authenticate": header})

    @property
    def _algs(self) -> tuple[str, ...]:
        return self.ctx.dpop.algs if self.ctx.dpop is not None else DPOP_ALGS

    async def handle(self, authorization: str | None, *, token_elsewhere: bool = False,
                     client_cert: bytes | None = None, dpop: str | None = None, method: str = "GET",
                     url: str | None = None, repeated_authorization: bool = False) -> dict[str, Any]:
        """``client_cert``: the request's TLS client certificate, which a certificate-bound token needs; ``dpop``:
        the DPoP header (RFC 9449 §7), with the request's ``method`` and ``url`` (default: the endpoint's).
        ``repeated_authorization``: the request has more than one ``Authorization`` header."""
        ctx = self.ctx
        if token_elsewhere:
            raise _bearer_error(InvalidRequest, "send the access token in the Authorization header only")
        if repeated_authorization:  # RFC 6750 §3.1: a repeated parameter; which one would count is ambiguous
            raise _bearer_error(InvalidRequest, "send one Authorization header, not several")
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        as_dpop = scheme.lower() == "dpop"
        if not (as_dpop or scheme.lower() == "bearer") or not token:
            both = f'Bearer realm="ostiary", {resource_challenge(self._algs)}'
            raise InvalidToken("an access token is required (Authorization: Bearer or DPoP)",
                               headers={"WWW-Authenticate": both})
        try:
            claims = verify_own_access_token(token, ctx.keyring(), ctx.policy, ctx.clock.now(),
                                             audience=ctx.policy.issuer + "/userinfo")
        except JoseError as exc:
            raise self._challenge(InvalidToken, "the access token is invalid or expired", as_dpop) from exc
        cnf = claims.get("cnf")
        jkt = cnf.get(CNF_JKT) if isinstance(cnf, dict) else None
        if jkt is not None and not as_dpop:
            # RFC 9449 §7.2: a DPoP-bound token presented as a Bearer token is refused
            raise self._challenge(InvalidToken, "the access token is DPoP-bound: send it with the DPoP scheme and "
                                                "a DPoP proof", True)
        if as_dpop:
            await self._check_proof(dpop, token, jkt, claims, method, url or ctx.policy.issuer + "/userinfo")
        if await ctx.store.is_access_token_revoked(str(claims["jti"])):
            raise self._challenge(InvalidToken, "the access token is revoked", as_dpop)
        # from here on too, the challenge is the one of the scheme the request used (RFC 9449 §7.1)
        if not bound_certificate_presented(claims, client_cert):
            raise self._challenge(InvalidToken, "the access token is bound to a TLS client certificate (RFC 8705), "
                                                "and this request did not present it", as_dpop)
        scopes = frozenset(str(claims.get("scope", "")).split())
        if "openid" not in scopes:
            raise self._challenge(InsufficientScope, "the access token lacks the openid scope", as_dpop)
        user = await ctx.store.get_user(str(claims["sub"]))
        if user is None or user.disabled:
            raise self._challenge(InvalidToken, "the user no longer exists or is disabled", as_dpop)
        return claims_for(user, scopes)

    async def _check_proof(self, dpop: str | None, token: str, jkt: object, claims: dict[str, Any], method: str,
                           url: str) -> None:
        """RFC 9449 §7.1: the token is DPoP-bound, and the proof is valid, for this token (``ath``) and by its key."""
        ctx = self.ctx
        if not isinstance(jkt, str):
            raise self._challenge(InvalidToken, "the access token is not DPoP-bound: send it as a Bearer token", True)
        if ctx.dpop is None:
            raise self._challenge(InvalidDpopProof, "DPoP proofs are not accepted by this server", True)
        require_nonce = ctx.policy.dpop_require_nonce
        if not require_nonce:
            client = await ctx.store.get_client(str(claims.get("client_id", "")))
            require_nonce = client is not None and client.dpop_require_nonce
        try:
            proof = await ctx.dpop.verify(dpop, method=method, url=url, access_token=token,
                                          require_nonce=require_nonce)
        except UseDpopNonce as exc:
            raise _NonceWanted(exc.description, headers={
                "WWW-Authenticate": resource_challenge(self._algs, UseDpopNonce.error, exc.description),
                **exc.headers}) from exc
        except InvalidDpopProof as exc:
            raise self._challenge(InvalidDpopProof, exc.description, True) from exc
        if not constant_time_equals(proof.jkt, jkt):
            raise self._challenge(InvalidDpopProof, "the DPoP proof is not signed by the key the access token is "
                                                    "bound to", True)
