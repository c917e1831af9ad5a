"""Client and key administration. The CLI and the admin API both call these; neither holds logic."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .._clock import Clock
from .._fetch_rules import is_loopback_host, url_problem
from .._secrets import new_token, token_hash
from ..core import jose
from ..core import keys as core_keys
from ..core.clients import AuthMethod, Client, ClientSecret
from ..core.device import GRANT_DEVICE_CODE
from ..core.endpoints.token import REFUSED_GRANTS
from ..core.fapi import FAPI2_JWS_ALGS
from ..core.federation import TOKEN_EXCHANGE_GRANT
from ..core.grants import default_grants
from ..core.keys import SigningKey
from ..core.mtls import TlsClientAuthName, normalized_dn
from ..core.policy import ServerPolicy
from ..core.requests import is_audience_uri, is_scope_token
from ..core.storage import Store

__all__ = ["ADMIN_SCOPE", "USER_FACING_GRANTS", "AdminError", "AdminService", "ClientCreate", "ClientUpdate",
           "InvalidMetadata", "NotFound", "audience_uris", "check_admin_rules", "client_view", "key_view",
           "scope_tokens"]

SECRET_PREFIX = "ost_cs_"
ADMIN_SCOPE = "admin"
#: grants through which a person signs in: a token from them speaks for that person, not for the client
USER_FACING_GRANTS = frozenset({"authorization_code", "refresh_token", GRANT_DEVICE_CODE})
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:~-]{3,128}$")


class AdminError(Exception):
    """A refused administrative change; the message says why and what to do."""


class NotFound(AdminError):
    pass


class InvalidMetadata(AdminError):
    """Client metadata that is well-formed but not allowed (RFC 7591 §3.2.2 ``invalid_client_metadata``)."""


IdTokenAlg = Literal["ES256", "RS256", "EdDSA"]


def scope_tokens(v: list[str]) -> list[str]:
    """Validate RFC 6749 §3.3 scope tokens for a pydantic model; sorted, without duplicates."""
    for s in v:
        if not is_scope_token(s):
            raise ValueError(f"invalid scope token {s!r}: printable ASCII without spaces, quotes or backslashes, "
                             "e.g. orders:read")
    return sorted(set(v))


def audience_uris(v: list[str]) -> list[str]:
    """Validate audiences (resource indicators) for a pydantic model, for clients and trust policies alike:
    each an absolute URI without a fragment (RFC 3986 §4.3, RFC 8707 §2); order kept, duplicates dropped."""
    for a in v:
        if not is_audience_uri(a):
            raise ValueError(f"each audience must be an absolute URI without a fragment, such as "
                             f"https://api.example.com or urn:example:api: {a[:200]!r}")
    return list(dict.fromkeys(v))


def _check_uri(value: str, what: str) -> str:
    parts = urlsplit(value)
    if not parts.scheme or parts.fragment:
        raise ValueError(f"{what} must be an absolute URI without a fragment: {value!r}")
    return value


def _check_jwks_uri(value: str, *, allow_loopback: bool) -> None:
    """The rules of the bounded fetcher (:mod:`ostiary._fetch_rules`), up front: https, no private or metadata
    address literal; http and loopback only while the issuer is loopback."""
    problem = url_problem(value, allow_loopback=allow_loopback)
    if problem is not None:
        raise ValueError(f"jwks_uri {value[:200]!r} is refused: {problem}")


def _check_code_flow(grants: list[str], redirect_uris: list[str], post_logout: list[str], origins: list[str]) -> None:
    """Authorization-code clients need a redirect URI (https, http loopback, or a private-use scheme; RFC 8252);
    browser origins are ``scheme://host[:port]`` only."""
    from ..core.redirect_uri import validate_redirect_uri

    if "authorization_code" in grants and not redirect_uris:
        raise ValueError("authorization_code clients need at least one --redirect-uri")
    for uri in redirect_uris:
        validate_redirect_uri(uri)
    for uri in post_logout:
        validate_redirect_uri(uri)
    for origin in origins:
        parts = urlsplit(origin)
        if (parts.scheme not in ("https", "http") or not parts.hostname or parts.path or parts.query
                or parts.fragment or "@" in parts.netloc or origin.endswith("/")):
            raise ValueError(f"allowed origins are scheme://host[:port] without a path: {origin!r}")


