"""The audit package's public surface, and the base install: ``recommend`` and ``audit`` run without the server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import ostiary.audit
from ostiary.audit import CHECKS, MISTAKES


def test_public_surface() -> None:
    assert sorted(ostiary.audit.__all__) == sorted([
        "CHECKS", "CLIENT_KINDS", "MISTAKES", "QUICK_REFERENCE", "SEVERITIES", "ApiAudit", "Check", "Finding",
        "IssuerAudit", "Recommendation", "Report", "Severity", "audit_api", "audit_issuer", "default_user",
        "recommend", "scan_bundle", "to_sarif", "to_table"])


def test_every_mistake_has_a_check_and_every_check_cites_an_rfc_section() -> None:
    assert {c.mistake for c in CHECKS.values() if c.mistake} == set(MISTAKES)
    for check in CHECKS.values():
        assert check.reference.startswith("RFC ") and "§" in check.reference, check
        assert check.id.split(".")[0] in ("issuer", "api", "bundle")


def test_recommend_and_audit_need_only_the_base_install(tmp_path: Path) -> None:
    """Server modules made unimportable, as in ``pip install ostiary`` without the server extra (pydantic stays:
    typer itself depends on it)."""
    code = (
        "import sys\n"
        "from ostiary.cli._common import SERVER_MODULES\n"
        "for m in SERVER_MODULES - {'pydantic', 'pydantic_core'}: sys.modules[m] = None\n"  # typer needs pydantic
        "from ostiary.cli.main import main\n"
        "sys.argv = ['ostiary', *sys.argv[1:]]\n"
        "main()\n"
    )

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)

    rec = run("recommend", "--client", "cli", "--json")
    assert rec.returncode == 0, rec.stderr
    assert json.loads(rec.stdout)["flow"] == "Device Code"
    (tmp_path / "app.js").write_text('const config = {response_type: "code"};\n')
    bundle = run("audit", "bundle", str(tmp_path), "--json")
    assert bundle.returncode == 0, bundle.stderr
    assert json.loads(bundle.stdout)["findings"] == []
    server = run("client", "list")
    assert server.returncode == 1 and "ostiary[server]" in server.stderr


def test_the_example_workflow_uses_real_flags() -> None:
    import re

    import yaml

    from ..support import ROOT

    workflow = yaml.safe_load((ROOT / "examples" / "audit" / "oauth-audit.yml").read_text())
    assert workflow["permissions"]["security-events"] == "write"
    steps = workflow["jobs"]["audit"]["steps"]
    script = next(s["run"] for s in steps if s.get("name") == "Audit")
    assert any(s.get("uses", "").startswith("github/codeql-action/upload-sarif") for s in steps)
    from typer.main import get_command

    from ostiary.cli.main import app

    cli = get_command(app)
    for kind, args in re.findall(r"ostiary audit (\w+) (.*?)(?:>|$)", script, re.M):
        command = cli.commands["audit"].commands[kind]  # type: ignore[attr-defined]
        known = {opt for p in command.params for opt in p.opts}
        for flag in re.findall(r"(--[a-z-]+)", args):
            assert flag in known, (kind, flag)


def test_the_readme_lists_every_check_and_the_flow_table() -> None:
    from ostiary.audit import QUICK_REFERENCE

    from ..support import ROOT

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Audit a deployment"):]
    for check in CHECKS.values():
        assert f"| `{check.id}` | {check.mistake or ''} | {check.severity} | {check.title} | {check.reference} |" \
            in section, check.id
    for flow, when, kinds in QUICK_REFERENCE:
        assert f"| {flow} | {when} | {kinds} |" in section, flow
