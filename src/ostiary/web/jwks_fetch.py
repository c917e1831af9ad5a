"""Fetching clients' ``jwks_uri`` (private_key_jwt), cached for ``ttl``; an unknown kid forces a refetch, at most
one forced refetch per ``min_refetch`` seconds per URI, so a flood of bad assertions cannot hammer the host."""

from __future__ import annotations

import time
from typing import Any

import httpx

__all__ = ["HttpJwksFetcher"]


class HttpJwksFetcher:
    def __init__(self, ttl: float = 300, min_refetch: float = 10, timeout: float = 5) -> None:
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self._last_forced: dict[str, float] = {}
        self._ttl = ttl
        self._min_refetch = min_refetch
        self._client = httpx.AsyncClient(timeout=timeout, follow_redirects=False)

    async def fetch(self, jwks_uri: str, *, force: bool = False) -> dict[str, Any]:
        now = time.monotonic()
        hit = self._cache.get(jwks_uri)
        recently_forced = now - self._last_forced.get(jwks_uri, -1e9) < self._min_refetch
        if hit is not None and now < hit[0] and (not force or recently_forced):
            return hit[1]
        if force:
            self._last_forced[jwks_uri] = now
        resp = await self._client.get(jwks_uri, headers={"Accept": "application/json"})
        resp.raise_for_status()
        data = resp.json()
        if not isinstance(data, dict):
            raise ValueError("JWKS is not a JSON object")
        self._cache[jwks_uri] = (now + self._ttl, data)
        return data

    async def close(self) -> None:
        await self._client.aclose()
