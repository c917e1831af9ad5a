from __future__ import annotations

import base64
from dataclasses import dataclass, field

import pytest

from ostiary._clock import FixedClock
from ostiary._secrets import derive_key
from ostiary.admin.service import AdminService, ClientCreate
from ostiary.core import keys as core_keys
from ostiary.core.audit import AuditEvent
from ostiary.core.context import EngineContext
from ostiary.core.endpoints.introspection import IntrospectionEndpoint, RevocationEndpoint
from ostiary.core.endpoints.token import TokenEndpoint
from ostiary.core.grants import default_grants
from ostiary.core.keys import KeyRing
from ostiary.core.policy import ServerPolicy
from ostiary.core.requests import EndpointRequest
from ostiary.store.memory import MemoryStore

ISSUER = "https://id.example.com"


@dataclass
class ListSink:
    events: list[AuditEvent] = field(default_factory=list)

    def emit(self, event: AuditEvent) -> None:
        self.events.append(event)


@dataclass
class Engine:
    """The core wired to the memory store and a fixed clock, as the web layer wires it to SQL."""

    clock: FixedClock
    store: MemoryStore
    policy: ServerPolicy
    audit: ListSink
    kek: bytes
    hash_key: bytes
    ring: KeyRing | None = None

    def keyring(self) -> KeyRing:
        assert self.ring is not None
        return self.ring

    async def reload(self) -> None:
        self.ring = KeyRing(await self.store.list_keys(), self.kek, self.clock.now(), self.policy.max_token_lifetime)

    @property
    def ctx(self) -> EngineContext:
        return EngineContext(policy=self.policy, store=self.store, keyring=self.keyring, clock=self.clock,
                             audit=self.audit, secret_hash_key=self.hash_key)

    @property
    def admin(self) -> AdminService:
        return AdminService(self.store, self.policy, self.clock, self.hash_key, self.kek)

    async def client(self, **spec: object) -> tuple[str, str | None]:
        spec.setdefault("name", "c")
        if spec.get("client_type") == "public":
            # new public clients are DPoP-bound by default (tests/web/test_dpop_default.py); these tests drive
            # them without proofs unless they ask for binding
            spec.setdefault("dpop_bound_access_tokens", False)
        if "client_credentials" in spec.get("grant_types", ["client_credentials"]):  # type: ignore[operator]
            spec.setdefault("audiences", ["https://api.test.example"])  # a service client names its API
        c, secret = await self.admin.create_client(ClientCreate.model_validate(spec))
        return c.client_id, secret

    async def token(self, form: dict[str, str] | list[tuple[str, str]], basic: tuple[str, str] | None = None):
        return await TokenEndpoint(self.ctx, default_grants()).handle(self.request("/token", form, basic))

    async def introspect(self, form: dict[str, str], basic: tuple[str, str]):
        return await IntrospectionEndpoint(self.ctx).handle(self.request("/introspect", form, basic))

    async def revoke(self, form: dict[str, str], basic: tuple[str, str]):
        return await RevocationEndpoint(self.ctx).handle(self.request("/revoke", form, basic))

    def request(self, path: str, form: dict[str, str] | list[tuple[str, str]], basic: tuple[str, str] | None):
        pairs = tuple(form.items()) if isinstance(form, dict) else tuple(form)
        auth = None
        if basic:
            auth = "Basic " + base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
        return EndpointRequest(endpoint=ISSUER + path, params=pairs, authorization=auth, client_ip="203.0.113.9")


@pytest.fixture
async def engine() -> Engine:
    clock = FixedClock()
    policy = ServerPolicy(issuer=ISSUER, key_publish_delay=600)
    eng = Engine(clock, MemoryStore(), policy, ListSink(), derive_key(b"k" * 32, "kek"), derive_key(b"k" * 32, "hash"))
    await core_keys.ensure_signing_key(eng.store, policy, eng.kek, clock)
    await eng.reload()
    return eng
