"""``ostiary login | whoami | logout``: the reference CLI for the device flow toolkit (``ostiary.client``).

Only the client toolkit is imported here: these commands work with the base install (no server extras).
The last login's issuer, client and account (never a token) are remembered in ``$XDG_CONFIG_HOME/ostiary/
login.json`` so ``whoami`` and ``logout`` need no arguments; tokens live in the OS keyring (or the encrypted
file store when ``$OSTIARY_TOKEN_FILE`` is set).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console

__all__ = ["login", "logout", "whoami"]

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def _state_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "ostiary" / "login.json"


def _load_state() -> dict[str, Any]:
    try:
        data = json.loads(_state_path().read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save_state(state: dict[str, Any]) -> None:
    path = _state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2), "utf-8")
    os.replace(tmp, path)


def _die(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(code)


def _cancelled() -> NoReturn:
    err.print("\nLogin cancelled. No tokens were stored.")
    raise typer.Exit(130)


def _target(issuer: str | None, client_id: str | None) -> tuple[str, str]:
    state = _load_state()
    issuer = issuer or state.get("issuer")
    client_id = client_id or state.get("client_id")
    if not issuer or not client_id:
        _die("not logged in: run `ostiary login --issuer URL --client-id ID` first")
    return issuer.rstrip("/"), client_id


def login(
    issuer: str = typer.Option(..., "--issuer", help="The issuer URL (its discovery document is used)."),
    client_id: str = typer.Option(..., "--client-id", help="The public client registered for this CLI."),
    scope: str = typer.Option("openid profile offline_access", "--scope", help="Space-separated scopes."),
    no_qr: bool = typer.Option(False, "--no-qr", help="Do not print the QR code."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON (instructions go to stderr)."),
) -> None:
    """Log in from this terminal with the device flow (RFC 8628); tokens go to the OS keyring."""
    from ..client import ClientError, DeviceLogin, LoginCancelled, default_token_store

    try:
        store = default_token_store()
        store.load(issuer.rstrip("/"), client_id)  # fail early (no keyring) before the user approves anything
        tokens = DeviceLogin(issuer, client_id, scope=scope, console=err, show_qr=not no_qr).run()
        store.save(tokens)
    except (LoginCancelled, KeyboardInterrupt):
        _cancelled()
    except ClientError as exc:
        _die(str(exc))
    _save_state({"issuer": tokens.issuer, "client_id": tokens.client_id, "account": tokens.account})
    if as_json:
        sys.stdout.write(json.dumps({"issuer": tokens.issuer, "client_id": tokens.client_id,
                                     "account": tokens.account, "scope": tokens.scope}) + "\n")
    else:
        out.print(f"Logged in to {tokens.issuer} as {tokens.account}.", soft_wrap=True)


def whoami(
    issuer: str | None = typer.Option(None, "--issuer", help="Default: the last login's issuer."),
    client_id: str | None = typer.Option(None, "--client-id", help="Default: the last login's client."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show who you are logged in as (userinfo when openid was granted, else the token's claims)."""
    from ..client import ClientError, TokenSession, default_token_store

    iss, cid = _target(issuer, client_id)
    session = TokenSession(iss, cid, default_token_store())
    try:
        session.access_token()  # refreshes when needed
        info = session.userinfo()
        claims = session.claims()
        tokens = session.tokens()
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except ClientError as exc:
        _die(str(exc))
    finally:
        session.close()
    subject = (info or {}).get("sub") or claims.get("sub")
    result = {"issuer": iss, "client_id": cid, "subject": subject, "account": tokens.account,
              "scope": tokens.scope, "access_token_expires_at": int(tokens.expires_at),
              "userinfo": info, "claims": None if info else claims}
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    expires = dt.datetime.fromtimestamp(tokens.expires_at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    who = info or claims
    out.print(f"Logged in to {iss} as {who.get('preferred_username') or who.get('name') or subject}", soft_wrap=True)
    out.print(f"  subject:  {subject}")
    for key in ("name", "email"):
        if who.get(key):
            out.print(f"  {key + ':':<9} {who[key]}")
    out.print(f"  scope:    {tokens.scope or ''}")
    out.print(f"  access token valid until {expires} (refreshed automatically)")


def logout(
    issuer: str | None = typer.Option(None, "--issuer", help="Default: the last login's issuer."),
    client_id: str | None = typer.Option(None, "--client-id", help="Default: the last login's client."),
) -> None:
    """Revoke the refresh token at the server and remove the tokens from the keyring."""
    from ..client import ClientError, TokenSession, default_token_store

    iss, cid = _target(issuer, client_id)
    session = TokenSession(iss, cid, default_token_store())
    try:
        present = session.store.load(iss, cid) is not None
        revoked = session.logout()
    except ClientError as exc:
        _die(str(exc))
    finally:
        session.close()
    state = _load_state()
    if state.get("issuer") == iss and state.get("client_id") == cid:
        _state_path().unlink(missing_ok=True)
    if not present:
        out.print(f"Not logged in to {iss}.")
    elif revoked:
        out.print(f"Logged out of {iss}: the refresh token is revoked and removed from this machine.")
    else:
        out.print(f"Logged out locally; the server at {iss} could not confirm the revocation.")
