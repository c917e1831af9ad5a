"""The keys of pinned external OIDC issuers (CI platforms), fetched over HTTP for token exchange.

OIDC Discovery 1.0 §4: ``GET {issuer}/.well-known/openid-configuration``; its ``issuer`` must equal the
pinned issuer exactly (§4.3), then its ``jwks_uri`` is fetched. Both go through the bounded fetcher
(:mod:`.safe_fetch`: https only, or http on loopback while this server's issuer is loopback; no private or
metadata addresses; no redirects; 64 KiB; one deadline) and its cache policy: the keys are cached for ``ttl``;
a token naming an unknown ``kid`` forces a refetch, at most once per ``min_refetch`` seconds per issuer;
concurrent callers share one fetch (single flight); failures are remembered with exponential backoff. So a
flood of forged tokens cannot hammer the CI platform.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..core import jose
from ..core.federation import ExternalKeysUnavailable
from .safe_fetch import FetchCache, FetchError, SafeFetcher

__all__ = ["HttpExternalKeys"]


class HttpExternalKeys:
    """Implements :class:`ostiary.core.federation.ExternalKeys`.

    ``fetcher`` is shared with the rest of the server; without one, a private fetcher is made (loopback
    allowed only when ``allow_loopback``, i.e. this server's issuer is loopback) and closed by :meth:`close`.
    """

    def __init__(self, fetcher: SafeFetcher | None = None, *, allow_loopback: bool = False, ttl: float = 300,
                 min_refetch: float = 10, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._own_fetcher = fetcher is None
        self._fetcher = fetcher or SafeFetcher(allow_loopback=allow_loopback)
        self._cache: FetchCache[list[jose.PublicJwk]] = FetchCache(ttl=ttl, min_refetch=min_refetch,
                                                                   monotonic=monotonic)

    async def keys(self, issuer: str, *, force: bool = False) -> list[jose.PublicJwk]:
        try:
            return await self._cache.get(issuer, lambda: self._fetch(issuer), force=force)
        except FetchError as exc:
            raise ExternalKeysUnavailable(str(exc)) from None

    async def _fetch(self, issuer: str) -> list[jose.PublicJwk]:
        config = await self._fetcher.get_json(issuer.rstrip("/") + "/.well-known/openid-configuration")
        if config.get("issuer") != issuer:
            raise FetchError(f"the discovery document names issuer {str(config.get('issuer'))[:200]!r}, "
                             f"not {issuer!r}")
        jwks_uri = config.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise FetchError("the discovery document has no jwks_uri")
        try:
            keys = jose.parse_jwks(await self._fetcher.get_json(jwks_uri))
        except jose.JoseError as exc:
            raise FetchError(f"bad JWKS: {exc}") from None
        if not keys:
            raise FetchError("the JWKS holds no usable signing key")
        return keys

    async def close(self) -> None:
        if self._own_fetcher:
            await self._fetcher.close()
