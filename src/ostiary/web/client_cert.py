"""The client's TLS certificate (RFC 8705): one place decides it, from the connection or a trusted proxy.

- Ostiary's own TLS listener (``server.tls_client_ca_file``): the certificate the handshake verified, in the
  ASGI TLS extension (``scope["extensions"]["tls"]["client_cert_chain"]``, filled by ``web.protocol``).
- Behind a TLS-terminating proxy (``mtls.proxy_cert_header``, e.g. ``X-Client-Cert``: the URL-encoded PEM, as
  nginx's ``$ssl_client_escaped_cert`` or Envoy's ``x-forwarded-client-cert`` ``Cert=`` value): believed only
  when the TCP peer is in ``server.trusted_proxies`` (the same setting as the client address, ``web.client_ip``).
  From a trusted proxy the header *replaces* the connection's certificate (the proxy's own is not the client's);
  from anyone else it is removed from the request, so nothing downstream can read it.

``web.request_context`` applies this once per request; routes read ``presented_certificate(scope)``.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any
from urllib.parse import unquote

from ..core.mtls import MAX_CERTIFICATE_BYTES, certificate_der

__all__ = ["apply_forwarded_certificate", "presented_certificate"]


def apply_forwarded_certificate(scope: MutableMapping[str, Any], header: bytes, *, trusted_peer: bool) -> None:
    """Strip ``header`` from the request; from a trusted proxy, make its value the client certificate."""
    headers = scope["headers"]
    values = [v for k, v in headers if k == header]
    if not values and not trusted_peer:
        return
    scope["headers"] = [(k, v) for k, v in headers if k != header]
    if not trusted_peer:
        return
    chain: list[str] = []
    if len(values) == 1 and 0 < len(values[0]) <= 3 * MAX_CERTIFICATE_BYTES:
        pem = unquote(bytes(values[0]).decode("latin-1")).strip().strip('"')
        if pem.startswith("-----BEGIN CERTIFICATE-----"):
            chain = [pem]
    extensions = dict(scope.get("extensions") or {})
    extensions["tls"] = {**(extensions.get("tls") or {}), "client_cert_chain": chain}
    scope["extensions"] = extensions


def presented_certificate(scope: MutableMapping[str, Any]) -> bytes | None:
    """The client certificate of the request as DER, or None (none, or one that cannot be read)."""
    tls = (scope.get("extensions") or {}).get("tls")
    chain = tls.get("client_cert_chain") if isinstance(tls, dict) else None
    if not chain:
        return None
    try:
        return certificate_der(chain[0])
    except (ValueError, TypeError):
        return None
