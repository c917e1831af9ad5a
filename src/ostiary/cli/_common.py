"""Shared CLI plumbing: settings, the store, output in text or ``--json``."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from ..config import Settings
    from ..store.sql import SqlStore

T = TypeVar("T")
console = Console(stderr=False, highlight=False)
err_console = Console(stderr=True, highlight=False)

_state: dict[str, Any] = {"config": None}


def set_config(path: str | None) -> None:
    _state["config"] = path


#: Top-level modules of the ``server`` extra: a command that needs one of them is a server command.
SERVER_MODULES = frozenset({"starlette", "uvicorn", "granian", "sqlalchemy", "alembic", "aiosqlite", "asyncpg",
                            "jinja2", "argon2", "pyotp", "prometheus_client", "redis", "pydantic",
                            "pydantic_core", "pydantic_settings", "orjson"})
SERVER_EXTRA_HINT = "this command is part of the server, which is not installed: pip install 'ostiary[server]'"


def settings() -> Settings:
    from ..config import ConfigError, load_settings

    try:
        return load_settings(_state["config"])
    except ConfigError as exc:
        fail(str(exc))


#: The command-line flag of each field of the admin models, so errors speak the user's language.
FIELD_FLAGS = {
    "name": "--name", "client_id": "--client-id", "token_endpoint_auth_method": "--auth-method",
    "grant_types": "--grant-type", "scopes": "--scope", "audiences": "--audience", "resource_audiences": "--serves",
    "redirect_uris": "--redirect-uri", "post_logout_redirect_uris": "--post-logout-redirect-uri",
    "allowed_origins": "--allowed-origin", "jwks": "--jwks", "jwks_uri": "--jwks-uri",
    "policy_id": "--id", "issuer": "--issuer", "audience": "--token-audience", "conditions": "--claim",
    "subject_template": "--subject", "max_lifetime": "--max-lifetime", "max_token_age": "--max-token-age",
    "allowed_clients": "--client", "username": "--username", "email": "--email",
}
_WHAT_TO_TYPE = {
    "--issuer": "the external issuer URL, e.g. --issuer https://token.actions.githubusercontent.com",
    "--token-audience": "the aud the external token carries, e.g. --token-audience https://id.example.com",
    "--claim": "at least one claim condition, e.g. --claim repository=acme/api",
    "--subject": "the sub template of issued tokens, e.g. --subject 'ci:{repository}'",
    "--name": "a display name, e.g. --name 'acme deploy'",
}


def validation_message(exc: Any) -> str:
    """A pydantic ``ValidationError`` in the words of the command line: the flag, the value, what to type."""
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        flag = FIELD_FLAGS.get(loc[0], loc[0]) if loc else ""
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "missing":
            hint = _WHAT_TO_TYPE.get(flag)
            parts.append(f"{flag} is required" + (f": {hint}" if hint else ""))
        elif err["type"] == "extra_forbidden":
            parts.append(f"{flag}: not a known option")
        elif not flag:
            parts.append(msg)
        elif len(loc) > 1 and isinstance(err.get("input"), str):
            parts.append(f"{flag} {err['input']!r}: {msg}")
        else:
            parts.append(f"{flag}: {msg}")
    return "; ".join(parts)


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)


def id_table(*headers: str, ids: list[str]) -> Table:
    """A table whose first column holds ids a user copies into the next command: never cut or wrapped, however
    narrow the terminal (the other columns wrap instead)."""
    table = Table(show_lines=False)
    table.add_column(headers[0], no_wrap=True, min_width=max([len(headers[0]), *map(len, ids)]))
    for header in headers[1:]:
        table.add_column(header, overflow="fold")
    return table


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def run(fn: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(fn())  # type: ignore[arg-type]


def with_store(fn: Callable[[Settings, SqlStore], Awaitable[T]]) -> T:
    """Run ``fn`` against the configured database, once it is known to be migrated; refusals and invalid
    input are printed as errors (exit status 1)."""
    from pydantic import ValidationError

    from ..admin.service import AdminError
    from ..core.keys import KeyRingError
    from ..store.sql import SqlStore as Store
    from ..store.sql.migrate import check_schema

    s = settings()

    async def go() -> T:
        status = await check_schema(s.database_url)
        if status.state != "current":
            fail(status.message)
        store = Store.from_url(s.database_url)
        try:
            return await fn(s, store)
        finally:
            await store.close()

    try:
        return run(go)
    except ValidationError as exc:
        fail(validation_message(exc))
    except (AdminError, KeyRingError) as exc:
        fail(str(exc))
