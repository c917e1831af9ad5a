"""The resource registry (RFC 8707): the APIs an authorization may name with ``resource``, registered by the
administrator (``ostiary resource add https://mcp.example.com --scope tools.read``), and the scopes a token for
each may carry.

Which resources a client may target (:func:`ostiary.core.targets.allowed_audience`): its own registered
audiences (``ostiary client create --audience``; for clients that register themselves or are described by a
metadata document, ``registration.audiences``), and every registered resource. Anything else is
``invalid_target``.

Scopes: a resource registered with scopes limits the scopes of a token for it to those, plus the OpenID Connect
scopes (``openid``, ``profile``, ``email``, ``address``, ``phone``, ``offline_access``), which are about the user
and the sign-in rather than the API. Asking for another scope together with that resource is ``invalid_scope``;
with several resources, a scope of any of them is allowed, and a token later narrowed to one of them
(``resource`` at /token) carries only that one's. A resource registered without scopes (or an audience of the
client's own registration) limits nothing beyond what the client may have.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["IDENTITY_SCOPES", "Resource", "ResourceRepository"]

#: scopes about the user and the sign-in, never limited by a resource's scopes
IDENTITY_SCOPES: frozenset[str] = frozenset({"openid", "profile", "email", "address", "phone", "offline_access"})


@dataclass(frozen=True, slots=True)
class Resource:
    """A registered resource server: its identifier (an absolute URI without a fragment, the ``aud`` of its
    tokens) and the scopes its tokens may carry (empty: no limit)."""

    uri: str
    scopes: frozenset[str] = frozenset()
    created_at: float = 0.0


class ResourceRepository(Protocol):
    async def add_resource(self, resource: Resource) -> None:
        """Raises ``ValueError`` when a resource with that URI exists."""
        ...

    async def get_resource(self, uri: str) -> Resource | None: ...
    async def list_resources(self) -> list[Resource]: ...
    async def remove_resource(self, uri: str) -> bool: ...
