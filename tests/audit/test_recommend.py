"""``ostiary recommend``: the seed's quick reference, and a command for each client that really registers it."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from ostiary.audit import CLIENT_KINDS, QUICK_REFERENCE, recommend

from ..cli.test_cli import env_for, output, run_parallel
from ..support import BIN, ostiary

EXPECTED_FLOW = {"web": "Authorization Code + PKCE", "spa": "Authorization Code + PKCE",
                 "mobile": "Authorization Code + PKCE", "desktop": "Authorization Code + PKCE",
                 "cli": "Device Code", "tv": "Device Code", "iot": "Device Code",
                 "service": "Client Credentials", "cron": "Client Credentials",
                 "ci": "OIDC federation (token exchange)"}


def test_the_quick_reference() -> None:
    """Auth Code + PKCE for anything with a user, Client Credentials service to service, Device Code for CLIs
    and devices, federation for CI/CD, never Implicit or Password."""
    for kind, flow in EXPECTED_FLOW.items():
        assert recommend(kind).flow == flow, kind
    rows = {flow: (when, kinds) for flow, when, kinds in QUICK_REFERENCE}
    assert rows["Authorization Code + PKCE"][1] == "web, spa, mobile, desktop"
    assert "Always with PKCE" in rows["Authorization Code + PKCE"][0]
    assert rows["Client Credentials"][1] == "service, cron"
    assert rows["Device Code"][1] == "cli, tv, iot"
    assert rows["OIDC federation (token exchange)"][1] == "ci"
    assert "Do not use" in rows["Implicit (never)"][0] and "Do not use" in rows["Resource Owner Password (never)"][0]
    for kind in CLIENT_KINDS:  # no recommendation ever names implicit or password as the flow
        for user in (True, False):
            rec = recommend(kind, user)
            assert "Implicit" not in rec.flow and "Password" not in rec.flow
            assert any("Password" in a for a in rec.avoid) or kind == "ci"
    # a service acting for a user is steered away from client credentials (mistake 6)
    assert recommend("service", True).flow == "Authorization Code + PKCE"
    assert any("mistake 6" in a for a in recommend("service", True).avoid)
    # a public app with no user cannot hold a secret: the work moves to a backend
    assert recommend("spa", False).flow.endswith("on your backend")


def test_each_suggested_command_registers_the_client(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    env = env_for(db)
    ostiary(["migrate"], env)
    combos = [(kind, None) for kind in CLIENT_KINDS] + [("service", True), ("spa", False), ("web", False)]
    recs = run_parallel([(["recommend", "--client", kind, *(["--user"] if user else ["--no-user"] if user is False
                                                            else []), "--json", "--issuer", "http://127.0.0.1:9"],
                          env) for kind, user in combos])
    commands = []
    for (kind, _), proc in zip(combos, recs, strict=True):
        assert proc.returncode == 0, output(proc)
        data = json.loads(proc.stdout)
        assert data["client"] == kind
        argv = shlex.split(data["command"])
        assert argv[0] == "ostiary"
        commands.append(argv[1:])
    done = run_parallel([(argv + ["--json"], env) for argv in commands])
    for argv, proc in zip(commands, done, strict=True):
        assert proc.returncode == 0, (argv, output(proc))
        created = json.loads(proc.stdout)
        if argv[0] == "client":
            grants = [argv[i + 1] for i, a in enumerate(argv) if a == "--grant-type"]
            assert sorted(created["grant_types"]) == sorted(grants)
            assert created["client_type"] == ("public" if "--public" in argv else "confidential")
            assert ("client_secret" in created) == ("--public" not in argv)
        else:
            assert created["issuer"] == "https://token.actions.githubusercontent.com"


def test_text_output_and_the_table(tmp_path: Path) -> None:
    env = env_for(tmp_path / "none.db")
    text, table, no_client = run_parallel([(["recommend", "--client", "cli"], env), (["recommend", "--table"], env),
                                           (["recommend"], env)])
    assert text.returncode == 0 and "Use: Device Code" in text.stdout
    assert "ostiary client create --name 'My cli app' --public --grant-type " \
           "urn:ietf:params:oauth:grant-type:device_code" in text.stdout
    assert table.returncode == 0
    for flow, _, _ in QUICK_REFERENCE:
        assert flow in table.stdout
    # not a terminal and no --client: an error that names the flag, not a prompt that waits forever
    assert no_client.returncode == 1 and "--client" in no_client.stderr


@pytest.mark.parametrize("answers,flow", [("cli\ny\n", "Device Code"), ("service\nn\n", "Client Credentials"),
                                          ("service\ny\n", "Authorization Code + PKCE")])
def test_interactive_questions(tmp_path: Path, answers: str, flow: str) -> None:
    import pexpect

    env = env_for(tmp_path / "none.db")
    child = pexpect.spawn(str(BIN / "ostiary"), ["recommend"], env=env,
                          encoding="utf-8", timeout=60)
    client, human = answers.split("\n")[:2]
    child.expect("Client")
    child.sendline(client)
    child.expect("human in the loop")
    child.sendline(human)
    child.expect(r"Use: ([^(]+)\(")
    assert re.sub(r"\x1b\[[0-9;]*m", "", child.match.group(1)).strip() == flow
    child.expect("Register it here")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
