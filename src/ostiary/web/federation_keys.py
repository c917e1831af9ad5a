"""The keys of pinned external OIDC issuers (CI platforms), fetched over HTTP for token exchange.

OIDC Discovery 1.0 §4: ``GET {issuer}/.well-known/openid-configuration``; its ``issuer`` must equal the
pinned issuer exactly (§4.3), then its ``jwks_uri`` is fetched. Both are cached for ``ttl``. A token naming
an unknown ``kid`` forces a refetch, at most once per ``min_refetch`` seconds per issuer, and concurrent
callers share one fetch (single flight), so a flood of forged tokens cannot hammer the CI platform.
Only https URLs are fetched, or http on a loopback host (development); redirects are not followed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from ..config import is_loopback_url
from ..core import jose
from ..core.federation import ExternalKeysUnavailable

__all__ = ["HttpExternalKeys"]

MAX_DOCUMENT_BYTES = 512 * 1024


@dataclass
class _Entry:
    keys: list[jose.PublicJwk]
    expires: float  # monotonic


class HttpExternalKeys:
    """Implements :class:`ostiary.core.federation.ExternalKeys`."""

    def __init__(self, ttl: float = 300, min_refetch: float = 10, timeout: float = 5,
                 client: httpx.AsyncClient | None = None, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._ttl = ttl
        self._min_refetch = min_refetch
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        self._cache: dict[str, _Entry] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._last_forced: dict[str, float] = {}
        self._failed: dict[str, tuple[float, str]] = {}
        self._generation: dict[str, int] = {}

    async def keys(self, issuer: str, *, force: bool = False) -> list[jose.PublicJwk]:
        generation = self._generation.get(issuer, 0)
        lock = self._locks.setdefault(issuer, asyncio.Lock())
        async with lock:
            now = self._monotonic()
            hit = self._cache.get(issuer)
            if hit is not None and self._generation.get(issuer, 0) != generation:
                return hit.keys  # fetched by another caller while this one waited (single flight)
            fresh = hit is not None and now < hit.expires
            if hit is not None and fresh and (
                    not force or now - self._last_forced.get(issuer, -1e18) < self._min_refetch):
                return hit.keys  # a forced refetch at most once per min_refetch
            failed = self._failed.get(issuer)
            if not fresh and failed is not None and now - failed[0] < self._min_refetch:
                raise ExternalKeysUnavailable(failed[1])  # negative cache: do not retry at once
            if force:
                self._last_forced[issuer] = now
            try:
                keys = await self._fetch(issuer)
            except ExternalKeysUnavailable as exc:
                self._failed[issuer] = (now, str(exc))
                if hit is not None and now < hit.expires:
                    return hit.keys  # a failed forced refetch keeps the cached keys
                raise
            self._failed.pop(issuer, None)
            self._cache[issuer] = _Entry(keys, now + self._ttl)
            self._generation[issuer] = self._generation.get(issuer, 0) + 1
            return keys

    async def _fetch(self, issuer: str) -> list[jose.PublicJwk]:
        config = await self._get_json(issuer.rstrip("/") + "/.well-known/openid-configuration", issuer)
        if config.get("issuer") != issuer:
            raise ExternalKeysUnavailable(f"the discovery document names issuer {str(config.get('issuer'))[:200]!r}, "
                                          f"not {issuer!r}")
        jwks_uri = config.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise ExternalKeysUnavailable("the discovery document has no jwks_uri")
        try:
            keys = jose.parse_jwks(await self._get_json(jwks_uri, issuer))
        except jose.JoseError as exc:
            raise ExternalKeysUnavailable(f"bad JWKS: {exc}") from exc
        if not keys:
            raise ExternalKeysUnavailable("the JWKS holds no usable signing key")
        return keys

    async def _get_json(self, url: str, issuer: str) -> dict[str, Any]:
        parts = urlsplit(url)
        if parts.scheme != "https" and not (parts.scheme == "http" and is_loopback_url(url)
                                            and is_loopback_url(issuer)):
            raise ExternalKeysUnavailable(f"refusing to fetch {url[:200]!r}: https only (http on loopback)")
        try:
            resp = await self._client.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise ExternalKeysUnavailable(f"cannot reach {url[:200]}: {type(exc).__name__}") from exc
        if resp.status_code != 200:
            raise ExternalKeysUnavailable(f"{url[:200]} answered HTTP {resp.status_code}")
        if len(resp.content) > MAX_DOCUMENT_BYTES:
            raise ExternalKeysUnavailable(f"{url[:200]} is too large")
        try:
            data = resp.json()
        except ValueError as exc:
            raise ExternalKeysUnavailable(f"{url[:200]} is not JSON") from exc
        if not isinstance(data, dict):
            raise ExternalKeysUnavailable(f"{url[:200]} is not a JSON object")
        return data

    async def close(self) -> None:
        if self._own_client:
            await self._client.aclose()
