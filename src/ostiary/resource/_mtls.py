"""Certificate-bound access tokens at the API (RFC 8705 §3): where the client certificate comes from, and the
check that a bound token is presented over a connection with *its* certificate.

A token with ``cnf.x5t#S256`` is accepted only when the request's client certificate has that SHA-256
thumbprint; without a certificate, or with another one, it is refused like any bad token (401
``invalid_token``): a stolen bound token is useless without the private key of its certificate. Tokens without
``cnf`` are not affected.

The certificate comes from the TLS connection (the ASGI TLS extension, ``scope["extensions"]["tls"]``, which
Hypercorn and Ostiary's own server fill; or the WSGI ``SSL_CLIENT_CERT`` variable of Apache/mod_wsgi) or, behind a
TLS-terminating proxy, from a header (URL-encoded PEM, as nginx's ``$ssl_client_escaped_cert``) that is believed
only when the TCP peer is one of ``trusted_proxies``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from ..core.mtls import bound_certificate_presented
from .errors import InvalidToken
from .token import AccessToken

__all__ = ["ClientCertificates", "check_certificate_binding"]


def check_certificate_binding(token: AccessToken, client_cert: bytes | str | None) -> None:
    """Raise :class:`InvalidToken` when ``token`` is certificate-bound (``cnf.x5t#S256``) and ``client_cert``
    (DER or PEM) is missing or another certificate. RFC 8705 §3."""
    if isinstance(client_cert, str):
        client_cert = client_cert.encode("ascii", "replace")
    if not bound_certificate_presented(token.claims, client_cert):
        raise InvalidToken("certificate-bound token without its client certificate" if client_cert is None
                           else "certificate-bound token presented with another or an unreadable certificate")


def _pem_from_header(value: str) -> str | None:
    pem = unquote(value).strip().strip('"')
    return pem if pem.startswith("-----BEGIN CERTIFICATE-----") else None


@dataclass(frozen=True, slots=True)
class ClientCertificates:
    """Where this API finds the client certificate of a request.

    ``header``: the header a TLS-terminating proxy puts the certificate in (e.g. ``X-Client-Cert``), read only
    when the TCP peer is in ``trusted_proxies`` (addresses or CIDRs); from such a proxy the header is the only
    source. Without ``header``, the certificate of the TLS connection itself.
    """

    header: str | None = None
    trusted_proxies: Sequence[str] = ()
    _networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        nets = tuple(ipaddress.ip_network(p, strict=False) for p in self.trusted_proxies)
        object.__setattr__(self, "_networks", nets)

    def _trusted(self, peer: str | None) -> bool:
        if peer is None or not self._networks:
            return False
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in net for net in self._networks)

    def from_scope(self, scope: Mapping[str, Any]) -> str | None:
        """The PEM certificate of an ASGI request, or None."""
        client = scope.get("client")
        if self.header is not None and self._trusted(client[0] if client else None):
            name = self.header.lower().encode("latin-1")
            values = [v for k, v in scope.get("headers", ()) if k == name]
            return _pem_from_header(bytes(values[0]).decode("latin-1")) if len(values) == 1 else None
        tls = (scope.get("extensions") or {}).get("tls")
        chain = tls.get("client_cert_chain") if isinstance(tls, Mapping) else None
        return str(chain[0]) if chain else None

    def from_environ(self, environ: Mapping[str, Any]) -> str | None:
        """The PEM certificate of a WSGI request (``SSL_CLIENT_CERT``, or the proxy header), or None."""
        if self.header is not None and self._trusted(environ.get("REMOTE_ADDR")):
            value = environ.get("HTTP_" + self.header.upper().replace("-", "_"))
            return _pem_from_header(value) if isinstance(value, str) else None
        cert = environ.get("SSL_CLIENT_CERT")
        return cert if isinstance(cert, str) and cert else None
