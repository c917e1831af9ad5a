"""Settings, read once at start from ``OSTIARY_*`` environment variables and/or a TOML file.

Nested settings use a double underscore in the environment: ``[keys] rotate_every`` is
``OSTIARY_KEYS__ROTATE_EVERY``. Environment variables override the file. Unknown keys are errors.
Durations accept seconds or a number with a unit: ``90s``, ``15m``, ``12h``, ``30d``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, get_args
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from ._fetch_rules import is_loopback_url
from ._secrets import derive_key
from .core.fapi import fapi2_algs
from .core.policy import MetadataDocumentRules, ServerPolicy

__all__ = ["ConfigError", "Settings", "is_loopback_url", "load_settings", "parse_duration"]

ENV_PREFIX = "OSTIARY_"
#: The client toolkit's own variables (``ostiary login``'s token file and passphrase): not server settings.
CLIENT_ENV_PREFIX = "OSTIARY_TOOLKIT_"
#: Names the client toolkit used before it had its own namespace, and what they are called now.
_MOVED_CLIENT_ENV = {"OSTIARY_TOKEN_FILE": "OSTIARY_TOOLKIT_TOKEN_FILE",
                     "OSTIARY_TOKEN_PASSPHRASE": "OSTIARY_TOOLKIT_PASSPHRASE"}
#: the shortest master secret and admin token accepted (both are compared or derived from, never stretched)
MIN_SECRET_CHARS = 32
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class ConfigError(Exception):
    """Settings are invalid; the message lists every problem and where it came from."""


def parse_duration(value: Any) -> Any:
    """Seconds from ``"90"``, ``"15m"``, ``"2h"`` or ``"1d"`` (settings and CLI flags alike); other values as given."""
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", value)
        if not m:
            raise ValueError("a duration is seconds or a number with s, m, h or d (e.g. 15m)")
        return int(m.group(1)) * _UNITS[m.group(2) or "s"]
    return value


Duration = Annotated[int, BeforeValidator(parse_duration)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RefreshTokenSettings(_Section):
    ttl: Duration = Field(14 * 86400, ge=60, le=30 * 86400, description="absolute lifetime (max 30 days)")
    idle_ttl: Duration = Field(3 * 86400, ge=60, le=30 * 86400, description="expires when unused this long")
    reuse_window: Duration = Field(0, ge=0, le=60, description="grace for a repeated identical refresh")


def _alg_list(value: Any) -> Any:
    if isinstance(value, str):
        return [v for v in re.split(r"[\s,]+", value) if v]
    return value


SigningAlg = Literal["ES256", "RS256", "EdDSA"]


class KeySettings(_Section):
    algorithm: SigningAlg = Field("ES256", description="access tokens are signed with this algorithm")
    algorithms: Annotated[list[SigningAlg], BeforeValidator(_alg_list)] = Field(
        ["ES256", "RS256"], description="one active key each; ID tokens may use any (RS256 always included)")
    publish_delay: Duration = Field(600, ge=0, le=30 * 86400, description="published before it signs")
    rotate_every: Duration | None = Field(None, ge=3600, description="automatic rotation period")
    refresh_interval: Duration = Field(5, ge=1, le=300, description="how often a process reloads keys")


class ClientSettings(_Section):
    secret_overlap: Duration = Field(86400, ge=0, le=30 * 86400, description="old secret valid after rotation")
    cache_ttl: Duration = Field(5, ge=0, le=300, description="per-process client cache")


class RateLimitSettings(_Section):
    enabled: bool = True
    per_client: float = Field(50.0, gt=0, description="token/introspect/revoke requests per second per client")
    per_client_burst: int = Field(100, ge=1)
    per_ip: float = Field(200.0, gt=0, description="requests per second per IP")
    per_ip_burst: int = Field(400, ge=1)
    failed_auth_max: int = Field(10, ge=1, description="failed client authentications before lock-out")
    failed_auth_window: Duration = Field(300, ge=1)
    admin_failed_auth_max: int = Field(10, ge=1, description="failed admin API authentications per IP address "
                                                             "before lock-out")
    admin_failed_auth_window: Duration = Field(900, ge=1, description="admin API lock-out window")


class SessionSettings(_Section):
    ttl: Duration = Field(7 * 86400, ge=300, le=90 * 86400, description="browser sign-in lifetime (absolute)")
    idle_ttl: Duration = Field(86400, ge=300, le=90 * 86400, description="sign-in ends when unused this long")


class LoginSettings(_Section):
    max_failures_per_account: int = Field(5, ge=1, le=1000, description="failed logins per account per window")
    max_failures_per_ip: int = Field(50, ge=1, le=100000, description="failed logins per IP address per window")
    failure_window: Duration = Field(900, ge=60, le=86400, description="throttling window for failed logins")
    hash_workers: int = Field(2, ge=1, le=64, description="threads checking passwords (argon2) per process")
    hash_queue: int = Field(16, ge=0, le=10000, description="sign-ins waiting for a hashing thread before 429")


class DeviceSettings(_Section):
    """RFC 8628 device flow; the attempt limits guard the 34.6-bit user codes (README: "Guessing user codes")."""

    expires_in: Duration = Field(600, ge=5, le=1800, description="device code lifetime")
    interval: int = Field(5, ge=1, le=60, description="seconds between polls (slow_down adds 5)")
    max_attempts_per_code: int = Field(5, ge=1, le=20, description="wrong codes sharing a code's first half "
                                                                   "before that code is locked")
    attempts_per_ip: int = Field(20, ge=1, description="user-code attempts per IP per window")
    attempts_per_session: int = Field(10, ge=1, description="user-code attempts per browser session per window")
    attempts_global: int = Field(1000, ge=1, description="wrong user codes per window, all users together, "
                                                          "before an alert (never a refusal)")
    attempt_window: Duration = Field(900, ge=10, le=86400, description="window of the attempt limits")


class PushedRequestSettings(_Section):
    """RFC 9126 pushed authorization requests (README "Pushed and signed requests")."""

    required: bool = Field(False, description="every client must push its authorization requests to /par")
    expires_in: Duration = Field(60, ge=1, le=60, description="lifetime of a request_uri (at most 60 s)")
def _scope_list(value: Any) -> Any:
    """A comma- or space-separated list from the environment; a list from TOML."""
    if isinstance(value, str):
        return [v for v in re.split(r"[,\s]+", value) if v]
    return value


def _never_or_duration(value: Any) -> Any:
    """``never`` (or nothing) is None; anything else a duration."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "never", "none")):
        return None
    return parse_duration(value)


