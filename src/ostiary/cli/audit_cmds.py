"""``ostiary recommend`` and ``ostiary audit …``: parse, call :mod:`ostiary.audit`, print.

Only the base install is needed (httpx, cryptography, rich, typer): these commands check other people's
deployments as well as ours.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.prompt import Confirm, Prompt
from rich.table import Table

__all__ = ["audit_app", "recommend_cmd"]

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)
audit_app = typer.Typer(help="Audit an OAuth deployment (issuer, API, front-end bundle) for the ten classic "
                             "production mistakes.", no_args_is_help=True)


def _die(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def _quick_reference() -> Table:
    from ..audit import QUICK_REFERENCE

    table = Table(title="Which flow when", show_lines=True)
    table.add_column("flow", no_wrap=True)
    table.add_column("use it when", overflow="fold")
    table.add_column("--client", overflow="fold")
    for flow, when, kinds in QUICK_REFERENCE:
        table.add_row(flow, when, kinds)
    return table


def recommend_cmd(
    client: str | None = typer.Option(None, "--client",
                                      help="Who is the client: web, spa, mobile, desktop, cli, tv, iot, service, "
                                           "cron or ci. Asked when omitted at a terminal."),
    user: bool | None = typer.Option(None, "--user/--no-user",
                                     help="Is a human in the loop? (default: yes for apps and devices, no for "
                                          "service, cron and ci)"),
    issuer: str = typer.Option("https://id.example.com", "--issuer", envvar="OSTIARY_ISSUER",
                               help="This server's issuer, used in the suggested command (default $OSTIARY_ISSUER)."),
    api: str = typer.Option("https://api.example.com", "--api", help="The API audience, used in the command."),
    table: bool = typer.Option(False, "--table", help="Print the flow-choice table (the quick reference) only."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Recommend the OAuth flow for a client, and the command that registers it here."""
    from ..audit import CLIENT_KINDS, QUICK_REFERENCE, default_user, recommend

    if table:
        if as_json:
            _print_json([{"flow": f, "when": w, "clients": c} for f, w, c in QUICK_REFERENCE])
        else:
            out.print(_quick_reference())
        return
    if client is None:
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            _die(f"give --client ({'|'.join(CLIENT_KINDS)}); the questions are asked only at a terminal")
        out.print("[bold]1. Who is the client?[/]")
        for kind, what in CLIENT_KINDS.items():
            out.print(f"  {kind:<8} {what}")
        client = Prompt.ask("Client", choices=list(CLIENT_KINDS), show_choices=False, console=out)
        if user is None and client != "ci":
            user = Confirm.ask("[bold]2. Is a human in the loop[/] (a person signs in and grants access)?",
                               default=default_user(client), console=out)
    if client not in CLIENT_KINDS:
        _die(f"--client {client!r}: one of {', '.join(CLIENT_KINDS)}")
    rec = recommend(client, user, issuer=issuer.rstrip("/"), api=api)
    if as_json:
        _print_json(rec.as_dict())
        return
    out.print(f"[bold]Use: {rec.flow}[/]  ({rec.client}, {'a human in the loop' if rec.user else 'no user'})")
    out.print(f"\n[bold]Why[/]: {rec.why}", soft_wrap=False)
    out.print("\n[bold]Avoid[/]:")
    for item in rec.avoid:
        out.print(f"  - {item}")
    for note in rec.notes:
        out.print(f"\n[dim]{escape(note)}[/]")
    out.print("\n[bold]Register it here[/]:")
    out.print(f"  {escape(rec.command_line)}", soft_wrap=True)


_FAIL_ON_HELP = "Exit 1 when a finding is at or above this severity: high (default), medium, low, info."


def _stdin_lines(count: int, what: str) -> list[str]:
    lines = [line.strip() for line in sys.stdin.read().splitlines() if line.strip()]
    if len(lines) < count:
        _die(f"{what} expected on stdin ({count} line(s)), got {len(lines)}")
    return lines


def _emit(report: Any, as_json: bool, sarif: bool, fail_on: str) -> None:
    from ..audit import SEVERITIES, to_sarif, to_table

    if fail_on not in SEVERITIES:
        _die(f"--fail-on {fail_on!r}: one of {', '.join(SEVERITIES)}")
    if as_json and sarif:
        _die("--json and --sarif: choose one")
    if as_json:
        _print_json(report.as_dict())
    elif sarif:
        _print_json(to_sarif(report))
    else:
        out.print(to_table(report))
    raise typer.Exit(report.exit_code(fail_on))


