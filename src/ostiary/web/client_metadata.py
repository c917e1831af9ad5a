"""Fetching client ID metadata documents (:mod:`ostiary.core.client_metadata`) through the bounded fetcher
(:mod:`.safe_fetch`): https only (http on loopback only while the issuer is loopback), no private, link-local or
metadata address after resolution, no redirect, at most ``MAX_BYTES`` (5 KiB, the draft's advice), one deadline of
``DEADLINE`` seconds, ``Content-Type: application/json`` only.

At most ``MAX_IN_FLIGHT`` documents are fetched at once by a process; beyond that a new URL is refused (not
queued), so a flood of made-up ``client_id`` URLs at ``/authorize`` cannot turn the server into a fetching
engine for someone else.

Cached per the response's ``Cache-Control: max-age`` (``no-store``/``no-cache``: the minimum), kept between
``MIN_TTL`` and ``MAX_TTL``, ``DEFAULT_TTL`` without a header; failures are remembered with backoff (the shared
:class:`~.safe_fetch.FetchCache` policy), so a hostile URL is not fetched on every request.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Final

from ..core.client_metadata import ClientMetadataError, FetchedMetadata
from .safe_fetch import FetchCache, Fetched, FetchError, SafeFetcher

__all__ = ["DEADLINE", "DEFAULT_TTL", "MAX_BYTES", "MAX_IN_FLIGHT", "MAX_TTL", "MIN_TTL", "HttpClientMetadata",
           "cache_ttl"]

MAX_BYTES: Final = 5 * 1024
DEADLINE: Final = 3.0
MIN_TTL: Final = 60.0
DEFAULT_TTL: Final = 300.0
MAX_TTL: Final = 86400.0
MAX_IN_FLIGHT: Final = 16
_MAX_AGE = re.compile(r"(?:^|,)\s*(?:s-)?max-age\s*=\s*\"?(\d{1,10})\"?\s*(?:,|$)", re.IGNORECASE)


def cache_ttl(cache_control: str | None) -> float:
    """Seconds to keep a document, from its ``Cache-Control`` header, within ``[MIN_TTL, MAX_TTL]``."""
    if not cache_control:
        return DEFAULT_TTL
    lowered = cache_control.lower()
    if "no-store" in lowered or "no-cache" in lowered:
        return MIN_TTL
    match = _MAX_AGE.search(cache_control)
    if match is None:
        return DEFAULT_TTL
    return min(MAX_TTL, max(MIN_TTL, float(match.group(1))))


class HttpClientMetadata:
    """Implements :class:`ostiary.core.client_metadata.ClientMetadataResolver`."""

    def __init__(self, fetcher: SafeFetcher, *, min_refetch: float = 10,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._fetcher = fetcher
        self._cache: FetchCache[Fetched] = FetchCache(ttl=DEFAULT_TTL, min_refetch=min_refetch, monotonic=monotonic)
        self._in_flight = 0

    @classmethod
    def for_issuer(cls, issuer: str) -> HttpClientMetadata:
        return cls(SafeFetcher.for_issuer(issuer, max_bytes=MAX_BYTES, deadline=DEADLINE))

    async def resolve(self, url: str) -> FetchedMetadata:
        fetched_now: list[bool] = []

        async def load() -> Fetched:
            if self._in_flight >= MAX_IN_FLIGHT:
                raise FetchError(f"{MAX_IN_FLIGHT} client metadata documents are being fetched already")
            fetched_now.append(True)
            self._in_flight += 1
            try:
                return await self._fetcher.get_document(url, json_content_type=True)
            finally:
                self._in_flight -= 1

        try:
            doc = await self._cache.get(url, load, ttl_of=lambda f: cache_ttl(f.headers.get("cache-control")))
        except FetchError as exc:
            raise ClientMetadataError(str(exc)) from None
        return FetchedMetadata(doc.data, fetched=bool(fetched_now))

    async def close(self) -> None:
        await self._fetcher.close()
