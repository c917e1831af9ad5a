"""Render a :class:`~ostiary.audit.findings.Report`: a Rich table for people, SARIF 2.1.0 for code-scanning UIs.

The ``--json`` form is :meth:`Report.as_dict`.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from .findings import CHECKS, MISTAKES, Report

__all__ = ["SARIF_SCHEMA", "to_sarif", "to_table"]

SARIF_SCHEMA: Final = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVEL: Final = {"high": "error", "medium": "warning", "low": "note", "info": "note"}
_SECURITY_SEVERITY: Final = {"high": "8.0", "medium": "5.0", "low": "2.0", "info": "0.0"}
_STYLE: Final = {"high": "bold red", "medium": "yellow", "low": "cyan", "info": "dim"}


def _version() -> str:
    try:
        return version("ostiary")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"


def to_table(report: Report) -> RenderableType:
    """A table of the findings (most severe first) under a one-line verdict."""
    high = sum(1 for f in report.findings if f.severity == "high")
    if not report.assessed:
        verdict = Text(f"{report.kind} {report.target}: NOT ASSESSED (this is not a pass)", style="bold red")
    elif not [f for f in report.findings if f.severity != "info"]:
        verdict = Text(f"{report.kind} {report.target}: no findings above info", style="bold green")
    else:
        verdict = Text(f"{report.kind} {report.target}: {len(report.findings)} finding(s), {high} high",
                       style="bold")
    if not report.findings:
        return verdict
    table = Table(show_lines=True, expand=True)
    table.add_column("severity", no_wrap=True)
    table.add_column("#", no_wrap=True, justify="right")
    table.add_column("finding", overflow="fold", ratio=3)
    table.add_column("fix", overflow="fold", ratio=2)
    for f in report.sorted():
        c = f.check
        mistake = (f"mistake {c.mistake}: {MISTAKES[c.mistake]}", "dim") if c.mistake else ""
        table.add_row(Text(c.severity, style=_STYLE[c.severity]), str(c.mistake or "-"),
                      Text.assemble((c.title, "bold"), "\n", f.evidence, "\n", (c.id, "dim"), "  ", mistake),
                      Text.assemble(c.fix, "\n", (c.reference, "dim")))
    return Group(verdict, table)


def to_sarif(report: Report) -> dict[str, Any]:
    """SARIF 2.1.0: one run, one rule per check that fired, one result per finding. Bundle findings point at
    their file and line (relative to the scanned folder); issuer and API findings at the audited URL."""
    used = sorted({f.check.id for f in report.findings})
    rules = []
    for rule_id in used:
        c = CHECKS[rule_id]
        tags = ["security", "oauth"] + ([f"mistake-{c.mistake}"] if c.mistake else [])
        rules.append({
            "id": c.id, "name": c.id.replace(".", "/"),
            "shortDescription": {"text": c.title},
            "fullDescription": {"text": f"{c.title} ({c.reference})"},
            "help": {"text": f"{c.fix} See {c.reference}.", "markdown": f"{c.fix}\n\nSee {c.reference}."},
            "defaultConfiguration": {"level": _LEVEL[c.severity]},
            "properties": {"tags": tags,
                           "security-severity": _SECURITY_SEVERITY[c.severity],
                           "mistake": c.mistake, "reference": c.reference},
        })
    results = []
    for f in report.sorted():
        location: dict[str, Any]
        if f.path is not None:
            location = {"physicalLocation": {"artifactLocation": {"uri": f.path},
                                             **({"region": {"startLine": f.line}} if f.line else {})}}
        else:
            location = {"physicalLocation": {"artifactLocation": {"uri": report.target}}}
        results.append({
            "ruleId": f.check.id, "ruleIndex": used.index(f.check.id), "level": _LEVEL[f.severity],
            "message": {"text": f"{f.check.title}: {f.evidence}"},
            "locations": [location],
            "properties": {"severity": f.severity, "mistake": f.check.mistake},
        })
    return {
        "$schema": SARIF_SCHEMA, "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "ostiary-audit", "version": _version(),
                                "informationUri": "https://github.com/ostiary/ostiary#audit-a-deployment",
                                "rules": rules}},
            "automationDetails": {"id": f"ostiary-audit/{report.kind}/"},
            "results": results,
            "invocations": [{"executionSuccessful": report.assessed}],
            "properties": {"target": report.target, "kind": report.kind, "assessed": report.assessed},
        }],
    }
