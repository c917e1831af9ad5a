"""The ``ostiary`` command line, run as a subprocess the way an operator runs it.

Generated ids may start with '-', so ids are passed after ``--``.

Every command starts a fresh Python (about a second and a half), so independent invocations run in
parallel, and the commands that need a live server share one module-scoped server.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..support import BIN, LiveServer, base_env, free_port, ostiary, start_server

API = "https://api.example.com"
WIDE = {"COLUMNS": "200", "NO_COLOR": "1"}  # rich wraps help and messages at 80 columns otherwise


def env_for(db: Path, **extra: str) -> dict[str, str]:
    """Settings for a command run against the SQLite database ``db`` (no server)."""
    env = base_env(f"sqlite:///{db}", "http://127.0.0.1:9", secrets.token_urlsafe(40), "admin-" + secrets.token_hex(16),
                   None)
    env.update(WIDE)
    env.update(extra)
    return env


def run_parallel(calls: list[tuple[list[str], dict[str, str]]], *, cwd: Path | None = None
                 ) -> list[subprocess.CompletedProcess[str]]:
    def one(call: tuple[list[str], dict[str, str]]) -> subprocess.CompletedProcess[str]:
        args, env = call
        if args and args[0] == "serve":  # must fail fast; never wait on a server that started by mistake
            return subprocess.run([str(BIN / "ostiary"), *args], env=env, capture_output=True, text=True,
                                  timeout=60, cwd=cwd)
        return ostiary(args, env, check=False, cwd=cwd)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(one, calls))


def output(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def cli_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A live server whose new keys wait 10 minutes before signing, and which reloads keys every second."""
    tmp = tmp_path_factory.mktemp("cli-server")
    srv = start_server(f"sqlite+aiosqlite:///{tmp / 'cli.db'}", tmp,
                       extra_env={"OSTIARY_KEYS__PUBLISH_DELAY": "600", "OSTIARY_KEYS__REFRESH_INTERVAL": "1"})
    srv.env.update(WIDE)
    yield srv
    srv.stop()


def token_response(srv: LiveServer, client_id: str, secret: str, **form: str) -> httpx.Response:
    return httpx.post(srv.base_url + "/token", data={"grant_type": "client_credentials", **form},
                      auth=(client_id, secret), timeout=30)


def jwt_header(token: str) -> dict[str, Any]:
    part = token.split(".")[0]
    header: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return header


# ---------------------------------------------------------------- help

def test_help_of_every_command_group_explains_itself(tmp_path: Path) -> None:
    env = env_for(tmp_path / "unused.db")
    root, client, keys = run_parallel([(["--help"], env), (["client", "--help"], env), (["keys", "--help"], env)])
    for proc in (root, client, keys):
        assert proc.returncode == 0, output(proc)
        assert "Traceback" not in output(proc)
    text = root.stdout
    assert "OAuth 2.1" in text and "OpenID Connect" in text
    assert "--config" in text and "OSTIARY_" in text
    for command, summary in [("migrate", "Create or upgrade the database schema"),
                             ("serve", "Run the authorization server"), ("demo", "demo client"),
                             ("client", "Register and manage OAuth clients"), ("keys", "signing keys")]:
        assert re.search(rf"\b{command}\b.*{re.escape(summary)}", text), (command, text)
    for command, summary in [("create", "Register a client"), ("list", "List registered clients"),
                             ("show", "never its secret"), ("update", "Change a client"), ("delete", "Delete a client"),
                             ("rotate-secret", "Issue a new secret")]:
        assert re.search(rf"\b{command}\b.*{re.escape(summary)}", client.stdout), (command, client.stdout)
    for command, summary in [("list", "List keys"), ("rotate", "Add a new key"), ("retire", "Stop signing")]:
        assert re.search(rf"\b{command}\b.*{re.escape(summary)}", keys.stdout), (command, keys.stdout)


# ---------------------------------------------------------------- migrate and schema checks

