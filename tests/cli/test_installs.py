"""The two installs a user can choose, each in a scratch virtual environment built from this checkout.

- The base install (``pip install ostiary``) is the client and resource toolkits: ``ostiary login``,
  ``whoami`` and ``logout`` work; every server command says in one line that it needs the ``server`` extra.
- The server install (``pip install 'ostiary[server]'``) runs the server commands.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT, free_port

HINT = "pip install 'ostiary[server]'"


def _make_venv(path: Path, spec: str) -> subprocess.Popen[str]:
    cmd = (f"{sys.executable} -m venv {path} && {path}/bin/python -m pip install -q --disable-pip-version-check "
           f"'{spec}'")
    return subprocess.Popen(["bash", "-c", cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def venvs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("venvs")
    wanted = {"base": str(ROOT), "server": f"{ROOT}[server]"}
    procs = {name: _make_venv(base / name, spec) for name, spec in wanted.items()}  # both at once
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"pip install of the {name} install failed:\n{out}"
    return {name: base / name for name in wanted}


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OSTIARY_", "PYTHON_KEYRING"))}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    env["HOME"] = str(tmp_path)
    return env


def _run(venv: Path, *args: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(venv / "bin" / "ostiary"), *args], env=env, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL, cwd=cwd)


def test_base_install_runs_the_client_commands_and_names_the_extra_for_server_ones(
        venvs: dict[str, Path], tmp_path: Path) -> None:
    venv, env = venvs["base"], _env(tmp_path)
    probe = subprocess.run([str(venv / "bin" / "python"), "-c", "import sqlalchemy"], capture_output=True)
    assert probe.returncode != 0, "the base install must not pull in the server's dependencies"

    helped = _run(venv, "--help", env=env)
    assert helped.returncode == 0, helped.stderr
    assert "login" in helped.stdout and "serve" in helped.stdout
    assert _run(venv, "--version", env=env).stdout.startswith("ostiary ")
    assert _run(venv, "login", "--help", env=env).returncode == 0

    for args in (["serve"], ["migrate"], ["demo"], ["client", "list"], ["keys", "rotate", "--now"],
                 ["user", "create", "--username", "x"], ["federation", "trust", "list"]):
        r = _run(venv, *args, env=env)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert HINT in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr

    r = _run(venv, "whoami", env=env)
    assert r.returncode == 1 and "not logged in" in r.stderr and "Traceback" not in r.stderr

    # No keyring on this headless machine and no terminal: one line naming the variables to set.
    r = _run(venv, "login", "--issuer", f"http://127.0.0.1:{free_port()}", "--client-id", "cli", env=env)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "OSTIARY_TOOLKIT_TOKEN_FILE" in r.stderr and "OSTIARY_TOOLKIT_PASSPHRASE" in r.stderr

    # With the encrypted file chosen, the next error is the issuer's, with the URL and the reason.
    port = free_port()
    env.update({"OSTIARY_TOOLKIT_TOKEN_FILE": str(tmp_path / "tokens.enc"),
                "OSTIARY_TOOLKIT_PASSPHRASE": "a long passphrase"})
    r = _run(venv, "login", "--issuer", f"http://127.0.0.1:{port}", "--client-id", "cli", env=env)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"http://127.0.0.1:{port}/.well-known/openid-configuration" in r.stderr
    assert "connection refused" in r.stderr

    advised = _run(venv, "recommend", "--client", "cli", "--json", env=env)  # advice needs no server either
    assert advised.returncode == 0, advised.stderr
    assert "device_code" in advised.stdout

    imported = subprocess.run([str(venv / "bin" / "python"), "-c", "import ostiary.client, ostiary.resource"],
                              capture_output=True, text=True)
    assert imported.returncode == 0, imported.stderr


def test_server_install_runs_the_server_commands(venvs: dict[str, Path], tmp_path: Path) -> None:
    venv, env = venvs["server"], _env(tmp_path)
    env.update({"OSTIARY_ISSUER": "http://127.0.0.1:8000",
                "OSTIARY_DATABASE_URL": f"sqlite:///{tmp_path / 'ostiary.db'}",
                "OSTIARY_SECRET_KEY_FILE": str(tmp_path / "secret.key")})
    r = _run(venv, "migrate", env=env)
    assert r.returncode == 0, r.stderr
    r = _run(venv, "client", "create", "--name", "svc", "--scope", "api:read", "--audience",
             "https://api.example.com", "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert _run(venv, "serve", "--help", env=env).returncode == 0
