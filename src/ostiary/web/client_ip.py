"""The client's address: the one place that decides it, from the connection and ``server.trusted_proxies``.

Uvicorn is started with ``proxy_headers=False``, so ``scope["client"]`` is the TCP peer. Only when that peer
is a trusted proxy does Ostiary read the forwarding header (``server.proxy_header``: ``X-Forwarded-For`` or
RFC 7239 ``Forwarded``), right to left, skipping trusted hops: the first untrusted hop is the client. A header
with a hop that is not an IP address (``unknown``, an obfuscated name, garbage) is ignored as a whole, and the
peer is the client. ``web.request_context`` puts the result in ``scope["client"]``, so everything that reads
``request.client`` (rate limits, audit events, logs) sees this one answer.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

__all__ = ["ClientAddress", "forwarded_for_hops", "parse_hop"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_hop(value: str) -> IPAddress | None:
    """An address from a forwarding header: ``192.0.2.1``, ``192.0.2.1:4711``, ``2001:db8::1``,
    ``[2001:db8::1]:4711`` (RFC 7239 §6 node syntax, quotes removed). Anything else is None."""
    v = value.strip().strip('"').strip()
    if not v or len(v) > 100:
        return None
    if v.startswith("["):
        end = v.find("]")
        if end < 0 or (v[end + 1:] and not (v[end + 1] == ":" and v[end + 2:].isdigit())):
            return None
        v = v[1:end]
    elif v.count(":") == 1:  # IPv4 with a port
        host, _, port = v.partition(":")
        if not port.isdigit():
            return None
        v = host
    try:
        return ipaddress.ip_address(v)
    except ValueError:
        return None


def forwarded_for_hops(values: Iterable[str]) -> list[str] | None:
    """The ``for=`` nodes of RFC 7239 ``Forwarded`` header values, in order; None if an element has none."""
    hops: list[str] = []
    for value in values:
        for element in value.split(","):
            found = None
            for pair in element.split(";"):
                name, sep, node = pair.partition("=")
                if sep and name.strip().lower() == "for":
                    found = node
            if found is None:
                return None
            hops.append(found)
    return hops


class ClientAddress:
    """Resolves the client address of a request from its peer and headers (see the module docstring)."""

    def __init__(self, trusted_proxies: Sequence[str] = (), header: str = "x-forwarded-for") -> None:
        self._networks = tuple(ipaddress.ip_network(p, strict=False) for p in trusted_proxies)
        self._header = header.lower().encode("latin-1")

    @property
    def enabled(self) -> bool:
        return bool(self._networks)

    def trusted(self, address: IPAddress) -> bool:
        return any(address in net for net in self._networks)

    def trusted_peer(self, peer: str) -> bool:
        address = parse_hop(peer)
        return address is not None and self.trusted(address)

    def resolve(self, peer: str | None, headers: Iterable[tuple[bytes, bytes]]) -> str | None:
        if peer is None or not self._networks:
            return peer
        peer_ip = parse_hop(peer)
        if peer_ip is None or not self.trusted(peer_ip):
            return peer
        values = [v.decode("latin-1") for k, v in headers if k == self._header]
        if not values:
            return peer
        xff = self._header != b"forwarded"
        hops = [h for v in values for h in v.split(",")] if xff else forwarded_for_hops(values)
        if not hops:
            return peer
        client = peer_ip
        for hop in reversed(hops):
            address = parse_hop(hop)
            if address is None:
                return peer  # a header we cannot read is no header
            client = address
            if not self.trusted(address):
                break
        return str(client)
