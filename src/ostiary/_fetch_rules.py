"""Which URLs and addresses the server may fetch documents from (client ``jwks_uri``, federation issuers' discovery
documents and JWKS, client metadata documents). Shared by registration (:mod:`ostiary.admin.service`, checked up
front with a clear message) and by the bounded fetcher (:mod:`ostiary.web.safe_fetch`, checked again at fetch
time, after name resolution, against every address the name resolves to).

Rules: ``https`` only; ``http`` only to a loopback host, and loopback hosts (either scheme) only while the
server's own issuer is loopback (development). No user-info in the URL. Never a private, link-local, shared
(CGNAT), multicast, reserved, unspecified or cloud-metadata address; never loopback outside development.
"""

from __future__ import annotations

import ipaddress
from typing import Final
from urllib.parse import urlsplit

__all__ = ["address_problem", "is_loopback_host", "is_loopback_url", "url_problem"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Instance-metadata and host-agent addresses of the big clouds (some are not in a private range: Azure's).
METADATA_ADDRESSES: Final[frozenset[IPAddress]] = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "169.254.169.253", "fd00:ec2::254", "100.100.100.200", "168.63.129.16",
))


def is_loopback_host(host: str) -> bool:
    """``localhost`` or a loopback address literal (127.0.0.0/8, ::1)."""
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_loopback_url(url: str) -> bool:
    """Whether the URL's host is loopback (:func:`is_loopback_host`): the one rule for "development" URLs, used
    by the server's settings, the client toolkit and the audit tool alike."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return False
    return bool(host) and is_loopback_host(host or "")


def address_problem(ip: IPAddress, *, allow_loopback: bool) -> str | None:
    """Why the server must not connect to ``ip`` (None: it may)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if ip.is_loopback:
        return None if allow_loopback else "a loopback address (allowed only while the issuer is loopback)"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_unspecified or ip.is_reserved:
        return "a reserved address"
    if ip.is_private or not ip.is_global:
        return "a private address"
    return None


def url_problem(url: str, *, allow_loopback: bool) -> str | None:
    """Why the server must not fetch ``url`` (None: it may, once the host's addresses pass
    :func:`address_problem`). ``allow_loopback`` is true only while the server's issuer is loopback."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return "not a valid URL"
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "not an https URL"
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return "user-info is not allowed in the URL"
    if parts.fragment:
        return "a fragment is not allowed"
    loopback = is_loopback_host(parts.hostname)
    if loopback and not allow_loopback:
        return "a loopback host (allowed only while the issuer is loopback)"
    if parts.scheme == "http" and not loopback:
        return "https is required (http only for loopback hosts while the issuer is loopback)"
    try:
        literal = ipaddress.ip_address(parts.hostname)
    except ValueError:
        return None  # a name: its addresses are checked when it is resolved
    return address_problem(literal, allow_loopback=allow_loopback)
