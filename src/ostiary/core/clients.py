"""Clients (RFC 6749 §2) and their storage Protocol. Frozen; secrets only as hashes and never in ``repr``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from .mtls import NO_TLS_NAME, TlsClientAuthName

__all__ = [
    "AUTH_METHODS",
    "GRANT_CLIENT_CREDENTIALS",
    "TLS_AUTH_METHODS",
    "TOUCH_INTERVAL",
    "AuthMethod",
    "Client",
    "ClientRepository",
    "ClientSecret",
    "ClientType",
    "InitialAccessToken",
    "InitialAccessTokenRepository",
    "client_origin",
    "uri_origin",
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
    #: RFC 9449 §5.2 ``dpop_bound_access_tokens``: every token request must carry a DPoP proof
    dpop_bound_access_tokens: bool = False
    #: RFC 9449 §8: this client's DPoP proofs must carry a server nonce (also ``dpop.require_nonce``)
    dpop_require_nonce: bool = False
    #: RFC 9126 §6: this client's authorization requests must be pushed (``/par``) first
    require_pushed_authorization_requests: bool = False
    created_at: float = 0.0
    updated_at: float = 0.0
    #: registered by the client itself (RFC 7591): nobody vetted it; consent is asked every time
    dynamic: bool = False
    #: refused at every endpoint until enabled again (``ostiary client disable``)
    disabled: bool = False
    #: when it last obtained a token (dynamic clients: updated at most once per ``TOUCH_INTERVAL``)
    last_used_at: float | None = None
    #: RFC 7591 §2, shown on the consent page only when it is on the client's own origin
    logo_uri: str | None = None
    client_uri: str | None = None
    #: RFC 7592 §3: the keyed hash of the registration access token (dynamic clients only)
    registration_token_hash: str | None = field(default=None, repr=False)
    #: resolved from a client ID metadata document (``client_id`` is its URL); never stored
    metadata_document: bool = False

    @property
    def is_public(self) -> bool:
        return self.client_type == "public"

    @property
    def default_audience(self) -> str | None:
        return self.audiences[0] if self.audiences else None


#: a dynamic client's ``last_used_at`` is written at most this often (seconds): one UPDATE per client per interval
TOUCH_INTERVAL = 600.0


def uri_origin(uri: str) -> str | None:
    """``scheme://host[:port]`` of an http(s) URI (the port only when not the default), or None."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("https", "http") or not parts.hostname or "@" in parts.netloc:
        return None
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    default = 443 if parts.scheme == "https" else 80
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


def client_origin(client: Client) -> str | None:
    """The origin that speaks for a client nobody vetted: that of its ``client_id`` when that is an https URL
    (a client ID metadata document), else that of its first http(s) redirect URI. None for a client with
    neither (a private-use scheme has no host)."""
    for uri in (client.client_id, *client.redirect_uris):
        origin = uri_origin(uri)
        if origin is not None:
            return origin
    return None


@dataclass(frozen=True, slots=True)
class InitialAccessToken:
    """RFC 7591 §3: a token that allows registering ``uses_left`` more clients until ``expires_at``. Stored
    only as its keyed hash."""

    token_hash: str = field(repr=False)
    created_at: float
    expires_at: float
    uses_left: int


class InitialAccessTokenRepository(Protocol):
    async def add_initial_access_token(self, token: InitialAccessToken) -> None: ...

    async def spend_initial_access_token(self, token_hash: str, now: float) -> bool:
        """Atomically take one use of an unexpired token with uses left; False when there is none (unknown,
        expired or used up). Inside a transaction the use is given back if the transaction fails."""
        ...


class ClientRepository(Protocol):
    async def get_client(self, client_id: str) -> Client | None: ...
    async def add_client(self, client: Client) -> None: ...
    async def update_client(self, client: Client) -> None: ...
    async def delete_client(self, client_id: str) -> bool: ...
    async def list_clients(self) -> list[Client]: ...

    async def touch_client(self, client_id: str, now: float, interval: float) -> None:
        """Set ``last_used_at`` to ``now`` unless it is already within ``interval`` of it (a cheap, idempotent
        UPDATE)."""
        ...

    async def purge_idle_dynamic_clients(self, idle_since: float, now: float) -> int:
        """Delete the dynamic clients unused (``last_used_at``, else ``created_at``) since before ``idle_since``,
        and the initial access tokens expired or used up by ``now``; the number of clients deleted."""
        ...
