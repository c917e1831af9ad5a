"""ResourceRepository (RFC 8707 resource registry): the same behaviour on memory, SQLite and PostgreSQL
(migration 0014_resources)."""

from __future__ import annotations

import secrets

import pytest

from ostiary.core.resources import Resource

NOW = 1_800_000_000.0


def _uri() -> str:
    return f"https://mcp-{secrets.token_hex(4)}.example.com/mcp"


async def test_add_get_list_remove(store) -> None:
    a = Resource(uri=_uri(), scopes=frozenset({"tools.read", "tools.call"}), created_at=NOW)
    b = Resource(uri=_uri(), created_at=NOW + 1)
    await store.add_resource(a)
    await store.add_resource(b)
    assert await store.get_resource(a.uri) == a
    assert await store.get_resource(b.uri) == b
    assert await store.get_resource(_uri()) is None
    listed = [r for r in await store.list_resources() if r.uri in (a.uri, b.uri)]
    assert listed == sorted([a, b], key=lambda r: r.uri)
    assert await store.remove_resource(a.uri) is True
    assert await store.remove_resource(a.uri) is False
    assert await store.get_resource(a.uri) is None
    assert await store.get_resource(b.uri) == b


async def test_a_uri_is_registered_once(store) -> None:
    r = Resource(uri=_uri(), scopes=frozenset({"a"}), created_at=NOW)
    await store.add_resource(r)
    with pytest.raises(ValueError):
        await store.add_resource(Resource(uri=r.uri, scopes=frozenset({"b"}), created_at=NOW))
    assert await store.get_resource(r.uri) == r  # the first registration is unchanged


async def test_a_uri_is_matched_exactly(store) -> None:
    r = Resource(uri=_uri(), created_at=NOW)
    await store.add_resource(r)
    for near in (r.uri + "/", r.uri.upper(), r.uri[:-1], "x" * 600):
        assert await store.get_resource(near) is None
