"""The storage Protocols: :class:`Store`, which composes the Protocol of each aggregate (declared beside it, in
``clients.py``, ``keys.py``, ``audit.py``, ``users.py``, ``tokens.py``, ``device.py``, ``federation.py``,
``pushed.py``), and
those that span aggregates (revocation, replay, a user's tokens, the unit of work). ``ostiary.store`` implements
them (memory, SQL)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any, NamedTuple, Protocol

from .audit import AuditRepository
from .clients import ClientRepository, InitialAccessTokenRepository
from .device import DeviceAuthorizationRepository
from .federation import TrustPolicyRepository
from .keys import KeyRepository
from .pushed import PushedRequestRepository
from .resources import ResourceRepository
from .tokens import AuthorizationCodeRepository, RefreshTokenRepository
from .users import ConsentRepository, SessionRepository, UserRepository

__all__ = ["JwksFetcher", "ReplayRepository", "RevocationRepository", "RevokedUserTokens", "Store", "UnitOfWork",
           "UserTokenRevocation"]


class RevocationRepository(Protocol):
    async def revoke_access_token(self, jti: str, client_id: str, expires_at: float) -> None: ...
    async def is_access_token_revoked(self, jti: str) -> bool: ...
    async def purge_expired(self, now: float) -> int: ...


class RevokedUserTokens(NamedTuple):
    families: int  # token families (grants) revoked: their refresh tokens are dead
    access_tokens: int  # live access tokens of those families now reported revoked


class UserTokenRevocation(Protocol):
    async def revoke_user_tokens(self, user_id: str, now: float, client_id: str | None = None) -> RevokedUserTokens:
        """In one unit of work: revoke every live token family of the user (of one client, or all) and mark
        every unexpired access token those families produced revoked (introspection and userinfo refuse it).
        What a password reset, a disabled account or a reset second factor does."""
        ...


class ReplayRepository(Protocol):
    async def use_once(self, namespace: str, value: str, expires_at: float, now: float) -> bool:
        """Record ``value``; True the first time, False on every later call before ``expires_at``."""
        ...


class UnitOfWork(Protocol):
    def transaction(self) -> AbstractAsyncContextManager[None]:
        """``async with store.transaction():`` makes every call on this store inside the block, by this task,
        one unit of work: all of its writes are kept when the block ends, none when it raises (fosite's
        ``MaybeTransaction``). Inside another transaction it joins that one. A store call that fails inside the
        block fails the whole transaction: let the error propagate. Reads inside the block see its writes.

        Use it wherever one request writes more than one row (a code exchanged: the code spent, the family,
        its access-token id, its refresh token). Keep work that is not storage (signing, audit events)
        outside the block where possible: the transaction holds row locks until it ends."""
        ...


class Store(UnitOfWork, ClientRepository, InitialAccessTokenRepository, KeyRepository, RevocationRepository,
            ReplayRepository, AuditRepository, UserTokenRevocation, UserRepository, SessionRepository,
            ConsentRepository, AuthorizationCodeRepository, RefreshTokenRepository, TrustPolicyRepository,
            DeviceAuthorizationRepository, PushedRequestRepository, ResourceRepository, Protocol):
    async def ping(self) -> bool: ...
    async def close(self) -> None: ...


class JwksFetcher(Protocol):
    async def fetch(self, jwks_uri: str, *, force: bool = False) -> dict[str, Any]:
        """The JWKS at ``jwks_uri`` (cached; ``force`` refetches, rate-limited)."""
        ...
