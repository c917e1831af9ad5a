"""The HTTP clients a toolkit object talks through: the caller's, or ones it makes itself and closes.

One home for what :class:`~ostiary.client.issuer.IssuerClient`,
:class:`~ostiary.client.service_token.ServiceTokenClient`, :class:`~ostiary.resource.jwks_cache.JwksCache` and
:class:`~ostiary.resource.verifier.TokenVerifier` each used to write out. It lives in ``client``, the lower of the
two toolkit layers: ``resource`` sits above ``client`` (the ``layers`` contract in ``pyproject.toml``), so it may
import this module, while ``client`` may import nothing of ``resource``. A module meant for sharing, not part of
``ostiary.client.__all__``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import httpx

__all__ = ["HttpClients"]


class HttpClients:
    """The caller's ``httpx.Client`` / ``httpx.AsyncClient`` when given (used as they are, never closed here),
    else clients made with ``timeout``."""

    def __init__(self, http_client: httpx.Client | None = None, async_http_client: httpx.AsyncClient | None = None,
                 *, timeout: float) -> None:
        self.timeout = timeout
        self._http = http_client
        self._ahttp = async_http_client
        self._own_http: httpx.Client | None = None

    def sync(self) -> httpx.Client:
        """The caller's client, or one made on first use and kept until :meth:`close`."""
        if self._http is not None:
            return self._http
        if self._own_http is None:
            self._own_http = httpx.Client(timeout=self.timeout)
        return self._own_http

    @contextmanager
    def sync_once(self) -> Iterator[httpx.Client]:
        """The caller's client, or one made for this block alone and closed when it ends."""
        if self._http is not None:
            yield self._http
            return
        with httpx.Client(timeout=self.timeout) as client:
            yield client

    @asynccontextmanager
    async def asynchronous(self) -> AsyncIterator[httpx.AsyncClient]:
        """The caller's async client, or one made for this block alone and closed when it ends (an
        ``AsyncClient`` belongs to the event loop it first ran on, so none is kept)."""
        if self._ahttp is not None:
            yield self._ahttp
            return
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            yield client

    def close(self) -> None:
        """Close the client :meth:`sync` made (never the caller's)."""
        if self._own_http is not None:
            self._own_http.close()
            self._own_http = None
