"""The sign-in part of ``ostiary demo``: a demo user and a demo web client for Authorization Code + PKCE."""

from __future__ import annotations

import contextlib
from typing import Any

from .._clock import SystemClock
from .._secrets import new_token
from ..admin.service import AdminError, AdminService, ClientCreate
from ..admin.users import UserAdmin, UserCreate
from ..config import Settings
from ..store.sql import SqlStore
from ._common import console

__all__ = ["DEMO_REDIRECT", "print_demo_users", "setup_demo_users"]

DEMO_REDIRECT = "http://127.0.0.1:8765/callback"


async def setup_demo_users(s: Settings) -> dict[str, Any]:
    """User ``demo`` with a fresh random password (printed once), and public client ``demo-web``."""
    store = SqlStore.from_url(s.database_url)
    kek, hash_key, _ = s.master_keys()
    clock = SystemClock()
    password = new_token(16)
    try:
        users = UserAdmin(store, clock)
        try:
            await users.create_user(UserCreate(username="demo", name="Demo User", email="demo@example.com",
                                               email_verified=True), password)
        except AdminError:
            await users.set_password("demo", password)
        svc = AdminService(store, s.policy(), clock, hash_key, kek)
        with contextlib.suppress(AdminError):
            await svc.create_client(ClientCreate(
                name="Demo web app", client_id="demo-web", client_type="public",
                grant_types=["authorization_code", "refresh_token"],
                scopes=["openid", "profile", "email", "offline_access"], redirect_uris=[DEMO_REDIRECT],
                post_logout_redirect_uris=[DEMO_REDIRECT], allowed_origins=["http://127.0.0.1:8765"],
                # the README walks through this client with curl, which makes no DPoP proofs
                dpop_bound_access_tokens=False))
        with contextlib.suppress(AdminError):
            await svc.create_client(ClientCreate(
                name="Demo CLI", client_id="demo-cli", client_type="public",
                grant_types=["urn:ietf:params:oauth:grant-type:device_code", "refresh_token"],
                scopes=["openid", "profile", "email", "offline_access"]))
    finally:
        await store.close()
    return {"username": "demo", "password": password, "client_id": "demo-web", "redirect_uri": DEMO_REDIRECT}


def print_demo_users(issuer: str, info: dict[str, Any]) -> None:
    console.print(f"\nUser:       {info['username']} / {info['password']}  (new on every `make demo`)")
    console.print(f"Account:    {issuer}/account")
    console.print(f"Web client: {info['client_id']} (public), redirect {info['redirect_uri']}: README section "
                  "\"Sign users in (Authorization Code + PKCE)\" walks through it")
    console.print("\nLog in from a CLI (Device Code), in another terminal; approve in the browser as the demo user:\n")
    console.print(f"  .venv/bin/ostiary login --issuer {issuer} --client-id demo-cli", soft_wrap=True)
    console.print("  .venv/bin/ostiary whoami")
