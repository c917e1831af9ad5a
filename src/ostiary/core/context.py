"""What the engine needs, passed in once: policy, storage, keys, clock, audit."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .._clock import Clock
from .audit import AuditSink
from .client_auth import ClientAuthContext
from .client_metadata import ClientMetadataResolver, is_metadata_document_id, resolve_metadata_client
from .clients import Client
from .device import PollTracker
from .dpop import DPoPVerifier
from .federation import ExternalKeys
from .issuance import TokenIssuer
from .keys import KeyRing
from .mtls import NO_TRUST_ANCHORS, TrustAnchors
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
    #: RFC 8705 §2.1: the certificate authorities of ``tls_client_auth``
    trust_anchors: TrustAnchors = NO_TRUST_ANCHORS
    #: the ``cnf`` claim of the access tokens minted for *this* request (RFC 8705 §3.1 ``x5t#S256``): the token
    #: endpoint sets it on its per-request copy (``dataclasses.replace``) once the client is known, so every
    #: grant binds its tokens without knowing how
    confirmation: Mapping[str, str] | None = None
    #: RFC 9449 DPoP proofs (with the process's replay cache); None: proofs are refused (never ignored)
    dpop: DPoPVerifier | None = None
    #: fetches client ID metadata documents (the web layer's bounded fetcher); used while the policy enables them
    client_metadata: ClientMetadataResolver | None = None

    @property
    def issuer(self) -> TokenIssuer:
        return TokenIssuer(self.policy, self.keyring, self.clock, self.confirmation)

    def client_auth(self, endpoint_url: str) -> ClientAuthContext:
        return ClientAuthContext(policy=self.policy, clients=self.store, replay=self.store,
                                 jwks_fetcher=self.jwks_fetcher, secret_hash_key=self.secret_hash_key,
                                 clock=self.clock, endpoint_url=endpoint_url, trust_anchors=self.trust_anchors,
                                 metadata_client=self.metadata_client if self.metadata_enabled else None)

    @property
    def metadata_enabled(self) -> bool:
        return self.policy.client_metadata is not None and self.client_metadata is not None

    async def metadata_client(self, client_id: str) -> Client | None:
        """The client a metadata document URL names (None: refused, and recorded)."""
        return await resolve_metadata_client(client_id, self.policy.client_metadata, self.client_metadata,
                                             self.audit, self.clock.now())

    async def find_client(self, client_id: str) -> Client | None:
        """A registered client, or one a client ID metadata document describes (while those are enabled)."""
        if self.metadata_enabled and is_metadata_document_id(client_id):
            return await self.metadata_client(client_id)
        return await self.store.get_client(client_id) if len(client_id) <= 256 else None
