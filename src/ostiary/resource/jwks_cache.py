"""The issuer's signing keys (RFC 7517 JWKS), found through discovery and cached.

- Keys are refetched when older than ``ttl``, or when a token names a ``kid`` we do not know (the
  issuer rotated keys, RFC 7517 §4.5).
- Refetches are *single-flight* (one fetch in flight; concurrent callers wait for it and reuse its
  result) and *rate-limited* (at most one attempt per ``min_refetch_interval`` seconds), so a flood of
  tokens with made-up ``kid`` values cannot turn this cache into a load generator against the issuer.
- When a refetch fails, the keys we already have stay in use until the next allowed attempt.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import weakref
from collections.abc import Sequence

import httpx

from .._clock import Clock
from ..client.discovery import ServerMetadata, adiscover, discover
from ..client.http_clients import HttpClients
from ..core.jose import JoseError, PublicJwk, parse_jwks
from .errors import IssuerUnavailable

__all__ = ["JwksCache"]

log = logging.getLogger("ostiary.resource")


class JwksCache:
    """Thread-safe and asyncio-safe cache of the verification keys of one pinned issuer."""

    def __init__(self, issuer: str, *, algorithms: Sequence[str], clock: Clock, ttl: float = 300.0,
                 min_refetch_interval: float = 10.0, http_client: httpx.Client | None = None,
                 async_http_client: httpx.AsyncClient | None = None, timeout: float = 10.0) -> None:
        if min_refetch_interval <= 0:
            raise ValueError("min_refetch_interval must be positive")
        self.issuer = issuer
        self._algorithms = tuple(algorithms)
        self._clock = clock
        self._ttl = ttl
        self._min_interval = min_refetch_interval
        self._http = HttpClients(http_client, async_http_client, timeout=timeout)
        self._fetch_lock = threading.Lock()
        self._async_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary())
        self._metadata: ServerMetadata | None = None
        self._keys: tuple[PublicJwk, ...] = ()
        self._kids: frozenset[str | None] = frozenset()
        self._fetched_at = -math.inf
        self._attempted_at = -math.inf
        self._attempts = 0
        self._in_flight = False

    # -- state ---------------------------------------------------------------------------------

    def is_fresh(self, now: float) -> bool:
        """Keys are present and younger than the TTL."""
        return bool(self._keys) and now - self._fetched_at < self._ttl

    def has_kid(self, kid: str | None) -> bool:
        return kid in self._kids

    @property
    def fetch_attempts(self) -> int:
        """How many JWKS fetches were attempted (for metrics and tests)."""
        return self._attempts

    def _wanted(self, kid: str | None, now: float) -> bool:
        return not self.is_fresh(now) or kid not in self._kids

    def _allowed(self, now: float) -> bool:
        return now - self._attempted_at >= self._min_interval

    def _must_wait(self, kid: str | None) -> bool:
        """Fetch (or wait for the fetch in flight) when the keys are stale or ``kid`` is unknown."""
        now = self._clock.now()
        return self._wanted(kid, now) and (self._in_flight or self._allowed(now))

    def _may_fetch(self, kid: str | None, seen: int) -> bool:
        now = self._clock.now()
        return self._attempts == seen and self._wanted(kid, now) and self._allowed(now)

    def _usable(self) -> tuple[PublicJwk, ...]:
        if not self._keys:
            raise IssuerUnavailable("no verification keys could be fetched from the issuer")
        return self._keys

    def _install(self, body: object, now: float) -> None:
        if not isinstance(body, dict):
            raise JoseError("JWKS is not a JSON object")
        keys = tuple(parse_jwks(body, self._algorithms))
        if not keys:
            raise JoseError("JWKS has no usable keys")
        removed = self._kids - {k.kid for k in keys}
        if removed:
            log.info("issuer %s removed signing keys %s", self.issuer, sorted(map(str, removed)))
        self._keys, self._kids, self._fetched_at = keys, frozenset(k.kid for k in keys), now

    def _begin(self) -> float:
        self._in_flight = True  # before _attempted_at: a caller that sees the new time also sees this
        now = self._clock.now()
        self._attempted_at = now
        self._attempts += 1
        return now

    # -- blocking ------------------------------------------------------------------------------

    def metadata(self) -> ServerMetadata:
        """The issuer's metadata, fetched once (blocking)."""
        if self._metadata is None:
            self._metadata = discover(self.issuer, self._http.sync())
        return self._metadata

    def keys(self, kid: str | None) -> tuple[PublicJwk, ...]:
        """The current keys, refetched first if stale or if ``kid`` is unknown (and a fetch is allowed)."""
        if self._must_wait(kid):
            seen = self._attempts
            with self._fetch_lock:
                if self._may_fetch(kid, seen):
                    self._fetch()
        return self._usable()

    def _fetch(self) -> None:
        now = self._begin()
        try:
            jwks_uri = self.metadata().jwks_uri
            if jwks_uri is None:
                raise JoseError("issuer metadata has no jwks_uri")
            response = self._http.sync().get(jwks_uri, headers={"Accept": "application/json"})
            response.raise_for_status()
            self._install(response.json(), now)
        except Exception as exc:  # any failure keeps the keys we have
            log.warning("fetching the JWKS of %s failed: %s", self.issuer, type(exc).__name__)
        finally:
            self._in_flight = False

    def close(self) -> None:
        self._http.close()

    # -- asyncio -------------------------------------------------------------------------------

    async def ametadata(self) -> ServerMetadata:
        """The issuer's metadata, fetched once (asyncio)."""
        if self._metadata is None:
            async with self._http.asynchronous() as client:
                self._metadata = await adiscover(self.issuer, client)
        return self._metadata

    async def akeys(self, kid: str | None) -> tuple[PublicJwk, ...]:
        """Like :meth:`keys`, without blocking the event loop."""
        if self._must_wait(kid):
            seen = self._attempts
            lock = self._async_locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())
            async with lock:
                if self._may_fetch(kid, seen):
                    await self._afetch()
        return self._usable()

    async def _afetch(self) -> None:
        now = self._begin()
        try:
            jwks_uri = (await self.ametadata()).jwks_uri
            if jwks_uri is None:
                raise JoseError("issuer metadata has no jwks_uri")
            async with self._http.asynchronous() as client:
                response = await client.get(jwks_uri, headers={"Accept": "application/json"})
            response.raise_for_status()
            self._install(response.json(), now)
        except Exception as exc:  # any failure keeps the keys we have
            log.warning("fetching the JWKS of %s failed: %s", self.issuer, type(exc).__name__)
        finally:
            self._in_flight = False
