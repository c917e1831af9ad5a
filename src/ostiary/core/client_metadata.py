"""Client ID metadata documents (draft-ietf-oauth-client-id-metadata-document, as profiled by the MCP
authorization spec of 2025-11-25): a ``client_id`` that is an https URL names the client's metadata, served at
that URL. The server fetches it (through a :class:`ClientMetadataResolver` the web layer implements with the
bounded fetcher: core does no HTTP) and turns it into a :class:`~.clients.Client` that is never stored.

Rules (here, on what was fetched; the fetch rules are the resolver's):

- only while ``registration.client_metadata_documents`` is on (:class:`MetadataDocumentRules` in the policy);
- the URL: https with a path, no fragment, user-info or dot segments, at most 256 characters (http only on
  loopback while the issuer is loopback: the fetcher's rule); its host not on the deny list and, when there is
  an allow list, on it (a domain covers its subdomains);
- the document: a JSON object whose ``client_id`` equals the URL exactly; ``redirect_uris`` non-empty, each
  passing the rule for self-registered clients (https or loopback, no wildcard, no userinfo), matched exactly;
  public clients only (``token_endpoint_auth_method`` absent or ``none``; no ``client_secret``, no ``jwks``),
  because a document anyone can read cannot hold a secret, and ``private_key_jwt`` with a ``jwks_uri`` is not
  offered yet; ``grant_types`` within ``authorization_code`` and ``refresh_token``; ``scope`` within the
  configured set.

Such a client is unvetted (``Client.dynamic``): the user consents every time, and the consent page names the
URL's origin and says nobody verified it. Every refusal is an audit event ``client_metadata.refused`` with its
reason; every document actually fetched and accepted is ``client_metadata.fetched`` (a cached one is not
fetched again, so not recorded again).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from .audit import AuditEvent, AuditSink
from .clients import Client
from .policy import MetadataDocumentRules
from .redirect_uri import validate_dynamic_redirect_uri

__all__ = [
    "ClientMetadataError",
    "ClientMetadataResolver",
    "FetchedMetadata",
    "client_from_document",
    "is_metadata_document_id",
    "metadata_document_url_problem",
    "resolve_metadata_client",
]

MAX_URL = 256  # the width of every client_id column
_GRANTS = frozenset({"authorization_code", "refresh_token"})


class ClientMetadataError(ValueError):
    """The document could not be fetched or used. ``str()`` is safe to log (a reason, never the body)."""


@dataclass(frozen=True, slots=True)
class FetchedMetadata:
    document: Mapping[str, Any]
    #: fetched by this call (False: from the resolver's cache)
    fetched: bool


class ClientMetadataResolver(Protocol):
    async def resolve(self, url: str) -> FetchedMetadata:
        """The JSON object at ``url``, cached per its HTTP caching headers within bounds. Raises
        :class:`ClientMetadataError` for every failure (refused address, redirect, size, type, timeout...)."""
        ...


def is_metadata_document_id(client_id: str) -> bool:
    """Whether ``client_id`` is meant as a metadata document URL (then it is resolved, never looked up)."""
    return client_id.startswith(("https://", "http://"))


def _domain_listed(host: str, domains: tuple[str, ...]) -> bool:
    host = host.lower().rstrip(".")
    return any(host == d or host.endswith("." + d) for d in domains)


def metadata_document_url_problem(url: str, rules: MetadataDocumentRules) -> str | None:
    """Why ``url`` may not name a client (None: it may be fetched, under the fetcher's own rules)."""
    if len(url) > MAX_URL:
        return f"the URL is longer than {MAX_URL} characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return "not a valid URL"
    if not parts.hostname:
        return "the URL has no host"
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return "the URL must not contain user-info"
    if parts.fragment or "#" in url:
        return "the URL must not contain a fragment"
    if parts.path in ("", "/"):
        return "the URL must have a path"
    if any(seg in (".", "..") for seg in parts.path.split("/")):
        return "the URL must not contain dot segments"
    if _domain_listed(parts.hostname, rules.deny_domains):
        return "the domain is deny-listed"
    if rules.allow_domains and not _domain_listed(parts.hostname, rules.allow_domains):
        return "the domain is not on the allow list"
    return None


def _string_list(doc: Mapping[str, Any], name: str) -> list[str] | None:
    value = doc.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ClientMetadataError(f"{name} must be an array of strings")
    return value


def client_from_document(url: str, doc: Mapping[str, Any], rules: MetadataDocumentRules) -> Client:
    """The client the document describes, under the rules of the module docstring."""
    if doc.get("client_id") != url:
        raise ClientMetadataError("the document's client_id is not its URL")
    method = doc.get("token_endpoint_auth_method", "none")
    if method != "none":
        raise ClientMetadataError("only public clients (token_endpoint_auth_method none) may use a metadata "
                                  "document here")
    for secret_field in ("client_secret", "client_secret_expires_at", "jwks", "jwks_uri"):
        if secret_field in doc:
            raise ClientMetadataError(f"{secret_field} is not allowed in a metadata document")
    redirect_uris = _string_list(doc, "redirect_uris")
    if not redirect_uris:
        raise ClientMetadataError("redirect_uris is required")
    if len(redirect_uris) > 20:
        raise ClientMetadataError("at most 20 redirect_uris")
    try:
        for uri in redirect_uris:
            validate_dynamic_redirect_uri(uri)
    except ValueError as exc:
        raise ClientMetadataError(str(exc)[:300]) from None
    grants = frozenset(_string_list(doc, "grant_types") or ["authorization_code"])
    if not grants <= _GRANTS or "authorization_code" not in grants:
        raise ClientMetadataError("grant_types must be authorization_code, optionally with refresh_token")
    scope = doc.get("scope")
    if scope is not None and not isinstance(scope, str):
        raise ClientMetadataError("scope must be a string")
    scopes = frozenset(scope.split()) if scope else rules.scopes
    if not scopes <= rules.scopes:
        raise ClientMetadataError("scope not allowed: " + " ".join(sorted(scopes - rules.scopes))[:200])
    name = doc.get("client_name")
    if name is not None and (not isinstance(name, str) or len(name) > 200):
        raise ClientMetadataError("client_name must be a string of at most 200 characters")
    texts = {k: doc.get(k) for k in ("logo_uri", "client_uri")}
    if any(v is not None and (not isinstance(v, str) or len(v) > 2000) for v in texts.values()):
        raise ClientMetadataError("logo_uri and client_uri must be URLs")
    dpop_bound = doc.get("dpop_bound_access_tokens", False)
    if not isinstance(dpop_bound, bool):
        raise ClientMetadataError("dpop_bound_access_tokens must be true or false (RFC 9449 §5.2)")
    return Client(client_id=url, name=name or (urlsplit(url).hostname or url), client_type="public",
                  token_endpoint_auth_method="none", grant_types=grants, scopes=scopes,
                  audiences=rules.audiences, redirect_uris=tuple(redirect_uris), dynamic=True,
                  metadata_document=True, logo_uri=texts["logo_uri"], client_uri=texts["client_uri"],
                  dpop_bound_access_tokens=dpop_bound)


async def resolve_metadata_client(client_id: str, rules: MetadataDocumentRules | None,
                                  resolver: ClientMetadataResolver | None, audit: AuditSink, now: float,
                                  ip: str | None = None) -> Client | None:
    """The client a metadata document URL names, or None (refused: recorded with the reason)."""
    if rules is None or resolver is None:
        return None  # the feature is off: an unknown client, like any other
    problem = metadata_document_url_problem(client_id, rules)
    fetched = False
    try:
        if problem is not None:
            raise ClientMetadataError(problem)
        result = await resolver.resolve(client_id)
        fetched = result.fetched
        client = client_from_document(client_id, result.document, rules)
    except ClientMetadataError as exc:
        audit.emit(AuditEvent(type="client_metadata.refused", outcome="failure", at=now,
                              client_id=client_id[:MAX_URL], ip=ip,
                              detail={"reason": str(exc)[:300], "fetched": fetched}))
        return None
    if fetched:
        audit.emit(AuditEvent(type="client_metadata.fetched", outcome="success", at=now, client_id=client_id,
                              ip=ip, detail={"redirect_uris": list(client.redirect_uris)}))
    return client
