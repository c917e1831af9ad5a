"""What a new user meets first: errors in the words of the flags, ids that survive an 80-column terminal,
the client toolkit's variables beside the server's, ``--version``, and /metrics off the public port."""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path

import httpx
import pytest

from ostiary.client.discovery import require_https
from ostiary.client.errors import DiscoveryError

from ..support import free_port, ostiary, start_server
from .test_cli import env_for, output, run_parallel


def test_version() -> None:
    env = env_for(Path("/nonexistent.db"))
    out = ostiary(["--version"], env).stdout
    assert re.fullmatch(r"ostiary \d+\.\d+\.\d+\S*\n", out), out


def test_errors_name_the_flags_and_what_to_type(tmp_path: Path) -> None:
    env = env_for(tmp_path / "f.db")
    ostiary(["migrate"], env)
    trust, scope, no_aud = run_parallel([
        (["federation", "trust", "add"], env),
        (["client", "create", "--name", "x", "--scope", 'orders read"', "--audience", "https://a.example.com"], env),
        (["client", "create", "--name", "svc", "--scope", "orders:read"], env),
    ])
    text = output(trust)
    assert trust.returncode == 1, text
    for flag in ("--issuer", "--token-audience", "--claim", "--subject"):
        assert f"{flag} is required" in text, text
    assert "Field required" not in text and "subject_template" not in text and "conditions" not in text
    assert "e.g. --issuer https://" in text

    assert scope.returncode == 1 and "--scope" in output(scope) and "Value error" not in output(scope)
    assert "scopes:" not in output(scope)
    assert no_aud.returncode == 1 and "--audience" in output(no_aud), output(no_aud)

    helped = ostiary(["federation", "trust", "add", "--help"], env).stdout
    options = helped[helped.index("Options"):]
    for flag in ("--issuer", "--token-audience", "--claim ", "--subject"):
        block = options[options.index(flag):][:200]
        assert "required unless in --file" in block, (flag, block)


def test_ids_are_never_cut_on_an_80_column_terminal(tmp_path: Path) -> None:
    env = env_for(tmp_path / "w.db")
    ostiary(["migrate"], env)
    long_id = "reporting-service-" + secrets.token_hex(20)  # 58 characters
    ostiary(["client", "create", "--name", "reporting", "--client-id", long_id, "--scope", "reports:read",
             "--audience", "https://reports.example.com"], env)
    ostiary(["keys", "rotate"], env)
    narrow = {**env, "COLUMNS": "80"}
    clients, keys = run_parallel([(["client", "list"], narrow), (["keys", "list", "--json"], narrow)])
    assert clients.returncode == 0, output(clients)
    assert long_id in clients.stdout, clients.stdout
    kids = [k["kid"] for k in json.loads(keys.stdout)]
    listed = ostiary(["keys", "list"], narrow).stdout
    for kid in kids:
        assert kid in listed, listed


def test_the_client_toolkits_variables_do_not_break_the_server_commands(tmp_path: Path) -> None:
    env = env_for(tmp_path / "t.db", OSTIARY_TOOLKIT_TOKEN_FILE=str(tmp_path / "tokens.enc"),
                  OSTIARY_TOOLKIT_PASSPHRASE="a long passphrase")
    assert ostiary(["migrate"], env, check=False).returncode == 0
    old = env_for(tmp_path / "t.db", OSTIARY_TOKEN_PASSPHRASE="a long passphrase")
    r = ostiary(["client", "list"], old, check=False)
    assert r.returncode == 1
    assert "OSTIARY_TOOLKIT_PASSPHRASE" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "http://127.0.0.2:8000/x", "http://[::1]:8000",
                                 "http://localhost:8000", "https://id.example.com"])
def test_loopback_and_https_issuers_are_accepted(url: str) -> None:
    assert require_https(url, "issuer") == url


def test_a_refused_issuer_url_is_named_with_the_reason() -> None:
    with pytest.raises(DiscoveryError) as info:
        require_https("http://id.example.com", "issuer")
    assert "http://id.example.com" in str(info.value) and "loopback" in str(info.value)


@pytest.mark.parametrize("workers", [1, 2])
def test_metrics_can_move_off_the_public_port(tmp_path: Path, workers: int) -> None:
    metrics_port = free_port()
    srv = start_server(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}", tmp_path, workers=workers,
                       extra_env={"OSTIARY_SERVER__METRICS_ADDRESS": f"127.0.0.1:{metrics_port}"})
    try:
        client = srv.create_client(scopes=["x"])
        r = httpx.post(srv.base_url + "/token", data={"grant_type": "client_credentials"},
                       auth=(client["client_id"], client["client_secret"]))
        assert r.status_code == 200, r.text
        assert httpx.get(srv.base_url + "/metrics").status_code == 404  # not on the public port
        scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert scraped.status_code == 200
        assert re.search(r'ostiary_tokens_issued_total\{grant_type="client_credentials"\} 1\.0', scraped.text), \
            scraped.text[:2000]
    finally:
        srv.stop()


def test_metrics_setting_false_turns_metrics_off(tmp_path: Path) -> None:
    srv = start_server(f"sqlite+aiosqlite:///{tmp_path / 'off.db'}", tmp_path, extra_env={"OSTIARY_METRICS": "false"})
    try:
        assert httpx.get(srv.base_url + "/metrics").status_code == 404
    finally:
        srv.stop()