_DOMAIN = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")


class RegistrationSettings(_Section):
    """Dynamic client registration (RFC 7591) and management (RFC 7592): off unless asked for."""

    policy: Literal["off", "open", "initial_access_token"] = Field(
        "off", description="off; open (anyone may register a public client); initial_access_token (only with a "
                           "token from `ostiary client registration-token create`)")
    scopes: Annotated[list[str], BeforeValidator(_scope_list)] = Field(
        ["openid", "profile", "email", "offline_access"],
        description="the scopes a dynamically registered client may be given (asking for others is refused)")
    audiences: Annotated[list[str], BeforeValidator(_scope_list)] = Field(
        [], description="the APIs (RFC 8707 resource indicators, e.g. your MCP server's URL) a dynamically "
                        "registered client may obtain tokens for")
    per_ip: int = Field(10, ge=1, le=100000, description="registrations per IP address per window")
    window: Duration = Field(3600, ge=60, le=30 * 86400, description="the counting window of per_ip")
    idle_expiry: Annotated[int | None, BeforeValidator(_never_or_duration)] = Field(
        30 * 86400, ge=3600, description="a dynamic client that obtains no token this long is deleted (never: kept)")
    client_metadata_documents: bool = Field(
        False, description="accept an https URL as client_id and fetch the client's metadata from it (client ID "
                           "metadata documents, as MCP clients use them); off: the server fetches nothing for "
                           "unknown clients")
    client_metadata_allow_domains: Annotated[list[str], BeforeValidator(_scope_list)] = Field(
        [], description="only these domains (and their subdomains) may serve client metadata documents; empty: any")
    client_metadata_deny_domains: Annotated[list[str], BeforeValidator(_scope_list)] = Field(
        [], description="these domains (and their subdomains) may never serve client metadata documents")

    @field_validator("client_metadata_allow_domains", "client_metadata_deny_domains")
    @classmethod
    def _domains(cls, v: list[str]) -> list[str]:
        domains = [d.lower().strip(".") for d in v]
        bad = [d for d in domains if not _DOMAIN.fullmatch(d)]
        if bad:
            raise ValueError(f"not a domain name: {', '.join(map(repr, bad))}")
        return list(dict.fromkeys(domains))

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, v: list[str]) -> list[str]:
        bad = [s for s in v if not re.fullmatch(r"[\x21\x23-\x5B\x5D-\x7E]+", s)]
        if bad:
            raise ValueError(f"invalid scope token(s): {', '.join(map(repr, bad))}")
        return sorted(set(v))

    @field_validator("audiences")
    @classmethod
    def _audiences(cls, v: list[str]) -> list[str]:
        bad = [a for a in v if "#" in a or ":" not in a]
        if bad:
            raise ValueError(f"each audience must be an absolute URI without a fragment: {', '.join(map(repr, bad))}")
        return list(dict.fromkeys(v))


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)
    implementation: Literal["uvicorn", "granian"] = "uvicorn"
    max_body_bytes: int = Field(64 * 1024, ge=1024, le=1024 * 1024)
    metrics_address: str | None = Field(None, description="HOST:PORT of a separate /metrics listener")
    header_timeout: Duration = Field(10, ge=1, le=300, description="request line and headers must arrive within "
                                                                   "this (408)")
    max_header_bytes: int = Field(32 * 1024, ge=4096, le=1024 * 1024, description="largest request line and "
                                                                                  "headers (400 above)")
    body_timeout: Duration = Field(5, ge=1, le=300, description="a request body must arrive within this (408)")
    keep_alive_max_requests: int = Field(1000, ge=1, description="requests on one connection before it is closed")
    keep_alive_max_age: Duration = Field(30, ge=1, le=3600, description="a connection is closed after this long")
    trusted_proxies: tuple[str, ...] = Field((), description="addresses/CIDRs whose Forwarded or "
                                                             "X-Forwarded-For header is believed")
    proxy_header: Literal["x-forwarded-for", "forwarded"] = Field(
        "x-forwarded-for", description="the header trusted proxies set: X-Forwarded-For or RFC 7239 Forwarded")
    tls_cert_file: str | None = Field(None, description="PEM certificate (chain) of a TLS listener: "
                                                        "`ostiary serve` speaks HTTPS")
    tls_key_file: str | None = Field(None, description="PEM private key of the TLS listener")
    tls_client_ca_file: str | None = Field(None, description="PEM CA bundle: the TLS listener asks clients for a "
                                                             "certificate that chains to one of these (mTLS)")
    tls_client_cert_required: bool = Field(False, description="the TLS handshake fails without a client "
                                                              "certificate (else it is optional)")

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxies_list(cls, v: Any) -> Any:
        if isinstance(v, str):  # from the environment: comma-separated
            return tuple(p.strip() for p in v.split(",") if p.strip())
        return v

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for item in v:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or CIDR network") from None
        return v

    @field_validator("metrics_address")
    @classmethod
    def _metrics_address(cls, v: str | None) -> str | None:
        if v is None:
            return v
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:9464")
        return v

    @model_validator(mode="after")
    def _tls_pairs(self) -> ServerSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("server.tls_cert_file and server.tls_key_file go together")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("server.tls_client_ca_file needs a TLS listener (server.tls_cert_file, tls_key_file)")
        if self.tls_client_cert_required and self.tls_client_ca_file is None:
            raise ValueError("server.tls_client_cert_required needs server.tls_client_ca_file")
        return self

    def metrics_listener(self) -> tuple[str, int] | None:
        if self.metrics_address is None:
            return None
        host, _, port = self.metrics_address.rpartition(":")
        return host.strip("[]"), int(port)


