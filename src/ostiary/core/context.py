"""What the engine needs, passed in once: policy, storage, keys, clock, audit."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .._clock import Clock
from .audit import AuditSink
from .client_auth import ClientAuthContext
from .device import PollTracker
from .federation import ExternalKeys
from .issuance import TokenIssuer
from .keys import KeyRing
from .policy import ServerPolicy
from .storage import JwksFetcher, Store

__all__ = ["EngineContext"]


@dataclass(frozen=True, slots=True)
class EngineContext:
    policy: ServerPolicy
    store: Store
    keyring: Callable[[], KeyRing]
    clock: Clock
    audit: AuditSink
    secret_hash_key: bytes = field(repr=False)
    jwks_fetcher: JwksFetcher | None = None
    external_keys: ExternalKeys | None = None
    poll_tracker: PollTracker | None = None  # RFC 8628 §3.5 slow_down, kept out of the database

    @property
    def issuer(self) -> TokenIssuer:
        return TokenIssuer(self.policy, self.keyring, self.clock)

    def client_auth(self, endpoint_url: str) -> ClientAuthContext:
        return ClientAuthContext(policy=self.policy, clients=self.store, replay=self.store,
                                 jwks_fetcher=self.jwks_fetcher, secret_hash_key=self.secret_hash_key,
                                 clock=self.clock, endpoint_url=endpoint_url)
