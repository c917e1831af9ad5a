"""Access-token verification for resource servers.

JWT access tokens are checked per RFC 9068 §4: signature with a key from the pinned issuer's JWKS
(the algorithm comes from the key, never the header), ``typ`` ``at+jwt``, ``iss`` exactly the issuer,
``aud`` containing this API, ``exp``/``nbf``/``iat`` with a small leeway, no unknown ``crit``.
Opaque tokens (anything that is not a three-part compact JWS) are checked by RFC 7662 introspection.
Verified tokens are cached, keyed by the token's SHA-256, until they expire.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

import httpx

from .._clock import Clock, SystemClock
from .._json import loads as json_loads
from .._secrets import b64url_decode, constant_time_equals, sha256_b64url
from ..client.http_clients import HttpClients
from ..client.service_token import client_secret_basic
from ..core.jose import JoseError, PublicJwk, numeric_date, verify_jwt
from ._mtls import check_certificate_binding
from .dpop import DpopPolicy, DpopRequest, VerifiedProof, bound_jkt
from .errors import InvalidDpopProof, InvalidToken, IssuerUnavailable, MissingToken
from .jwks_cache import JwksCache
from .token import AccessToken

__all__ = ["Introspection", "TokenVerifier"]

log = logging.getLogger("ostiary.resource")

_REQUIRED_CLAIMS: Final = ("iss", "exp", "aud", "sub", "client_id", "iat", "jti")  # RFC 9068 §2.2
_MAX_TOKEN_LENGTH: Final = 16_384


@dataclass(frozen=True, slots=True)
class Introspection:
    """How to reach the RFC 7662 introspection endpoint: this API's own client credentials.

    The client authenticates with ``client_secret_basic`` (RFC 6749 §2.3.1). ``endpoint`` defaults to
    the issuer metadata's ``introspection_endpoint``. A positive answer is cached until the token's
    ``exp``, or at most ``max_cache_seconds`` when set (to notice revocation sooner).
    """

    client_id: str
    client_secret: str = field(repr=False)
    endpoint: str | None = None
    max_cache_seconds: float | None = None


class _Entry(NamedTuple):
    token: AccessToken
    valid_until: float
    kid: str | None
    via_jwks: bool


class _TokenCache:
    """A size-capped LRU of verified tokens keyed by the SHA-256 of the token."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._data: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> _Entry | None:
        with self._lock:
            entry = self._data.get(key)
            if entry is not None:
                self._data.move_to_end(key)
            return entry

    def put(self, key: str, entry: _Entry) -> None:
        if self._size <= 0:
            return
        with self._lock:
            self._data[key] = entry
            self._data.move_to_end(key)
            while len(self._data) > self._size:
                self._data.popitem(last=False)

    def drop(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)

    def __len__(self) -> int:
        return len(self._data)


