"""Service-to-service access tokens with the client credentials grant (RFC 6749 §4.4).

The client authenticates with ``client_secret_basic`` (RFC 6749 §2.3.1) or ``private_key_jwt``
(RFC 7523 §2.2 with OpenID Connect Core §9). The API is named with RFC 8707 ``resource``; when the token is a
JWT, its ``aud`` must contain that resource (a server that ignored the parameter is caught, not trusted). Tokens
are cached per (resource, scope), renewed once 80 % of their lifetime has passed, and requested single-flight:
many concurrent callers (threads, or tasks of one event loop) cause one token request. 5xx answers and network
errors are retried with capped exponential backoff and full jitter; 4xx answers raise :class:`OAuthError` at
once. :class:`ClientCredentialsAuth` sends a token to one origin only. Token values and secrets never appear in
logs or ``repr``.

DPoP (RFC 9449): when the issuer's metadata advertises ``dpop_signing_alg_values_supported`` (or ``dpop=True``),
each client makes one DPoP key, every token request carries a proof by it (retried once with the server's
nonce on ``use_dpop_nonce``), and :class:`ClientCredentialsAuth` sends the resulting DPoP tokens as
``Authorization: DPoP`` with a proof per request.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Generator, Iterable
from dataclasses import dataclass, field
from typing import Final, NamedTuple
from urllib.parse import quote_plus, urlsplit

import httpx

from .._clock import Clock, SystemClock
from .._json import loads as json_loads
from .._secrets import new_token
from ..core.jose import JoseError, PrivateKey, decode_unverified, jwk_thumbprint, public_jwk, sign_jwt
from .discovery import adiscover, discover, require_https
from .dpop import DpopKey, DpopNonces, dpop_advertised, nonce_challenge
from .errors import ClientError, OAuthError, TokenEndpointUnavailable
from .http_clients import HttpClients

__all__ = ["ClientCredentialsAuth", "ServiceToken", "ServiceTokenClient", "client_secret_basic"]

log = logging.getLogger("ostiary.client")

JWT_BEARER_ASSERTION: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"  # RFC 7523 §2.2
_ASSERTION_LIFETIME: Final = 60  # seconds; RFC 7523 §3 item 4, kept well under 5 minutes
_DEFAULT_LIFETIME: Final = 60  # when the server omits expires_in (RFC 6749 §5.1 makes it optional)
_random = secrets.SystemRandom()


def client_secret_basic(client_id: str, client_secret: str) -> str:
    """The ``Authorization`` header value for RFC 6749 §2.3.1: both parts form-urlencoded, then Basic."""
    raw = f"{quote_plus(client_id)}:{quote_plus(client_secret)}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True, slots=True)
class ServiceToken:
    """An access token from the token endpoint (RFC 6749 §5.1). ``access_token`` is hidden from repr."""

    access_token: str = field(repr=False)
    token_type: str  # "Bearer" or "DPoP" (bound to the client's ``dpop_key``)
    expires_at: float
    refresh_at: float
    scope: str | None


class _Key(NamedTuple):
    scope: str
    resource: str | None


def _key(scope: str | Iterable[str] | None, resource: str | None) -> _Key:
    words = scope.split() if isinstance(scope, str) else list(scope or ())
    return _Key(" ".join(sorted(set(words))), resource)


def _check_audience(access_token: str, resource: str | None) -> None:
    """RFC 8707 §2: a token asked for ``resource`` must be for it. Checked when the token is a JWT (RFC 9068
    ``aud``); an opaque token cannot be read here and is taken as the server's answer."""
    if resource is None or access_token.count(".") != 2:
        return
    try:
        _, claims = decode_unverified(access_token)
    except JoseError:
        return  # not a JWT after all: opaque
    aud = claims.get("aud")
    auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if resource not in auds:
        raise OAuthError("invalid_target", "the token's audience does not include the requested resource", 200)


def _origin(url: str | httpx.URL) -> str:
    parts = urlsplit(str(url))
    port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