def test_migrate_twice_is_idempotent(tmp_path: Path) -> None:
    env = env_for(tmp_path / "m.db")
    first = ostiary(["migrate", "--json"], env)
    before_after = json.loads(first.stdout)
    assert before_after["before"] is None and before_after["after"]
    second = ostiary(["migrate", "--json"], env)
    again = json.loads(second.stdout)
    assert again == {"before": before_after["after"], "after": before_after["after"]}


def test_serve_refuses_an_unmigrated_or_newer_database(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    newer = tmp_path / "newer.db"
    with sqlite3.connect(newer) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
        conn.execute("INSERT INTO alembic_version VALUES ('9999_from_the_future')")
    port = str(free_port())
    unmigrated, newer_serve, newer_migrate = run_parallel([
        (["serve", "--port", port], env_for(empty)),
        (["serve", "--port", port], env_for(newer)),
        (["migrate"], env_for(newer)),
    ])
    assert unmigrated.returncode != 0, output(unmigrated)
    assert "ostiary migrate" in unmigrated.stderr
    for proc in (newer_serve, newer_migrate):
        assert proc.returncode != 0, output(proc)
        assert "newer" in proc.stderr and "9999_from_the_future" in proc.stderr
    for proc in (unmigrated, newer_serve, newer_migrate):
        assert "Traceback" not in output(proc)
    with sqlite3.connect(newer) as conn:  # migrate did not touch the newer schema
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("9999_from_the_future",)]


# ---------------------------------------------------------------- settings

def test_invalid_settings_are_refused_naming_the_setting_and_its_variable(tmp_path: Path) -> None:
    toml = tmp_path / "ostiary.toml"
    toml.write_text('issuer = "http://127.0.0.1:9"\n[keys]\nrotate_evry = "30d"\n')
    cases: list[tuple[str, list[str], dict[str, str], list[str]]] = [
        ("http issuer", ["migrate"], {"OSTIARY_ISSUER": "http://example.com"},
         ["issuer", "OSTIARY_ISSUER", "https"]),
        ("short ttl", ["migrate"], {"OSTIARY_ACCESS_TOKEN_TTL": "5"},
         ["access_token_ttl", "OSTIARY_ACCESS_TOKEN_TTL", "60"]),
        ("unknown env", ["migrate"], {"OSTIARY_UNKNOWN": "1"}, ["unknown", "OSTIARY_UNKNOWN", "unknown setting"]),
        ("unknown toml key", ["--config", str(toml), "migrate"], {},
         ["keys.rotate_evry", "OSTIARY_KEYS__ROTATE_EVRY", "unknown setting"]),
    ]
    procs = run_parallel([(args, env_for(tmp_path / f"s{i}.db", **extra))
                          for i, (_, args, extra, _) in enumerate(cases)])
    problems = []
    for (name, _, _, needles), proc in zip(cases, procs, strict=True):
        if proc.returncode == 0:
            problems.append(f"{name}: exit code 0")
        missing = [n for n in needles if n not in proc.stderr]
        if missing:
            problems.append(f"{name}: {missing} not in {proc.stderr!r}")
        if "Traceback" in output(proc):
            problems.append(f"{name}: traceback")
    assert not problems, "\n".join(problems)
    assert not any((tmp_path / f"s{i}.db").exists() for i in range(len(cases)))  # refused before touching the db


# ---------------------------------------------------------------- clients against a live server

