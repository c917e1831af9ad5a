"""`ostiary login | whoami | logout` in a real pseudo-terminal (pexpect): the URL, the code and the QR code
are shown; approval lands tokens in a file-backed keyring backend; Ctrl-C exits with status 130."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import httpx
import pexpect
import pytest

from ..support import BIN, ROOT, LiveServer
from ..web._codeflow import forms
from ._device import device_client, new_user

CODE = re.compile(r"\b([B-DF-HJ-NP-TV-XZ]{4}-[B-DF-HJ-NP-TV-XZ]{4})\b")


def _env(tmp: Path) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("OSTIARY_")}
    env.update({"XDG_CONFIG_HOME": str(tmp / "config"), "XDG_DATA_HOME": str(tmp / "data"),
                "XDG_CACHE_HOME": str(tmp / "cache"), "XDG_RUNTIME_DIR": str(tmp / "run"),
                "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring", "TERM": "xterm-256color",
                "COLUMNS": "120", "LINES": "60"})
    return env


def _spawn(args: list[str], env: dict[str, str]) -> pexpect.spawn:
    # as a terminal starts a command: SIGINT at its default, whatever this test run inherited (a shell that
    # starts it in the background without job control ignores SIGINT, and Python then never sees a Ctrl-C)
    return pexpect.spawn(str(BIN / "ostiary"), args, env=env, timeout=60, dimensions=(60, 120),
                         encoding="utf-8", preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _approve(server: LiveServer, user_code: str, username: str, password: str) -> None:
    with httpx.Client(base_url=server.base_url, timeout=30) as b:
        page = b.get("/device", params={"user_code": user_code})
        f = forms(page.text)["device-form"]
        r = b.post("/device", data={**f["fields"], "user_code": user_code})
        f = forms(r.text)["login-form"]
        r = b.post("/device/login", data={**f["fields"], "username": username, "password": password})
        f = forms(r.text)["device-confirm-form"]
        r = b.post("/device/confirm", data={**f["fields"], "decision": "approve"})
        assert 'data-outcome="approved"' in r.text


def test_login_shows_url_code_and_qr_then_whoami_and_logout(server: LiveServer, tmp_path: Path) -> None:
    client = device_client(server)
    user = new_user(server)
    env = _env(tmp_path)
    child = _spawn(["login", "--issuer", server.issuer, "--client-id", client["client_id"]], env)
    child.expect_exact(server.issuer + "/device")
    child.expect(CODE)
    user_code = child.match.group(1)
    child.expect_exact(f"{server.issuer}/device?user_code={user_code}")
    child.expect("scan this QR code")
    child.expect("[▀▄█]{5,}")  # the QR code, drawn with half blocks
    child.expect("Waiting for approval")
    _approve(server, user_code, user.username, user.password)
    child.expect_exact(f"Logged in to {server.issuer} as {user.username}.")  # the username, not the opaque sub
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert "ostiary" in (tmp_path / "data" / "python_keyring" / "keyring_pass.cfg").read_text()
    assert not list((tmp_path / "config").rglob("*token*"))  # no plain-text token file
    state = json.loads((tmp_path / "config" / "ostiary" / "login.json").read_text())
    assert set(state) == {"issuer", "client_id", "account"}

    child = _spawn(["whoami"], env)
    child.expect(user.username)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0

    child = _spawn(["whoami", "--json"], env)
    child.expect(pexpect.EOF)
    child.close()
    data = json.loads(child.before)
    assert data["subject"] == user.user_id and data["userinfo"]["preferred_username"] == user.username

    # the example "mycorp" CLI reads the same keyring entry
    example = pexpect.spawn(str(BIN / "python"), [str(ROOT / "examples" / "cli_login" / "mycorp.py"), "whoami"],
                            env={**env, "MYCORP_ISSUER": server.issuer, "MYCORP_CLIENT_ID": client["client_id"]},
                            timeout=60, encoding="utf-8")
    example.expect(user.username)
    example.expect(pexpect.EOF)
    example.close()
    assert example.exitstatus == 0

    child = _spawn(["logout"], env)
    child.expect("refresh token is revoked")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    child = _spawn(["whoami"], env)
    child.expect("not logged in")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1


@pytest.mark.parametrize("when", ["waiting"])
def test_ctrl_c_exits_130_with_a_clear_message(server: LiveServer, tmp_path: Path, when: str) -> None:
    client = device_client(server)
    child = _spawn(["login", "--issuer", server.issuer, "--client-id", client["client_id"], "--no-qr"],
                   _env(tmp_path))
    child.expect(CODE)
    child.expect("Waiting for approval")
    child.sendintr()
    child.expect("Login cancelled. No tokens were stored.")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    assert not (tmp_path / "config" / "ostiary" / "login.json").exists()
