"""In-memory reference store: the contract the SQL store must match, and the store for core tests."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

from ..core.audit import AuditEvent
from ..core.clients import Client, InitialAccessToken
from ..core.keys import SigningKey
from .memory_device import MemoryDeviceMixin
from .memory_federation import MemoryFederationMixin
from .memory_pushed import MemoryPushedMixin
from .memory_resources import MemoryResourcesMixin
from .memory_tokens import MemoryTokensMixin
from .memory_users import MemoryUsersMixin

__all__ = ["MemoryStore"]

# where the store keeps its rows (the mixins create theirs on first use)
_STATE = ("clients", "initial_access_tokens", "keys", "revoked", "replay", "events", "_user_state", "_token_state",
          "_device_map", "_trust_policy_map", "_pushed_map", "_resource_map")
# (store, task) of the transaction in progress in this context, if any
_CURRENT: ContextVar[tuple[object, asyncio.Task[Any] | None] | None] = ContextVar("ostiary_memory_transaction",
                                                                                   default=None)


class MemoryStore(MemoryUsersMixin, MemoryTokensMixin, MemoryFederationMixin, MemoryDeviceMixin,
                  MemoryPushedMixin, MemoryResourcesMixin):
    def __init__(self) -> None:
        self.clients: dict[str, Client] = {}
        self.initial_access_tokens: dict[str, InitialAccessToken] = {}
        self.keys: dict[str, SigningKey] = {}
        self.revoked: dict[str, tuple[str, float]] = {}
        self.replay: dict[tuple[str, str], float] = {}
        self.events: list[AuditEvent] = []
        self._tx_lock = asyncio.Lock()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """The ``UnitOfWork`` of the memory store: one transaction at a time (a lock), and on an exception
        every row is put back as it was when the transaction began (a copy taken then). A write made meanwhile
        outside any transaction is undone with it: this store is for tests and a single process."""
        if _CURRENT.get() == (self, asyncio.current_task()):
            yield  # joins the enclosing transaction
            return
        async with self._tx_lock:
            saved = {name: _copy(self.__dict__[name]) for name in _STATE if name in self.__dict__}
            token = _CURRENT.set((self, asyncio.current_task()))
            try:
                yield
            except BaseException:
                for name in _STATE:
                    if name in saved:
                        _restore(self.__dict__, name, saved[name])
                    else:
                        self.__dict__.pop(name, None)
                raise
            finally:
                _CURRENT.reset(token)

    async def get_client(self, client_id: str) -> Client | None:
        return self.clients.get(client_id)

    async def add_client(self, client: Client) -> None:
        if client.client_id in self.clients:
            raise ValueError(f"client {client.client_id!r} exists")
        self.clients[client.client_id] = client

    async def update_client(self, client: Client) -> None:
        if client.client_id not in self.clients:
            raise KeyError(client.client_id)
        self.clients[client.client_id] = client

    async def delete_client(self, client_id: str) -> bool:
        return self.clients.pop(client_id, None) is not None

    async def list_clients(self) -> list[Client]:
        return sorted(self.clients.values(), key=lambda c: (c.created_at, c.client_id))

    async def touch_client(self, client_id: str, now: float, interval: float) -> None:
        c = self.clients.get(client_id)
        if c is not None and (c.last_used_at is None or c.last_used_at <= now - interval):
            self.clients[client_id] = dataclasses.replace(c, last_used_at=now)

    async def purge_idle_dynamic_clients(self, idle_since: float, now: float) -> int:
        idle = [c.client_id for c in self.clients.values()
                if c.dynamic and (c.last_used_at if c.last_used_at is not None else c.created_at) < idle_since]
        for client_id in idle:
            del self.clients[client_id]
        for h in [h for h, tok in self.initial_access_tokens.items() if tok.expires_at <= now or tok.uses_left <= 0]:
            del self.initial_access_tokens[h]
        return len(idle)

    async def add_initial_access_token(self, token: InitialAccessToken) -> None:
        self.initial_access_tokens[token.token_hash] = token

    async def spend_initial_access_token(self, token_hash: str, now: float) -> bool:
        tok = self.initial_access_tokens.get(token_hash)
        if tok is None or tok.uses_left <= 0 or tok.expires_at <= now:
            return False
        self.initial_access_tokens[token_hash] = dataclasses.replace(tok, uses_left=tok.uses_left - 1)
        return True

    async def list_keys(self) -> list[SigningKey]:
        return sorted(self.keys.values(), key=lambda k: (k.created_at, k.kid))

    async def add_key(self, key: SigningKey) -> None:
        self.keys[key.kid] = key

    async def update_key(self, key: SigningKey) -> None:
        self.keys[key.kid] = key

    async def delete_key(self, kid: str) -> None:
        self.keys.pop(kid, None)

    async def revoke_access_token(self, jti: str, client_id: str, expires_at: float) -> None:
        self.revoked[jti] = (client_id, expires_at)

    async def is_access_token_revoked(self, jti: str) -> bool:
        return jti in self.revoked

    async def purge_expired(self, now: float) -> int:
        old = [j for j, (_, exp) in self.revoked.items() if exp <= now]
        for j in old:
            del self.revoked[j]
        stale = [k for k, exp in self.replay.items() if exp <= now]
        for k in stale:
            del self.replay[k]
        return len(old) + len(stale)

    async def use_once(self, namespace: str, value: str, expires_at: float, now: float) -> bool:
        key = (namespace, value)
        exp = self.replay.get(key)
        if exp is not None and exp > now:
            return False
        self.replay[key] = expires_at
        return True

    async def purge_user_flows(self, now: float, grace: float) -> int:
        """``RefreshTokenRepository.purge_user_flows``: expired login sessions (memory_users.py), then codes and
        token families (memory_tokens.py)."""
        cutoff = now - grace
        return self._purge_sessions(cutoff) + self._purge_tokens(now, cutoff)

    async def record_events(self, events: Sequence[AuditEvent]) -> None:
        self.events.extend(events)

    async def purge_events(self, before: float, limit: int) -> int:
        old = [i for i, e in enumerate(self.events) if e.at < before][:limit]
        for i in reversed(old):
            del self.events[i]
        return len(old)

    async def list_events(self, limit: int = 100, type_prefix: str | None = None) -> list[AuditEvent]:
        found = [e for e in reversed(self.events) if type_prefix is None or e.type.startswith(type_prefix)]
        return found[:limit]

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return dict(value)  # rows are frozen dataclasses: a shallow copy keeps them
    if isinstance(value, list):
        return list(value)
    return copy.deepcopy(value)  # users, codes and families: nested mappings


def _restore(state: dict[str, Any], name: str, saved: Any) -> None:
    current = state[name]
    if isinstance(current, dict):  # in place: callers may hold the mapping
        current.clear()
        current.update(saved)
    elif isinstance(current, list):
        current[:] = saved
    else:
        state[name] = saved
