"""Redirect URI matching: exact string comparison (OAuth 2.1 §2.3.1, RFC 9700 §4.1.3), except that a native
app's loopback redirect URI may use any port (RFC 8252 §7.3). ``localhost`` gets no such exception
(RFC 8252 §8.3): only the literal addresses ``127.0.0.1`` and ``[::1]`` over http."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

__all__ = ["is_loopback_redirect", "match_redirect_uri", "validate_dynamic_redirect_uri", "validate_redirect_uri"]

#: ``http://`` in lower case (the comparison is of strings, RFC 9700 §4.1.3), a loopback IP literal, an optional
#: port of ASCII digits, then nothing or a path or query; no userinfo, no fragment (RFC 8252 §7.3).
_LOOPBACK = re.compile(r"http://(127\.0\.0\.1|\[::1\])(?::([0-9]{1,5}))?([/?][^#]*)?", re.ASCII | re.DOTALL)


def _loopback_parts(uri: str) -> tuple[str, str] | None:
    """(host, everything after the port) of an http loopback URI, or None: the parts that must stay equal when
    only the port may vary."""
    m = _LOOPBACK.fullmatch(uri)
    if m is None or (m.group(2) is not None and int(m.group(2)) > 65535):
        return None
    return m.group(1), m.group(3) or ""


def is_loopback_redirect(uri: str) -> bool:
    return _loopback_parts(uri) is not None


def match_redirect_uri(requested: str, registered: Iterable[str]) -> bool:
    """RFC 9700 §4.1.3, OAuth 2.1 §2.3.1: ``requested`` equals a registered URI character for character (no
    normalisation: not of case, dot segments, percent-encoding or a default port), or differs from a registered
    loopback URI only in the port (RFC 8252 §7.3)."""
    req_loop = _loopback_parts(requested)
    for uri in registered:
        if requested == uri:
            return True
        if req_loop is not None and _loopback_parts(uri) == req_loop:
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


def validate_dynamic_redirect_uri(uri: str) -> str:
    """The stricter rule for clients that register themselves (RFC 7591 §2, RFC 9700 §4.1.1): what
    :func:`validate_redirect_uri` allows, but only https or http on a loopback address (no private-use scheme,
    which any app on a device may claim), and never userinfo, a wildcard, whitespace or a control character."""
    if len(uri) > 2000:
        raise ValueError("redirect URI longer than 2000 characters")
    if any(ch <= " " or ch == "\x7f" for ch in uri):
        raise ValueError(f"redirect URI must not contain whitespace or control characters: {uri[:200]!r}")
    if "*" in uri:
        raise ValueError(f"redirect URI must not contain a wildcard: {uri[:200]!r}")
    validate_redirect_uri(uri)
    parts = urlsplit(uri)
    if parts.scheme not in ("https", "http"):
        raise ValueError(f"a registered client's redirect URI must be https or http on 127.0.0.1 or [::1]: "
                         f"{uri[:200]!r}")
    if "@" in parts.netloc:
        raise ValueError(f"redirect URI must not contain userinfo (user@host): {uri[:200]!r}")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError:
        raise ValueError(f"redirect URI has an invalid port: {uri[:200]!r}") from None
    return uri
