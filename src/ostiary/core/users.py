"""People: users, their login sessions and the consents they gave, with the storage Protocols for them.

A user's ``user_id`` is random and never changes: it is the OpenID Connect ``sub`` (OIDC Core §5.7).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "ACR_MFA",
    "ACR_PWD",
    "Consent",
    "ConsentRepository",
    "LoginSession",
    "SessionRepository",
    "User",
    "UserRepository",
    "acr_for",
]

#: ``acr`` values (OIDC Core §2): a password alone, or a password and a second factor
ACR_PWD = "pwd"
ACR_MFA = "mfa"


def acr_for(amr: tuple[str, ...] | list[str]) -> str:
    """The ``acr`` that the authentication methods (``amr``, RFC 8176) reached."""
    return ACR_MFA if "otp" in amr else ACR_PWD


@dataclass(frozen=True, slots=True)
class User:
    """An account. ``username`` and ``email`` are stored lower-case (unique, case-insensitive)."""

    user_id: str
    username: str
    name: str
    password_hash: str = field(repr=False)
    email: str | None = None
    email_verified: bool = False
    disabled: bool = False
    #: the TOTP shared secret (RFC 6238), sealed with a server key; ``None`` when no second factor
    totp_secret: bytes | None = field(default=None, repr=False)
    created_at: float = 0.0
    updated_at: float = 0.0

    @property
    def has_totp(self) -> bool:
        return self.totp_secret is not None


@dataclass(frozen=True, slots=True)
class LoginSession:
    """A server-side browser session; the cookie holds a random token, the store only its keyed hash.

    ``session_id`` is a separate public handle (account page, OIDC ``sid``); ``mfa_pending`` marks a
    session whose password was checked but whose second factor was not yet.
    """

    session_id: str
    token_hash: str = field(repr=False)
    user_id: str = ""
    created_at: float = 0.0
    last_seen: float = 0.0
    expires_at: float = 0.0
    auth_time: float = 0.0
    amr: tuple[str, ...] = ()
    mfa_pending: bool = False
    ip: str | None = None
    user_agent: str | None = None

    def active(self, now: float, idle_ttl: float) -> bool:
        return now < self.expires_at and now < self.last_seen + idle_ttl


@dataclass(frozen=True, slots=True)
class Consent:
    """The scopes a user allowed a client (remembered per user and client; a new scope asks again)."""

    user_id: str
    client_id: str
    scopes: frozenset[str]
    granted_at: float
    updated_at: float


class UserRepository(Protocol):
    async def add_user(self, user: User) -> None:
        """Raise ``ValueError`` when the username or email is taken."""
        ...

    async def get_user(self, user_id: str) -> User | None: ...
    async def find_user(self, login: str) -> User | None:
        """By username or email, case-insensitively."""
        ...

    async def update_user(self, user: User) -> None: ...
    async def delete_user(self, user_id: str) -> bool: ...
    async def list_users(self) -> list[User]: ...
    async def set_recovery_codes(self, user_id: str, code_hashes: Sequence[str]) -> None:
        """Replace the user's recovery codes (stored as keyed hashes)."""
        ...

    async def use_recovery_code(self, user_id: str, code_hash: str, now: float) -> bool:
        """Spend a recovery code: True once, atomically."""
        ...

    async def count_recovery_codes(self, user_id: str) -> int: ...


class SessionRepository(Protocol):
    async def add_session(self, session: LoginSession) -> None: ...
    async def get_session(self, token_hash: str) -> LoginSession | None: ...
    async def update_session(self, session: LoginSession) -> None: ...
    async def end_session(self, session_id: str) -> bool: ...
    async def list_sessions(self, user_id: str) -> list[LoginSession]: ...
    async def end_user_sessions(self, user_id: str) -> int: ...


class ConsentRepository(Protocol):
    async def get_consent(self, user_id: str, client_id: str) -> Consent | None: ...
    async def save_consent(self, consent: Consent) -> None: ...
    async def delete_consent(self, user_id: str, client_id: str) -> bool: ...
    async def list_consents(self, user_id: str) -> list[Consent]: ...