class MtlsSettings(_Section):
    """Mutual-TLS client authentication and certificate-bound tokens (RFC 8705)."""

    ca_file: str | None = Field(None, description="PEM bundle of the CAs whose client certificates "
                                                  "tls_client_auth accepts (unset: tls_client_auth is off)")
    proxy_cert_header: str | None = Field(
        None, pattern=r"^[A-Za-z0-9-]{1,64}$",
        description="header in which a trusted proxy (server.trusted_proxies) forwards the client certificate, "
                    "URL-encoded PEM (e.g. X-Client-Cert); from any other peer it is removed")


DPoPAlg = Literal["ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512", "EdDSA"]


class DPoPSettings(_Section):
    """DPoP sender-constrained tokens (RFC 9449; README "Bind tokens to their client")."""

    algorithms: list[DPoPAlg] = Field(
        default_factory=lambda: list(get_args(DPoPAlg)),
        min_length=1, description="algorithms accepted for DPoP proofs (dpop_signing_alg_values_supported)")
    iat_window: Duration = Field(60, ge=5, le=600, description="how far a proof's iat may be from the server's "
                                                               "time, either way; its jti is remembered this long")
    require_nonce: bool = Field(False, description="every DPoP proof must carry a server nonce (RFC 9449 §8); "
                                                   "clients can also be flagged one by one")
    nonce_lifetime: Duration = Field(300, ge=30, le=3600, description="a server nonce is accepted for one to two "
                                                                      "of these periods")

    @field_validator("algorithms", mode="before")
    @classmethod
    def _list(cls, v: Any) -> Any:
        return _scope_list(v)


