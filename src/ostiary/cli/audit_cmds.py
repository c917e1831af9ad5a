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
