"""mycorp: a company CLI with `login`, `whoami`, `logout` and one authenticated API call, on ostiary.client.

    pip install ostiary          # the base install: no server dependencies
    python mycorp.py login       # shows a URL, a code and a QR code; approve in any browser
    python mycorp.py projects    # calls the API; the access token is refreshed when needed
"""

from __future__ import annotations

import os

import httpx
import typer

from ostiary.client import ClientError, DeviceLogin, LoginCancelled, LoginRequired, TokenSession, default_token_store

ISSUER = os.environ.get("MYCORP_ISSUER", "https://id.mycorp.example")
CLIENT_ID = os.environ.get("MYCORP_CLIENT_ID", "mycorp-cli")
API = os.environ.get("MYCORP_API", "https://api.mycorp.example")

app = typer.Typer(no_args_is_help=True)


def session() -> TokenSession:
    return TokenSession(ISSUER, CLIENT_ID, default_token_store())


@app.command()
def login() -> None:
    """Log in with your browser (device flow)."""
    try:
        tokens = DeviceLogin(ISSUER, CLIENT_ID, scope="openid profile offline_access").run()
    except LoginCancelled as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(130) from None
    default_token_store().save(tokens)
    typer.echo(f"Logged in as {tokens.account}.")


@app.command()
def whoami() -> None:
    """Show the signed-in user."""
    s = session()
    info = s.userinfo() or s.claims()
    typer.echo(f"{info.get('preferred_username') or info['sub']} ({info.get('email', 'no email')})")


@app.command()
def logout() -> None:
    """Revoke the login at the server and forget it here."""
    session().logout()
    typer.echo("Logged out.")


@app.command()
def projects() -> None:
    """List your projects (an authenticated API call; a 401 refreshes the token and retries once)."""
    with httpx.Client(base_url=API, auth=session().auth()) as api:
        for project in api.get("/projects").raise_for_status().json():
            typer.echo(project["name"])


if __name__ == "__main__":
    try:
        app()
    except LoginRequired:
        raise SystemExit("Not logged in: run `mycorp login`.") from None
    except ClientError as exc:
        raise SystemExit(f"error: {exc}") from None
