"""A logged-in user's tokens, kept valid: :class:`TokenSession` and the :class:`TokenSessionAuth` for httpx.

The access token is refreshed when it is about to expire (RFC 6749 §6). Refresh tokens rotate (OAuth 2.1
§4.3.1): the new one is saved to the store *before* the new access token is handed out, so a crash between
the two can never leave the store holding a spent refresh token. Refreshes are serialised within the process
(a lock) and across processes (an exclusive lock file beside the user's cache), because presenting a spent
refresh token makes the server revoke the whole family. When the refresh token is refused, the tokens are
removed and :class:`~ostiary.client.errors.LoginRequired` asks for a new login.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Generator
from pathlib import Path
from typing import Any

import httpx
from filelock import FileLock

from .._clock import Clock, SystemClock
from .._json import loads as json_loads
from ..core import jose
from .device_login import tokens_from_response
from .dpop import DpopKey, nonce_challenge
from .errors import DiscoveryError, LoginRequired, OAuthError, TokenEndpointUnavailable
from .issuer import IssuerClient
from .token_store import StoredTokens, TokenStore

__all__ = ["TokenSession", "TokenSessionAuth"]


def _lock_dir() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR") or os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ostiary-locks"


def _process_lock(name: str) -> FileLock:
    """An exclusive lock shared by the user's processes: a lock file beside the user's cache (filelock:
    ``flock`` on POSIX, ``msvcrt`` locking on Windows)."""
    directory = _lock_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    return FileLock(directory / (hashlib.sha256(name.encode()).hexdigest()[:32] + ".lock"), mode=0o600)


class TokenSession(IssuerClient):
    """Valid access tokens for the account logged in with ``DeviceLogin`` (or any flow that saved
    :class:`StoredTokens`). ``refresh_margin``: refresh this many seconds before expiry.

    DPoP (RFC 9449): tokens stored with a DPoP key are refreshed with proofs by that key, and :meth:`auth` sends
    them to APIs as ``Authorization: DPoP`` with a proof per request. Tokens stored without a key (older sets)
    get one at their next refresh when the issuer advertises DPoP (``dpop=None``) or ``dpop=True``."""

    def __init__(self, issuer: str, client_id: str, store: TokenStore, *, account: str | None = None,
                 client_secret: str | None = None, http_client: httpx.Client | None = None,
                 clock: Clock | None = None, refresh_margin: float = 60.0, timeout: float = 15.0,
                 dpop: bool | None = None) -> None:
        super().__init__(issuer, client_id, client_secret=client_secret, http_client=http_client, timeout=timeout,
                         dpop=dpop)
        self.store = store
        self.account = account
        self._clock: Clock = clock or SystemClock()
        self._margin = refresh_margin
        self._lock = threading.Lock()
        self._keys: dict[str, DpopKey] = {}

    def __repr__(self) -> str:
        return f"TokenSession(issuer={self.issuer!r}, client_id={self.client_id!r}, account={self.account!r})"

    def _login_required(self) -> LoginRequired:
        return LoginRequired(f"You are not logged in to {self.issuer} (or your login expired). Log in again.")

    # -- tokens ------------------------------------------------------------------------------------

    def tokens(self) -> StoredTokens:
        """The stored tokens (possibly expired). Raises :class:`LoginRequired` when there are none."""
        tokens = self.store.load(self.issuer, self.client_id, self.account)
        if tokens is None:
            raise self._login_required()
        return tokens

    def _fresh(self, tokens: StoredTokens) -> bool:
        return self._clock.now() < tokens.expires_at - self._margin

    def access_token(self) -> str:
        """A valid access token, refreshed first when it expires within ``refresh_margin`` seconds."""
        return self.valid_tokens().access_token

    def valid_tokens(self) -> StoredTokens:
        """The stored tokens, refreshed first when the access token expires within ``refresh_margin`` seconds."""
        tokens = self.tokens()
        if self._fresh(tokens):
            return tokens
        return self.refresh(stale=tokens.access_token)

    def dpop_key(self, tokens: StoredTokens) -> DpopKey | None:
        """The DPoP key stored with ``tokens``, or None."""
        if tokens.dpop_key is None:
            return None
        key = self._keys.get(tokens.dpop_key)
        if key is None:
            key = self._keys[tokens.dpop_key] = DpopKey.from_pem(tokens.dpop_key)
        return key

    def authorize(self, request: httpx.Request, tokens: StoredTokens) -> None:
        """Put ``tokens`` on ``request``: ``Authorization: DPoP`` and a fresh proof (with ``ath`` and the API's
        last nonce) for a DPoP token, ``Authorization: Bearer`` otherwise."""
        key = self.dpop_key(tokens) if tokens.token_type == "DPoP" else None
        if key is None:
            request.headers["Authorization"] = f"Bearer {tokens.access_token}"
            return
        request.headers["Authorization"] = f"DPoP {tokens.access_token}"
        request.headers["DPoP"] = key.proof(request.method, request.url, now=self._clock.now(),
                                            access_token=tokens.access_token, nonce=self.nonces.get(request.url))

    def refresh(self, *, stale: str | None = None) -> StoredTokens:
        """Use the refresh token now (serialised across threads and processes) and save the rotation.

        ``stale``: the access token the caller found unusable; if another thread or process already replaced
        it, the replacement is returned without a second refresh.
        """
        with self._lock, _process_lock(f"{self.issuer}|{self.client_id}"):
            current = self.tokens()
            if stale is not None and current.access_token != stale and self._fresh(current):
                return current  # someone else refreshed meanwhile
            if not current.refresh_token:
                raise self._login_required()
            new = self._refresh_request(current)
            self.store.save(new)  # the rotated refresh token is stored before the access token is used
            self.account = new.account
            return new

    def _refresh_request(self, current: StoredTokens) -> StoredTokens:
        endpoint = self._endpoint("token_endpoint")
        assert current.refresh_token is not None
        started = self._clock.now()
        key = self.dpop_key(current)
        if key is None and self.dpop_enabled():
            key = DpopKey.generate()  # a set stored before DPoP: bound from this refresh on
        try:
            response = self._post(endpoint, {"grant_type": "refresh_token", "refresh_token": current.refresh_token},
                                  dpop_key=key)
        except httpx.TransportError as exc:
            raise TokenEndpointUnavailable(f"cannot reach {self.issuer}: {type(exc).__name__}") from exc
        if response.status_code >= 500:
            raise TokenEndpointUnavailable(f"the token endpoint answered HTTP {response.status_code}")
        try:
            body = json_loads(response.content)
        except ValueError:
            body = None
        if response.status_code != 200 or not isinstance(body, dict):
            error = body.get("error") if isinstance(body, dict) else None
            if error in ("invalid_grant", "invalid_client", "unauthorized_client"):
                self.store.delete(self.issuer, self.client_id, current.account)
                raise self._login_required()
            desc = body.get("error_description") if isinstance(body, dict) else None
            raise OAuthError(error if isinstance(error, str) else "invalid_response",
                             desc if isinstance(desc, str) else None, response.status_code)
        return tokens_from_response(self.issuer, self.client_id, body, started, previous=current, dpop_key=key)

    # -- who and logout ----------------------------------------------------------------------------

    def claims(self) -> dict[str, Any]:
        """The current access token's claims, unverified (for display: the server verifies them)."""
        _, claims = jose.decode_unverified(self.tokens().access_token)
        return claims

    def userinfo(self) -> dict[str, Any] | None:
        """OIDC Core §5.3 UserInfo, when the issuer has the endpoint and ``openid`` was granted."""
        endpoint = self.metadata().raw.get("userinfo_endpoint")
        tokens = self.tokens()
        if not isinstance(endpoint, str) or "openid" not in (tokens.scope or "").split():
            return None
        response = self._client().get(endpoint, auth=self.auth())
        if response.status_code != 200:
            raise OAuthError("userinfo_failed", f"the userinfo endpoint answered HTTP {response.status_code}",
                             response.status_code)
        data: dict[str, Any] = json_loads(response.content)
        return data

    def logout(self) -> bool:
        """Revoke the refresh token at the server (RFC 7009) and remove the tokens from the store.
        Returns whether the server confirmed the revocation (the local tokens are removed either way)."""
        tokens = self.store.load(self.issuer, self.client_id, self.account)
        if tokens is None:
            return False
        revoked = False
        try:
            if tokens.refresh_token:
                endpoint = self._endpoint("revocation_endpoint")
                revoked = self._post(endpoint, {"token": tokens.refresh_token,
                                                "token_type_hint": "refresh_token"}).status_code == 200
        except (httpx.HTTPError, DiscoveryError):
            revoked = False
        finally:
            self.store.delete(self.issuer, self.client_id, tokens.account)
        return revoked

    def auth(self) -> TokenSessionAuth:
        return TokenSessionAuth(self)


class TokenSessionAuth(httpx.Auth):
    """``Authorization: Bearer`` (or ``DPoP`` with a proof, for DPoP-bound tokens) from a :class:`TokenSession`.
    On a 401 asking for a DPoP nonce the request is sent once more with it; on another 401 the token is
    refreshed and the request retried once. Blocking (a refresh is one HTTP request): meant for CLIs and
    scripts."""

    def __init__(self, session: TokenSession) -> None:
        self._session = session

    def __repr__(self) -> str:
        return f"TokenSessionAuth({self._session!r})"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        session = self._session
        tokens = session.valid_tokens()
        session.authorize(request, tokens)
        response = yield request
        session.nonces.remember(request.url, response)
        if nonce_challenge(response):  # RFC 9449 §9: once more, with the API's nonce
            session.authorize(request, tokens)
            response = yield request
            session.nonces.remember(request.url, response)
        if response.status_code == 401:
            session.authorize(request, session.refresh(stale=tokens.access_token))
            yield request
