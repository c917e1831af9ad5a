"""Dynamic client registration (RFC 7591) and its management protocol (RFC 7592): clients that register
themselves, and the initial access tokens an administrator hands out for it.

The HTTP routes (``web/routes/registration.py``) call :class:`RegistrationService`; the CLI calls
:meth:`RegistrationService.create_initial_access_token`. Every client registered here is ``dynamic``: never
first-party, consent asked every time, deleted when unused for ``registration.idle_expiry``.

Choices where the RFCs leave room:

* unknown metadata is ignored (RFC 7591 §2); metadata that is known but not allowed here is refused with
  ``invalid_client_metadata``, a refused redirect URI with ``invalid_redirect_uri`` (RFC 7591 §3.2.2);
* the registration access token is not rotated on read or update: it is shown once, stored as a keyed hash,
  and the read and update responses carry the token the request presented (RFC 7592 §3);
* a client secret is shown once, at registration; read and update responses omit it (it is stored hashed);
* under the ``open`` policy ``token_endpoint_auth_method`` defaults to ``none`` (only public clients may
  register there), under ``initial_access_token`` to ``client_secret_basic`` (RFC 7591 §2);
* with an initial access token a client may choose ``none``, ``client_secret_basic``, ``client_secret_post``,
  ``private_key_jwt`` (with ``jwks`` or ``jwks_uri``), ``tls_client_auth`` (with exactly one of
  ``tls_client_auth_subject_dn``, ``_san_dns``, ``_san_uri``, ``_san_ip``, ``_san_email``; RFC 8705 §2.1.2) or
  ``self_signed_tls_client_auth`` (with ``jwks`` or ``jwks_uri`` holding its certificates; RFC 8705 §2.2.2),
  and ``tls_client_certificate_bound_access_tokens`` (RFC 8705 §3.4); the two mTLS methods only where the
  server's discovery document lists them (client certificates reach it; trust anchors for ``tls_client_auth``),
  certificate-bound tokens only where client certificates reach it;
* ``jwks`` and ``jwks_uri`` are refused together, and for methods that use no keys (RFC 7591 §2).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import ValidationError

from .._clock import Clock
from .._secrets import constant_time_equals, new_token, token_hash
from ..core.audit import AuditEvent, AuditSink
from ..core.clients import Client, InitialAccessToken, client_origin
from ..core.errors import InvalidClientMetadata, InvalidRedirectUri, InvalidRequest, InvalidToken, OAuthError
from ..core.redirect_uri import validate_dynamic_redirect_uri
from ..core.storage import Store
from .service import AdminError, AdminService, ClientCreate

__all__ = ["IAT_PREFIX", "RAT_PREFIX", "RegistrationPolicy", "RegistrationService", "bearer",
           "create_initial_access_token"]

IAT_PREFIX = "ost_iat_"
RAT_PREFIX = "ost_rat_"
#: the grants a client that registers itself may use (RFC 7591 §2 ``grant_types``)
DYNAMIC_GRANTS = frozenset({"authorization_code", "refresh_token"})
PUBLIC_METHODS = ("none",)
CONFIDENTIAL_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", "tls_client_auth",
                        "self_signed_tls_client_auth")
#: RFC 8705 §2.1.2: a tls_client_auth client names its certificate by exactly one of these
TLS_NAME_FIELDS = ("tls_client_auth_subject_dn", "tls_client_auth_san_dns", "tls_client_auth_san_uri",
                   "tls_client_auth_san_ip", "tls_client_auth_san_email")
#: the methods that take the client's keys (jwks or jwks_uri): its assertions' keys, or its certificates
KEYED_METHODS = ("private_key_jwt", "self_signed_tls_client_auth")
#: fields the server sets; a client may not send them in an update (RFC 7592 §2.2)
SERVER_FIELDS = ("registration_access_token", "registration_client_uri", "client_secret_expires_at",
                 "client_id_issued_at")
MAX_REDIRECT_URIS = 10
MAX_NAME = 200

Mode = Literal["off", "open", "initial_access_token"]


@dataclass(frozen=True, slots=True)
class RegistrationPolicy:
    """What ``[registration]`` in the settings allows."""

    mode: Mode
    scopes: frozenset[str]
    #: the audiences (RFC 8707 resources) every registered client is given
    audiences: tuple[str, ...] = ()
    #: the RFC 8705 client authentication methods this server can check (what its discovery document lists):
    #: none without client certificates; ``self_signed_tls_client_auth`` when certificates reach it, and
    #: ``tls_client_auth`` besides when trust anchors are configured
    mtls_methods: frozenset[str] = frozenset()


def _unauthorized(description: str) -> InvalidToken:
    return InvalidToken(description, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer`` header (RFC 6750 §2.1), or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 512:
        return None
    return token


def _string(meta: Mapping[str, Any], name: str, max_len: int = 2000) -> str | None:
    value = meta.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise InvalidClientMetadata(f"{name} must be a non-empty string of at most {max_len} characters")
    return value


def _strings(meta: Mapping[str, Any], name: str, max_items: int = 20) -> list[str] | None:
    value = meta.get(name)
    if value is None:
        return None
    if (not isinstance(value, list) or len(value) > max_items
            or not all(isinstance(v, str) and 0 < len(v) <= 2000 for v in value)):
        raise InvalidClientMetadata(f"{name} must be an array of at most {max_items} non-empty strings")
    return list(dict.fromkeys(value))


def _web_uri(meta: Mapping[str, Any], name: str) -> str | None:
    """``logo_uri``/``client_uri``: https (or http on loopback), a host, no userinfo or fragment."""
    value = _string(meta, name)
    if value is None:
        return None
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError:
        raise InvalidClientMetadata(f"{name} is not a valid URL") from None
    if (parts.scheme not in ("https", "http") or not parts.hostname or "@" in parts.netloc or parts.fragment
            or any(ch <= " " for ch in value)
            or (parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "::1"))):
        raise InvalidClientMetadata(f"{name} must be an https URL without userinfo or fragment")
    return value


async def create_initial_access_token(store: Store, clock: Clock, secret_hash_key: bytes, *, uses: int,
                                      expires_in: int) -> tuple[str, InitialAccessToken, AuditEvent]:
    """RFC 7591 §3: a token that registers up to ``uses`` clients within ``expires_in`` seconds; stored as a
    keyed hash, shown once. Returns the token, what was stored, and the audit event to record."""
    if uses < 1:
        raise AdminError("--uses must be at least 1")
    if expires_in < 60:
        raise AdminError("--expires-in must be at least 60 seconds (e.g. 1h)")
    now = clock.now()
    token = new_token(32, IAT_PREFIX)
    stored = InitialAccessToken(token_hash(token, secret_hash_key), now, now + expires_in, uses)
    await store.add_initial_access_token(stored)
    event = AuditEvent(type="registration.token_created", outcome="success", at=now,
                       detail={"uses": uses, "expires_at": int(stored.expires_at)})
    return token, stored, event


@dataclass
class RegistrationService:
    store: Store
    admin: AdminService
    policy: RegistrationPolicy
    clock: Clock
    audit: AuditSink
    secret_hash_key: bytes = field(repr=False)

    # RFC 7591 §3.1
    async def register(self, metadata: Any, authorization: str | None, ip: str | None) -> dict[str, Any]:
        """Register a client; its RFC 7591 §3.2.1 response. Refusals are audited and raised as OAuthError."""
        now = self.clock.now()
        try:
            presented = bearer(authorization)
            if self.policy.mode == "off":
                raise InvalidRequest("dynamic client registration is not enabled on this server")
            if self.policy.mode == "initial_access_token" and presented is None:
                raise _unauthorized("registration needs an initial access token (Authorization: Bearer ...)")
            if authorization and presented is None:
                raise _unauthorized("the Authorization header must be Bearer with an initial access token")
            privileged = presented is not None
            client, secret, rat = self._build(metadata, privileged=privileged, client_id=None, now=now)
            async with self.store.transaction():
                if presented is not None and not await self.store.spend_initial_access_token(
                        token_hash(presented, self.secret_hash_key), now):
                    raise _unauthorized("the initial access token is unknown, expired or used up")
                await self.store.add_client(client)
        except OAuthError as exc:
            self.audit.emit(AuditEvent(type="client.registration_refused", outcome="failure", at=now, ip=ip,
                                       detail={"error": exc.error, "reason": exc.description[:200]}))
            raise
        self.audit.emit(AuditEvent(type="client.registered", outcome="success", at=now, client_id=client.client_id,
                                   ip=ip, detail={"origin": client_origin(client), "name": client.name[:100],
                                                  "method": client.token_endpoint_auth_method,
                                                  "initial_access_token": privileged}))
        return self.response(client, rat, secret)

    # RFC 7592 §2
    async def read(self, client_id: str, authorization: str | None) -> dict[str, Any]:
        client, rat = await self._authorized(client_id, authorization)
        return self.response(client, rat, None)

    async def update(self, client_id: str, authorization: str | None, metadata: Any,
                     ip: str | None) -> dict[str, Any]:
        """RFC 7592 §2.2: the request replaces the metadata; fields it leaves out are reset to their defaults."""
        client, rat = await self._authorized(client_id, authorization)
        now = self.clock.now()
        try:
            if not isinstance(metadata, dict):
                raise InvalidClientMetadata("the request body must be a JSON object")
            if metadata.get("client_id") != client_id:
                raise InvalidClientMetadata("client_id must be present and equal this client's id")
            sent = [f for f in SERVER_FIELDS if f in metadata]
            if sent:
                raise InvalidRequest("these fields are set by the server and must not be sent: " + ", ".join(sent))
            secret = metadata.get("client_secret")
            if secret is not None and not (isinstance(secret, str) and any(
                    constant_time_equals(token_hash(secret, self.secret_hash_key), s.secret_hash)
                    for s in client.secrets)):
                raise InvalidClientMetadata("client_secret does not match this client's secret")
            privileged = client.client_type == "confidential" or self.policy.mode == "initial_access_token"
            built, _, _ = self._build(metadata, privileged=privileged, client_id=client_id, now=now)
            if built.token_endpoint_auth_method != client.token_endpoint_auth_method:
                raise InvalidClientMetadata("token_endpoint_auth_method cannot change; register a new client")
            updated = replace(built, secrets=client.secrets, created_at=client.created_at,
                              registration_token_hash=client.registration_token_hash,
                              last_used_at=client.last_used_at, disabled=client.disabled)
            await self.store.update_client(updated)
        except OAuthError as exc:
            self.audit.emit(AuditEvent(type="client.registration_update_refused", outcome="failure", at=now,
                                       client_id=client_id, ip=ip,
                                       detail={"error": exc.error, "reason": exc.description[:200]}))
            raise
        self.audit.emit(AuditEvent(type="client.registration_updated", outcome="success", at=now,
                                   client_id=client_id, ip=ip, detail={"origin": client_origin(updated)}))
        return self.response(updated, rat, None)

    async def delete(self, client_id: str, authorization: str | None, ip: str | None) -> None:
        """RFC 7592 §2.3: the client and its registration access token are gone."""
        await self._authorized(client_id, authorization)
        await self.store.delete_client(client_id)
        self.audit.emit(AuditEvent(type="client.registration_deleted", outcome="success", at=self.clock.now(),
                                   client_id=client_id, ip=ip))

    async def _authorized(self, client_id: str, authorization: str | None) -> tuple[Client, str]:
        """The client whose registration access token was presented. Unknown client, missing or wrong token:
        401 alike (RFC 7592 §2.1), compared in constant time."""
        presented = bearer(authorization)
        if presented is None:
            raise _unauthorized("the registration access token is missing (Authorization: Bearer ...)")
        client = await self.store.get_client(client_id) if 0 < len(client_id) <= 256 else None
        expected = client.registration_token_hash if client is not None else None
        if client is None or expected is None or not constant_time_equals(
                token_hash(presented, self.secret_hash_key), expected):
            raise _unauthorized("the registration access token is not valid for this client")
        return client, presented

    def _build(self, meta: Any, *, privileged: bool, client_id: str | None,
               now: float) -> tuple[Client, str | None, str]:
        """RFC 7591 §2: the client the metadata asks for, checked; with its secret and registration access
        token (both only shown in this response). Unknown fields are ignored."""
        if not isinstance(meta, dict):
            raise InvalidClientMetadata("the request body must be a JSON object")
        redirect_uris = _strings(meta, "redirect_uris", MAX_REDIRECT_URIS) or []
        for uri in redirect_uris:
            try:
                validate_dynamic_redirect_uri(uri)
            except ValueError as exc:
                raise InvalidRedirectUri(str(exc)) from None
        grants = _strings(meta, "grant_types") or ["authorization_code"]
        unknown = sorted(set(grants) - DYNAMIC_GRANTS)
        if unknown:
            raise InvalidClientMetadata("grant_types may hold only authorization_code and refresh_token here, not "
                                        + ", ".join(g[:60] for g in unknown))
        response_types = _strings(meta, "response_types") or ["code"]
        if response_types != ["code"]:
            raise InvalidClientMetadata("response_types must be [\"code\"] (authorization code flow only)")
        if "authorization_code" not in grants:
            raise InvalidClientMetadata("grant_types must include authorization_code (response_types is code)")
        if not redirect_uris:
            raise InvalidRedirectUri("redirect_uris is required: at least one https or loopback URI")
        method = _string(meta, "token_endpoint_auth_method", 40) or (
            "client_secret_basic" if self.policy.mode == "initial_access_token" else "none")
        if method not in (*PUBLIC_METHODS, *CONFIDENTIAL_METHODS):
            raise InvalidClientMetadata(f"unsupported token_endpoint_auth_method {method!r}")
        if method != "none" and not privileged:
            raise InvalidClientMetadata("only public clients (token_endpoint_auth_method none) may register without "
                                        "an initial access token")
        if method in ("tls_client_auth", "self_signed_tls_client_auth") and method not in self.policy.mtls_methods:
            raise InvalidClientMetadata(f"token_endpoint_auth_method {method} is not available: this server "
                                        "receives no client certificates or has no trust anchors (RFC 8705 §2)")
        tls_names = {name: value for name in TLS_NAME_FIELDS if (value := _string(meta, name)) is not None}
        if method == "tls_client_auth" and len(tls_names) != 1:
            raise InvalidClientMetadata("tls_client_auth needs exactly one of " + ", ".join(TLS_NAME_FIELDS)
                                        + " (RFC 8705 §2.1.2)"
                                        + (f"; got {', '.join(tls_names)}" if tls_names else ""))
        if method != "tls_client_auth" and tls_names:
            raise InvalidClientMetadata(f"{', '.join(tls_names)}: only for token_endpoint_auth_method "
                                        "tls_client_auth (RFC 8705 §2.1.2)")
        cert_bound = meta.get("tls_client_certificate_bound_access_tokens", False)
        if not isinstance(cert_bound, bool):
            raise InvalidClientMetadata("tls_client_certificate_bound_access_tokens must be true or false "
                                        "(RFC 8705 §3.4)")
        if cert_bound and not privileged:
            raise InvalidClientMetadata("tls_client_certificate_bound_access_tokens needs an initial access token")
        if cert_bound and not self.policy.mtls_methods:
            raise InvalidClientMetadata("tls_client_certificate_bound_access_tokens is not available: this server "
                                        "receives no client certificates (RFC 8705 §3)")
        scope = meta.get("scope")
        if scope is not None and (not isinstance(scope, str) or len(scope) > 2000):
            raise InvalidClientMetadata("scope must be a space-separated string")
        scopes = set(scope.split()) if scope else set(self.policy.scopes)
        refused = sorted(scopes - self.policy.scopes)
        if refused:
            raise InvalidClientMetadata("scope not allowed for registered clients: " + " ".join(refused)[:200]
                                        + "; allowed: " + " ".join(sorted(self.policy.scopes)))
        jwks = meta.get("jwks")
        jwks_uri = _string(meta, "jwks_uri")
        if jwks is not None and jwks_uri is not None:
            raise InvalidClientMetadata("jwks and jwks_uri must not both be present (RFC 7591 §2)")
        if (jwks is not None or jwks_uri is not None) and method not in KEYED_METHODS:
            raise InvalidClientMetadata("jwks and jwks_uri are only for private_key_jwt and "
                                        "self_signed_tls_client_auth")
        if method == "self_signed_tls_client_auth" and jwks is None and jwks_uri is None:
            raise InvalidClientMetadata("self_signed_tls_client_auth needs jwks or jwks_uri: the client's "
                                        "certificates as x5c, or their keys (RFC 8705 §2.2.2)")
        if jwks is not None and not isinstance(jwks, dict):
            raise InvalidClientMetadata("jwks must be a JSON object (a JWK Set)")
        logo_uri = _web_uri(meta, "logo_uri")
        client_uri = _web_uri(meta, "client_uri")
        # FAPI 2.0 mode: not RS256 by default (FAPI 2.0 Security Profile §5.4.1), the access tokens' algorithm
        alg = _string(meta, "id_token_signed_response_alg", 16) or (
            self.admin.policy.access_token_alg if self.admin.policy.fapi2 else "RS256")
        proposed_name = _string(meta, "client_name", MAX_NAME)
        dpop_bound = meta.get("dpop_bound_access_tokens", False)
        if not isinstance(dpop_bound, bool):
            raise InvalidClientMetadata("dpop_bound_access_tokens must be true or false (RFC 9449 §5.2)")
        par_only = meta.get("require_pushed_authorization_requests", False)
        if not isinstance(par_only, bool):
            raise InvalidClientMetadata("require_pushed_authorization_requests must be true or false (RFC 9126 §6)")
        try:
            spec = ClientCreate(
                name=proposed_name or "unnamed application",
                client_type="public" if method == "none" else "confidential",
                token_endpoint_auth_method=method,
                grant_types=grants, scopes=sorted(scopes), audiences=list(self.policy.audiences),
                redirect_uris=redirect_uris, jwks=jwks,
                jwks_uri=jwks_uri, id_token_signed_response_alg=alg, dpop_bound_access_tokens=dpop_bound,
                require_pushed_authorization_requests=par_only, **tls_names,
                tls_client_certificate_bound_access_tokens=cert_bound)
            client, secret = self.admin.new_client(spec)
        except ValidationError as exc:
            # a field's own check names the field (an overlong tls_client_auth_san_dns, say); the cross-field
            # checks name theirs in the message
            raise InvalidClientMetadata("; ".join(
                (f"{e['loc'][0]}: " if e["loc"] else "") + e["msg"] for e in exc.errors())[:300]) from None
        except AdminError as exc:
            raise InvalidClientMetadata(str(exc)[:300]) from None
        rat = new_token(32, RAT_PREFIX)
        client = replace(client, client_id=client_id or new_token(16), dynamic=True, first_party=False,
                         logo_uri=logo_uri, client_uri=client_uri, created_at=now, updated_at=now,
                         registration_token_hash=token_hash(rat, self.secret_hash_key))
        if proposed_name is None:
            client = replace(client, name=(urlsplit(client_origin(client) or "").hostname or "unnamed application"))
        return client, secret, rat

    def response(self, c: Client, rat: str, secret: str | None) -> dict[str, Any]:
        """RFC 7591 §3.2.1 / RFC 7592 §3: the registered metadata, the client's credentials as issued now, and
        how to manage the registration."""
        out: dict[str, Any] = {
            "client_id": c.client_id, "client_id_issued_at": int(c.created_at),
            "client_name": c.name, "redirect_uris": list(c.redirect_uris),
            "grant_types": sorted(c.grant_types), "response_types": ["code"],
            "token_endpoint_auth_method": c.token_endpoint_auth_method, "scope": " ".join(sorted(c.scopes)),
            "id_token_signed_response_alg": c.id_token_signed_response_alg,
            "dpop_bound_access_tokens": c.dpop_bound_access_tokens,
            "require_pushed_authorization_requests": c.require_pushed_authorization_requests,
            **c.tls_client_auth.as_dict(),  # RFC 8705 §2.1.2
            "tls_client_certificate_bound_access_tokens": c.tls_client_certificate_bound_access_tokens,  # §3.4
            "registration_access_token": rat,
            "registration_client_uri": f"{self.admin.policy.registration_endpoint}/{c.client_id}",
        }
        if c.token_endpoint_auth_method in ("client_secret_basic", "client_secret_post"):
            out["client_secret_expires_at"] = 0  # never expires (rotate with `ostiary client rotate-secret`)
            if secret is not None:
                out["client_secret"] = secret
        for name, value in (("logo_uri", c.logo_uri), ("client_uri", c.client_uri), ("jwks_uri", c.jwks_uri)):
            if value is not None:
                out[name] = value
        if c.jwks is not None:
            out["jwks"] = dict(c.jwks)
        return out
