"""Fetching clients' ``jwks_uri`` (private_key_jwt) through the bounded fetcher (:mod:`.safe_fetch`).

Cached for ``ttl``; an unknown kid forces a refetch, at most one forced refetch per ``min_refetch`` seconds per
URI; failures are remembered with exponential backoff; concurrent callers share one fetch. So a flood of bad
assertions, from anyone who knows a ``client_id``, cannot make the server hammer the host, read a huge or slow
body, or reach an internal address. Every failure is a :class:`~.safe_fetch.FetchError` (a ``ValueError``),
which client authentication turns into ``invalid_client`` (counted toward the client's lock-out).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .safe_fetch import FetchCache, SafeFetcher

__all__ = ["HttpJwksFetcher"]


class HttpJwksFetcher:
    """Implements :class:`ostiary.core.storage.JwksFetcher`."""

    def __init__(self, fetcher: SafeFetcher, *, ttl: float = 300, min_refetch: float = 10,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._fetcher = fetcher
        self._cache: FetchCache[dict[str, Any]] = FetchCache(ttl=ttl, min_refetch=min_refetch, monotonic=monotonic)

    async def fetch(self, jwks_uri: str, *, force: bool = False) -> dict[str, Any]:
        return await self._cache.get(jwks_uri, lambda: self._fetcher.get_json(jwks_uri), force=force)
