"""Client authentication at the token, introspection, revocation and device endpoints: one step.

Methods: ``client_secret_basic`` and ``client_secret_post`` (RFC 6749 §2.3.1), ``private_key_jwt``
(RFC 7523 §2.2, OIDC Core §9), ``tls_client_auth`` and ``self_signed_tls_client_auth`` (RFC 8705 §2: the TLS
client certificate, ``EndpointRequest.client_cert``, with ``client_id`` in the body) and ``none`` for public
clients. Exactly one method per request: a client certificate alone is not a method (a public client may
present one to bind its tokens), so the client's registration decides whether it authenticates.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import unquote_plus

from cryptography import x509

from .._clock import Clock
from .._secrets import constant_time_equals, text_digest, token_hash
from . import jose, mtls
from .client_metadata import is_metadata_document_id
from .clients import TLS_AUTH_METHODS, AuthMethod, Client, ClientRepository
from .errors import InvalidClient, InvalidRequest
from .fapi import FAPI2_JWS_ALGS
from .policy import ServerPolicy
from .storage import JwksFetcher, ReplayRepository

__all__ = [
    "ASSERTION_TYPE",
    "AuthenticatedClient",
    "ClientAuthContext",
    "ClientAuthenticator",
    "assertion_audience_ok",
    "authenticate_client",
    "load_client_jwks",
    "load_client_keys",
    "parse_basic_authorization",
]

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: Registered client ids use this alphabet; anything else is unknown without a look-up.
CLIENT_ID = re.compile(r"[A-Za-z0-9._:~-]{1,256}")


@dataclass(frozen=True, slots=True)
class AuthenticatedClient:
    client: Client
    method: AuthMethod


@dataclass(frozen=True, slots=True)
class ClientAuthContext:
    policy: ServerPolicy
    clients: ClientRepository
    replay: ReplayRepository
    jwks_fetcher: JwksFetcher | None
    secret_hash_key: bytes
    clock: Clock
    endpoint_url: str
    #: RFC 8705 §2.1: the certificate authorities ``tls_client_auth`` certificates must chain to
    trust_anchors: mtls.TrustAnchors = mtls.NO_TRUST_ANCHORS
    #: resolves a client ID metadata document URL to its (public) client; None: the feature is off
    metadata_client: Callable[[str], Awaitable[Client | None]] | None = None


class ClientAuthenticator(Protocol):
    """The pluggable step: later methods (``tls_client_auth``, RFC 8705) register beside these."""

    async def __call__(self, params: Mapping[str, str], authorization: str | None,
                       ctx: ClientAuthContext) -> AuthenticatedClient | None: ...


def _invalid(basic: bool, debug: str, description: str = "client authentication failed") -> InvalidClient:
    headers = {"WWW-Authenticate": 'Basic realm="ostiary", charset="UTF-8"'} if basic else None
    return InvalidClient(description, debug=debug, headers=headers)


def parse_basic_authorization(authorization: str) -> tuple[str, str]:
    """``(client_id, secret)`` of an ``Authorization: Basic`` header (RFC 6749 §2.3.1, RFC 7617); ``InvalidClient``
    when it is not one."""
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic" or not value:
        raise _invalid(True, "not a Basic authorization header", "unsupported Authorization scheme")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise _invalid(True, "undecodable Basic credentials") from exc
    user, sep, password = decoded.partition(":")
    if not sep:
        raise _invalid(True, "Basic credentials without a colon")
    # RFC 6749 §2.3.1: client_id and secret are form-urlencoded before Basic encoding.
    return unquote_plus(user), unquote_plus(password)


async def authenticate_client(params: Mapping[str, str], authorization: str | None,
                              ctx: ClientAuthContext, client_cert: bytes | None = None
                              ) -> AuthenticatedClient | None:
    """Authenticate the caller. ``None`` when the request carries no client identification at all.
    ``client_cert``: the DER certificate of the TLS connection (RFC 8705), when the client presented one."""
    has_basic = authorization is not None and authorization.lower().startswith("basic ")
    if authorization is not None and not has_basic:
        authorization = None  # other schemes (e.g. DPoP, Bearer) are not client authentication here
    has_post = "client_secret" in params
    has_jwt = "client_assertion" in params or "client_assertion_type" in params
    if sum((has_basic, has_post, has_jwt)) > 1:
        raise InvalidRequest("use exactly one client authentication method")

    if has_basic:
        assert authorization is not None
        client_id, secret = parse_basic_authorization(authorization)
        if "client_id" in params and params["client_id"] != client_id:
            raise InvalidRequest("client_id in the body differs from the Authorization header")
        return await _secret(client_id, secret, "client_secret_basic", ctx, basic=True)
    if has_post:
        post_id = params.get("client_id")
        if not post_id:
            raise _invalid(False, "client_secret without client_id")
        return await _secret(post_id, params["client_secret"], "client_secret_post", ctx, basic=False)
    if has_jwt:
        return await _private_key_jwt(params, ctx)
    public_id = params.get("client_id")
    if public_id is None:
        return None
    if ctx.metadata_client is not None and is_metadata_document_id(public_id):
        client = await ctx.metadata_client(public_id)  # a public client, or None (refused and recorded)
    else:
        client = await ctx.clients.get_client(public_id) if CLIENT_ID.fullmatch(public_id) else None
    if client is not None and not client.disabled and client.token_endpoint_auth_method in TLS_AUTH_METHODS:
        return await _tls_client(client, client_cert, ctx)
    if client is None or client.disabled or client.token_endpoint_auth_method != "none":
        raise _invalid(False, f"client {public_id[:64]!r} unknown, disabled or not public")
    return AuthenticatedClient(client, "none")


async def _tls_client(client: Client, client_cert: bytes | None, ctx: ClientAuthContext) -> AuthenticatedClient:
    """RFC 8705 §2.1 (PKI) and §2.2 (self-signed): the TLS client certificate authenticates the client."""
    method = client.token_endpoint_auth_method
    if client_cert is None:
        raise _invalid(False, f"{method}: no client certificate on the connection",
                       "this client authenticates with its TLS client certificate, and none was presented")
    try:
        cert = mtls.parse_certificate(client_cert)
    except ValueError as exc:
        raise _invalid(False, f"{method}: unreadable client certificate") from exc
    if not mtls.readable(cert):
        raise _invalid(False, f"{method}: a part of the client certificate (names, extensions, key) is unreadable")
    now = ctx.clock.now()
    if method == "tls_client_auth":
        if not ctx.trust_anchors:
            raise _invalid(False, "tls_client_auth: no trust anchors configured (mtls.ca_file)")
        if not mtls.chains_to(cert, ctx.trust_anchors, now, leeway=ctx.policy.leeway):
            raise _invalid(False, "tls_client_auth: the certificate does not chain to a trust anchor, or is "
                                  "expired or not yet valid")
        if not mtls.matches_registered_name(cert, client.tls_client_auth):
            raise _invalid(False, "tls_client_auth: the certificate's subject or SAN is not the registered one")
        return AuthenticatedClient(client, method)
    if not mtls.valid_at(cert, now, ctx.policy.leeway):
        raise _invalid(False, "self_signed_tls_client_auth: the certificate is expired or not yet valid")
    # §2.2.2: the registered certificates are the client's ``jwks`` or the JWK Set at its ``jwks_uri``; as for
    # private_key_jwt, a certificate no key matches refetches a jwks_uri once (the client may have rotated)
    if _matches_registered_key(cert, await _client_jwks(client, ctx, force=False)):
        return AuthenticatedClient(client, method)
    if not client.jwks and client.jwks_uri and _matches_registered_key(
            cert, await _client_jwks(client, ctx, force=True)):
        return AuthenticatedClient(client, method)
    raise _invalid(False, "self_signed_tls_client_auth: the certificate is not one of the registered keys")


def _matches_registered_key(cert: x509.Certificate, jwks: object) -> bool:
    """Whether ``cert`` is one of the JWK Set's certificates (``x5c``) or keys (RFC 8705 §2.2.2); a document that is
    not a JWK Set matches nothing."""
    if not isinstance(jwks, Mapping) or not isinstance(jwks.get("keys"), list):
        return False
    raw_keys = [k for k in jwks["keys"] if isinstance(k, Mapping)]
    try:
        keys = [k.key for k in jose.parse_jwks(jwks)]
    except jose.JoseError:
        keys = []
    return mtls.matches_registered_key(cert, raw_keys, keys)


async def _secret(client_id: str, secret: str, method: AuthMethod, ctx: ClientAuthContext, *,
                  basic: bool) -> AuthenticatedClient:
    presented = token_hash(secret, ctx.secret_hash_key)
    client = await ctx.clients.get_client(client_id) if CLIENT_ID.fullmatch(client_id) else None
    now = ctx.clock.now()
    ok = False
    if client is not None:
        for stored in client.secrets:
            # compare against every usable secret (two during a rotation overlap), always in constant time
            ok |= stored.usable(now) & constant_time_equals(presented, stored.secret_hash)
    if client is None or not ok or client.disabled:
        raise _invalid(basic, f"bad secret, unknown or disabled client {client_id[:64]!r}")
    if client.token_endpoint_auth_method not in ("client_secret_basic", "client_secret_post"):
        raise _invalid(basic, f"client registered for {client.token_endpoint_auth_method}")
    return AuthenticatedClient(client, method)


def assertion_audience_ok(aud: object, issuer: str) -> bool:
    """The assertion's ``aud`` is the issuer identifier alone: the string, or an array holding only it.

    OpenID Connect Core §9 as amended by the OpenID Foundation's 2025 errata (audience injection,
    CVE-2025-27370/27371): an ``aud`` that also names other parties, or names the token endpoint instead of
    the issuer, could be an assertion made for another server, so it is refused.
    """
    return aud == issuer or (isinstance(aud, list) and len(aud) == 1 and aud[0] == issuer)


#: ``typ`` values a client assertion may carry (absent too): plain ``JWT``, or the explicit type of
#: draft-ietf-oauth-rfc7523bis
_ASSERTION_TYPES = frozenset({"jwt", "client-authentication+jwt"})


async def _private_key_jwt(params: Mapping[str, str], ctx: ClientAuthContext) -> AuthenticatedClient:
    """RFC 7523 §3: iss = sub = client_id, aud = this issuer (alone), exp within 5 minutes, jti used once."""
    if params.get("client_assertion_type") != ASSERTION_TYPE or "client_assertion" not in params:
        raise InvalidRequest("client_assertion_type must be " + ASSERTION_TYPE)
    assertion = params["client_assertion"]
    try:
        header, unverified = jose.decode_unverified(assertion)
    except jose.JoseError as exc:
        raise _invalid(False, "malformed client assertion") from exc
    if ctx.policy.fapi2 and header.get("alg") not in FAPI2_JWS_ALGS:
        raise _invalid(False, "FAPI 2.0 mode: assertion alg is not PS256, ES256 or EdDSA",
                       "FAPI 2.0 mode: client assertions are signed with PS256, ES256 or EdDSA (FAPI 2.0 Security "
                       "Profile 5.4.1)")
    typ = header.get("typ")
    if typ is not None and (not isinstance(typ, str)
                            or typ.lower().removeprefix("application/") not in _ASSERTION_TYPES):
        # RFC 8725 §3.11: a JWT typed for another use (a request object, oauth-authz-req+jwt, which travels
        # through the browser; a DPoP proof; an access token) is not a client assertion, whatever its claims
        raise _invalid(False, f"assertion typ {str(typ)[:40]!r} is not a client assertion's")
    client_id = unverified.get("iss")
    if not isinstance(client_id, str) or unverified.get("sub") != client_id:
        raise _invalid(False, "assertion iss/sub missing or different")
    if not CLIENT_ID.fullmatch(client_id):
        raise _invalid(False, "assertion iss is not a client id")
    if "client_id" in params and params["client_id"] != client_id:
        raise _invalid(False, "client_id differs from the assertion's iss")
    client = await ctx.clients.get_client(client_id)
    if client is None or client.disabled or client.token_endpoint_auth_method != "private_key_jwt":
        raise _invalid(False, f"client {client_id[:64]!r} unknown, disabled or not registered for private_key_jwt")
    keys = await _client_keys(client, ctx, force=False)
    now = ctx.clock.now()
    if not assertion_audience_ok(unverified.get("aud"), ctx.policy.issuer):
        raise _invalid(False, "assertion aud is not the issuer alone")
    try:
        verified = _verify_assertion(assertion, keys, client_id, ctx, now)
    except jose.JoseError as exc:
        if "no key matches" in str(exc) and client.jwks_uri:
            keys = await _client_keys(client, ctx, force=True)
            try:
                verified = _verify_assertion(assertion, keys, client_id, ctx, now)
            except jose.JoseError as exc2:
                raise _invalid(False, f"assertion rejected: {exc2}") from exc2
        else:
            raise _invalid(False, f"assertion rejected: {exc}") from exc
    claims = verified.claims
    if not assertion_audience_ok(claims.get("aud"), ctx.policy.issuer):  # the verified claims, to be sure
        raise _invalid(False, "assertion aud is not the issuer alone")
    exp = float(claims["exp"])
    if exp - now > ctx.policy.assertion_max_lifetime + ctx.policy.leeway:
        raise _invalid(False, "assertion lives longer than 5 minutes")
    iat = claims.get("iat")
    if isinstance(iat, int | float) and iat > now + ctx.policy.leeway:
        raise _invalid(False, "assertion issued in the future")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise _invalid(False, "assertion has no jti")
    # recorded by digest: a jti is any JSON string (a NUL, a lone surrogate, 20 KB), the store's column is not
    if not await ctx.replay.use_once("assertion:" + client_id, text_digest(jti), exp + ctx.policy.leeway, now):
        raise _invalid(False, "assertion jti replayed")
    return AuthenticatedClient(client, "private_key_jwt")


def _verify_assertion(assertion: str, keys: list[jose.PublicJwk], client_id: str, ctx: ClientAuthContext,
                      now: float) -> jose.VerifiedJwt:
    # ``aud`` is required here and checked by assertion_audience_ok (PyJWT accepts any one match in an array)
    return jose.verify_jwt(assertion, keys, issuer=client_id, audience=None, leeway=ctx.policy.leeway,
                           now=now, require=("exp", "iss", "sub", "aud", "jti"))


async def load_client_jwks(client: Client, fetcher: JwksFetcher | None, *, force: bool) -> Mapping[str, Any]:
    """The client's registered JWK Set as JSON: its ``jwks``, else the document at its ``jwks_uri`` fetched through
    ``fetcher`` (cached; ``force`` refetches). ``LookupError`` when it registered none; ``OSError`` or
    ``ValueError`` when the fetch fails."""
    if client.jwks:
        return client.jwks
    if client.jwks_uri and fetcher is not None:
        return await fetcher.fetch(client.jwks_uri, force=force)
    raise LookupError("client has no registered keys")


async def load_client_keys(client: Client, fetcher: JwksFetcher | None, *, force: bool) -> list[jose.PublicJwk]:
    """The client's registered public keys (``jwks``, else ``jwks_uri`` through ``fetcher``): what verifies its
    ``private_key_jwt`` assertions and its request objects (RFC 9101). ``LookupError`` when it registered none;
    ``jose.JoseError``, ``OSError`` or ``ValueError`` when they cannot be loaded."""
    return jose.parse_jwks(await load_client_jwks(client, fetcher, force=force))


async def _client_jwks(client: Client, ctx: ClientAuthContext, *, force: bool) -> Mapping[str, Any]:
    """:func:`load_client_jwks` for client authentication: no registered keys, or a JWKS that cannot be loaded,
    is ``invalid_client`` (private_key_jwt and self_signed_tls_client_auth alike)."""
    try:
        return await load_client_jwks(client, ctx.jwks_fetcher, force=force)
    except LookupError as exc:
        raise _invalid(False, "client has no registered keys") from exc
    except (OSError, ValueError) as exc:
        raise _invalid(False, f"cannot load the client's JWKS: {type(exc).__name__}") from exc


async def _client_keys(client: Client, ctx: ClientAuthContext, *, force: bool) -> list[jose.PublicJwk]:
    """The keys of :func:`_client_jwks`; a document that is not a JWK Set is ``invalid_client`` too."""
    jwks = await _client_jwks(client, ctx, force=force)
    try:
        return jose.parse_jwks(jwks)
    except (jose.JoseError, ValueError) as exc:
        raise _invalid(False, f"cannot load the client's JWKS: {type(exc).__name__}") from exc