def test_client_commands(cli_server: LiveServer) -> None:
    srv = cli_server
    created = json.loads(srv.cli("client", "create", "--name", "reporting", "--scope", "reports:read",
                                 "--audience", API, "--json").stdout)
    cid, secret = created["client_id"], created["client_secret"]
    assert secret.startswith("ost_cs_")
    assert created["scopes"] == ["reports:read"] and created["audiences"] == [API]
    assert token_response(srv, cid, secret).status_code == 200

    listed, shown = run_parallel([(["client", "list", "--json"], srv.env),
                                  (["client", "show", "--json", "--", cid], srv.env)])
    assert listed.returncode == 0 and shown.returncode == 0, output(listed) + output(shown)
    assert cid in {c["client_id"] for c in json.loads(listed.stdout)}
    assert secret not in listed.stdout
    view = json.loads(shown.stdout)
    assert view["client_id"] == cid and view["name"] == "reporting"
    assert "client_secret" not in view and secret not in output(shown)

    updated = json.loads(srv.cli("client", "update", "--scope", "reports:read reports:write",
                                 "--json", "--", cid).stdout)
    assert updated["scopes"] == ["reports:read", "reports:write"]
    r = token_response(srv, cid, secret, scope="reports:write")
    assert r.status_code == 200, r.text

    rotated = json.loads(srv.cli("client", "rotate-secret", "--overlap", "0", "--json", "--", cid).stdout)
    new_secret = rotated["client_secret"]
    assert new_secret.startswith("ost_cs_") and new_secret != secret
    assert token_response(srv, cid, new_secret).status_code == 200
    r = token_response(srv, cid, secret)
    assert r.status_code == 401 and r.json()["error"] == "invalid_client", r.text

    deleted = srv.cli("client", "delete", "--yes", "--", cid)
    assert cid in deleted.stdout
    assert token_response(srv, cid, new_secret).status_code == 401
    gone = srv.cli("client", "show", "--json", "--", cid, check=False)
    assert gone.returncode == 1
    assert cid in gone.stderr and "Traceback" not in output(gone)


def test_keys_commands(cli_server: LiveServer) -> None:
    srv = cli_server
    keys = json.loads(srv.cli("keys", "list", "--json").stdout)
    # one active key per algorithm: ES256 (access tokens) and RS256 (ID tokens)
    assert sorted((k["alg"], k["state"]) for k in keys) == [("ES256", "active"), ("RS256", "active")]
    active = next(k["kid"] for k in keys if k["alg"] == "ES256")
    rs = next(k["kid"] for k in keys if k["alg"] == "RS256")

    client = srv.create_client(audiences=[API])
    (rotated,) = json.loads(srv.cli("keys", "rotate", "--alg", "ES256", "--json").stdout)
    pending = rotated["kid"]
    assert pending != active and rotated["state"] == "pending"
    assert rotated["activates_at"] - rotated["created_at"] == 600

    # published within a few seconds (the server reloads keys every second), but not signing yet
    deadline = time.monotonic() + 15
    published: set[str] = set()
    while time.monotonic() < deadline:
        published = {k["kid"] for k in httpx.get(srv.base_url + "/jwks").json()["keys"]}
        if pending in published:
            break
        time.sleep(0.2)
    assert {active, pending} <= published
    r = token_response(srv, client["client_id"], client["client_secret"])
    assert r.status_code == 200, r.text
    assert jwt_header(r.json()["access_token"])["kid"] == active

    refused = srv.cli("keys", "retire", "--", active, check=False)
    assert refused.returncode == 1, output(refused)
    assert "ostiary keys rotate --now" in refused.stderr
    assert "Traceback" not in output(refused)
    # nothing changed: the active key still signs
    states = {k["kid"]: k["state"] for k in json.loads(srv.cli("keys", "list", "--json").stdout)}
    assert states == {active: "active", pending: "pending", rs: "active"}


# ---------------------------------------------------------------- demo

def test_demo_prints_a_working_setup_and_a_new_secret_each_run(tmp_path: Path) -> None:
    env = {k: v for k, v in base_env("unused", "unused", "unused", "unused", None).items()
           if not k.startswith("OSTIARY_")}
    env.update(WIDE)
    port = free_port()
    first = ostiary(["demo", "--no-serve", "--port", str(port)], env, cwd=tmp_path)
    second = ostiary(["demo", "--no-serve", "--port", str(port)], env, cwd=tmp_path)
    secrets_seen = []
    for proc in (first, second):
        text = proc.stdout
        assert "demo-service" in text
        found = re.findall(r"ost_cs_[A-Za-z0-9_-]{40,}", text)
        assert found, text
        secrets_seen.append(found[0])
        curl = next(line for line in text.splitlines() if "curl" in line and "/token" in line)
        assert f"-u 'demo-service:{found[0]}'" in curl
        assert f"http://127.0.0.1:{port}/token" in curl
        assert "grant_type=client_credentials" in curl
    assert secrets_seen[0] != secrets_seen[1]
    assert (tmp_path / ".demo").is_dir()
