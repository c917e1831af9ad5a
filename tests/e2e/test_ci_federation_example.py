"""examples/ci_federation: the one command runs the whole CI federation flow and says what happened."""

from __future__ import annotations

import os
import subprocess
import sys

from ..support import BIN, ROOT


def test_ci_federation_example_runs_end_to_end() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OSTIARY_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "ci_federation" / "run.py")], env=env,
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    steps = [line for line in out.splitlines() if line.startswith("==> ")]
    assert len(steps) == 11 and steps[-1] == "==> Done: no long-lived secret was stored anywhere"
    assert "$ ostiary federation trust add --id acme-api-deploy" in out
    # the exchange: a short-lived access token carrying the CI identity
    assert '"issued_token_type": "urn:ietf:params:oauth:token-type:access_token"' in out
    assert '"sub": "ci:acme/api@production", "client_id": "federation:acme-api-deploy"' in out
    assert '"act": {"iss": "http://127.0.0.1:' in out
    # the deploy API accepted it
    assert 'HTTP 200 {"deployed":"1.4.2","by":"ci:acme/api@production"' in out
    # the replay and the feature branch were refused with the generic answer, and explain says why
    assert out.count('HTTP 400 {"error":"invalid_grant"') == 2
    assert "FAIL  ref matches 'refs/heads/main' (token has \"refs/heads/feature-x\")" in out
    assert "Result: REFUSED (invalid_grant): no trust policy matches the token" in out
    # no stray processes or files: the temporary directory is gone
    assert "ostiary-ci-federation-" in out
    tmp = out.split("--keys ", 1)[1].split("/ci-keys.json", 1)[0]
    assert not os.path.exists(tmp)
