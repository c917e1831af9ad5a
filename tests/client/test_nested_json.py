"""The client toolkit reading an issuer's answers nested deeper than Python's recursion limit: its own errors
(``DiscoveryError``, no nonce challenge), never a ``RecursionError`` escaping from ``json.loads``."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
from tests.audit.targets import serve

from ostiary.client import DiscoveryError, discover
from ostiary.client.dpop import nonce_challenge

DEEP = b"[" * 3000 + b"]" * 3000


def test_metadata_nested_too_deeply_is_a_discovery_error() -> None:
    app = Starlette(routes=[Route("/.well-known/{rest:path}", lambda _: Response(DEEP, media_type="application/json"))])
    with serve(app) as base, pytest.raises(DiscoveryError):
        discover(base)  # http://127.0.0.1 is allowed for loopback issuers


def test_a_deep_error_body_is_not_a_nonce_challenge() -> None:
    response = httpx.Response(400, content=DEEP, headers={"DPoP-Nonce": "n", "Content-Type": "application/json"})
    assert nonce_challenge(response) is False