class ServiceTokenClient:
    """Obtain and cache access tokens for a confidential client (a service).

    Give exactly one of ``client_secret`` and ``private_key``. ``token_endpoint`` defaults to the one
    in the issuer's metadata (discovered on first use). Use :meth:`get_token` from blocking code,
    :meth:`aget_token` from asyncio, or :meth:`auth` to get an :class:`httpx.Auth`.

    ``dpop``: ``None`` (default) asks for DPoP-bound tokens when the discovered metadata advertises DPoP (with an
    explicit ``token_endpoint`` nothing is discovered, so DPoP then needs ``dpop=True``); ``False`` never.
    """

    def __init__(
        self,
        issuer: str,
        client_id: str,
        *,
        client_secret: str | None = None,
        private_key: PrivateKey | None = None,
        key_id: str | None = None,
        token_endpoint: str | None = None,
        http_client: httpx.Client | None = None,
        async_http_client: httpx.AsyncClient | None = None,
        clock: Clock | None = None,
        timeout: float = 10.0,
        max_attempts: int = 4,
        backoff: float = 0.25,
        max_backoff: float = 8.0,
        refresh_ratio: float = 0.8,
        dpop: bool | None = None,
    ) -> None:
        if (client_secret is None) == (private_key is None):
            raise ValueError("give exactly one of client_secret and private_key")
        if max_attempts < 1 or not 0 < refresh_ratio <= 1:
            raise ValueError("max_attempts must be >= 1 and refresh_ratio in (0, 1]")
        self.issuer = issuer
        self.client_id = client_id
        self._secret = client_secret
        self._private_key = private_key
        if private_key is not None:
            jwk = public_jwk(private_key, kid="")
            self._alg = str(jwk["alg"])
            self._kid = key_id or jwk_thumbprint(jwk)
        self._token_endpoint = require_https(token_endpoint, "token_endpoint") if token_endpoint else None
        self._http = HttpClients(http_client, async_http_client, timeout=timeout)
        self._clock: Clock = clock or SystemClock()
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._refresh_ratio = refresh_ratio
        self._dpop = dpop if dpop is not None else (False if token_endpoint else None)
        self._dpop_key: DpopKey | None = None
        #: The last ``DPoP-Nonce`` of each server (the token endpoint and the APIs).
        self.nonces = DpopNonces()
        self._cache: dict[_Key, ServiceToken] = {}
        self._guard = threading.Lock()
        self._locks: dict[_Key, threading.Lock] = {}
        self._alocks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[_Key, asyncio.Lock]] = (
            weakref.WeakKeyDictionary())

    def __repr__(self) -> str:
        method = "private_key_jwt" if self._private_key is not None else "client_secret_basic"
        return f"ServiceTokenClient(issuer={self.issuer!r}, client_id={self.client_id!r}, auth={method!r})"

    # -- public API ----------------------------------------------------------------------------

    def get_token(self, scope: str | Iterable[str] | None = None, *, resource: str | None = None) -> ServiceToken:
        """A valid token for ``scope`` (and RFC 8707 ``resource``: the API's audience), from cache when fresh."""
        key = _key(scope, resource)
        cached = self._fresh(key)
        if cached is not None:
            return cached
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            cached = self._fresh(key)
            if cached is not None:
                return cached
            previous = self._cache.get(key)
            try:
                token = self._request(key, self._endpoint())
            except TokenEndpointUnavailable:
                return self._fallback(previous)
            self._cache[key] = token
            return token

    async def aget_token(self, scope: str | Iterable[str] | None = None, *,
                         resource: str | None = None) -> ServiceToken:
        """Like :meth:`get_token`, without blocking the event loop."""
        key = _key(scope, resource)
        cached = self._fresh(key)
        if cached is not None:
            return cached
        locks = self._alocks.setdefault(asyncio.get_running_loop(), {})
        async with locks.setdefault(key, asyncio.Lock()):
            cached = self._fresh(key)
            if cached is not None:
                return cached
            previous = self._cache.get(key)
            try:
                token = await self._arequest(key, await self._aendpoint())
            except TokenEndpointUnavailable:
                return self._fallback(previous)
            self._cache[key] = token
            return token

    def invalidate(self, scope: str | Iterable[str] | None = None, *, resource: str | None = None,
                   token: ServiceToken | None = None) -> None:
        """Forget the cached token (only if it is still ``token``, when given), e.g. after a 401."""
        key = _key(scope, resource)
        with self._guard:
            if token is None or self._cache.get(key) is token:
                self._cache.pop(key, None)

    def auth(self, scope: str | Iterable[str] | None = None, *, resource: str | None = None,
             origin: str | None = None) -> ClientCredentialsAuth:
        """An :class:`httpx.Auth` that adds ``Authorization: Bearer`` with a token from this client, for one
        origin (``origin``, or the first request's)."""
        return ClientCredentialsAuth(self, scope, resource=resource, origin=origin)

    def close(self) -> None:
        self._http.close()

    # -- cache ---------------------------------------------------------------------------------

    def _fresh(self, key: _Key) -> ServiceToken | None:
        token = self._cache.get(key)
        return token if token is not None and self._clock.now() < token.refresh_at else None

    def _fallback(self, previous: ServiceToken | None) -> ServiceToken:
        """Renewal failed: keep using the previous token while it has not expired."""
        if previous is not None and self._clock.now() < previous.expires_at:
            log.warning("renewing the service token failed; using the current one until it expires")
            return previous
        raise TokenEndpointUnavailable("the token endpoint could not be reached")

    # -- the token request ---------------------------------------------------------------------

    def _endpoint(self) -> str:
        if self._token_endpoint is None or self._dpop is None:
            metadata = discover(self.issuer, self._http.sync())
            if metadata.token_endpoint is None:
                raise OAuthError("invalid_configuration", "the issuer's metadata has no token_endpoint")
            self._token_endpoint = self._token_endpoint or metadata.token_endpoint
            self._dpop = dpop_advertised(metadata.raw) if self._dpop is None else self._dpop
        return self._token_endpoint

    async def _aendpoint(self) -> str:
        if self._token_endpoint is None or self._dpop is None:
            async with self._http.asynchronous() as client:
                metadata = await adiscover(self.issuer, client)
            if metadata.token_endpoint is None:
                raise OAuthError("invalid_configuration", "the issuer's metadata has no token_endpoint")
            self._token_endpoint = self._token_endpoint or metadata.token_endpoint
            self._dpop = dpop_advertised(metadata.raw) if self._dpop is None else self._dpop
        return self._token_endpoint

    # -- DPoP ----------------------------------------------------------------------------------

    @property
    def dpop_key(self) -> DpopKey | None:
        """The key this client's DPoP tokens are bound to (made on the first DPoP token request), or None."""
        return self._dpop_key

    def _token_proof(self, endpoint: str) -> str | None:
        if not self._dpop:
            return None
        with self._guard:
            if self._dpop_key is None:
                self._dpop_key = DpopKey.generate()
            key = self._dpop_key
        return key.proof("POST", endpoint, now=self._clock.now(), nonce=self.nonces.get(endpoint))

    def authorize(self, request: httpx.Request, token: ServiceToken) -> None:
        """Put ``token`` on ``request``: ``Authorization: DPoP`` plus a fresh proof (``ath``, the API's last
        nonce) for a DPoP token, else ``Authorization: Bearer``."""
        key = self._dpop_key
        if token.token_type != "DPoP" or key is None:
            request.headers["Authorization"] = f"Bearer {token.access_token}"
            return
        request.headers["Authorization"] = f"DPoP {token.access_token}"
        request.headers["DPoP"] = key.proof(request.method, request.url, now=self._clock.now(),
                                            access_token=token.access_token, nonce=self.nonces.get(request.url))

    def _form(self, key: _Key, endpoint: str) -> tuple[dict[str, str], dict[str, str]]:
        form = {"grant_type": "client_credentials"}
        if key.scope:
            form["scope"] = key.scope
        if key.resource:
            form["resource"] = key.resource
        headers = {"Accept": "application/json"}
        if self._secret is not None:
            headers["Authorization"] = client_secret_basic(self.client_id, self._secret)
        else:
            form["client_assertion_type"] = JWT_BEARER_ASSERTION
            form["client_assertion"] = self.client_assertion(self.issuer)
        proof = self._token_proof(endpoint)
        if proof is not None:
            headers["DPoP"] = proof
        return form, headers

    def client_assertion(self, audience: str) -> str:
        """RFC 7523 §3: iss = sub = client_id, aud = ``audience`` (the issuer identifier alone, as the OpenID
        Foundation's 2025 errata to OIDC Core §9 require), a fresh jti, exp ≤ 60 s."""
        if self._private_key is None:
            raise ValueError("this client authenticates with a secret")
        now = int(self._clock.now())
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": audience, "jti": new_token(),
                  "iat": now, "exp": now + _ASSERTION_LIFETIME}
        return sign_jwt(claims, self._private_key, alg=self._alg, kid=self._kid)

    def _delay(self, attempt: int) -> float:
        return _random.uniform(0, min(self._max_backoff, self._backoff * 2 ** (attempt - 1)))

    def _request(self, key: _Key, endpoint: str) -> ServiceToken:
        nonce_retry = True
        attempt = 0
        while attempt < self._max_attempts:
            attempt += 1
            started = self._clock.now()
            form, headers = self._form(key, endpoint)
            try:
                response = self._http.sync().post(endpoint, data=form, headers=headers)
                self.nonces.remember(endpoint, response)
                if nonce_retry and "DPoP" in headers and nonce_challenge(response):
                    nonce_retry, attempt = False, attempt - 1  # RFC 9449 §8: once more with the nonce
                    continue
            except httpx.TransportError as exc:
                log.warning("token request attempt %d failed: %s", attempt, type(exc).__name__)
            else:
                if response.status_code < 500:
                    return self._parse(response, started, key)
                log.warning("token request attempt %d: HTTP %d", attempt, response.status_code)
            if attempt < self._max_attempts:
                time.sleep(self._delay(attempt))
        raise TokenEndpointUnavailable("the token endpoint kept failing")

    async def _arequest(self, key: _Key, endpoint: str) -> ServiceToken:
        nonce_retry = True
        attempt = 0
        while attempt < self._max_attempts:
            attempt += 1
            started = self._clock.now()
            form, headers = self._form(key, endpoint)
            try:
                async with self._http.asynchronous() as client:
                    response = await client.post(endpoint, data=form, headers=headers)
                self.nonces.remember(endpoint, response)
                if nonce_retry and "DPoP" in headers and nonce_challenge(response):
                    nonce_retry, attempt = False, attempt - 1  # RFC 9449 §8: once more with the nonce
                    continue
            except httpx.TransportError as exc:
                log.warning("token request attempt %d failed: %s", attempt, type(exc).__name__)
            else:
                if response.status_code < 500:
                    return self._parse(response, started, key)
                log.warning("token request attempt %d: HTTP %d", attempt, response.status_code)
            if attempt < self._max_attempts:
                await asyncio.sleep(self._delay(attempt))
        raise TokenEndpointUnavailable("the token endpoint kept failing")

    def _parse(self, response: httpx.Response, started: float, key: _Key) -> ServiceToken:
        """RFC 6749 §5.1 (success) or §5.2 (error)."""
        try:
            body = json_loads(response.content)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise OAuthError("invalid_response", "the token endpoint did not answer with a JSON object",
                             response.status_code)
        if response.status_code != 200:
            error, description = body.get("error"), body.get("error_description")
            raise OAuthError(error if isinstance(error, str) else "invalid_response",
                             description if isinstance(description, str) else None, response.status_code)
        access_token, token_type = body.get("access_token"), body.get("token_type")
        if not isinstance(access_token, str) or not access_token:
            raise OAuthError("invalid_response", "no access_token in the token response", 200)
        if not isinstance(token_type, str) or token_type.lower() not in ("bearer", "dpop"):
            raise OAuthError("invalid_response", "the token is neither a Bearer nor a DPoP token", 200)
        token_type = "DPoP" if token_type.lower() == "dpop" else "Bearer"
        if token_type == "DPoP" and self._dpop_key is None:
            raise OAuthError("invalid_response", "a DPoP token came back for a request without a DPoP proof", 200)
        lifetime = body.get("expires_in", _DEFAULT_LIFETIME)
        if not isinstance(lifetime, int | float) or isinstance(lifetime, bool) or lifetime <= 0:
            raise OAuthError("invalid_response", "expires_in is not a positive number", 200)
        _check_audience(access_token, key.resource)
        scope = body.get("scope")
        return ServiceToken(access_token=access_token, token_type=token_type, expires_at=started + lifetime,
                            refresh_at=started + self._refresh_ratio * lifetime,
                            scope=scope if isinstance(scope, str) else None)