class ClientCreate(BaseModel):
    """Registration metadata (RFC 7591 §2 names where they exist)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200)
    client_id: str | None = None
    client_type: Literal["confidential", "public"] = "confidential"
    token_endpoint_auth_method: AuthMethod | None = None
    grant_types: list[str] = Field(default_factory=lambda: ["client_credentials"])
    scopes: list[str] = Field(default_factory=list)
    audiences: list[str] = Field(default_factory=list)
    resource_audiences: list[str] = Field(default_factory=list)
    may_exchange_for: list[str] = Field(
        default_factory=list, description="audiences this client may exchange the user tokens it receives for "
                                          "(RFC 8693 token exchange on a user's behalf)")
    redirect_uris: list[str] = Field(default_factory=list)
    post_logout_redirect_uris: list[str] = Field(default_factory=list)
    allowed_origins: list[str] = Field(default_factory=list)
    jwks: dict[str, Any] | None = Field(None, description=(
        "the client's public JWK Set: private_key_jwt keys, or self_signed_tls_client_auth certificates (x5c) or "
        "keys (RFC 8705 §2.2.2)"))
    jwks_uri: str | None = Field(None, description=(
        "where the client publishes that JWK Set instead (fetched when needed, refetched once when no key "
        "matches): for private_key_jwt or self_signed_tls_client_auth"))
    first_party: bool = False
    admin: bool = Field(False, description="may call the admin API with its client-credentials tokens "
                                           "(client_credentials only)")
    id_token_signed_response_alg: IdTokenAlg = "RS256"
    tls_client_auth_subject_dn: str | None = Field(None, max_length=1000, description=(
        "tls_client_auth (RFC 8705 §2.1.2): the certificate's subject DN, RFC 4514 (CN=svc,O=Example)"))
    tls_client_auth_san_dns: str | None = Field(None, max_length=253, description="tls_client_auth: a dNSName SAN")
    tls_client_auth_san_uri: str | None = Field(None, max_length=2000, description="tls_client_auth: a URI SAN")
    tls_client_auth_san_ip: str | None = Field(None, max_length=45, description="tls_client_auth: an iPAddress SAN")
    tls_client_auth_san_email: str | None = Field(None, max_length=320,
                                                  description="tls_client_auth: an rfc822Name SAN")
    tls_client_certificate_bound_access_tokens: bool = Field(
        False, description="access tokens carry cnf.x5t#S256 of the client's TLS certificate (RFC 8705 §3)")
    require_pushed_authorization_requests: bool = Field(
        False, description="its authorization requests must be pushed to /par first (RFC 9126 §6)")
    dpop_bound_access_tokens: bool | None = Field(
        None, description="every token request must carry a DPoP proof: its tokens are DPoP-bound (RFC 9449 §5.2); "
                          "default: true for a public client (a public client's tokens are the ones that leak "
                          "from browsers and devices), false for a confidential one")
    dpop_require_nonce: bool = Field(False, description="its DPoP proofs must carry a server nonce (RFC 9449 §8)")

    @field_validator("client_id")
    @classmethod
    def _cid(cls, v: str | None) -> str | None:
        if v is not None and not _CLIENT_ID.match(v):
            raise ValueError("client_id: 3-128 characters from A-Z a-z 0-9 . _ : ~ -")
        return v

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, v: list[str]) -> list[str]:
        return scope_tokens(v)

    @field_validator("audiences", "resource_audiences", "may_exchange_for")
    @classmethod
    def _audiences(cls, v: list[str]) -> list[str]:
        return audience_uris(v)

    @field_validator("redirect_uris", "post_logout_redirect_uris")
    @classmethod
    def _uris(cls, v: list[str]) -> list[str]:
        return [_check_uri(x, "each audience or URI") for x in dict.fromkeys(v)]

    @field_validator("grant_types")
    @classmethod
    def _grants(cls, v: list[str]) -> list[str]:
        supported = default_grants()
        for g in v:
            if g in REFUSED_GRANTS:
                raise ValueError(REFUSED_GRANTS[g])
            if g not in supported:
                raise ValueError(f"unsupported grant type {g!r}; supported: {', '.join(sorted(supported))}")
        return sorted(set(v))

    @model_validator(mode="after")
    def _coherent(self) -> ClientCreate:
        method = self.token_endpoint_auth_method
        if self.client_type == "public":
            if method not in (None, "none"):
                raise ValueError("public clients authenticate with 'none'")
            if "client_credentials" in self.grant_types:
                raise ValueError("public clients may not use client_credentials (they cannot keep a secret)")
        elif method == "none":
            raise ValueError("confidential clients must authenticate; use client_secret_basic or private_key_jwt")
        if "client_credentials" in self.grant_types and not self.audiences:
            # RFC 8707 / RFC 9068: a service token always names the API it is for; without one, /token would
            # answer invalid_target on every request.
            raise ValueError("a client_credentials client needs the audience its tokens are for: "
                             "--audience https://api.example.com (admin API: audiences)")
        if self.jwks is not None and self.jwks_uri is not None:
            # RFC 7591 §2: MUST NOT both be present (with both, jwks won and the URI was never fetched)
            raise ValueError("--jwks and --jwks-uri are alternatives: give one (admin API: jwks or jwks_uri)")
        if method == "private_key_jwt" and not (self.jwks or self.jwks_uri):
            raise ValueError("private_key_jwt needs --jwks or --jwks-uri")
        _check_tls_client_auth(method, self.tls_name())
        if method == "self_signed_tls_client_auth" and not (self.jwks or self.jwks_uri):
            # RFC 8705 §2.2: the certificates are registered as x5c in jwks or at jwks_uri
            raise ValueError("self_signed_tls_client_auth needs --jwks or --jwks-uri: the client's certificate "
                             "(x5c) or its key")
        if self.jwks is not None:
            try:
                if not jose.parse_jwks(self.jwks):
                    raise ValueError("the JWKS holds no usable public signing key")
            except jose.JoseError as exc:
                raise ValueError(str(exc)) from exc
        if self.jwks_uri is not None:
            _check_jwks_uri(self.jwks_uri, allow_loopback=True)  # loopback: checked against the issuer below
        _check_code_flow(self.grant_types, self.redirect_uris, self.post_logout_redirect_uris, self.allowed_origins)
        if self.may_exchange_for and TOKEN_EXCHANGE_GRANT not in self.grant_types:
            raise ValueError("may_exchange_for needs the token exchange grant: add --grant-type "
                             + TOKEN_EXCHANGE_GRANT)
        return self

    def tls_name(self) -> TlsClientAuthName:
        return TlsClientAuthName(subject_dn=self.tls_client_auth_subject_dn, san_dns=self.tls_client_auth_san_dns,
                                 san_uri=self.tls_client_auth_san_uri, san_ip=self.tls_client_auth_san_ip,
                                 san_email=self.tls_client_auth_san_email)

    def auth_method(self) -> AuthMethod:
        if self.token_endpoint_auth_method:
            return self.token_endpoint_auth_method
        return "none" if self.client_type == "public" else "client_secret_basic"


class ClientUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(None, min_length=1, max_length=200)
    grant_types: list[str] | None = None
    scopes: list[str] | None = None
    audiences: list[str] | None = None
    resource_audiences: list[str] | None = None
    may_exchange_for: list[str] | None = None
    redirect_uris: list[str] | None = None
    post_logout_redirect_uris: list[str] | None = None
    allowed_origins: list[str] | None = None
    jwks: dict[str, Any] | None = None
    jwks_uri: str | None = None
    first_party: bool | None = None
    admin: bool | None = None
    id_token_signed_response_alg: IdTokenAlg | None = None
    tls_client_auth_subject_dn: str | None = Field(None, max_length=1000)
    tls_client_auth_san_dns: str | None = Field(None, max_length=253)
    tls_client_auth_san_uri: str | None = Field(None, max_length=2000)
    tls_client_auth_san_ip: str | None = Field(None, max_length=45)
    tls_client_auth_san_email: str | None = Field(None, max_length=320)
    tls_client_certificate_bound_access_tokens: bool | None = None
    require_pushed_authorization_requests: bool | None = None
    dpop_bound_access_tokens: bool | None = None
    dpop_require_nonce: bool | None = None
    disabled: bool | None = Field(None, description="a disabled client is refused at every endpoint")


def _check_tls_client_auth(method: str | None, name: TlsClientAuthName) -> None:
    """RFC 8705 §2.1.2: a tls_client_auth client registers exactly one of the subject DN and the SANs; the
    self-signed method (§2.2.2) uses the registered JWKS (``--jwks`` or ``--jwks-uri``, with ``x5c`` or the
    certificate's key)."""
    given = name.as_dict()
    if method == "tls_client_auth":
        if len(given) != 1:
            raise ValueError("tls_client_auth needs exactly one of --tls-subject-dn, --tls-san-dns, --tls-san-uri, "
                             "--tls-san-ip, --tls-san-email (admin API: tls_client_auth_subject_dn, …)")
        if name.subject_dn is not None:
            try:
                normalized_dn(name.subject_dn)
            except ValueError:
                raise ValueError("tls_client_auth_subject_dn is not an RFC 4514 DN (e.g. CN=svc,O=Example)") from None
        if name.san_ip is not None:
            try:
                ipaddress.ip_address(name.san_ip)
            except ValueError:
                raise ValueError("tls_client_auth_san_ip is not an IP address") from None
    elif given:
        raise ValueError(f"{', '.join(sorted(given))}: only for token_endpoint_auth_method tls_client_auth")


def check_admin_rules(spec: ClientCreate, issuer: str) -> None:
    """Who may hold the ``admin`` scope or the ``{issuer}/admin`` audience: only a client flagged ``admin``, and
    such a client uses client_credentials only. Scopes belong to the client, so on a client with user-facing
    grants every user who signs in through it would become an administrator."""
    admin_aud = issuer + "/admin"
    wants = ADMIN_SCOPE in spec.scopes or admin_aud in spec.audiences
    user_facing = sorted(set(spec.grant_types) & USER_FACING_GRANTS)
    if (wants or spec.admin) and user_facing:
        raise InvalidMetadata(
            f"the {ADMIN_SCOPE!r} scope, the {admin_aud} audience and the admin flag are refused on a client with "
            f"user-facing grants ({', '.join(user_facing)}): every user who signs in through it would become an "
            "administrator. Register a separate confidential client with --admin and client_credentials only")
    if spec.admin and spec.grant_types != ["client_credentials"]:
        raise InvalidMetadata("an admin client uses the client_credentials grant only")
    if wants and not spec.admin:
        raise InvalidMetadata(f"the {ADMIN_SCOPE!r} scope and the {admin_aud} audience are for admin clients: "
                              "register the client with --admin (admin API: \"admin\": true)")


def client_view(c: Client, now: float) -> dict[str, Any]:
    """The public representation: never a secret or its hash."""
    return {
        "client_id": c.client_id, "name": c.name, "client_type": c.client_type,
        "token_endpoint_auth_method": c.token_endpoint_auth_method, "grant_types": sorted(c.grant_types),
        "scopes": sorted(c.scopes), "audiences": list(c.audiences),
        "resource_audiences": list(c.resource_audiences), "may_exchange_for": list(c.may_exchange_for),
        "redirect_uris": list(c.redirect_uris), "post_logout_redirect_uris": list(c.post_logout_redirect_uris),
        "allowed_origins": list(c.allowed_origins), "jwks_uri": c.jwks_uri, "has_jwks": c.jwks is not None,
        "first_party": c.first_party, "admin": c.admin,
        "id_token_signed_response_alg": c.id_token_signed_response_alg,
        **c.tls_client_auth.as_dict(),
        "tls_client_certificate_bound_access_tokens": c.tls_client_certificate_bound_access_tokens,
        "require_pushed_authorization_requests": c.require_pushed_authorization_requests,
        "dpop_bound_access_tokens": c.dpop_bound_access_tokens, "dpop_require_nonce": c.dpop_require_nonce,
        "secrets": [{"created_at": int(s.created_at),
                     "expires_at": int(s.expires_at) if s.expires_at else None, "active": s.usable(now)}
                    for s in c.secrets],
        "created_at": int(c.created_at), "updated_at": int(c.updated_at),
        "dynamic": c.dynamic, "disabled": c.disabled,
        "last_used_at": int(c.last_used_at) if c.last_used_at is not None else None,
        "logo_uri": c.logo_uri, "client_uri": c.client_uri,
    }


def key_view(k: SigningKey, now: float, policy: ServerPolicy) -> dict[str, Any]:
    return {"kid": k.kid, "alg": k.alg, "state": k.state(now, policy.max_token_lifetime),
            "created_at": int(k.created_at), "activates_at": int(k.activates_at),
            "retires_at": int(k.retires_at) if k.retires_at else None,
            "unpublished_at": int(k.retires_at + policy.max_token_lifetime) if k.retires_at else None}


@dataclass
class AdminService:
    store: Store
    policy: ServerPolicy
    clock: Clock
    secret_hash_key: bytes = field(repr=False)
    kek: bytes = field(repr=False)

    def _new_secret(self) -> tuple[str, ClientSecret]:
        secret = new_token(32, SECRET_PREFIX)
        return secret, ClientSecret(token_hash(secret, self.secret_hash_key), self.clock.now())

    def _check_signable(self, spec: ClientCreate) -> None:
        """OIDC Registration §2: the ID-token algorithm must be one this server signs with (its discovery
        document's ``id_token_signing_alg_values_supported``)."""
        alg = spec.id_token_signed_response_alg
        if alg not in self.policy.signing_algs:
            raise InvalidMetadata(f"id_token_signed_response_alg {alg} is not signable here; choose one of "
                                  f"{', '.join(self.policy.signing_algs)} (or add it to keys.algorithms)")
        if self.policy.fapi2 and alg not in FAPI2_JWS_ALGS:
            raise InvalidMetadata(f"FAPI 2.0 mode: id_token_signed_response_alg {alg} is not allowed (FAPI 2.0 "
                                  "Security Profile 5.4.1): use ES256 or EdDSA")

    def _check_fetchable(self, spec: ClientCreate) -> None:
        if spec.jwks_uri is not None:
            try:
                _check_jwks_uri(spec.jwks_uri, allow_loopback=is_loopback_host(urlsplit(self.policy.issuer).hostname
                                                                                or ""))
            except ValueError as exc:
                raise InvalidMetadata(str(exc)) from None

    async def create_client(self, spec: ClientCreate) -> tuple[Client, str | None]:
        client, secret = self.new_client(spec)
        try:
            await self.store.add_client(client)
        except ValueError as exc:
            raise AdminError(f"a client with id {client.client_id!r} already exists") from exc
        return client, secret

    def new_client(self, spec: ClientCreate) -> tuple[Client, str | None]:
        """The client ``spec`` describes, checked against this server (admin rules, signable ID-token algorithm,
        fetchable ``jwks_uri``), with a new secret when it authenticates with one; not stored yet."""
        if self.policy.fapi2 and "id_token_signed_response_alg" not in spec.model_fields_set:
            # FAPI 2.0 Security Profile §5.4.1: not RS256 by default; the access tokens' algorithm (ES256 or EdDSA)
            spec = spec.model_copy(update={"id_token_signed_response_alg": self.policy.access_token_alg})
        check_admin_rules(spec, self.policy.issuer)
        self._check_signable(spec)
        self._check_fetchable(spec)
        now = self.clock.now()
        method = spec.auth_method()
        secret: str | None = None
        secrets: tuple[ClientSecret, ...] = ()
        if method in ("client_secret_basic", "client_secret_post"):
            secret, stored = self._new_secret()
            secrets = (stored,)
        client = Client(
            client_id=spec.client_id or new_token(16), name=spec.name, client_type=spec.client_type,
            token_endpoint_auth_method=method, grant_types=frozenset(spec.grant_types),
            scopes=frozenset(spec.scopes), audiences=tuple(spec.audiences),
            resource_audiences=tuple(spec.resource_audiences), may_exchange_for=tuple(spec.may_exchange_for),
            redirect_uris=tuple(spec.redirect_uris), post_logout_redirect_uris=tuple(spec.post_logout_redirect_uris),
            allowed_origins=tuple(spec.allowed_origins), secrets=secrets, jwks=spec.jwks,
            jwks_uri=spec.jwks_uri, first_party=spec.first_party, admin=spec.admin,
            id_token_signed_response_alg=spec.id_token_signed_response_alg, tls_client_auth=spec.tls_name(),
            tls_client_certificate_bound_access_tokens=spec.tls_client_certificate_bound_access_tokens,
            require_pushed_authorization_requests=spec.require_pushed_authorization_requests,
            dpop_bound_access_tokens=(spec.client_type == "public" if spec.dpop_bound_access_tokens is None
                                      else spec.dpop_bound_access_tokens),
            dpop_require_nonce=spec.dpop_require_nonce, created_at=now, updated_at=now)
        return client, secret

    async def get_client(self, client_id: str) -> Client:
        client = await self.store.get_client(client_id)
        if client is None:
            raise NotFound(f"no client {client_id!r}; see `ostiary client list`")
        return client

    async def list_clients(self, *, dynamic: bool | None = None) -> list[Client]:
        """Every client, or only those registered by themselves (``dynamic=True``) or by an administrator."""
        return [c for c in await self.store.list_clients() if dynamic is None or c.dynamic == dynamic]

    async def update_client(self, client_id: str, changes: ClientUpdate) -> Client:
        current = await self.get_client(client_id)
        merged: dict[str, Any] = {
            "name": current.name, "client_id": current.client_id, "client_type": current.client_type,
            "token_endpoint_auth_method": current.token_endpoint_auth_method,
            "grant_types": sorted(current.grant_types), "scopes": sorted(current.scopes),
            "audiences": list(current.audiences), "resource_audiences": list(current.resource_audiences),
            "may_exchange_for": list(current.may_exchange_for), "redirect_uris": list(current.redirect_uris),
            "post_logout_redirect_uris": list(current.post_logout_redirect_uris),
            "allowed_origins": list(current.allowed_origins),
            "jwks": dict(current.jwks) if current.jwks else None, "jwks_uri": current.jwks_uri,
            "first_party": current.first_party, "admin": current.admin,
            "id_token_signed_response_alg": current.id_token_signed_response_alg,
            **current.tls_client_auth.as_dict(),
            "tls_client_certificate_bound_access_tokens": current.tls_client_certificate_bound_access_tokens,
            "require_pushed_authorization_requests": current.require_pushed_authorization_requests,
            "dpop_bound_access_tokens": current.dpop_bound_access_tokens,
            "dpop_require_nonce": current.dpop_require_nonce,
        }
        if changes.jwks is not None or (merged["jwks"] and merged["jwks_uri"] and changes.jwks_uri is None):
            merged["jwks_uri"] = None  # new keys replace the URI (and a client stored with both used its jwks)
        elif changes.jwks_uri is not None:
            merged["jwks"] = None  # a URI replaces the keys
        merged.update(changes.model_dump(exclude_none=True, exclude={"disabled"}))
        spec = ClientCreate.model_validate(merged)  # the same rules as at creation
        check_admin_rules(spec, self.policy.issuer)
        if changes.id_token_signed_response_alg is not None:
            self._check_signable(spec)
        if changes.jwks_uri is not None:
            self._check_fetchable(spec)
        updated = replace(
            current, name=spec.name, grant_types=frozenset(spec.grant_types), scopes=frozenset(spec.scopes),
            audiences=tuple(spec.audiences), resource_audiences=tuple(spec.resource_audiences),
            may_exchange_for=tuple(spec.may_exchange_for),
            redirect_uris=tuple(spec.redirect_uris), post_logout_redirect_uris=tuple(spec.post_logout_redirect_uris),
            allowed_origins=tuple(spec.allowed_origins), jwks=spec.jwks, jwks_uri=spec.jwks_uri,
            first_party=spec.first_party, admin=spec.admin,
            id_token_signed_response_alg=spec.id_token_signed_response_alg, tls_client_auth=spec.tls_name(),
            tls_client_certificate_bound_access_tokens=spec.tls_client_certificate_bound_access_tokens,
            require_pushed_authorization_requests=spec.require_pushed_authorization_requests,
            dpop_bound_access_tokens=bool(spec.dpop_bound_access_tokens), dpop_require_nonce=spec.dpop_require_nonce,
            updated_at=self.clock.now(),
            disabled=current.disabled if changes.disabled is None else changes.disabled)
        if updated.dynamic and updated.first_party:
            raise InvalidMetadata("a dynamically registered client cannot be first-party: nobody vetted it, so "
                                  "its users are always asked to consent")
        await self.store.update_client(updated)
        return updated

    async def delete_client(self, client_id: str) -> None:
        if not await self.store.delete_client(client_id):
            raise NotFound(f"no client {client_id!r}; see `ostiary client list`")

    async def rotate_secret(self, client_id: str, overlap: int | None = None) -> tuple[Client, str]:
        """A new secret; the old ones stay valid for ``overlap`` seconds (zero-downtime rollout)."""
        current = await self.get_client(client_id)
        if current.token_endpoint_auth_method not in ("client_secret_basic", "client_secret_post"):
            raise AdminError(f"client {client_id!r} uses {current.token_endpoint_auth_method}, not a secret")
        now = self.clock.now()
        overlap = self.policy.client_secret_overlap if overlap is None else overlap
        kept = tuple(replace(s, expires_at=min(s.expires_at or now + overlap, now + overlap))
                     for s in current.secrets if s.usable(now))
        secret, stored = self._new_secret()
        updated = replace(current, secrets=(*kept, stored), updated_at=now)
        await self.store.update_client(updated)
        return updated, secret

    # keys
    async def list_keys(self) -> list[SigningKey]:
        return await self.store.list_keys()

    async def rotate_keys(self, *, immediate: bool = False, alg: str | None = None) -> list[SigningKey]:
        """Rotate the key of ``alg``, or of every signing algorithm (each on its own)."""
        return await core_keys.rotate_keys(self.store, self.policy, self.kek, self.clock, immediate=immediate,
                                           alg=alg)

    async def retire_key(self, kid: str) -> SigningKey:
        return await core_keys.retire_key(self.store, self.policy, kid, self.clock)
