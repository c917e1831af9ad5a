"""The resource registry (RFC 8707) for the in-memory store."""

from __future__ import annotations

from ..core.resources import Resource

__all__ = ["MemoryResourcesMixin"]


class MemoryResourcesMixin:
    """Mixed into :class:`~ostiary.store.memory.MemoryStore`; implements ``ResourceRepository``."""

    @property
    def _resources(self) -> dict[str, Resource]:
        found: dict[str, Resource] | None = self.__dict__.get("_resource_map")
        if found is None:
            found = self.__dict__["_resource_map"] = {}
        return found

    async def add_resource(self, resource: Resource) -> None:
        if resource.uri in self._resources:
            raise ValueError(f"resource {resource.uri!r} exists")
        self._resources[resource.uri] = resource

    async def get_resource(self, uri: str) -> Resource | None:
        return self._resources.get(uri)

    async def list_resources(self) -> list[Resource]:
        return sorted(self._resources.values(), key=lambda r: r.uri)

    async def remove_resource(self, uri: str) -> bool:
        return self._resources.pop(uri, None) is not None
