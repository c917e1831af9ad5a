"""Authorization codes and refresh-token families, with their storage Protocols.

Everything issued from one authorization code forms a *family*: the refresh tokens that rotate from
it and the jti of every access token minted along the way. Replaying a code or a spent refresh token
revokes the whole family (RFC 6749 §4.1.2, RFC 9700 §4.14.2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "AuthorizationCode",
    "AuthorizationCodeRepository",
    "RefreshToken",
    "RefreshTokenRepository",
    "TokenFamily",
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
