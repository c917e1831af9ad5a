"""Fetching clients' ``jwks_uri`` (private_key_jwt), cached, with forced refetch rate-limited."""

from __future__ import annotations

import time
from typing import Any

import httpx

__all__ = ["HttpJwksFetcher"]


class HttpJwksFetcher:
    def __init__(self, ttl: float = 300, min_refetch: float = 10, timeout: float = 5) -> None:
        self._cache: dict[str, tuple[float, float, dict[str, Any]]] = {}
        self._ttl = ttl
        self._min_refetch = min_refetch
        self._client = httpx.AsyncClient(timeout=timeout, follow_redirects=False)

    async def fetch(self, jwks_uri: str, *, force: bool = False) -> dict[str, Any]:
        now = time.monotonic()
        hit = self._cache.get(jwks_uri)
        if hit is not None:
            expires, fetched, data = hit
            if now < expires and (not force or now - fetched < self._min_refetch):
                return data
        resp = await self._client.get(jwks_uri, headers={"Accept": "application/json"})
        resp.raise_for_status()
        data = resp.json()
        if not isinstance(data, dict):
            raise ValueError("JWKS is not a JSON object")
        self._cache[jwks_uri] = (now + self._ttl, now, data)
        return data

    async def close(self) -> None:
        await self._client.aclose()