class TokenVerifier:
    """Verify the bearer tokens an API receives, for one pinned issuer and one audience.

    Use :meth:`verify` from blocking code and :meth:`averify` from asyncio code; both share the key and
    token caches. ``http_client``/``async_http_client`` are used for discovery, JWKS and introspection
    (a private client is made when omitted). ``dpop``: how ``Authorization: DPoP`` requests are checked
    (RFC 9449; a :class:`~ostiary.resource.dpop.DpopPolicy`, accepted by default with an in-memory replay
    cache; ``False`` turns the DPoP scheme off). A DPoP-bound token (``cnf.jkt``) is never accepted as Bearer.
    Raises :class:`~ostiary.resource.InvalidToken` for every token that must be refused and
    :class:`~ostiary.resource.IssuerUnavailable` when the issuer cannot be reached and no keys are known.
    """

    def __init__(
        self,
        issuer: str,
        audience: str,
        *,
        algorithms: Sequence[str] = ("ES256", "RS256", "EdDSA"),
        leeway: float = 30.0,
        jwks_ttl: float = 300.0,
        jwks_min_refetch_interval: float = 10.0,
        http_client: httpx.Client | None = None,
        async_http_client: httpx.AsyncClient | None = None,
        clock: Clock | None = None,
        cache_size: int = 10_000,
        introspection: Introspection | None = None,
        timeout: float = 10.0,
        dpop: DpopPolicy | bool = True,
    ) -> None:
        self.issuer = issuer
        self.dpop: DpopPolicy | None = (DpopPolicy() if dpop is True else None if dpop is False else dpop)
        self.audience = audience
        self.leeway = float(leeway)
        self._clock: Clock = clock or SystemClock()
        self._introspection = introspection
        self._http = HttpClients(http_client, async_http_client, timeout=timeout)
        self.jwks = JwksCache(issuer, algorithms=algorithms, clock=self._clock, ttl=jwks_ttl,
                              min_refetch_interval=jwks_min_refetch_interval, http_client=http_client,
                              async_http_client=async_http_client, timeout=timeout)
        self._cache = _TokenCache(cache_size)

    def __repr__(self) -> str:
        return f"TokenVerifier(issuer={self.issuer!r}, audience={self.audience!r})"

    # -- public API ----------------------------------------------------------------------------

    def verify(self, token: str, *, client_cert: bytes | str | None = None,
               request: DpopRequest | None = None) -> AccessToken:
        """Verify ``token`` (blocking; may fetch keys or call introspection). ``client_cert``: the request's
        TLS client certificate (DER or PEM), which a certificate-bound token must match (RFC 8705 §3).
        ``request``: the scheme, DPoP proofs, method and URL of the HTTP request (RFC 9449 §7); without it the
        token counts as presented with ``Bearer``."""
        key, cached = self._lookup(token)
        if cached is None:
            if token.count(".") != 2:
                cached = self._remember_introspected(key, self._introspect(token))
            else:
                kid = _kid(token)
                cached = self._check_jwt(token, key, kid, self.jwks.keys(kid))
        check_certificate_binding(cached, client_cert)
        proof = self._check_dpop(cached, token, request)
        if proof is not None and self.dpop is not None and not self.dpop.replay_cache.add(proof.replay_key,
                                                                                          self.dpop.ttl):
            raise InvalidDpopProof("DPoP proof replayed (jti already used)")
        return cached

    async def averify(self, token: str, *, client_cert: bytes | str | None = None,
                      request: DpopRequest | None = None) -> AccessToken:
        """Verify ``token`` without blocking the event loop (``client_cert`` and ``request`` as for
        :meth:`verify`)."""
        key, cached = self._lookup(token)
        if cached is None:
            if token.count(".") != 2:
                cached = self._remember_introspected(key, await self._aintrospect(token))
            else:
                kid = _kid(token)
                cached = self._check_jwt(token, key, kid, await self.jwks.akeys(kid))
        check_certificate_binding(cached, client_cert)
        proof = self._check_dpop(cached, token, request)
        if proof is not None and self.dpop is not None and not await self.dpop.replay_cache.aadd(
                proof.replay_key, self.dpop.ttl):
            raise InvalidDpopProof("DPoP proof replayed (jti already used)")
        return cached

    def _check_dpop(self, access: AccessToken, token: str, request: DpopRequest | None) -> VerifiedProof | None:
        """RFC 9449 §7: the proof of a ``DPoP`` request (its key must be the token's ``cnf.jkt``); a bound token
        presented as ``Bearer`` is refused. Returns the proof, whose ``jti`` the caller records."""
        jkt = bound_jkt(access.claims)
        if request is None or not request.is_dpop:
            if jkt is not None:
                raise InvalidToken("DPoP-bound token presented as Bearer")
            if self.dpop is not None and self.dpop.required:
                raise InvalidToken("this API accepts DPoP-bound tokens only")
            return None
        if self.dpop is None:
            raise MissingToken("the DPoP scheme is not accepted here")
        proof = self.dpop.check(request, token, self._clock.now())
        if jkt is None:
            raise InvalidToken("token presented with DPoP is not DPoP-bound")
        if not constant_time_equals(jkt, proof.jkt):
            raise InvalidToken("the DPoP proof's key is not the key the token is bound to")
        return proof

    def close(self) -> None:
        """Close the private HTTP client, if one was made."""
        self.jwks.close()

    # -- cache ---------------------------------------------------------------------------------

    def _lookup(self, token: str) -> tuple[str, AccessToken | None]:
        if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN_LENGTH or not token.isascii():
            raise InvalidToken("token missing, too long or not ASCII")
        key = sha256_b64url(token)
        entry = self._cache.get(key)
        if entry is None:
            return key, None
        now = self._clock.now()
        if now >= entry.valid_until or (entry.via_jwks and not (
                self.jwks.is_fresh(now) and self.jwks.has_kid(entry.kid))):
            self._cache.drop(key)  # expired, or the key that verified it is gone (or due a re-check)
            return key, None
        return key, entry.token

    # -- JWT (RFC 9068) ------------------------------------------------------------------------

    def _check_jwt(self, token: str, key: str, kid: str | None, keys: Sequence[PublicJwk]) -> AccessToken:
        now = self._clock.now()
        try:
            verified = verify_jwt(token, keys, issuer=self.issuer, audience=self.audience, typ="at+jwt",
                                  leeway=self.leeway, now=now, require=_REQUIRED_CLAIMS)
        except JoseError as exc:
            raise InvalidToken(str(exc)) from None
        except (TypeError, ValueError, KeyError):  # fail safe: a malformed token is refused, never a 500
            raise InvalidToken("malformed token") from None
        claims = verified.claims
        iat = claims["iat"]
        if not numeric_date(iat) or iat > now + self.leeway:
            raise InvalidToken("iat is in the future or not a number")
        access = AccessToken.from_claims(claims, key)
        self._cache.put(key, _Entry(access, access.expires_at + self.leeway, verified.key.kid, True))
        return access

    # -- opaque tokens (RFC 7662) --------------------------------------------------------------

    def _introspection_request(self, token: str, endpoint: str | None) -> tuple[str, dict[str, str],
                                                                                  dict[str, str]]:
        config = self._introspection
        if config is None:
            raise InvalidToken("opaque token and no introspection configured")
        url = config.endpoint or endpoint
        if url is None:
            raise IssuerUnavailable("issuer metadata has no introspection_endpoint")
        headers = {"Authorization": client_secret_basic(config.client_id, config.client_secret),
                   "Accept": "application/json"}
        return url, {"token": token, "token_type_hint": "access_token"}, headers

    def _introspect(self, token: str) -> Mapping[str, Any]:
        needs_metadata = self._introspection is not None and self._introspection.endpoint is None
        try:
            endpoint = self.jwks.metadata().introspection_endpoint if needs_metadata else None
            url, form, headers = self._introspection_request(token, endpoint)
            with self._http.sync_once() as client:
                response = client.post(url, data=form, headers=headers)
        except httpx.HTTPError as exc:
            raise IssuerUnavailable(f"introspection failed: {type(exc).__name__}") from None
        return self._introspection_result(response)

    async def _aintrospect(self, token: str) -> Mapping[str, Any]:
        needs_metadata = self._introspection is not None and self._introspection.endpoint is None
        try:
            endpoint = (await self.jwks.ametadata()).introspection_endpoint if needs_metadata else None
            url, form, headers = self._introspection_request(token, endpoint)
            async with self._http.asynchronous() as client:
                response = await client.post(url, data=form, headers=headers)
        except httpx.HTTPError as exc:
            raise IssuerUnavailable(f"introspection failed: {type(exc).__name__}") from None
        return self._introspection_result(response)

    def _introspection_result(self, response: httpx.Response) -> Mapping[str, Any]:
        """RFC 7662 §2.2: only ``active: true`` counts; then apply the same checks as for a JWT."""
        if response.status_code != 200:
            raise IssuerUnavailable(f"introspection answered HTTP {response.status_code}")
        try:
            body = json_loads(response.content)
        except ValueError:
            raise IssuerUnavailable("introspection answer is not JSON") from None
        if not isinstance(body, dict) or body.get("active") is not True:
            raise InvalidToken("inactive token (introspection)")
        now = self._clock.now()
        if body.get("iss", self.issuer) != self.issuer:
            raise InvalidToken("wrong issuer (introspection)")
        aud = body.get("aud")
        if not (aud == self.audience or (isinstance(aud, list) and self.audience in aud)):
            raise InvalidToken("wrong audience (introspection)")
        exp, nbf = body.get("exp"), body.get("nbf")
        if not numeric_date(exp) or exp <= now:
            raise InvalidToken("expired or no exp (introspection)")
        if nbf is not None and (not numeric_date(nbf) or nbf > now + self.leeway):
            raise InvalidToken("not yet valid (introspection)")
        return body

    def _remember_introspected(self, key: str, body: Mapping[str, Any]) -> AccessToken:
        access = AccessToken.from_claims(body, key)
        valid_until = access.expires_at
        config = self._introspection
        if config is not None and config.max_cache_seconds is not None:
            valid_until = min(valid_until, self._clock.now() + config.max_cache_seconds)
        self._cache.put(key, _Entry(access, valid_until, None, False))
        return access


_kids_by_header: dict[str, str | None] = {}  # header segment → kid; a few issuer keys, so tiny


def _kid(token: str) -> str | None:
    """The ``kid`` of a compact JWS header, to pick (or refetch) the key. Nothing else is trusted here.

    Tokens signed by one key share one header segment, so the parsed ``kid`` is memoised (bounded).
    """
    segment = token.partition(".")[0]
    try:
        return _kids_by_header[segment]
    except KeyError:
        pass
    try:
        header = json_loads(b64url_decode(segment))
    except ValueError:
        raise InvalidToken("malformed JWT header") from None
    if not isinstance(header, dict):
        raise InvalidToken("malformed JWT header")
    if "crit" in header:  # RFC 7515 §4.1.11: no extension is understood here; refused before any key look-up
        raise InvalidToken("unsupported critical header")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise InvalidToken("kid is not a string")
    if len(_kids_by_header) >= 256:
        _kids_by_header.clear()
    _kids_by_header[segment] = kid
    return kid
