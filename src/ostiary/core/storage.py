"""Storage Protocols, one per aggregate. ``ostiary.store`` implements them (memory, SQL)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, NamedTuple, Protocol

from .device import DeviceAuthorizationRepository
from .federation import TrustPolicyRepository
from .models import AuditEvent, Client, SigningKey
from .tokens import AuthorizationCodeRepository, RefreshTokenRepository
from .users import ConsentRepository, SessionRepository, UserRepository

__all__ = ["AuditEventsRejected", "AuditRepository", "AuditSink", "ClientRepository", "JwksFetcher", "KeyRepository",
           "ReplayRepository", "RevocationRepository", "RevokedUserTokens", "Store", "UnitOfWork",
           "UserTokenRevocation"]


class ClientRepository(Protocol):
    async def get_client(self, client_id: str) -> Client | None: ...
    async def add_client(self, client: Client) -> None: ...
    async def update_client(self, client: Client) -> None: ...
    async def delete_client(self, client_id: str) -> bool: ...
    async def list_clients(self) -> list[Client]: ...


class KeyRepository(Protocol):
    async def list_keys(self) -> list[SigningKey]: ...
    async def add_key(self, key: SigningKey) -> None: ...
    async def update_key(self, key: SigningKey) -> None: ...
    async def delete_key(self, kid: str) -> None: ...


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


class AuditEventsRejected(Exception):
    """The store refuses these events as they are (a value it cannot hold): retrying them cannot succeed,
    unlike a lost connection. ``record_events`` writes all of a batch or none of it."""


class AuditRepository(Protocol):
    async def record_events(self, events: Sequence[AuditEvent]) -> None:
        """Write every event or none; raise ``AuditEventsRejected`` when the events themselves are refused."""
        ...

    async def list_events(self, limit: int = 100, type_prefix: str | None = None) -> list[AuditEvent]: ...


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


class Store(UnitOfWork, ClientRepository, KeyRepository, RevocationRepository, ReplayRepository, AuditRepository,
            UserTokenRevocation, UserRepository, SessionRepository, ConsentRepository, AuthorizationCodeRepository,
            RefreshTokenRepository, TrustPolicyRepository, DeviceAuthorizationRepository, Protocol):
    async def ping(self) -> bool: ...
    async def close(self) -> None: ...


class AuditSink(Protocol):
    def emit(self, event: AuditEvent) -> None:
        """Record an event without blocking the request."""
        ...


class JwksFetcher(Protocol):
    async def fetch(self, jwks_uri: str, *, force: bool = False) -> dict[str, Any]:
        """The JWKS at ``jwks_uri`` (cached; ``force`` refetches, rate-limited)."""
        ...
