"""The one bounded fetcher for every document the server reads from a URL someone else chose: clients'
``jwks_uri`` (private_key_jwt), federation issuers' discovery documents and JWKS, client metadata documents.

Every fetch (:meth:`SafeFetcher.get_json`):

- checks the URL against :mod:`ostiary._fetch_rules` (https; http and loopback only while the issuer is loopback;
  no user-info);
- resolves the host and refuses it if *any* address is private, link-local, shared, multicast, reserved,
  unspecified, a cloud-metadata address, or loopback outside development; then connects to the address it
  checked (the name is kept for ``Host`` and TLS server name and certificate checks), so a DNS answer that
  changes between check and connect (rebinding) cannot redirect it;
- follows no redirect, uses no proxy from the environment and no pooled connection;
- streams the body and stops at ``max_bytes`` (64 KiB), refuses compressed bodies, and gives up after one total
  ``deadline`` (5 s) covering resolution, connection and every byte, so a slow drip cannot hold a request;
- raises only :class:`FetchError` (``str()`` is safe to log, never the body).

:class:`FetchCache` is the caching policy shared by every user: successes kept for ``ttl``; a forced refetch
(an unknown ``kid``) at most once per ``min_refetch``; concurrent callers share one fetch (single flight);
failures remembered with exponential backoff (``min_refetch``, doubled per consecutive failure, at most
``max_backoff``), so a broken or hostile URL is not fetched again on every request.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx

from .._fetch_rules import address_problem, is_loopback_host, url_problem
from .._json import loads as json_loads

__all__ = ["DEADLINE", "MAX_BYTES", "FetchCache", "FetchError", "Fetched", "Resolver", "SafeFetcher"]

MAX_BYTES: Final = 64 * 1024
DEADLINE: Final = 5.0
_MAX_ENTRIES: Final = 10_000

#: ``(host, port) -> addresses``; injectable so tests can check the address rules without any traffic.
Resolver = Callable[[str, int], Awaitable[list[str]]]


class FetchError(ValueError):
    """A document could not be fetched or used. ``str()`` is safe to log (a shortened URL and the reason)."""


def _short(url: str) -> str:
    return repr(url[:200])


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True, slots=True)
class Fetched:
    """A fetched JSON object and the response headers it came with (caching, content type)."""

    data: dict[str, Any]
    headers: httpx.Headers


class SafeFetcher:
    """Fetch JSON documents under the rules above. ``allow_loopback`` only while the issuer is loopback."""

    def __init__(self, *, allow_loopback: bool, max_bytes: int = MAX_BYTES, deadline: float = DEADLINE,
                 resolver: Resolver | None = None, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.allow_loopback = allow_loopback
        self.max_bytes = max_bytes
        self.deadline = deadline
        self._resolve = resolver or system_resolver
        self._client = httpx.AsyncClient(transport=transport, follow_redirects=False, trust_env=False,
                                         timeout=deadline, limits=httpx.Limits(max_keepalive_connections=0))

    @classmethod
    def for_issuer(cls, issuer: str, **kw: Any) -> SafeFetcher:
        """A fetcher with the development exception exactly when ``issuer`` (this server's) is loopback."""
        return cls(allow_loopback=is_loopback_host(urlsplit(issuer).hostname or ""), **kw)

    async def get_json(self, url: str) -> dict[str, Any]:
        """The JSON object at ``url``. Raises :class:`FetchError` for every failure, whatever its cause."""
        return (await self.get_document(url)).data

    async def get_document(self, url: str, *, json_content_type: bool = False) -> Fetched:
        """:meth:`get_json` with the response headers; ``json_content_type``: refuse a response whose
        ``Content-Type`` is not ``application/json``."""
        try:
            async with asyncio.timeout(self.deadline):
                return await self._get_json(url, json_content_type)
        except FetchError:
            raise
        except TimeoutError:
            raise FetchError(f"{_short(url)} did not answer within {self.deadline:g} s") from None
        except Exception as exc:  # fail closed: any other failure is a failed fetch, never a 500
            raise FetchError(f"cannot fetch {_short(url)}: {type(exc).__name__}") from None

    async def _checked_addresses(self, url: str) -> tuple[list[str], str, int]:
        problem = url_problem(url, allow_loopback=self.allow_loopback)
        if problem is not None:
            raise FetchError(f"refusing to fetch {_short(url)}: {problem}")
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            addresses = [ipaddress.ip_address(a.partition("%")[0]) for a in await self._resolve(host, port)]
        except (OSError, ValueError) as exc:
            raise FetchError(f"cannot resolve the host of {_short(url)}: {type(exc).__name__}") from None
        if not addresses:
            raise FetchError(f"cannot resolve the host of {_short(url)}")
        for address in addresses:
            problem = address_problem(address, allow_loopback=self.allow_loopback)
            if problem is not None:
                raise FetchError(f"refusing to fetch {_short(url)}: {host[:100]} resolves to {problem}")
        return [f"[{a}]" if a.version == 6 else str(a) for a in addresses], host, port

    async def _get_json(self, url: str, json_content_type: bool) -> Fetched:
        addresses, host, port = await self._checked_addresses(url)
        for i, address in enumerate(addresses):  # e.g. localhost: ::1, then 127.0.0.1
            try:
                return await self._get_from(url, address, host, port, json_content_type)
            except httpx.ConnectError:
                if i == len(addresses) - 1:
                    raise
        raise FetchError(f"cannot resolve the host of {_short(url)}")  # pragma: no cover - addresses is not empty

    async def _get_from(self, url: str, address: str, host: str, port: int, json_content_type: bool) -> Fetched:
        parts = urlsplit(url)
        # connect to the address just checked; the name stays in Host and in the TLS server name/certificate check
        target = urlunsplit((parts.scheme, f"{address}:{port}", parts.path or "/", parts.query, ""))
        headers = {"Host": parts.netloc, "Accept": "application/json", "Accept-Encoding": "identity"}
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        async with self._client.stream("GET", target, headers=headers, extensions=extensions) as resp:
            if resp.status_code != 200:
                raise FetchError(f"{_short(url)} answered HTTP {resp.status_code}")
            media_type = resp.headers.get("content-type", "").split(";")[0].strip().lower()
            if json_content_type and media_type != "application/json":
                raise FetchError(f"{_short(url)} is not application/json")
            if resp.headers.get("content-encoding", "identity").lower() != "identity":
                raise FetchError(f"{_short(url)} sent a compressed body")
            declared = resp.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
                raise FetchError(f"{_short(url)} is larger than {self.max_bytes} bytes")
            body = bytearray()
            async for chunk in resp.aiter_raw():
                body += chunk
                if len(body) > self.max_bytes:
                    raise FetchError(f"{_short(url)} is larger than {self.max_bytes} bytes")
        try:
            data = json_loads(bytes(body))
        except ValueError:
            raise FetchError(f"{_short(url)} is not JSON") from None
        if not isinstance(data, dict):
            raise FetchError(f"{_short(url)} is not a JSON object")
        return Fetched(data, resp.headers)

    async def close(self) -> None:
        await self._client.aclose()


T = TypeVar("T")


@dataclass
class _Hit(Generic[T]):
    value: T
    expires: float  # monotonic


@dataclass
class _Failure:
    retry_at: float  # monotonic
    streak: int
    message: str


class FetchCache(Generic[T]):
    """Per-key cache of fetched values with the policy described in the module docstring."""

    def __init__(self, *, ttl: float = 300, min_refetch: float = 10, max_backoff: float = 300,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._min_refetch = min_refetch
        self._max_backoff = max_backoff
        self._monotonic = monotonic
        self._hits: dict[str, _Hit[T]] = {}
        self._failures: dict[str, _Failure] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._last_forced: dict[str, float] = {}
        self._generation: dict[str, int] = {}

    async def get(self, key: str, load: Callable[[], Awaitable[T]], *, force: bool = False,
                  ttl_of: Callable[[T], float] | None = None) -> T:
        """The value for ``key``, loading it with ``load`` when needed. ``load`` raises :class:`FetchError`.
        ``ttl_of``: how long to keep this value (e.g. from its caching headers), instead of ``ttl``."""
        generation = self._generation.get(key, 0)
        if len(self._locks) > _MAX_ENTRIES and key not in self._locks:
            self._trim()
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            now = self._monotonic()
            hit = self._hits.get(key)
            if hit is not None and self._generation.get(key, 0) != generation:
                return hit.value  # fetched by another caller while this one waited (single flight)
            fresh = hit is not None and now < hit.expires
            if hit is not None and fresh and (
                    not force or now - self._last_forced.get(key, -1e18) < self._min_refetch):
                return hit.value  # a forced refetch at most once per min_refetch
            failure = self._failures.get(key)
            if failure is not None and now < failure.retry_at:
                if hit is not None and fresh:
                    return hit.value
                raise FetchError(failure.message)  # backing off: not fetched again yet
            if force:
                self._last_forced[key] = now
            try:
                value = await load()
            except FetchError as exc:
                streak = failure.streak + 1 if failure is not None else 1
                delay = min(self._max_backoff, self._min_refetch * 2 ** min(streak - 1, 30))
                self._failures[key] = _Failure(now + delay, streak, str(exc))
                if hit is not None and fresh:
                    return hit.value  # a failed forced refetch keeps the cached value
                raise
            self._failures.pop(key, None)
            self._hits[key] = _Hit(value, now + (ttl_of(value) if ttl_of is not None else self._ttl))
            self._generation[key] = self._generation.get(key, 0) + 1
            return value

    def _trim(self) -> None:
        """Many distinct keys (e.g. many clients): forget idle entries rather than grow without bound."""
        for key in [k for k, lock in self._locks.items() if not lock.locked()]:
            self._locks.pop(key, None)
            self._hits.pop(key, None)
            self._failures.pop(key, None)
            self._last_forced.pop(key, None)
            self._generation.pop(key, None)
