"""``ostiary client registration-token create`` and ``ostiary client list --dynamic`` against a migrated SQLite
database, as an operator runs them (no server)."""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from pathlib import Path

from ..support import ostiary
from .test_cli import env_for, output, run_parallel


def test_registration_token_create(tmp_path: Path) -> None:
    db = tmp_path / "o.db"
    env = env_for(db)
    ostiary(["migrate"], env)
    before = time.time()
    out = json.loads(ostiary(["client", "registration-token", "create", "--uses", "3", "--expires-in", "2h",
                              "--json"], env).stdout)
    token = out["initial_access_token"]
    assert token.startswith("ost_iat_") and out["uses"] == 3
    assert before + 7200 - 5 <= out["expires_at"] <= time.time() + 7200 + 5
    rows = sqlite3.connect(db).execute("SELECT token_hash, uses_left FROM initial_access_tokens").fetchall()
    assert len(rows) == 1 and rows[0][1] == 3
    assert token not in rows[0][0]  # only its hash is stored
    human = ostiary(["client", "registration-token", "create"], env).stdout
    assert "initial_access_token" in human and "shown once" in human

    bad, zero, help_ = run_parallel([
        (["client", "registration-token", "create", "--expires-in", "soon"], env),
        (["client", "registration-token", "create", "--uses", "0"], env),
        (["client", "registration-token", "create", "--help"], env),
    ])
    assert bad.returncode != 0 and "--expires-in" in output(bad)
    assert zero.returncode != 0 and "--uses" in output(zero)
    assert help_.returncode == 0 and "Authorization: Bearer" in help_.stdout


def test_list_dynamic_shows_only_self_registered_clients(tmp_path: Path) -> None:
    db = tmp_path / "o.db"
    env = env_for(db)
    ostiary(["migrate"], env)
    vetted = json.loads(ostiary(["client", "create", "--name", "vetted", "--public", "--grant-type",
                                 "authorization_code", "--redirect-uri", "https://app.example.com/cb", "--json"],
                                env).stdout)["client_id"]
    dynamic_id = "dyn-" + secrets.token_hex(4)
    with sqlite3.connect(db) as conn:  # what POST /register writes (tests/web/test_registration.py does it over HTTP)
        conn.execute(
            "INSERT INTO clients (client_id, name, client_type, token_endpoint_auth_method, grant_types, scopes, "
            "audiences, resource_audiences, redirect_uris, post_logout_redirect_uris, allowed_origins, secrets, "
            "first_party, created_at, updated_at, dynamic) VALUES (?, 'agent', 'public', 'none', "
            "'[\"authorization_code\"]', '[\"openid\"]', '[]', '[]', '[\"https://agent.example/cb\"]', '[]', '[]', "
            "'[]', 0, ?, ?, 1)", (dynamic_id, time.time(), time.time()))
    listed = json.loads(ostiary(["client", "list", "--dynamic", "--json"], env).stdout)
    assert [c["client_id"] for c in listed] == [dynamic_id]
    assert listed[0]["dynamic"] is True and listed[0]["last_used_at"] is None
    everything = {c["client_id"] for c in json.loads(ostiary(["client", "list", "--json"], env).stdout)}
    assert {vetted, dynamic_id} <= everything
    table = ostiary(["client", "list", "--dynamic"], env).stdout
    assert dynamic_id in table and vetted not in table and "last used" in table
    ostiary(["client", "disable", "--", dynamic_id], env)
    assert json.loads(ostiary(["client", "show", "--json", "--", dynamic_id], env).stdout)["disabled"] is True
