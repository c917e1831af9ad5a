"""Authorization server metadata: OpenID Connect Discovery 1.0 §4 with the RFC 8414 §3 fallback.

The document's ``issuer`` must equal the pinned issuer exactly (RFC 8414 §3.3); otherwise an attacker
who controls one metadata document could redirect key and token look-ups to another issuer.
Issuers and endpoints must use ``https``, except on loopback addresses (for development and tests).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from .._fetch_rules import is_loopback_url
from .._json import loads as json_loads
from .errors import DiscoveryError

__all__ = ["ServerMetadata", "adiscover", "discover", "metadata_urls", "require_https"]

@dataclass(frozen=True, slots=True)
class ServerMetadata:
    """The endpoints a client or resource server needs from an issuer's metadata."""

    issuer: str
    token_endpoint: str | None
    jwks_uri: str | None
    introspection_endpoint: str | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)


def require_https(url: str, what: str) -> str:
    """Refuse non-``https`` URLs unless the host is a loopback address."""
    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and is_loopback_url(url)):
        return url
    if parts.scheme == "http":
        raise DiscoveryError(f"{what} {url!r} uses http on a host that is not loopback: use https "
                             "(http is accepted only for localhost, 127.0.0.0/8 and [::1])")
    raise DiscoveryError(f"{what} {url!r} is not an http(s) URL: use https://host[:port][/path]")


def metadata_urls(issuer: str) -> tuple[str, str]:
    """The OpenID Connect discovery URL, then the RFC 8414 §3.1 one (well-known inserted before the path)."""
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    oidc = issuer.rstrip("/") + "/.well-known/openid-configuration"
    rfc8414 = f"{parts.scheme}://{parts.netloc}/.well-known/oauth-authorization-server{path}"
    return oidc, rfc8414


def _parse(issuer: str, response: httpx.Response) -> ServerMetadata:
    try:
        doc = json_loads(response.content)
    except ValueError as exc:
        raise DiscoveryError("issuer metadata is not JSON") from exc
    if not isinstance(doc, dict):
        raise DiscoveryError("issuer metadata is not a JSON object")
    if doc.get("issuer") != issuer:
        raise DiscoveryError("issuer metadata names a different issuer")

    def endpoint(name: str) -> str | None:
        value = doc.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise DiscoveryError(f"{name} is not a string")
        return require_https(value, name)

    return ServerMetadata(issuer=issuer, token_endpoint=endpoint("token_endpoint"),
                          jwks_uri=endpoint("jwks_uri"),
                          introspection_endpoint=endpoint("introspection_endpoint"), raw=doc)


def _why(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "connection refused or host unreachable"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _not_fetched(issuer: str, tried: list[str]) -> str:
    return (f"the metadata of issuer {issuer} could not be fetched ({'; '.join(tried)}). "
            "Check --issuer: it must be the server's issuer URL, and the server must be running.")


def discover(issuer: str, http_client: httpx.Client | None = None, timeout: float = 10.0) -> ServerMetadata:
    """Fetch and check the issuer's metadata (blocking)."""
    require_https(issuer, "issuer")
    client = http_client or httpx.Client(timeout=timeout)
    try:
        last: Exception | None = None
        tried: list[str] = []
        for url in metadata_urls(issuer):
            try:
                response = client.get(url, headers={"Accept": "application/json"})
            except httpx.HTTPError as exc:
                last = exc
                tried.append(f"{url}: {_why(exc)}")
                continue
            if response.status_code == 200:
                return _parse(issuer, response)
            tried.append(f"{url}: HTTP {response.status_code}")
        raise DiscoveryError(_not_fetched(issuer, tried)) from last
    finally:
        if http_client is None:
            client.close()


async def adiscover(issuer: str, http_client: httpx.AsyncClient | None = None) -> ServerMetadata:
    """Fetch and check the issuer's metadata (asyncio; a private client has a 10 s timeout)."""
    require_https(issuer, "issuer")
    client = http_client or httpx.AsyncClient(timeout=10.0)
    try:
        last: Exception | None = None
        tried: list[str] = []
        for url in metadata_urls(issuer):
            try:
                response = await client.get(url, headers={"Accept": "application/json"})
            except httpx.HTTPError as exc:
                last = exc
                tried.append(f"{url}: {_why(exc)}")
                continue
            if response.status_code == 200:
                return _parse(issuer, response)
            tried.append(f"{url}: HTTP {response.status_code}")
        raise DiscoveryError(_not_fetched(issuer, tried)) from last
    finally:
        if http_client is None:
            await client.aclose()
