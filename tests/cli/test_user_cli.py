"""``ostiary user …`` run as a subprocess the way an operator runs it: passwords only from stdin (or a prompt),
never from an argument; ``--json``; disabling, deleting and new passwords take effect at the sign-in form."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..support import LiveServer, ostiary, start_server
from ..web._codeflow import Browser

WIDE = {"COLUMNS": "200", "NO_COLOR": "1"}  # rich wraps help and messages at 80 columns otherwise


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp: Path = tmp_path_factory.mktemp("user-cli")
    server = start_server(f"sqlite+aiosqlite:///{tmp / 'ost.db'}", tmp)
    yield server
    server.stop()


def run(srv: LiveServer, *args: str, input: str | None = None,  # noqa: A002
        check: bool = True) -> subprocess.CompletedProcess[str]:
    return ostiary(list(args), {**srv.env, **WIDE}, input=input, check=check)


def create(srv: LiveServer, password: str, *extra: str) -> dict[str, Any]:
    username = "cli" + secrets.token_hex(4)
    proc = run(srv, "user", "create", username, "--email", username + "@Example.com", "--name", "Cli Person",
               *extra, "--password-stdin", "--json", input=password + "\n")
    assert password not in proc.stdout + proc.stderr
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def sign_in(srv: LiveServer, username: str, password: str) -> tuple[Browser, httpx.Response]:
    """The sign-in form, driven over HTTP (the caller closes the Browser)."""
    b = Browser(srv)
    return b, b.login(b.http.get("/login"), username, password)


def signed_in(srv: LiveServer, username: str, password: str) -> bool:
    b, r = sign_in(srv, username, password)
    try:
        if r.status_code == 303 and r.headers["location"] == "/account":
            return True
        assert r.status_code == 400 and "Incorrect username or password." in r.text, r.text[:500]
        return False
    finally:
        b.close()


def test_passwords_are_never_arguments(srv: LiveServer) -> None:
    with ThreadPoolExecutor(3) as pool:
        helps = list(pool.map(lambda cmd: run(srv, "user", cmd, "--help").stdout, ["create", "set-password"]))
        as_arg = pool.submit(run, srv, "user", "create", "someone", "--password", "hunter2hunter2", check=False)
    for text in helps:
        assert "--password-stdin" in text
        assert not re.search(r"--password(?!-stdin)", text), text
        assert "PASSWORD" not in text.replace("--password-stdin", "")
    proc = as_arg.result()
    assert proc.returncode != 0 and "No such option" in proc.stderr + proc.stdout
    assert "--password" in proc.stderr + proc.stdout


def test_create_list_show_json(srv: LiveServer) -> None:
    password = "Tr0ub4dor & 3 " + secrets.token_hex(4)
    user = create(srv, password, "--email-verified")
    assert user["username"].startswith("cli") and user["email"] == user["username"] + "@example.com"
    assert user["name"] == "Cli Person" and user["email_verified"] is True
    assert user["disabled"] is False and user["totp"] is False
    assert set(user) == {"id", "username", "name", "email", "email_verified", "disabled", "totp", "created_at",
                         "updated_at"}
    with ThreadPoolExecutor(4) as pool:
        listed = pool.submit(run, srv, "user", "list", "--json")
        by_name = pool.submit(run, srv, "user", "show", user["username"], "--json")
        by_mail = pool.submit(run, srv, "user", "show", user["email"].upper(), "--json")
        plain = pool.submit(run, srv, "user", "show", user["username"])
        table = pool.submit(run, srv, "user", "list")
        dup = pool.submit(run, srv, "user", "create", user["username"], "--password-stdin", input="x" * 12 + "\n",
                          check=False)
        no_tty = pool.submit(run, srv, "user", "create", "cli" + secrets.token_hex(4), check=False, input="")
        empty = pool.submit(run, srv, "user", "create", "cli" + secrets.token_hex(4), "--password-stdin",
                            check=False, input="")
    assert user in json.loads(listed.result().stdout)
    assert json.loads(by_name.result().stdout) == user == json.loads(by_mail.result().stdout)
    assert f"username: {user['username']}" in plain.result().stdout
    assert user["username"] in table.result().stdout and user["id"] in table.result().stdout
    assert dup.result().returncode != 0 and "already taken" in dup.result().stderr + dup.result().stdout
    for proc, message in ((no_tty.result(), "--password-stdin"), (empty.result(), "no password on stdin")):
        assert proc.returncode != 0 and message in proc.stderr + proc.stdout
    assert signed_in(srv, user["username"], password)
    assert signed_in(srv, user["email"], password)


def test_a_disabled_user_cannot_sign_in(srv: LiveServer) -> None:
    password = "correct horse " + secrets.token_hex(4)
    user = create(srv, password)
    b, r = sign_in(srv, user["username"], password)
    try:
        assert r.status_code == 303 and b.http.get("/account").status_code == 200
        disabled = json.loads(run(srv, "user", "disable", user["username"], "--json").stdout)
        assert disabled["disabled"] is True and disabled["id"] == user["id"]
        assert b.http.get("/account").status_code == 303  # the session ended
    finally:
        b.close()
    assert not signed_in(srv, user["username"], password)  # same answer as a wrong password
    enabled = json.loads(run(srv, "user", "disable", user["username"], "--enable", "--json").stdout)
    assert enabled["disabled"] is False
    assert signed_in(srv, user["username"], password)


def test_set_password_from_stdin(srv: LiveServer) -> None:
    old, new = "old password " + secrets.token_hex(4), "new password " + secrets.token_hex(4)
    user = create(srv, old)
    b, r = sign_in(srv, user["username"], old)
    try:
        assert r.status_code == 303
        proc = run(srv, "user", "set-password", user["username"], "--password-stdin", "--json", input=new + "\n")
        assert new not in proc.stdout + proc.stderr and json.loads(proc.stdout)["id"] == user["id"]
        assert b.http.get("/account").status_code == 303  # a new password ends the sessions
    finally:
        b.close()
    assert not signed_in(srv, user["username"], old)
    assert signed_in(srv, user["username"], new)
    text = run(srv, "user", "set-password", user["username"], "--password-stdin", input=old + "\n").stdout
    assert f"password set for {user['username']}" in text


def test_delete(srv: LiveServer) -> None:
    password = "to be deleted " + secrets.token_hex(4)
    user = create(srv, password)
    refused = run(srv, "user", "delete", user["username"], check=False, input="n\n")
    assert refused.returncode != 0
    assert json.loads(run(srv, "user", "show", user["username"], "--json").stdout)["id"] == user["id"]
    assert "deleted" in run(srv, "user", "delete", user["username"], "--yes").stdout
    gone = run(srv, "user", "show", user["username"], check=False)
    assert gone.returncode != 0 and "no user" in gone.stderr + gone.stdout
    assert not signed_in(srv, user["username"], password)
    assert user["id"] not in run(srv, "user", "list", "--json").stdout
