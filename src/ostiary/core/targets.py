"""What a client may ask a token for: scopes (RFC 6749 §3.3) and audiences (RFC 8707 resource indicators).
Shared by the authorization, device authorization and token endpoints' grants."""

from __future__ import annotations

from urllib.parse import urlsplit

from .clients import Client
from .errors import InvalidScope, InvalidTarget
from .requests import scope_set

__all__ = ["resolve_audience", "resolve_scopes"]


def resolve_scopes(client: Client, requested: str | None) -> frozenset[str]:
    """RFC 6749 §3.3: the requested scopes must all be allowed; none requested → the client's allowed set."""
    scopes = scope_set(requested)
    if not scopes:
        return client.scopes
    extra = scopes - client.scopes
    if extra:
        raise InvalidScope("scope not allowed for this client: " + " ".join(sorted(extra))[:200])
    return scopes


def resolve_audience(client: Client, resources: list[str]) -> tuple[str, ...]:
    """RFC 8707 §2: ``resource`` (absolute URI, no fragment) names the audience; else the client's default."""
    if not resources:
        if client.default_audience is None:
            raise InvalidTarget("this client has no audience; register one (ostiary client update --audience)")
        return (client.default_audience,)
    for res in resources:
        parts = urlsplit(res)
        if not parts.scheme or parts.fragment:
            raise InvalidTarget("resource must be an absolute URI without a fragment")
        if res not in client.audiences:
            raise InvalidTarget("resource not allowed for this client")
    return tuple(dict.fromkeys(resources))
