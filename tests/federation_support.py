"""Shared by the federation tests: the example's stand-in CI issuer, and helpers around a live server."""

from __future__ import annotations

import asyncio
import importlib.util
import secrets
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx

from ostiary.core.audit import AuditEvent
from ostiary.core.federation import TOKEN_EXCHANGE_GRANT, TOKEN_TYPE_JWT
from ostiary.store.sql import SqlStore

from .support import ROOT, LiveServer

DEPLOY = "https://deploy.example.com"


def load_example(name: str) -> ModuleType:
    """A module of examples/ci_federation/ (not a package), imported once."""
    mod_name = f"_ci_federation_{name}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, ROOT / "examples" / "ci_federation" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    spec.loader.exec_module(module)
    return module


ci_issuer = load_example("ci_issuer")
CIIssuer = ci_issuer.CIIssuer
KeyFile = ci_issuer.KeyFile


def start_ci(tmp: Path) -> Any:
    return CIIssuer(KeyFile(tmp / "ci-keys.json")).start()


def trust_spec(ci: Any, server: LiveServer, **kw: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "acme/api deploys", "policy_id": "tp-" + secrets.token_hex(4), "issuer": ci.issuer,
        "audience": server.issuer,
        "conditions": [{"claim": "repository", "op": "eq", "value": "acme/api"},
                       {"claim": "ref", "op": "glob", "value": "refs/heads/main"}],
        "subject_template": "ci:{repository}@{environment}", "scopes": ["deploy", "read"], "audiences": [DEPLOY],
    }
    spec.update(kw)
    return spec


def add_policy(server: LiveServer, spec: dict[str, Any]) -> dict[str, Any]:
    with server.admin() as admin:
        r = admin.post("/federation/trust", json=spec)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def exchange(server: LiveServer, token: str, auth: tuple[str, str] | None = None, **form: str) -> httpx.Response:
    data = {"grant_type": TOKEN_EXCHANGE_GRANT, "subject_token": token, "subject_token_type": TOKEN_TYPE_JWT, **form}
    return httpx.post(server.base_url + "/token", data=data, auth=auth, timeout=30)


def explain(server: LiveServer, token: str, **kw: Any) -> dict[str, Any]:
    with server.admin() as admin:
        r = admin.post("/federation/explain", json={"token": token, **kw})
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def audit_events(server: LiveServer, predicate: Any, timeout: float = 15) -> list[AuditEvent]:
    """Federation audit events from the server's database, waiting for the batching sink to write them."""

    async def read() -> list[AuditEvent]:
        store = SqlStore.from_url(server.env["OSTIARY_DATABASE_URL"])
        try:
            return await store.list_events(1000, "federation.")
        finally:
            await store.close()

    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in asyncio.run(read()) if predicate(e)]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)
