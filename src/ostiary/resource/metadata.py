"""OAuth 2.0 Protected Resource Metadata (RFC 9728): how a client learns, from the API alone, which
authorization server issues tokens for it and which scopes it knows.

An API publishes a JSON document at ``/.well-known/oauth-protected-resource`` (or, when its resource
identifier has a path, at that path appended to the well-known one: ``https://api.example.com/mcp`` →
``https://api.example.com/.well-known/oauth-protected-resource/mcp``, RFC 9728 §3.1) and points at it from
every ``WWW-Authenticate`` challenge (``resource_metadata="…"``, §5.1). MCP clients, among others, start
there: a 401 leads them to this document, which leads them to the authorization server's metadata
(RFC 8414 / OpenID Connect discovery).

:class:`ProtectedResourceMetadata` is framework-free; the Starlette middleware, the FastAPI ``install`` and the
Flask helpers serve it and add the pointer to their challenges.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

__all__ = ["WELL_KNOWN_PATH", "ProtectedResourceMetadata"]

#: RFC 9728 §3: the well-known URI suffix registered for protected resource metadata.
WELL_KNOWN_PATH: Final = "/.well-known/oauth-protected-resource"


def _absolute_https_or_loopback(value: str, what: str, *, query: bool = False) -> None:
    parts = urlsplit(value)
    loopback = parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")
    if not (parts.scheme == "https" or loopback) or not parts.netloc:
        raise ValueError(f"{what} must be an absolute https URL (http only on loopback): {value!r}")
    if parts.fragment or (parts.query and not query):
        raise ValueError(f"{what} must have no {'fragment' if parts.fragment else 'query'}: {value!r}")


@dataclass(frozen=True, slots=True)
class ProtectedResourceMetadata:
    """The RFC 9728 §2 document of one protected resource.

    ``resource`` is the API's resource identifier: the ``aud`` its tokens carry and the ``resource`` a client
    asks for (RFC 8707). ``authorization_servers`` are issuer identifiers (RFC 8414). ``bearer_methods_supported``
    is ``["header"]``: the toolkit refuses tokens sent any other way (RFC 6750 §2.1).
    ``dpop_signing_alg_values_supported`` and ``dpop_bound_access_tokens_required`` (RFC 9728 §2, RFC 9449):
    the proof algorithms the API accepts and whether it refuses tokens that are not DPoP-bound; pass
    ``DpopPolicy.algorithms`` and ``DpopPolicy.required`` (:meth:`with_dpop` does).
    ``tls_client_certificate_bound_access_tokens`` (RFC 9728 §2, RFC 8705 §3): the API accepts certificate-bound
    tokens. The toolkit's verifier always checks the binding (a token with ``cnf.x5t#S256`` needs the request's
    client certificate); set this when client certificates reach the API (its TLS server asks for them, or a
    trusted proxy forwards them: ``ClientCertificates(header=..., trusted_proxies=...)``).
    """

    resource: str
    authorization_servers: Sequence[str]
    scopes_supported: Sequence[str] = ()
    resource_name: str | None = None
    resource_documentation: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    dpop_signing_alg_values_supported: Sequence[str] = ()
    dpop_bound_access_tokens_required: bool = False
    tls_client_certificate_bound_access_tokens: bool = False

    def with_dpop(self, policy: Any) -> ProtectedResourceMetadata:
        """A copy advertising ``policy`` (a :class:`~ostiary.resource.dpop.DpopPolicy`): its algorithms, and
        whether DPoP-bound tokens are required."""
        from dataclasses import replace

        return replace(self, dpop_signing_alg_values_supported=tuple(policy.algorithms),
                       dpop_bound_access_tokens_required=bool(policy.required))

    def __post_init__(self) -> None:
        _absolute_https_or_loopback(self.resource, "resource", query=True)  # §2: a query is discouraged, allowed
        if not self.authorization_servers:
            raise ValueError("authorization_servers needs at least one issuer")
        for issuer in self.authorization_servers:
            _absolute_https_or_loopback(issuer, "each authorization server")
        object.__setattr__(self, "authorization_servers", tuple(self.authorization_servers))
        object.__setattr__(self, "scopes_supported", tuple(self.scopes_supported))
        object.__setattr__(self, "dpop_signing_alg_values_supported", tuple(self.dpop_signing_alg_values_supported))
        if self.dpop_bound_access_tokens_required and not self.dpop_signing_alg_values_supported:
            raise ValueError("dpop_bound_access_tokens_required needs dpop_signing_alg_values_supported")
        reserved = {"resource", "authorization_servers", "scopes_supported", "bearer_methods_supported",
                    "resource_name", "resource_documentation", "dpop_signing_alg_values_supported",
                    "dpop_bound_access_tokens_required", "tls_client_certificate_bound_access_tokens"
                    } & set(self.extra)
        if reserved:
            raise ValueError(f"set {sorted(reserved)} with their own arguments, not in extra")

    @property
    def path(self) -> str:
        """Where the document is served on the resource's host (RFC 9728 §3.1): the well-known path, followed
        by the resource identifier's path when it has one other than ``/``."""
        resource_path = urlsplit(self.resource).path.rstrip("/")
        return WELL_KNOWN_PATH + resource_path

    @property
    def paths(self) -> tuple[str, ...]:
        """The paths this document answers on: :attr:`path`, and the bare well-known path too (clients that
        do not build the path-suffixed form look there)."""
        return (self.path,) if self.path == WELL_KNOWN_PATH else (self.path, WELL_KNOWN_PATH)

    @property
    def url(self) -> str:
        """The absolute URL of the document, as sent in ``resource_metadata="…"`` challenges."""
        parts = urlsplit(self.resource)
        return urlunsplit((parts.scheme, parts.netloc, self.path, "", ""))

    def document(self) -> dict[str, Any]:
        """The JSON object (RFC 9728 §2); absent optional members are left out."""
        doc: dict[str, Any] = {"resource": self.resource,
                               "authorization_servers": list(self.authorization_servers),
                               "bearer_methods_supported": ["header"]}
        if self.scopes_supported:
            doc["scopes_supported"] = list(self.scopes_supported)
        if self.resource_name is not None:
            doc["resource_name"] = self.resource_name
        if self.resource_documentation is not None:
            doc["resource_documentation"] = self.resource_documentation
        if self.dpop_signing_alg_values_supported:
            doc["dpop_signing_alg_values_supported"] = list(self.dpop_signing_alg_values_supported)
        if self.dpop_bound_access_tokens_required:
            doc["dpop_bound_access_tokens_required"] = True
        if self.tls_client_certificate_bound_access_tokens:
            doc["tls_client_certificate_bound_access_tokens"] = True
        doc.update(self.extra)
        return doc

    def response(self) -> tuple[int, list[tuple[str, str]], bytes]:
        """Status, headers and body of the document's HTTP response. Public data: any origin may read it
        (browser-based clients discover from other origins), and caches may keep it for an hour."""
        body = json.dumps(self.document()).encode()
        return 200, [("content-type", "application/json"), ("cache-control", "public, max-age=3600"),
                     ("access-control-allow-origin", "*")], body
