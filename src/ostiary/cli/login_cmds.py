"""``ostiary login | whoami | logout``: the reference CLI for the device flow toolkit (``ostiary.client``).

Only the client toolkit is imported here: these commands work with the base install (no server extras).
The last login's issuer, client and account (never a token) are remembered in ``$XDG_CONFIG_HOME/ostiary/
login.json`` so ``whoami`` and ``logout`` need no arguments; tokens live in the OS keyring (or the encrypted
file store when ``$OSTIARY_TOOLKIT_TOKEN_FILE`` is set). On a machine without a keyring (a headless Linux
server), a terminal user is offered the encrypted file ``$XDG_CONFIG_HOME/ostiary/tokens.enc`` and asked for its
passphrase; a script gets a one-line error naming the two variables to set.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.console import Console

if TYPE_CHECKING:
    from ..client import StoredTokens, TokenStore

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


def _token_file() -> Path:
    return _state_path().with_name("tokens.enc")


def _open_store(issuer: str, client_id: str, *, creating: bool) -> TokenStore:
    """The configured token store, checked by one read. Without a keyring, a person at a terminal may use the
    encrypted file instead (asked for its passphrase; twice when it is created); a script gets the error."""
    from getpass import getpass

    from ..client import EncryptedFileTokenStore, NoKeyringError, default_token_store

    store = default_token_store()
    try:
        store.load(issuer, client_id)
        return store
    except NoKeyringError as exc:
        if not (sys.stdin.isatty() and sys.stderr.isatty()):
            raise
        path = _token_file()
        if not creating and not path.exists():
            raise
        err.print(f"{exc}\n", soft_wrap=True)
        if creating and not path.exists():
            err.print(f"Tokens will be kept in {path}, encrypted with a passphrase you choose (at least 8 "
                      "characters). Set OSTIARY_TOOLKIT_TOKEN_FILE and OSTIARY_TOOLKIT_PASSPHRASE to skip this "
                      "question.", soft_wrap=True)
            passphrase = getpass("New passphrase for the token file: ")
            if getpass("Repeat it: ") != passphrase:
                _die("the passphrases differ; nothing was stored")
        else:
            passphrase = getpass(f"Passphrase of {path}: ")
        file_store = EncryptedFileTokenStore(path, passphrase)
        file_store.load(issuer, client_id)  # a wrong passphrase fails here, before anything else
        return file_store


def _display_name(tokens: StoredTokens, store: TokenStore) -> str:
    """What the user calls themselves (``preferred_username``, else ``name`` or ``email``) from the ID token or
    userinfo, not the opaque ``sub``; the ``sub`` when neither says."""
    from ..client import ClientError, TokenSession
    from ..core import jose

    claims: dict[str, object] = {}
    if tokens.id_token:
        try:
            claims = dict(jose.decode_unverified(tokens.id_token)[1])
        except jose.JoseError:
            claims = {}
    if not any(claims.get(k) for k in ("preferred_username", "name", "email")) and tokens.id_token:
        session = TokenSession(tokens.issuer, tokens.client_id, store)
        try:
            claims.update(session.userinfo() or {})
        except ClientError:
            pass
        finally:
            session.close()
    for key in ("preferred_username", "name", "email"):
        value = claims.get(key)
        if isinstance(value, str) and value:
            return value
    return tokens.account


def _die(message: str, code: int = 1) -> NoReturn:
    from rich.markup import escape

    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
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
    from ..client import ClientError, DeviceLogin, LoginCancelled

    try:
        store = _open_store(issuer.rstrip("/"), client_id, creating=True)  # fail early, before any approval
        tokens = DeviceLogin(issuer, client_id, scope=scope, console=err, show_qr=not no_qr).run()
        store.save(tokens)
    except (LoginCancelled, KeyboardInterrupt):
        _cancelled()
    except ClientError as exc:
        _die(str(exc))
    _save_state({"issuer": tokens.issuer, "client_id": tokens.client_id, "account": tokens.account})
    name = _display_name(tokens, store)
    if as_json:
        sys.stdout.write(json.dumps({"issuer": tokens.issuer, "client_id": tokens.client_id,
                                     "account": tokens.account, "username": name, "scope": tokens.scope}) + "\n")
    else:
        out.print(f"Logged in to {tokens.issuer} as {name}.", soft_wrap=True)


def whoami(
    issuer: str | None = typer.Option(None, "--issuer", help="Default: the last login's issuer."),
    client_id: str | None = typer.Option(None, "--client-id", help="Default: the last login's client."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show who you are logged in as (userinfo when openid was granted, else the token's claims)."""
    from ..client import ClientError, TokenSession

    iss, cid = _target(issuer, client_id)
    try:
        session = TokenSession(iss, cid, _open_store(iss, cid, creating=False))
    except ClientError as exc:
        _die(str(exc))
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
    from ..client import ClientError, TokenSession

    iss, cid = _target(issuer, client_id)
    try:
        session = TokenSession(iss, cid, _open_store(iss, cid, creating=False))
    except ClientError as exc:
        _die(str(exc))
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
