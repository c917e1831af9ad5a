"""What a client may ask a token for: scopes (RFC 6749 §3.3) and audiences (RFC 8707 resource indicators).
Shared by the authorization, device authorization and token endpoints' grants.

A ``resource`` may be one of the client's registered audiences or a resource of the registry
(:mod:`.resources`, ``ostiary resource add``); anything else is ``invalid_target``. A registered resource with
scopes limits the scopes of a token for it (:meth:`.resources.Resource.limits`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from .clients import Client
from .errors import InvalidScope, InvalidTarget
from .requests import scope_set
from .resources import IDENTITY_SCOPES, Resource, ResourceRepository

__all__ = ["NO_RESOURCES", "limit_scopes", "narrow_audience", "registered_resources", "resolve_audience",
           "resolve_scopes"]

NO_RESOURCES: Mapping[str, Resource] = {}
_MAX_RESOURCES = 10


def resolve_scopes(client: Client, requested: str | None) -> frozenset[str]:
    """RFC 6749 §3.3: the requested scopes must all be allowed; none requested → the client's allowed set."""
    scopes = scope_set(requested)
    if not scopes:
        return client.scopes
    extra = scopes - client.scopes
    if extra:
        raise InvalidScope("scope not allowed for this client: " + " ".join(sorted(extra))[:200])
    return scopes


def _check_uri(res: str) -> None:
    parts = urlsplit(res)
    if not parts.scheme or parts.fragment or "#" in res:
        raise InvalidTarget("resource must be an absolute URI without a fragment")


async def registered_resources(repo: ResourceRepository, uris: Iterable[str]) -> Mapping[str, Resource]:
    """The registered resources among ``uris`` (looked up once, before the checks that need them)."""
    wanted = list(dict.fromkeys(uris))
    if len(wanted) > _MAX_RESOURCES:
        raise InvalidTarget(f"at most {_MAX_RESOURCES} resource parameters")
    found: dict[str, Resource] = {}
    for uri in wanted:
        resource = await repo.get_resource(uri)
        if resource is not None:
            found[uri] = resource
    return found


def resolve_audience(client: Client, resources: list[str],
                     registered: Mapping[str, Resource] = NO_RESOURCES) -> tuple[str, ...]:
    """RFC 8707 §2: ``resource`` (absolute URI, no fragment) names the audience: one of the client's audiences
    or a registered resource (``registered``: those of ``resources`` the registry holds); none → the client's
    default audience."""
    if not resources:
        if client.default_audience is None:
            raise InvalidTarget("this client has no audience; register one (ostiary client update --audience)")
        return (client.default_audience,)
    for res in resources:
        _check_uri(res)
        if res not in client.audiences and res not in registered:
            raise InvalidTarget("resource not allowed for this client")
    return tuple(dict.fromkeys(resources))


def limit_scopes(scopes: frozenset[str], audience: Iterable[str], registered: Mapping[str, Resource], *,
                 requested: bool) -> frozenset[str]:
    """The scopes a token for ``audience`` may carry: when every audience is a resource registered with scopes,
    only the scopes of one of them (and the identity scopes); an audience that limits nothing (not in the
    registry, or registered without scopes) lifts the limit. Scopes the client asked for (``requested``)
    beyond that are ``invalid_scope``; a default set is narrowed instead."""
    allowed = set(IDENTITY_SCOPES)
    for aud in audience:
        resource = registered.get(aud)
        if resource is None or not resource.scopes:
            return scopes
        allowed |= resource.scopes
    beyond = scopes - allowed
    if beyond and requested:
        raise InvalidScope("scope not allowed for the requested resource: " + " ".join(sorted(beyond))[:200])
    if scopes and not scopes - beyond:
        raise InvalidScope("none of the scopes is allowed for the requested resource")
    return scopes - beyond


def narrow_audience(resources: list[str], granted: Iterable[str]) -> tuple[str, ...] | None:
    """RFC 8707 §2.2 at the token endpoint: ``resource`` picks the access token's audience among those the
    grant holds (narrowing); one it does not hold is ``invalid_target`` (never widening). None: not sent."""
    if not resources:
        return None
    allowed = set(granted)
    for res in resources:
        _check_uri(res)
        if res not in allowed:
            raise InvalidTarget("resource is not part of this grant: a token request may narrow the audience, "
                                "never widen it")
    return tuple(dict.fromkeys(resources))
