"""Clients (RFC 6749 §2) and their storage Protocol. Frozen; secrets only as hashes and never in ``repr``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from .mtls import NO_TLS_NAME, TlsClientAuthName

__all__ = [
    "AUTH_METHODS",
    "GRANT_CLIENT_CREDENTIALS",
    "TLS_AUTH_METHODS",
    "AuthMethod",
    "Client",
    "ClientRepository",
    "ClientSecret",
    "ClientType",
]

ClientType = Literal["confidential", "public"]
AuthMethod = Literal["client_secret_basic", "client_secret_post", "private_key_jwt", "tls_client_auth",
                     "self_signed_tls_client_auth", "none"]
AUTH_METHODS: tuple[AuthMethod, ...] = ("client_secret_basic", "client_secret_post", "private_key_jwt",
                                        "tls_client_auth", "self_signed_tls_client_auth", "none")
#: RFC 8705 §2: the two mutual-TLS methods
TLS_AUTH_METHODS: frozenset[str] = frozenset({"tls_client_auth", "self_signed_tls_client_auth"})
GRANT_CLIENT_CREDENTIALS = "client_credentials"


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
    #: RFC 8705 §2.1.2: the subject DN or the one SAN of a ``tls_client_auth`` client's certificate
    tls_client_auth: TlsClientAuthName = NO_TLS_NAME
    #: RFC 8705 §3.4 ``tls_client_certificate_bound_access_tokens``: access tokens carry ``cnf.x5t#S256``
    tls_client_certificate_bound_access_tokens: bool = False
    #: RFC 9126 §6: this client's authorization requests must be pushed (``/par``) first
    require_pushed_authorization_requests: bool = False
    created_at: float = 0.0
    updated_at: float = 0.0

    @property
    def is_public(self) -> bool:
        return self.client_type == "public"

    @property
    def default_audience(self) -> str | None:
        return self.audiences[0] if self.audiences else None


class ClientRepository(Protocol):
    async def get_client(self, client_id: str) -> Client | None: ...
    async def add_client(self, client: Client) -> None: ...
    async def update_client(self, client: Client) -> None: ...
    async def delete_client(self, client_id: str) -> bool: ...
    async def list_clients(self) -> list[Client]: ...
