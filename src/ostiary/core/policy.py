"""ServerPolicy: the settings the protocol engine obeys, frozen at start (built by ``ostiary.config``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["MetadataDocumentRules", "Profile", "ServerPolicy"]

Profile = Literal["default", "fapi2"]


@dataclass(frozen=True, slots=True)
class MetadataDocumentRules:
    """Client ID metadata documents (``core/client_metadata.py``): what such a client may be given, and which
    domains may serve them (a domain covers its subdomains; an empty allow list allows every domain)."""

    scopes: frozenset[str] = frozenset()
    audiences: tuple[str, ...] = ()
    allow_domains: tuple[str, ...] = ()
    deny_domains: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ServerPolicy:
    issuer: str
    access_token_ttl: int = 900
    refresh_token_ttl: int = 14 * 86400
    refresh_token_idle_ttl: int = 3 * 86400
    refresh_token_reuse_window: int = 0
    client_secret_overlap: int = 86400
    #: the algorithm access tokens are signed with (the fast path)
    access_token_alg: str = "ES256"
    #: further algorithms the key ring keeps one active key for (ID tokens may use any of them)
    key_algorithms: tuple[str, ...] = ("ES256", "RS256")
    key_publish_delay: int = 600
    key_rotate_every: int | None = None
    assertion_max_lifetime: int = 300
    leeway: int = 30
    #: "fapi2": the FAPI 2.0 Security Profile's rules on top (README "FAPI 2.0 mode")
    profile: Profile = "default"
    #: RFC 9126 §5: every client must push its authorization requests (also implied by ``profile="fapi2"``)
    require_pushed_authorization_requests: bool = False
    #: RFC 9126 §2.2 ``expires_in`` of a request_uri (at most 60 seconds)
    par_expires_in: int = 60
    #: RFC 9101: a request object may not expire later than this after now, nor be older (``nbf``) than this
    request_object_max_lifetime: int = 3600

    #: RFC 9449: the proof algorithms accepted (``dpop_signing_alg_values_supported``)
    dpop_algs: tuple[str, ...] = ("ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512",
                                  "EdDSA")
    #: RFC 9449 §11.1: a proof's ``iat`` may be this many seconds from now, either way
    dpop_iat_window: int = 60
    #: RFC 9449 §8: every DPoP proof must carry a server nonce (clients can also be flagged one by one)
    dpop_require_nonce: bool = False
    #: a server nonce is accepted for one to two of these periods
    dpop_nonce_lifetime: int = 300

    @property
    def fapi2(self) -> bool:
        return self.profile == "fapi2"

    @property
    def par_required(self) -> bool:
        """Every client must use PAR (the global switch, or FAPI 2.0 mode)."""
        return self.require_pushed_authorization_requests or self.fapi2

    @property
    def pushed_authorization_request_endpoint(self) -> str:
        return self.issuer + "/par"
    #: RFC 7591 registration is open to someone (``registration.policy`` is not ``off``)
    dynamic_registration: bool = False
    #: client ID metadata documents are resolved (``registration.client_metadata_documents``); None: off
    client_metadata: MetadataDocumentRules | None = None

    @property
    def token_endpoint(self) -> str:
        return self.issuer + "/token"

    @property
    def introspection_endpoint(self) -> str:
        return self.issuer + "/introspect"

    @property
    def revocation_endpoint(self) -> str:
        return self.issuer + "/revoke"

    @property
    def registration_endpoint(self) -> str:
        return self.issuer + "/register"

    @property
    def jwks_uri(self) -> str:
        return self.issuer + "/jwks"

    @property
    def signing_algs(self) -> tuple[str, ...]:
        """Every algorithm with an active key: the access-token algorithm, ``key_algorithms`` and RS256, which
        OIDC Discovery 1.0 §3 requires in ``id_token_signing_alg_values_supported``."""
        return tuple(dict.fromkeys((self.access_token_alg, *self.key_algorithms, "RS256")))

    @property
    def max_token_lifetime(self) -> int:
        """Longest lifetime of anything a signing key signs: how long a retired key stays published."""
        return self.access_token_ttl + self.leeway
