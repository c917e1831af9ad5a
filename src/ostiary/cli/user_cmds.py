"""``ostiary user …``: create and manage the people who sign in. Passwords come from a prompt or stdin,
never from an argument (arguments end up in shell history and ``ps``)."""

from __future__ import annotations

import getpass
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import typer
from pydantic import ValidationError

from .._clock import SystemClock
from ..admin.users import SignedOut, UserAdmin, UserCreate, UserUpdate, signed_out_view, user_view
from ..core.users import User
from ._common import console, fail, id_table, print_json, with_store

T = TypeVar("T")

user_app = typer.Typer(help="Create and manage users (people who sign in).", no_args_is_help=True)


def _with_users(fn: Callable[[UserAdmin], Awaitable[T]]) -> T:
    return with_store(lambda s, store: fn(UserAdmin(store, SystemClock())))


def read_password(from_stdin: bool) -> str:
    """One line from stdin, or a prompt (asked twice) on a terminal."""
    if from_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            fail("no password on stdin")
        return line
    if not sys.stdin.isatty():
        fail("no terminal to prompt for a password: pipe it with --password-stdin")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Repeat password: "):
        fail("the passwords differ")
    return first


def _show(view: dict[str, Any]) -> None:
    for key in ("id", "username", "name", "email", "email_verified", "disabled", "totp"):
        console.print(f"[bold]{key}[/]: {view[key]}")


def _out(view: dict[str, Any], as_json: bool) -> None:
    print_json(view) if as_json else _show(view)


def _changed(result: tuple[User, SignedOut], as_json: bool, done: str) -> None:
    """The user after a change that signed them out, and what was ended."""
    user, signed_out = result
    if as_json:
        print_json({**user_view(user), "signed_out": signed_out_view(signed_out)})
    else:
        console.print(f"{done} for {user.username}: {signed_out.describe()}")


@user_app.command("create")
def user_create(
    username: str = typer.Argument(..., help="Sign-in name (case-insensitive)."),
    name: str = typer.Option("", "--name", help="Display name (default: the username)."),
    email: str | None = typer.Option(None, "--email", help="Email address (also accepted at sign-in)."),
    email_verified: bool = typer.Option(False, "--email-verified", help="Mark the email address verified."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from stdin."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Create a user. The password is asked for (or read with --password-stdin) and stored as an argon2id hash."""
    try:
        spec = UserCreate(username=username, name=name, email=email, email_verified=email_verified)
    except ValidationError as exc:
        fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
    password = read_password(password_stdin)

    async def go(users: UserAdmin) -> dict[str, Any]:
        return user_view(await users.create_user(spec, password))

    _out(_with_users(go), as_json)


@user_app.command("list")
def user_list(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List users."""
    async def go(users: UserAdmin) -> list[dict[str, Any]]:
        return [user_view(u) for u in await users.list_users()]

    views = _with_users(go)
    if as_json:
        print_json(views)
        return
    table = id_table("id", "username", "name", "email", "disabled", "totp", ids=[v["id"] for v in views])
    for v in views:
        table.add_row(v["id"], v["username"], v["name"], v["email"] or "-", str(v["disabled"]), str(v["totp"]))
    console.print(table)


@user_app.command("show")
def user_show(user: str = typer.Argument(..., help="id, username or email"),
              as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show one user (never a password hash)."""
    async def go(users: UserAdmin) -> dict[str, Any]:
        return user_view(await users.get_user(user))

    _out(_with_users(go), as_json)


@user_app.command("disable")
def user_disable(user: str = typer.Argument(..., help="id, username or email"),
                 enable: bool = typer.Option(False, "--enable", help="Enable the user again instead."),
                 as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Disable a user: sessions end and every token they authorized is revoked. --enable undoes it (the revoked
    tokens stay revoked)."""
    async def go(users: UserAdmin) -> tuple[User, SignedOut]:
        return await users.update_user(user, UserUpdate(disabled=not enable))

    _changed(_with_users(go), as_json, "enabled" if enable else "disabled")


@user_app.command("delete")
def user_delete(user: str = typer.Argument(..., help="id, username or email"),
                yes: bool = typer.Option(False, "--yes", help="Do not ask.")) -> None:
    """Delete a user; their sessions end and their tokens are revoked."""
    if not yes and not typer.confirm(f"Delete user {user}?"):
        raise typer.Exit(1)

    async def go(users: UserAdmin) -> SignedOut:
        return await users.delete_user(user)

    console.print(f"deleted {user}: {_with_users(go).describe()}")


@user_app.command("set-password")
def user_set_password(user: str = typer.Argument(..., help="id, username or email"),
                      password_stdin: bool = typer.Option(False, "--password-stdin",
                                                          help="Read the password from stdin."),
                      as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Set a new password (asked for, or read with --password-stdin). The user's sessions end and every refresh
    and access token they hold is revoked: what to do for a compromised account."""
    password = read_password(password_stdin)

    async def go(users: UserAdmin) -> tuple[User, SignedOut]:
        return await users.set_password(user, password)

    _changed(_with_users(go), as_json, "password set")


@user_app.command("reset-totp")
def user_reset_totp(user: str = typer.Argument(..., help="id, username or email"),
                    as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Remove a user's second factor (lost phone): their sessions end, their tokens are revoked, and they can
    enrol again on their account page."""
    async def go(users: UserAdmin) -> tuple[User, SignedOut]:
        return await users.reset_totp(user)

    _changed(_with_users(go), as_json, "second factor removed")
