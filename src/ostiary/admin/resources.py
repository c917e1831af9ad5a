"""The resource registry (RFC 8707): ``ostiary resource add/list/remove`` and ``/admin/api/resources``.

A registered resource may be named with ``resource`` by any client's authorization (see
:mod:`ostiary.core.resources` for the rules, including how its scopes limit a token's)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .._clock import Clock
from ..core.resources import Resource
from ..core.storage import Store
from .service import AdminError, NotFound, audience_uris, scope_tokens

__all__ = ["ResourceCreate", "ResourceService", "resource_view"]


class ResourceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    uri: str = Field(max_length=512, description="the resource's identifier, the aud of its tokens "
                                                 "(an absolute URI without a fragment, e.g. https://mcp.example.com)")
    scopes: list[str] = Field(default_factory=list, description="the scopes a token for it may carry (besides "
                                                                "openid, profile, email, address, phone, "
                                                                "offline_access); empty: no limit")

    @field_validator("uri")
    @classmethod
    def _uri(cls, v: str) -> str:
        return audience_uris([v])[0]

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, v: list[str]) -> list[str]:
        return scope_tokens(v)


def resource_view(r: Resource) -> dict[str, Any]:
    return {"uri": r.uri, "scopes": sorted(r.scopes), "created_at": int(r.created_at)}


@dataclass(frozen=True, slots=True)
class ResourceService:
    store: Store
    clock: Clock

    async def add(self, spec: ResourceCreate) -> Resource:
        resource = Resource(uri=spec.uri, scopes=frozenset(spec.scopes), created_at=self.clock.now())
        try:
            await self.store.add_resource(resource)
        except ValueError:
            raise AdminError(f"resource {spec.uri!r} is already registered; remove it first to change "
                             "its scopes") from None
        return resource

    async def list_resources(self) -> list[Resource]:
        return await self.store.list_resources()

    async def get(self, uri: str) -> Resource:
        found = await self.store.get_resource(uri)
        if found is None:
            raise NotFound(f"no resource {uri!r}; see `ostiary resource list`")
        return found

    async def remove(self, uri: str) -> None:
        if not await self.store.remove_resource(uri):
            raise NotFound(f"no resource {uri!r}; see `ostiary resource list`")
