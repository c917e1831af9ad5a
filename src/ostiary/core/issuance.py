"""Minting tokens: JWT access tokens per RFC 9068 (signed with ``ServerPolicy.access_token_alg``) and ID tokens
(OIDC Core §2, signed with the client's ``id_token_signed_response_alg``, RS256 unless registered otherwise)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._clock import Clock
from .._secrets import new_token
from .errors import UnauthorizedClient
from .jose import verify_jwt
from .keys import KeyRing
from .policy import ServerPolicy

__all__ = ["ACCESS_TOKEN_CLAIMS", "IssuedAccessToken", "TokenIssuer", "TokenResponse", "new_jti",
           "verify_own_access_token"]

ACCESS_TOKEN_TYP = "at+jwt"
#: what every access token this server mints carries (RFC 9068 §2.2; ``aud`` is absent when it names nobody)
ACCESS_TOKEN_CLAIMS = ("exp", "iat", "jti", "sub", "client_id")


def new_jti() -> str:
    """A fresh access-token id (RFC 9068 §2.2: ``jti``)."""
    return new_token(16)


def verify_own_access_token(token: str, keyring: KeyRing, policy: ServerPolicy, now: float, *,
                            audience: str | None = None) -> dict[str, Any]:
    """The claims of one of this server's access tokens (RFC 9068 §4): signed with one of its keys, ``typ``
    ``at+jwt``, its issuer, unexpired, issued for ``audience`` when one is named. Raises ``JoseError``.

    No leeway: the token was minted with this server's clock, and "active" means unexpired (RFC 7662 §2.2).
    Revocation is the caller's next check (``RevocationRepository.is_access_token_revoked``)."""
    verified = verify_jwt(token, keyring.verification_keys, issuer=policy.issuer, audience=audience,
                          typ=ACCESS_TOKEN_TYP, now=now, require=ACCESS_TOKEN_CLAIMS)
    return dict(verified.claims)


@dataclass(frozen=True, slots=True)
class IssuedAccessToken:
    token: str = field(repr=False)
    jti: str
    expires_in: int
    expires_at: int
    scope: str
    audience: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TokenResponse:
    """RFC 6749 §5.1 successful response."""

    access_token: str = field(repr=False)
    expires_in: int
    token_type: str = "Bearer"
    scope: str | None = None
    refresh_token: str | None = field(default=None, repr=False)
    id_token: str | None = field(default=None, repr=False)
    issued_token_type: str | None = None
    grant_type: str = field(default="", compare=False)
    #: RFC 9449 §8: a fresh server nonce for the client's next proof (the ``DPoP-Nonce`` header), when required
    dpop_nonce: str | None = field(default=None, compare=False)

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"access_token": self.access_token, "token_type": self.token_type,
                               "expires_in": self.expires_in}
        if self.scope:
            out["scope"] = self.scope
        for name in ("refresh_token", "id_token", "issued_token_type"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


class TokenIssuer:
    def __init__(self, policy: ServerPolicy, keyring: Callable[[], KeyRing], clock: Clock,
                 confirmation: Mapping[str, str] | None = None) -> None:
        self._policy = policy
        self._keyring = keyring
        self._clock = clock
        #: RFC 7800 ``cnf`` of every access token this issuer mints (RFC 8705 §3.1 certificate binding)
        self._confirmation = confirmation

    def access_token(self, *, subject: str, client_id: str, audience: Sequence[str], scopes: Sequence[str],
                     lifetime: int | None = None, extra_claims: Mapping[str, Any] | None = None,
                     jti: str | None = None, issued_at: int | None = None) -> IssuedAccessToken:
        """RFC 9068 §2.2: iss, exp, aud, sub, client_id, iat, jti (and nbf, scope). ``jti`` and ``issued_at``
        when they were chosen (and stored) before signing (``new_jti``; the clock's second)."""
        now = int(self._clock.now()) if issued_at is None else issued_at
        ttl = min(lifetime or self._policy.access_token_ttl, self._policy.access_token_ttl)
        jti = jti or new_jti()
        scope = " ".join(sorted(scopes))
        aud: str | list[str] = audience[0] if len(audience) == 1 else list(audience)
        claims: dict[str, Any] = {
            "iss": self._policy.issuer, "sub": subject, "aud": aud, "client_id": client_id,
            "iat": now, "nbf": now, "exp": now + ttl, "jti": jti,
        }
        if scope:
            claims["scope"] = scope
        if self._confirmation:
            claims["cnf"] = dict(self._confirmation)
        if extra_claims:
            claims.update({k: v for k, v in extra_claims.items() if k not in claims})
        token = self._keyring().sign(claims, ACCESS_TOKEN_TYP, self._policy.access_token_alg)
        return IssuedAccessToken(token=token, jti=jti, expires_in=ttl, expires_at=now + ttl, scope=scope,
                                 audience=tuple(audience))

    def id_token(self, *, subject: str, client_id: str, auth_time: float, nonce: str | None = None,
                 amr: Sequence[str] = (), acr: str | None = None, access_token: str | None = None,
                 sid: str | None = None, claims: Mapping[str, Any] | None = None, alg: str = "RS256") -> str:
        """OIDC Core §2 ID Token signed with ``alg`` (the client's ``id_token_signed_response_alg``, OIDC
        Registration §2), with ``at_hash`` (§3.1.3.6) computed with that algorithm's hash."""
        import hashlib

        from .._secrets import b64url

        ring = self._keyring()
        if alg not in ring.algs:
            # registration only accepts signable algorithms; this is a key set changed under the client
            raise UnauthorizedClient(
                f"this server has no active {alg} key for this client's ID tokens; an administrator must change "
                "the client's id_token_signed_response_alg or add the algorithm to keys.algorithms",
                debug=f"id_token_signed_response_alg {alg} not signable")
        now = int(self._clock.now())
        body: dict[str, Any] = {"iss": self._policy.issuer, "sub": subject, "aud": client_id, "iat": now,
                                "exp": now + self._policy.access_token_ttl, "auth_time": int(auth_time)}
        if nonce is not None:
            body["nonce"] = nonce
        if amr:
            body["amr"] = list(amr)
        if acr:
            body["acr"] = acr
        if sid:
            body["sid"] = sid
        if access_token is not None:
            digest = {"ES384": hashlib.sha384, "ES512": hashlib.sha512, "RS384": hashlib.sha384,
                      "RS512": hashlib.sha512, "PS384": hashlib.sha384, "PS512": hashlib.sha512,
                      "EdDSA": hashlib.sha512}.get(alg, hashlib.sha256)(access_token.encode("ascii")).digest()
            body["at_hash"] = b64url(digest[: len(digest) // 2])
        if claims:
            body.update({k: v for k, v in claims.items() if k not in body})
        return ring.sign(body, "JWT", alg)
