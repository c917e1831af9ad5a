"""Shared CLI plumbing: settings, the store, output in text or ``--json``."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer
from rich.console import Console

from ..config import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from ..store.sql import SqlStore

T = TypeVar("T")
console = Console(stderr=False, highlight=False)
err_console = Console(stderr=True, highlight=False)

_state: dict[str, Any] = {"config": None}


def set_config(path: str | None) -> None:
    _state["config"] = path


def settings() -> Settings:
    try:
        return load_settings(_state["config"])
    except ConfigError as exc:
        fail(str(exc))


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(code)


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
        fail("; ".join(f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in exc.errors()))
    except (AdminError, KeyRingError) as exc:
        fail(str(exc))