def _invalid_token(response: httpx.Response) -> bool:
    """RFC 6750 §3.1: a 401 whose challenge says the token was refused (not merely missing)."""
    return response.status_code == 401 and "invalid_token" in response.headers.get("WWW-Authenticate", "")


class ClientCredentialsAuth(httpx.Auth):
    """``httpx.Auth`` for client-credentials tokens, for both ``httpx.Client`` and ``httpx.AsyncClient``
    (``Authorization: Bearer``, or ``DPoP`` with a proof per request for DPoP tokens, retried once with the
    API's nonce when it asks for one).

    A token is sent to one origin only: ``origin`` (``scheme://host[:port]``), or else the origin of the first
    request this object authorises. A request to any other origin raises :class:`ClientError` before a token
    is attached (a client shared between hosts must not hand one API's token to another).

    When the API answers 401 ``invalid_token`` (RFC 6750 §3.1; e.g. the issuer rotated its keys), the
    token is dropped and the request is retried once with a fresh one.
    """

    def __init__(self, client: ServiceTokenClient, scope: str | Iterable[str] | None = None, *,
                 resource: str | None = None, origin: str | None = None) -> None:
        self._client = client
        self._scope = _key(scope, resource).scope
        self._resource = resource
        self._origin = _origin(origin) if origin is not None else None
        self._pin = threading.Lock()

    def __repr__(self) -> str:
        return f"ClientCredentialsAuth({self._client!r}, scope={self._scope!r}, origin={self._origin!r})"

    def _check_origin(self, request: httpx.Request) -> None:
        origin = _origin(request.url)
        with self._pin:
            if self._origin is None:
                self._origin = origin
        if origin != self._origin:
            raise ClientError(f"refusing to send a token bound to {self._origin} to {origin}")

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self._check_origin(request)
        client = self._client
        token = client.get_token(self._scope, resource=self._resource)
        client.authorize(request, token)
        response = yield request
        client.nonces.remember(request.url, response)
        if nonce_challenge(response):  # RFC 9449 §9: once more, with the API's nonce
            client.authorize(request, token)
            response = yield request
            client.nonces.remember(request.url, response)
        if _invalid_token(response):
            client.invalidate(self._scope, token=token, resource=self._resource)
            client.authorize(request, client.get_token(self._scope, resource=self._resource))
            yield request

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        self._check_origin(request)
        client = self._client
        token = await client.aget_token(self._scope, resource=self._resource)
        client.authorize(request, token)
        response = yield request
        client.nonces.remember(request.url, response)
        if nonce_challenge(response):  # RFC 9449 §9: once more, with the API's nonce
            client.authorize(request, token)
            response = yield request
            client.nonces.remember(request.url, response)
        if _invalid_token(response):
            client.invalidate(self._scope, token=token, resource=self._resource)
            client.authorize(request, await client.aget_token(self._scope, resource=self._resource))
            yield request
