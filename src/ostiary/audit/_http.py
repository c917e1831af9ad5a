"""HTTP helpers shared by the audits: one client, loopback detection, short descriptions of failures."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx

__all__ = ["new_client", "url_problem", "why"]

USER_AGENT = "ostiary-audit"


def new_client(timeout: float) -> httpx.Client:
    return httpx.Client(timeout=timeout, follow_redirects=False, headers={"User-Agent": USER_AGENT})


def why(exc: Exception) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "connection refused or host unreachable"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return type(exc).__name__ + (f": {exc}" if str(exc) else "")


def url_problem(url: str, what: str) -> str | None:
    """Why ``url`` cannot be audited (not an absolute http(s) URL), or ``None``."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError as exc:
        return f"{what} {url!r} is not a valid URL ({exc})"
    if parts.scheme not in ("http", "https") or not host:
        return f"{what} {url!r} is not an http(s) URL: give https://host[:port][/path]"
    return None
