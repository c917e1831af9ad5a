"""``ostiary federation …``: trust policies for CI workload identity federation, and ``explain``."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

from .._clock import SystemClock
from .._json import loads as json_loads
from ..admin.federation import FederationService, TrustPolicyCreate, trust_policy_view
from ..core.federation import TOKEN_EXCHANGE_GRANT, Check, FederationReport
from ._common import console, fail, id_table, print_json, with_store

T = TypeVar("T")

federation_app = typer.Typer(
    help="Workload identity federation: let CI jobs (GitHub Actions, GitLab CI, Kubernetes…) exchange their "
         f"platform's OIDC token for a short-lived access token (RFC 8693, grant_type={TOKEN_EXCHANGE_GRANT}), "
         "under trust policies. No long-lived secret is stored anywhere.",
    no_args_is_help=True,
)
trust_app = typer.Typer(help="Add, list, show and remove trust policies (stored in the database; effective at once).",
                        no_args_is_help=True)
federation_app.add_typer(trust_app, name="trust")


def _with_service(fn: Callable[[FederationService], Awaitable[T]]) -> T:
    return with_store(lambda s, store: fn(FederationService(store, s.policy(), SystemClock())))


def _pairs(values: list[str], op: str) -> list[dict[str, str]]:
    out = []
    for item in values:
        claim, sep, value = item.partition("=")
        if not sep or not claim.strip():
            fail(f"{item!r}: write CLAIM=VALUE, e.g. repository=acme/api")
        out.append({"claim": claim.strip(), "op": op, "value": value})
    return out


def p(text: str) -> None:
    """Print literally: claim values may contain rich markup characters such as ``[``."""
    console.print(text, markup=False, soft_wrap=True, highlight=False)


def _print_policy(v: dict[str, Any]) -> None:
    p(f"policy_id:        {v['policy_id']}")
    p(f"name:             {v['name']}")
    p(f"issuer:           {v['issuer']}")
    p(f"token audience:   {v['audience']}")
    p("conditions:       " + ("; ".join(
        f"{c['claim']} {'==' if c['op'] == 'eq' else 'matches'} {c['value']!r}" for c in v["conditions"])))
    p(f"subject:          {v['subject_template']}")
    p(f"scopes:           {' '.join(v['scopes']) or '-'}")
    p(f"audiences:        {' '.join(v['audiences'])}")
    p(f"max lifetime:     {v['max_lifetime']}s")
    p(f"max token age:    {str(v['max_token_age']) + 's' if v['max_token_age'] else '-'}")
    p(f"one-time jti:     {'yes' if v['one_time_jti'] else 'no'}")
    p("clients:          " + (", ".join(v["allowed_clients"]) or "any caller (no client authentication needed)"))


REQ = "\\[required unless in --file] "


@trust_app.command("add")
def trust_add(
    name: str | None = typer.Option(None, "--name", help=REQ + "Display name."),
    policy_id: str | None = typer.Option(None, "--id", help="Policy id (default: derived from the name)."),
    issuer: str | None = typer.Option(None, "--issuer",
                                      help=REQ + "External issuer, exactly as the tokens' iss, e.g. "
                                           "https://token.actions.githubusercontent.com or https://gitlab.com."),
    token_audience: str | None = typer.Option(None, "--token-audience",
                                              help=REQ + "The aud the external token must carry (what the CI job "
                                                   "requests, e.g. this server's issuer URL)."),
    claim: list[str] = typer.Option([], "--claim", help=REQ + "(one --claim or --claim-glob) Exact claim condition "
                                                        "CLAIM=VALUE (repeat), "
                                                        "e.g. repository=acme/api."),
    claim_glob: list[str] = typer.Option([], "--claim-glob",
                                         help="Glob claim condition CLAIM=PATTERN (repeat), e.g. "
                                              "ref=refs/heads/release/*  (* also matches /)."),
    subject: str | None = typer.Option(None, "--subject",
                                       help=REQ + "sub of the issued token, templated from claims, e.g. "
                                            "'ci:{repository}@{environment}'."),
    scope: list[str] = typer.Option([], "--scope", help="Scope the issued token may have (repeat)."),
    audience: list[str] = typer.Option([], "--audience",
                                       help="Audience URI the issued token may have (repeat; the first is "
                                            "the default)."),
    max_lifetime: str | None = typer.Option(None, "--max-lifetime",
                                            help="Longest life of an issued token: 60s-1h (default 15m)."),
    max_token_age: str | None = typer.Option(None, "--max-token-age",
                                             help="Refuse external tokens issued longer ago than this (e.g. 5m)."),
    one_time_jti: bool = typer.Option(False, "--one-time-jti", help="Each external token (jti) may be "
                                                                   "exchanged once."),
    client: list[str] = typer.Option([], "--client",
                                     help="Require client authentication as one of these clients (repeat). "
                                          "Default: no client needed, as with a cloud STS."),
    file: Path | None = typer.Option(None, "--file", help="JSON file with the policy (admin API format); "
                                                          "options given here override it."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Add a trust policy: which CI tokens may be exchanged, and for what.

    Example (GitHub Actions, production deploys of acme/api from main):

      ostiary federation trust add --name "acme/api deploy" \\
        --issuer https://token.actions.githubusercontent.com --token-audience https://id.example.com \\
        --claim repository=acme/api --claim environment=production --claim-glob ref=refs/heads/main \\
        --subject 'ci:{repository}@{environment}' --scope deploy --audience https://deploy.example.com
    """
    spec: dict[str, Any] = {}
    if file is not None:
        try:
            loaded = json_loads(file.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            fail(f"cannot read {file}: {exc}")
        if not isinstance(loaded, dict):
            fail(f"{file} is not a JSON object")
        spec.update(loaded)
    given = {"name": name, "policy_id": policy_id, "issuer": issuer, "audience": token_audience,
             "subject_template": subject, "max_lifetime": max_lifetime, "max_token_age": max_token_age}
    spec.update({k: v for k, v in given.items() if v is not None})
    conditions = _pairs(claim, "eq") + _pairs(claim_glob, "glob")
    if conditions:
        spec["conditions"] = [*spec.get("conditions", []), *conditions]
    if scope:
        spec["scopes"] = [s for item in scope for s in item.split()]
    if audience:
        spec["audiences"] = audience
    if one_time_jti:
        spec["one_time_jti"] = True
    if client:
        spec["allowed_clients"] = client

    async def go(svc: FederationService) -> dict[str, Any]:
        return trust_policy_view(await svc.add(TrustPolicyCreate.model_validate(spec)))

    view = _with_service(go)
    if as_json:
        print_json(view)
    else:
        _print_policy(view)


@trust_app.command("list")
def trust_list(
    issuer: str | None = typer.Option(None, "--issuer", help="Only the policies for this issuer."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List trust policies."""
    async def go(svc: FederationService) -> list[dict[str, Any]]:
        return [trust_policy_view(p) for p in await svc.list_policies(issuer)]

    views = _with_service(go)
    if as_json:
        print_json(views)
        return
    table = id_table("policy_id", "issuer", "conditions", "subject", "scopes", "lifetime",
                     ids=[v["policy_id"] for v in views])
    for v in views:
        table.add_row(v["policy_id"], v["issuer"], str(len(v["conditions"])), v["subject_template"],
                      " ".join(v["scopes"]), f"{v['max_lifetime']}s")
    console.print(table)


@trust_app.command("show")
def trust_show(policy_id: str, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show one trust policy."""
    async def go(svc: FederationService) -> dict[str, Any]:
        return trust_policy_view(await svc.get(policy_id))

    view = _with_service(go)
    print_json(view) if as_json else _print_policy(view)


@trust_app.command("remove")
def trust_remove(policy_id: str, yes: bool = typer.Option(False, "--yes", help="Do not ask."),
                 as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Remove a trust policy. Exchanges stop matching it at once; tokens already issued expire on their own
    (at most the policy's max lifetime)."""
    if not yes and not typer.confirm(f"Remove trust policy {policy_id}?"):
        raise typer.Exit(1)

    async def go(svc: FederationService) -> None:
        await svc.remove(policy_id)

    _with_service(go)
    print_json({"removed": policy_id}) if as_json else p(f"removed {policy_id}")


def _line(c: Check, indent: str = "  ") -> str:
    return f"{indent}{'ok  ' if c.ok else 'FAIL'}  {c.name}: {c.detail}"


def print_report(report: FederationReport) -> None:
    """The explanation, for a person: every check, every policy and condition, and the outcome."""
    p(f"Token: iss {report.issuer!r}, sub {report.external_subject!r}")
    for c in report.token_checks:
        p(_line(c))
    if not report.policies:
        p("No trust policies.")
    for r in report.policies:
        pol = r.policy
        state = "MATCHES" if r.matched else "does not match"
        chosen = "  <- selected (most specific)" if report.selected == pol.policy_id else ""
        p("")
        p(f"Policy {pol.policy_id} ({pol.name}): {state}{chosen}")
        for c in r.checks:
            p(_line(c))
        for cr in r.conditions:
            cond = cr.condition
            op = "==" if cond.op == "eq" else "matches"
            actual = "claim missing" if cr.actual is None else f"token has {cr.actual}"
            p(f"  {'ok  ' if cr.ok else 'FAIL'}  {cond.claim} {op} {cond.value!r} ({actual})")
    p("")
    if report.allowed and report.grant is not None:
        g = report.grant
        p(f"Result: ALLOWED by policy {g.policy_id}")
        p(f"Would issue: sub {g.subject!r}, client_id {g.client_id!r}, aud {' '.join(g.audience)}, "
          f"scope {' '.join(g.scopes) or '-'!r}, lifetime {g.lifetime}s, act {dict(g.act)}")
    else:
        p(f"Result: REFUSED ({report.error}): {report.reason}")
        p("The caller sees only a generic invalid_grant; this explanation is for administrators.")


def _read_token(path: str) -> str:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text("utf-8")
    except OSError as exc:
        fail(f"cannot read the token from {path}: {exc}")
    token = text.strip()
    if not token:
        fail(f"{path} is empty")
    return token


@federation_app.command("explain")
def explain(
    token: str = typer.Option(..., "--token", help="File holding the external (CI) token; - reads standard input."),
    client_id: str | None = typer.Option(None, "--client", help="Assume the caller authenticates as this client."),
    scope: str | None = typer.Option(None, "--scope", help="Assume this scope is requested."),
    audience: list[str] = typer.Option([], "--audience", help="Assume this audience/resource is requested."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Explain why a CI token would be accepted or refused: every trust policy and condition, matched or not, and
    what would be issued. Issues nothing and consumes nothing. Reads the database and fetches the external
    issuer's keys over HTTPS. Exit status 0 if the exchange would be allowed, 2 if refused."""
    raw = _read_token(token)

    async def go(svc: FederationService) -> FederationReport:
        from ..config import is_loopback_url
        from ..web.federation_keys import HttpExternalKeys

        keys = HttpExternalKeys(allow_loopback=is_loopback_url(svc.policy.issuer))
        try:
            return await svc.explain(raw, keys, client_id=client_id, scope=scope, audiences=audience)
        finally:
            await keys.close()

    report = _with_service(go)
    if as_json:
        print_json(report.as_dict())
    else:
        print_report(report)
    if not report.allowed:
        raise typer.Exit(2)
