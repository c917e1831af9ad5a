"""Authorization codes and refresh-token families, with their storage Protocols.

Everything issued from one authorization code forms a *family*: the refresh tokens that rotate from
it and the jti of every access token minted along the way. Replaying a code or a spent refresh token
revokes the whole family (RFC 6749 §4.1.2, RFC 9700 §4.14.2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from .._secrets import constant_time_equals

__all__ = [
    "AuthorizationCode",
    "AuthorizationCodeRepository",
    "RefreshRotation",
    "RefreshToken",
    "RefreshTokenRepository",
    "RotationOutcome",
    "TokenFamily",
    "registered_grant",
    "rotation_refusal",
    "successor_of",
]


@dataclass(frozen=True, slots=True)
class AuthorizationCode:
    """RFC 6749 §4.1.2, bound to the client, redirect URI, PKCE challenge (RFC 7636 §4.4), nonce, scopes,
    user and authentication time. Stored by keyed hash; ``used_at`` is set once, atomically."""

    code_hash: str = field(repr=False)
    client_id: str
    redirect_uri: str
    code_challenge: str
    scopes: frozenset[str]
    user_id: str
    session_id: str
    auth_time: float
    amr: tuple[str, ...]
    family_id: str
    created_at: float
    expires_at: float
    nonce: str | None = None
    acr: str | None = None
    audience: tuple[str, ...] = ()
    used_at: float | None = None
    #: RFC 9449 §10 ``dpop_jkt``: the code is exchanged only with a DPoP proof by this key
    dpop_jkt: str | None = None


@dataclass(frozen=True, slots=True)
class TokenFamily:
    """One grant of a user to a client, from the code exchange on: absolute expiry, revocation state."""

    family_id: str
    client_id: str
    user_id: str
    scopes: frozenset[str]
    audience: tuple[str, ...]
    created_at: float
    expires_at: float
    auth_time: float
    amr: tuple[str, ...] = ()
    acr: str | None = None
    session_id: str | None = None
    revoked_at: float | None = None
    dpop_jkt: str | None = None
    #: RFC 8705 §4: a public client's refresh tokens are bound to its certificate (``x5t#S256``)
    x5t_s256: str | None = None


@dataclass(frozen=True, slots=True)
class RefreshToken:
    """An opaque refresh token, stored by keyed hash. Spent when ``used_at`` is set; the successor is kept
    sealed for the reuse window only (``successor_sealed``), with the fingerprint of the request that
    spent it (``request_fp``)."""

    token_hash: str = field(repr=False)
    family_id: str
    client_id: str
    user_id: str
    scopes: frozenset[str]
    created_at: float
    expires_at: float
    parent_hash: str | None = field(default=None, repr=False)
    used_at: float | None = None
    request_fp: str | None = field(default=None, repr=False)
    successor_sealed: bytes | None = field(default=None, repr=False)
    dpop_jkt: str | None = None


@dataclass(frozen=True, slots=True)
class RefreshRotation:
    """One refresh request, as ``RefreshTokenRepository.rotate_refresh_token_once`` carries it out: the token
    presented, the client presenting it and what its *current* registration allows, and the ids minted ahead
    (the new access token's ``jti`` and expiry, the successor's hash) so that the store can find, spend and
    succeed the token in one round trip before anything is signed."""

    token_hash: str = field(repr=False)
    client_id: str
    now: float
    requested: frozenset[str]  # the ``scope`` parameter; empty: the whole grant
    client_scopes: frozenset[str]
    client_audiences: frozenset[str]  # the client's registered audiences and its own client_id
    userinfo_audience: str  # allowed as an audience while ``openid`` is
    refresh_allowed: bool  # the client may have refresh tokens at all ("refresh_token" among its grant types)
    jti: str
    access_expires_at: float
    successor_hash: str = field(repr=False)
    idle_ttl: float
    #: ``x5t#S256`` of the TLS client certificate of this request (None: none, or unreadable); a family bound
    #: to a certificate (RFC 8705 §4) rotates only with it
    x5t_s256: str | None = None
    #: RFC 9449 §5: thumbprint of this request's DPoP proof key (None: no proof); a family bound to a key
    #: rotates only with a proof by it
    dpop_jkt: str | None = None


@dataclass(frozen=True, slots=True)
class RotationOutcome:
    """What ``rotate_refresh_token_once`` found (before it wrote anything) and did. ``rotated``: this call spent
    the token, recorded the jti and stored ``successor`` (None when none was due)."""

    token: RefreshToken | None
    family: TokenFamily | None
    user_enabled: bool  # the token's user exists and is not disabled
    rotated: bool
    successor: RefreshToken | None = field(default=None, repr=False)


def registered_grant(scopes: frozenset[str], audience: tuple[str, ...], client_scopes: frozenset[str],
                     client_audiences: frozenset[str], userinfo_audience: str
                     ) -> tuple[frozenset[str], tuple[str, ...]] | None:
    """A grant's scopes and audiences as the client's current registration allows them (``client_audiences``
    holds its registered audiences and its client_id; the userinfo audience stays while ``openid`` does).
    None when nothing of either is left."""
    kept = scopes & client_scopes
    allowed = {*client_audiences, *((userinfo_audience,) if "openid" in kept else ())}
    aud = tuple(a for a in audience if a in allowed)
    if not kept or not aud:
        return None
    return kept, aud


def rotation_refusal(token: RefreshToken | None, family: TokenFamily | None, user_enabled: bool,
                     r: RefreshRotation) -> str | None:
    """Why ``r`` may not spend ``token`` (None: it may), checked in the refresh grant's order. Every store's
    ``rotate_refresh_token_once`` spends exactly when this is None at the moment it spends."""
    if token is None or token.client_id != r.client_id:
        return "unknown refresh token or another client's"
    if family is None or family.revoked_at is not None:
        return "family revoked"
    if family.x5t_s256 is not None and (r.x5t_s256 is None or not constant_time_equals(r.x5t_s256,
                                                                                        family.x5t_s256)):
        return "certificate mismatch"
    if family.dpop_jkt is not None and (r.dpop_jkt is None or not constant_time_equals(r.dpop_jkt,
                                                                                        family.dpop_jkt)):
        return "DPoP key mismatch"
    if r.requested - family.scopes:
        return "scope widened"
    if token.used_at is not None:
        return "spent"
    if r.now >= token.expires_at or r.now >= family.expires_at:
        return "expired"
    if r.requested - r.client_scopes:
        return "scope no longer allowed"
    if registered_grant(family.scopes, family.audience, r.client_scopes, r.client_audiences,
                        r.userinfo_audience) is None:
        return "nothing registered"
    if not user_enabled:
        return "user gone or disabled"
    return None


def successor_of(token: RefreshToken, family: TokenFamily, r: RefreshRotation) -> RefreshToken | None:
    """The refresh token that succeeds ``token`` once ``r`` spent it, when one is due: the client may have
    refresh tokens and, with OpenID Connect, ``offline_access`` is still granted (OIDC Core §11)."""
    grant = registered_grant(family.scopes, family.audience, r.client_scopes, r.client_audiences,
                             r.userinfo_audience)
    if grant is None or not r.refresh_allowed or ("openid" in grant[0] and "offline_access" not in grant[0]):
        return None
    return RefreshToken(token_hash=r.successor_hash, family_id=family.family_id, client_id=r.client_id,
                        user_id=token.user_id, scopes=grant[0], created_at=r.now,
                        expires_at=min(family.expires_at, r.now + r.idle_ttl), parent_hash=token.token_hash,
                        dpop_jkt=family.dpop_jkt)


class AuthorizationCodeRepository(Protocol):
    async def add_code(self, code: AuthorizationCode) -> None: ...
    async def get_code(self, code_hash: str) -> AuthorizationCode | None: ...
    async def use_code(self, code_hash: str, now: float) -> bool:
        """Mark the code used: True for exactly one caller (``UPDATE … WHERE used_at IS NULL``)."""
        ...


class RefreshTokenRepository(Protocol):
    async def add_family(self, family: TokenFamily) -> None: ...
    async def get_family(self, family_id: str) -> TokenFamily | None: ...
    async def revoke_family(self, family_id: str, now: float) -> bool:
        """Mark the family revoked; True if it was not revoked before."""
        ...

    async def list_families(self, user_id: str) -> list[TokenFamily]:
        """The user's families that are not revoked."""
        ...

    async def add_family_jti(self, family_id: str, jti: str, expires_at: float) -> None: ...
    async def family_jtis(self, family_id: str) -> list[tuple[str, float]]: ...
    async def add_refresh_token(self, token: RefreshToken) -> None: ...
    async def get_refresh_token(self, token_hash: str) -> RefreshToken | None: ...
    async def use_refresh_token(self, token_hash: str, now: float, request_fp: str,
                                successor_sealed: bytes | None) -> bool:
        """Spend the token: True for exactly one caller (``UPDATE … WHERE used_at IS NULL``)."""
        ...

    async def purge_user_flows(self, now: float, grace: float) -> int:
        """Delete what can no longer be used: login sessions, authorization codes and token families (with
        their refresh tokens and access-token ids) that expired more than ``grace`` seconds ago (a replayed
        code or refresh token is still recognised as such until then), and the ids of access tokens that
        have expired (a family revocation only needs the live ones). Returns how many rows went."""
        ...

    async def rotate_refresh_token(self, token_hash: str, now: float, request_fp: str,
                                   successor_sealed: bytes | None, family_id: str, jti: str,
                                   access_expires_at: float, successor: RefreshToken | None) -> bool:
        """One unit of work: spend the token and, only if this caller spent it, record the new access
        token's jti in the family and store the successor. False (and nothing written) for the loser, and
        when the family is revoked (the token then stays unspent)."""
        ...

    async def rotate_refresh_token_once(self, rotation: RefreshRotation) -> RotationOutcome:
        """Find the token (with its family and whether its user is enabled), and, exactly when
        ``rotation_refusal`` finds nothing against it, spend it, record ``rotation.jti`` in the family and store
        ``successor_of`` it: atomically, one caller of several concurrent ones at most. On PostgreSQL one
        statement (one round trip). The family stays unrevoked until the rotation is stored (a concurrent
        revocation then sees the new jti). Never writes anything when it does not rotate."""
        ...
