"""Redirect URI matching: exact string comparison (OAuth 2.1 §2.3.1, RFC 9700 §4.1.3), except that a native
app's loopback redirect URI may use any port (RFC 8252 §7.3). ``localhost`` gets no such exception
(RFC 8252 §8.3): only the literal addresses ``127.0.0.1`` and ``[::1]`` over http."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

__all__ = ["is_loopback_redirect", "match_redirect_uri", "validate_redirect_uri"]

_LOOPBACK_HOSTS = ("127.0.0.1", "[::1]")


def _split_netloc(uri: str) -> tuple[str, str, str, str] | None:
    """(scheme, host-without-port, rest-after-authority, userinfo-present) for http loopback URIs."""
    if "#" in uri:
        return None
    parts = urlsplit(uri)
    if parts.scheme != "http" or "@" in parts.netloc:
        return None
    netloc = parts.netloc
    for host in _LOOPBACK_HOSTS:
        if netloc == host or (netloc.startswith(host + ":") and netloc[len(host) + 1:].isdigit()):
            rest = uri[len("http://") + len(netloc):]
            return parts.scheme, host, rest, ""
    return None


def is_loopback_redirect(uri: str) -> bool:
    return _split_netloc(uri) is not None


def match_redirect_uri(requested: str, registered: Iterable[str]) -> bool:
    """True if ``requested`` equals a registered URI, or differs from a registered loopback URI only in the
    port (RFC 8252 §7.3)."""
    req_loop = _split_netloc(requested)
    for uri in registered:
        if requested == uri:
            return True
        if req_loop is not None:
            reg_loop = _split_netloc(uri)
            if reg_loop is not None and reg_loop[1] == req_loop[1] and reg_loop[2] == req_loop[2]:
                return True
    return False


def validate_redirect_uri(uri: str) -> str:
    """Registration rule: https; or http on a loopback address (native apps, RFC 8252 §7.3); or a private-use
    scheme with a dot, such as ``com.example.app:/cb`` (RFC 8252 §7.1). Never a fragment (RFC 6749 §3.1.2)."""
    parts = urlsplit(uri)
    if "#" in uri:
        raise ValueError(f"redirect URI must not contain a fragment: {uri!r}")
    if parts.scheme == "https":
        if not parts.hostname:
            raise ValueError(f"redirect URI needs a host: {uri!r}")
        return uri
    if parts.scheme == "http":
        if is_loopback_redirect(uri):
            return uri
        raise ValueError(f"http redirect URIs are allowed only on 127.0.0.1 or [::1] (not localhost): {uri!r}")
    if parts.scheme and "." in parts.scheme and parts.scheme not in ("javascript", "data", "file"):
        return uri
    raise ValueError(f"redirect URI must be https, http on a loopback address, or a private-use scheme "
                     f"like com.example.app:/callback: {uri!r}")
