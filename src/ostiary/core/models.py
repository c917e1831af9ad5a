"""The aggregates the protocol engine works on. Frozen; secrets only as hashes and never in ``repr``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "AUTH_METHODS",
    "GRANT_CLIENT_CREDENTIALS",
    "AuditEvent",
    "AuthMethod",
    "Client",
    "ClientSecret",
    "ClientType",
    "KeyState",
    "SigningKey",
]

ClientType = Literal["confidential", "public"]
AuthMethod = Literal["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]
AUTH_METHODS: tuple[AuthMethod, ...] = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")
GRANT_CLIENT_CREDENTIALS = "client_credentials"
KeyState = Literal["pending", "active", "retired", "expired"]


@dataclass(frozen=True, slots=True)
class ClientSecret:
    """A client secret, stored only as its keyed hash. ``expires_at`` is set on the old secret at rotation."""

    secret_hash: str = field(repr=False)
    created_at: float
    expires_at: float | None = None

    def usable(self, now: float) -> bool:
        return self.expires_at is None or now < self.expires_at


@dataclass(frozen=True, slots=True)
class Client:
    """A registered client (RFC 6749 §2; RFC 7591 metadata names)."""

    client_id: str
    name: str
    client_type: ClientType
    token_endpoint_auth_method: AuthMethod
    grant_types: frozenset[str]
    scopes: frozenset[str]
    audiences: tuple[str, ...] = ()
    resource_audiences: tuple[str, ...] = ()
    #: RFC 8693 delegation: the audiences this client may exchange a user's token (one whose ``aud`` names
    #: one of ``resource_audiences``) for, to call them on that user's behalf.
    may_exchange_for: tuple[str, ...] = ()
    redirect_uris: tuple[str, ...] = ()
    post_logout_redirect_uris: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    secrets: tuple[ClientSecret, ...] = ()
    jwks: Mapping[str, Any] | None = field(default=None, repr=False)
    jwks_uri: str | None = None
    first_party: bool = False
    #: may call the admin API with its client-credentials tokens (``ostiary client create --admin``)
    admin: bool = False
    #: OIDC Registration §2; RS256 is the default there, and the one algorithm every relying party accepts
    id_token_signed_response_alg: str = "RS256"
    created_at: float = 0.0
    updated_at: float = 0.0

    @property
    def is_public(self) -> bool:
        return self.client_type == "public"

    @property
    def default_audience(self) -> str | None:
        return self.audiences[0] if self.audiences else None


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A signing key and its life: pending (published, not signing) → active → retired (published until
    everything it signed has expired) → expired (removed)."""

    kid: str
    alg: str
    public_jwk: Mapping[str, Any]
    encrypted_private_key: bytes = field(repr=False)
    created_at: float
    activates_at: float
    retires_at: float | None = None

    def state(self, now: float, max_token_lifetime: int) -> KeyState:
        if now < self.activates_at:
            return "pending"
        if self.retires_at is None or now < self.retires_at:
            return "active"
        if now < self.retires_at + max_token_lifetime:
            return "retired"
        return "expired"


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """Who did what, and how it ended. Never a token or secret value: identifiers (jti, client_id) only."""

    type: str
    outcome: Literal["success", "failure"]
    at: float
    client_id: str | None = None
    subject: str | None = None
    grant_type: str | None = None
    jti: str | None = None
    ip: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": self.type, "outcome": self.outcome, "at": self.at, "client_id": self.client_id,
            "subject": self.subject, "grant_type": self.grant_type, "jti": self.jti, "ip": self.ip,
            "detail": dict(self.detail),
        }