@audit_app.command("issuer")
def audit_issuer_cmd(
    url: str = typer.Argument(..., help="The issuer URL (its discovery document is read)."),
    client_id: str | None = typer.Option(None, "--client-id", help="A client to get a token with (client "
                                         "credentials) and to spend the refresh token with."),
    client_secret_stdin: bool = typer.Option(False, "--client-secret-stdin",
                                             help="Read the client secret from the first line of stdin."),
    refresh_token_stdin: bool = typer.Option(False, "--refresh-token-stdin",
                                             help="Read a refresh token to spend from stdin (the line after the "
                                                  "secret, if both). It is used up: log in again afterwards."),
    as_json: bool = typer.Option(False, "--json", help="Print the findings as JSON."),
    sarif: bool = typer.Option(False, "--sarif", help="Print SARIF 2.1.0 (for code-scanning UIs)."),
    fail_on: str = typer.Option("high", "--fail-on", help=_FAIL_ON_HELP),
    timeout: float = typer.Option(10.0, "--timeout", help="Seconds per HTTP request."),
) -> None:
    """Audit an authorization server: metadata, JWKS, a client-credentials token, refresh-token rotation.

    Exit status: 0 no finding at or above --fail-on, 1 some, 2 the issuer could not be assessed."""
    from ..audit.issuer import IssuerAudit, audit_issuer

    if (client_secret_stdin or refresh_token_stdin) and not client_id:
        _die("--client-id is required with --client-secret-stdin or --refresh-token-stdin")
    lines = _stdin_lines(int(client_secret_stdin) + int(refresh_token_stdin), "the secret and/or refresh token") \
        if client_secret_stdin or refresh_token_stdin else []
    secret = lines[0] if client_secret_stdin else None
    refresh = lines[int(client_secret_stdin)] if refresh_token_stdin else None
    report = audit_issuer(IssuerAudit(url, client_id, secret, refresh, timeout))
    _emit(report, as_json, sarif, fail_on)


@audit_app.command("bundle")
def audit_bundle_cmd(
    path: str = typer.Argument(..., help="A built bundle: a folder (dist/, an unpacked APK or IPA) or one file."),
    as_json: bool = typer.Option(False, "--json", help="Print the findings as JSON."),
    sarif: bool = typer.Option(False, "--sarif", help="Print SARIF 2.1.0 (paths relative to PATH)."),
    fail_on: str = typer.Option("high", "--fail-on", help=_FAIL_ON_HELP),
) -> None:
    """Scan a front-end or mobile bundle for client secrets, private keys, refresh tokens, and implicit or
    password-grant code.

    Exit status: 0 no finding at or above --fail-on, 1 some, 2 nothing could be scanned."""
    from ..audit.bundle_scan import scan_bundle

    _emit(scan_bundle(path), as_json, sarif, fail_on)


@audit_app.command("api")
def audit_api_cmd(
    url: str = typer.Argument(..., help="A route of the API that requires a token."),
    issuer: str = typer.Option(..., "--issuer", help="The issuer the API trusts."),
    token_stdin: bool = typer.Option(False, "--token-stdin",
                                     help="Read a token the API accepts from the first line of stdin (required). "
                                          "Further lines: genuine tokens from the same issuer the API must refuse "
                                          "(one for another audience, an ID token), to try the claim checks."),
    method: str = typer.Option("GET", "--method", help="HTTP method of the route."),
    scope: str | None = typer.Option(None, "--scope", help="A scope the route requires (tries a token without it)."),
    user_route: bool = typer.Option(False, "--user-route",
                                    help="The route acts for a user: a client-credentials token must be refused."),
    as_json: bool = typer.Option(False, "--json", help="Print the findings as JSON."),
    sarif: bool = typer.Option(False, "--sarif", help="Print SARIF 2.1.0 (for code-scanning UIs)."),
    fail_on: str = typer.Option("high", "--fail-on", help=_FAIL_ON_HELP),
    attacker_host: str = typer.Option("127.0.0.1", "--attacker-host",
                                      help="Address to serve the audit's attacker issuer on (the API must reach it)."),
    timeout: float = typer.Option(10.0, "--timeout", help="Seconds per HTTP request."),
) -> None:
    """Send forged tokens to an API and report each one it wrongly accepts.

    Exit status: 0 no finding at or above --fail-on, 1 some, 2 not assessed (the genuine token was refused, or
    the route answers without a token)."""
    from ..audit.api_probe import ApiAudit, audit_api

    if not token_stdin:
        _die("--token-stdin is required: pipe a token the API accepts (never put tokens on the command line)")
    lines = _stdin_lines(1, "a token")
    report = audit_api(ApiAudit(url, issuer.rstrip("/"), lines[0], lines[1:], method.upper(), scope, timeout,
                                user_route), attacker_host=attacker_host)
    _emit(report, as_json, sarif, fail_on)