class AuditSettings(_Section):
    durability: Literal["batched", "sync"] = Field(
        "batched", description="batched: rows written every 0.2 s off the request path (a killed process loses "
                               "at most the last interval); sync: the row is written before the response")
    retention: Duration = Field(
        365 * 86400, ge=0, description="events older than this are deleted by the maintenance task, in bounded "
                                       "batches (0 keeps them forever)")


class Settings(BaseSettings):
    """Every server setting. ``Settings(**values)`` validates the values given; ``load_settings()`` adds the
    environment and the TOML file (pydantic-settings sources, environment first)."""

    model_config = SettingsConfigDict(extra="forbid", frozen=True, case_sensitive=True, validate_default=False,
                                      enable_decoding=False)

    issuer: str = "http://127.0.0.1:8000"
    database_url: str = "sqlite+aiosqlite:///ostiary.db"
    database_timeout: Duration = Field(5, ge=1, le=60, description="connect and pool-wait timeout (503 after)")
    database_pool_size: int = Field(20, ge=1, le=200, description="PostgreSQL connections a worker may open "
                                                                    "(on demand) and keeps open")
    database_max_overflow: int = Field(0, ge=0, le=200, description="extra connections a worker may open under "
                                                                     "bursts, each closed when returned (a new "
                                                                     "PostgreSQL session every time: prefer a "
                                                                     "larger pool)")
    secret_key: SecretStr | None = None
    secret_key_file: str = "ostiary-secret.key"
    admin_token: SecretStr | None = None
    redis_url: str | None = None
    redis_prefix: str = Field("ostiary:", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9:._-]+$",
                              description="prefix of every Redis key (several deployments sharing one Redis)")
    redis_timeout: float = Field(0.5, gt=0, le=5, description="seconds to wait for Redis before the fallback")
    redis_retry_interval: float = Field(5.0, ge=0.1, le=300, description="seconds between retries of an "
                                                                           "unavailable Redis")
    access_token_ttl: Duration = Field(900, ge=60, le=3600)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "text"] = "json"
    metrics: bool = True
    profile: Literal["default", "fapi2"] = Field(
        "default", description="fapi2: the FAPI 2.0 Security Profile (PAR, private_key_jwt or mTLS, sender-constrained "
                               "tokens, no public clients)")
    par: PushedRequestSettings = PushedRequestSettings()
    refresh_token: RefreshTokenSettings = RefreshTokenSettings()
    keys: KeySettings = KeySettings()
    clients: ClientSettings = ClientSettings()
    rate_limits: RateLimitSettings = RateLimitSettings()
    sessions: SessionSettings = SessionSettings()
    login: LoginSettings = LoginSettings()
    device: DeviceSettings = DeviceSettings()
    server: ServerSettings = ServerSettings()
    audit: AuditSettings = AuditSettings()
    mtls: MtlsSettings = MtlsSettings()
    dpop: DPoPSettings = DPoPSettings()
    registration: RegistrationSettings = RegistrationSettings()

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, v: str) -> str:
        v = v.rstrip("/")
        parts = urlsplit(v)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("issuer must be an absolute https URL")
        if parts.query or parts.fragment:
            raise ValueError("issuer must not have a query or fragment (RFC 8414 §2)")
        if parts.scheme == "http" and not is_loopback_url(v):
            raise ValueError("issuer must use https (http is allowed only for loopback hosts)")
        return v

    @model_validator(mode="after")
    def _fapi2_algorithms(self) -> Settings:
        """FAPI 2.0 Security Profile §5.4.1: JWTs created and processed with PS256, ES256 or EdDSA only."""
        if self.profile == "fapi2" and not fapi2_algs(tuple(self.dpop.algorithms)):
            raise ValueError("profile fapi2 accepts DPoP proofs signed with PS256, ES256 or EdDSA only (FAPI 2.0 "
                             "Security Profile 5.4.1): dpop.algorithms has none of them")
        if self.profile == "fapi2" and not fapi2_algs((self.keys.algorithm,)):
            raise ValueError(f"profile fapi2 signs access tokens with ES256 or EdDSA (FAPI 2.0 Security Profile "
                             f"5.4.1), not keys.algorithm = {self.keys.algorithm}")
        return self

    @field_validator("secret_key", "admin_token")
    @classmethod
    def _long_enough(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and len(v.get_secret_value().strip()) < MIN_SECRET_CHARS:
            raise ValueError(f"must be at least {MIN_SECRET_CHARS} characters (random: e.g. "
                             "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`)")
        return v

    @field_validator("database_url")
    @classmethod
    def _db(cls, v: str) -> str:
        if v.startswith("postgresql://") or v.startswith("postgres://"):
            v = "postgresql+asyncpg://" + v.split("://", 1)[1]
        if v.startswith("sqlite://") and not v.startswith("sqlite+aiosqlite://"):
            v = "sqlite+aiosqlite://" + v.split("://", 1)[1]
        if not (v.startswith("sqlite+aiosqlite://") or v.startswith("postgresql+asyncpg://")):
            raise ValueError("database_url must be sqlite:///PATH or postgresql://USER@HOST/DB")
        return v

    @field_validator("redis_url")
    @classmethod
    def _redis(cls, v: str | None) -> str | None:
        if v is not None and urlsplit(v).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("redis_url must be redis://HOST:PORT/DB, rediss://… or unix://…")
        if v is not None and urlsplit(v).query:
            raise ValueError("redis_url must not carry query options")
        return v

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)  # the environment and the file only through load_settings()

    def policy(self) -> ServerPolicy:
        return ServerPolicy(
            issuer=self.issuer, access_token_ttl=self.access_token_ttl,
            refresh_token_ttl=self.refresh_token.ttl, refresh_token_idle_ttl=self.refresh_token.idle_ttl,
            refresh_token_reuse_window=self.refresh_token.reuse_window,
            client_secret_overlap=self.clients.secret_overlap, access_token_alg=self.keys.algorithm,
            key_algorithms=tuple(self.keys.algorithms),
            key_publish_delay=self.keys.publish_delay, key_rotate_every=self.keys.rotate_every,
            profile=self.profile, require_pushed_authorization_requests=self.par.required,
            par_expires_in=self.par.expires_in,
            dynamic_registration=self.registration.policy != "off",
            dpop_algs=self._dpop_algs(), dpop_iat_window=self.dpop.iat_window,
            dpop_require_nonce=self.dpop.require_nonce, dpop_nonce_lifetime=self.dpop.nonce_lifetime,
            client_metadata=MetadataDocumentRules(
                scopes=frozenset(self.registration.scopes), audiences=tuple(self.registration.audiences),
                allow_domains=tuple(self.registration.client_metadata_allow_domains),
                deny_domains=tuple(self.registration.client_metadata_deny_domains),
            ) if self.registration.client_metadata_documents else None,
        )

    def _dpop_algs(self) -> tuple[str, ...]:
        """``dpop.algorithms``; in FAPI 2.0 mode only PS256, ES256 and EdDSA of them (FAPI 2.0 Security Profile
        §5.4.1)."""
        algs = tuple(dict.fromkeys(self.dpop.algorithms))
        return fapi2_algs(algs) if self.profile == "fapi2" else algs

    def master_secret(self, *, create: bool = True) -> bytes:
        """The key-encryption and hashing master secret: ``secret_key`` or, in development, a key file."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value().encode()
        path = Path(self.secret_key_file)
        if path.exists():
            data = path.read_bytes().strip()
            if len(data) < 32:
                raise ConfigError(f"{path}: the secret key file holds fewer than 32 bytes")
            return data
        if not is_loopback_url(self.issuer):
            raise ConfigError("set OSTIARY_SECRET_KEY (at least 32 random characters) or secret_key_file: "
                              "a production issuer never generates its own master key")
        if not create:
            raise ConfigError(f"no secret key: {path} does not exist")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_urlsafe(48).encode())
        return path.read_bytes().strip()

    def master_keys(self) -> MasterKeys:
        master = self.master_secret()
        return MasterKeys(derive_key(master, "signing-key-encryption"), derive_key(master, "client-secret-hash"),
                          derive_key(master, "admin-token-hash"))


class MasterKeys(NamedTuple):
    """Keys derived (HKDF) from the master secret, one per purpose."""

    key_encryption: bytes  # AES-256-GCM key of the signing keys at rest
    client_secret_hash: bytes  # HMAC key of client-secret hashes
    admin_token_hash: bytes  # HMAC key of the admin token's comparison


class _ServerEnvironment(EnvSettingsSource):
    """The ``OSTIARY_*`` variables, read by pydantic-settings' environment source, with Ostiary's rules on top.

    pydantic-settings maps ``OSTIARY_KEYS__ROTATE_EVERY`` to ``keys.rotate_every`` (the rest of the name is
    case-insensitive, lists and sections are never JSON-decoded). What it cannot express stays here: the prefix is
    matched case-sensitively; ``OSTIARY_CONFIG`` and the client toolkit's ``OSTIARY_TOOLKIT_*`` are not settings;
    the toolkit's old names are refused with their new ones; and a variable that names no setting is an error
    ("unknown setting"), never silently ignored.
    """

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._ours = {name: value for name, value in environ.items()
                      if name.startswith(ENV_PREFIX) and name != ENV_PREFIX + "CONFIG"
                      and not name.startswith(CLIENT_ENV_PREFIX)}
        for name in self._ours:
            if name in _MOVED_CLIENT_ENV:
                new = _MOVED_CLIENT_ENV[name]
                raise ConfigError(f"{name} is not a server setting: the client toolkit reads {new} "
                                  f"now; rename it (export {new}=\"${name}\"; unset {name})")
        super().__init__(settings_cls, case_sensitive=False, env_prefix=ENV_PREFIX, env_nested_delimiter="__")

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {name.lower(): value for name, value in self._ours.items()}

    def __call__(self) -> dict[str, Any]:
        data = super().__call__()
        for name, value in self._ours.items():
            path = name[len(ENV_PREFIX):].lower().split("__")
            if _names_a_setting(self.settings_cls, path):
                continue
            node = data  # not a setting: put it where it points, so validation reports it (extra="forbid")
            for part in path[:-1]:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise ConfigError(f"{name}: conflicts with another setting")
            node[path[-1]] = value
        return data


def _names_a_setting(model: type[BaseModel], path: list[str]) -> bool:
    """Whether ``path`` (``["keys", "rotate_every"]``) is a setting or a section of ``model``."""
    field = model.model_fields.get(path[0])
    if field is None:
        return False
    if len(path) == 1:
        return True
    sub = field.annotation
    return isinstance(sub, type) and issubclass(sub, BaseModel) and _names_a_setting(sub, path[1:])


def _config_file(settings_cls: type[BaseSettings], config_file: str | os.PathLike[str]) -> TomlConfigSettingsSource:
    """pydantic-settings' TOML source, but a file that is missing or unreadable is an error, not an empty file."""
    try:
        with open(config_file, "rb"):
            pass
        return TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {config_file}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config_file}: not valid TOML: {exc}") from exc


def load_settings(config_file: str | os.PathLike[str] | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Read the TOML file (``--config`` or ``OSTIARY_CONFIG``) and the environment; validate everything."""
    env = os.environ if environ is None else environ
    config_file = config_file or env.get(ENV_PREFIX + "CONFIG")
    sources: list[PydanticBaseSettingsSource] = [_ServerEnvironment(Settings, env)]  # first wins
    if config_file:
        sources.append(_config_file(Settings, config_file))
    try:
        return Settings(_build_sources=(tuple(sources), {}))
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            env_name = ENV_PREFIX + "__".join(str(p) for p in err["loc"]).upper()
            msg = "unknown setting" if err["type"] == "extra_forbidden" else err["msg"]
            lines.append(f"  {loc} (env {env_name}): {msg}")
        raise ConfigError("invalid settings:\n" + "\n".join(lines)) from None
