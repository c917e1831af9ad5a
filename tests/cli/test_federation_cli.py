"""``ostiary federation trust add|list|show|remove`` and ``ostiary federation explain --token FILE``, run as a
separate process against the live server's database, with the example's stand-in CI issuer over real HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from ..federation_support import DEPLOY, exchange, start_ci
from ..support import LiveServer


@pytest.fixture
def ci(tmp_path: Path) -> Iterator[Any]:
    issuer = start_ci(tmp_path)
    yield issuer
    issuer.stop()


def add(server: LiveServer, ci: Any, *extra: str, policy_id: str | None = None) -> dict[str, Any]:
    args = ["federation", "trust", "add", "--name", "acme/api deploys", "--issuer", ci.issuer,
            "--token-audience", server.issuer, "--claim", "repository=acme/api", "--claim-glob", "ref=refs/heads/main",
            "--subject", "ci:{repository}@{environment}", "--scope", "deploy", "--audience", DEPLOY, "--json"]
    args += ["--id", policy_id or "cli-" + str(ci.port)]
    out: dict[str, Any] = json.loads(server.cli(*args, *extra).stdout)
    return out


def explain(server: LiveServer, tmp_path: Path, token: str, *args: str) -> tuple[int, str]:
    path = tmp_path / "token.jwt"
    path.write_text(token + "\n")
    proc = server.cli("federation", "explain", "--token", str(path), *args, check=False)
    assert proc.returncode in (0, 2), proc.stderr
    assert token not in proc.stdout + proc.stderr
    return proc.returncode, proc.stdout


def test_trust_policy_lifecycle(server: LiveServer, ci: Any) -> None:
    view = add(server, ci, "--claim", "environment=production", "--max-lifetime", "10m", "--max-token-age", "5m",
               "--one-time-jti")
    pid = view["policy_id"]
    assert view["conditions"] == [{"claim": "repository", "op": "eq", "value": "acme/api"},
                                  {"claim": "environment", "op": "eq", "value": "production"},
                                  {"claim": "ref", "op": "glob", "value": "refs/heads/main"}]
    assert (view["max_lifetime"], view["max_token_age"], view["one_time_jti"]) == (600, 300, True)
    assert view["scopes"] == ["deploy"] and view["audiences"] == [DEPLOY] and view["allowed_clients"] == []

    listed = json.loads(server.cli("federation", "trust", "list", "--issuer", ci.issuer, "--json").stdout)
    assert [p["policy_id"] for p in listed] == [pid]
    assert pid in server.cli("federation", "trust", "list").stdout
    text = server.cli("federation", "trust", "show", pid).stdout
    assert "ref matches 'refs/heads/main'" in text and "any caller" in text
    with server.admin() as admin:  # the admin API sees the same database
        assert admin.get(f"/federation/trust/{pid}").json()["policy_id"] == pid

    dup = server.cli("federation", "trust", "add", "--name", "x", "--id", pid, "--issuer", ci.issuer,
                     "--token-audience", "a", "--claim", "a=b", "--subject", "x", "--audience", DEPLOY, check=False)
    assert dup.returncode == 1 and "already exists" in dup.stderr

    assert json.loads(server.cli("federation", "trust", "remove", pid, "--yes", "--json").stdout) == {"removed": pid}
    gone = server.cli("federation", "trust", "show", pid, check=False)
    assert gone.returncode == 1 and "no trust policy" in gone.stderr


#: Backend-independent checks run once: each CLI process costs a second or two.
sqlite_only = pytest.mark.parametrize("server", ["sqlite"], indirect=True)


@sqlite_only
def test_add_from_file_and_validation_messages(server: LiveServer, ci: Any, tmp_path: Path) -> None:
    spec = {"name": "from file", "policy_id": f"file-{ci.port}", "issuer": ci.issuer, "audience": server.issuer,
            "conditions": [{"claim": "repository", "op": "eq", "value": "acme/api"}],
            "subject_template": "ci:{repository}", "audiences": [DEPLOY], "scopes": ["read"]}
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(spec))
    view = json.loads(server.cli("federation", "trust", "add", "--file", str(path), "--scope", "deploy",
                                 "--json").stdout)
    assert view["policy_id"] == f"file-{ci.port}" and view["scopes"] == ["deploy"]

    base = ["federation", "trust", "add", "--name", "bad", "--token-audience", "x", "--audience", DEPLOY,
            "--subject", "ci:{repository}", "--claim", "repository=acme/api"]
    for args, message in [
        (["--issuer", "http://ci.example.com"], "https"),
        (["--issuer", ci.issuer, "--max-lifetime", "2h"], "--max-lifetime"),
        (["--issuer", ci.issuer, "--subject", "ci:{a.b}"], "--subject"),
        (["--issuer", ci.issuer, "--claim", "nonsense"], "CLAIM=VALUE"),
        (["--issuer", ci.issuer, "--client", "nobody"], "does not exist"),
    ]:
        proc = server.cli(*base, *args, check=False)
        assert proc.returncode == 1 and message in proc.stderr, (args, proc.stderr)
    helptext = server.cli("federation", "trust", "add", "--help").stdout
    assert "--claim-glob" in helptext and "GitHub Actions" in helptext


def test_explain_allowed(server: LiveServer, ci: Any, tmp_path: Path) -> None:
    pid = add(server, ci)["policy_id"]
    token = ci.mint(server.issuer)
    code, out = explain(server, tmp_path, token)
    assert code == 0
    assert f"Policy {pid} (acme/api deploys): MATCHES  <- selected" in out
    assert "ok    repository == 'acme/api' (token has \"acme/api\")" in out
    assert "Result: ALLOWED" in out and "sub 'ci:acme/api@production'" in out and "lifetime 900s" in out
    code, out = explain(server, tmp_path, token, "--json", "--scope", "deploy")
    report = json.loads(out)
    assert code == 0 and report["outcome"] == "allowed" and report["selected_policy"] == pid
    assert report["would_issue"]["client_id"] == f"federation:{pid}"
    proc = server.cli("federation", "explain", "--token", "-", "--json", input=token)
    assert json.loads(proc.stdout)["outcome"] == "allowed"
    assert exchange(server, token).status_code == 200  # explain issued and consumed nothing


def _refusals(server: LiveServer, ci: Any, other: Any) -> dict[str, tuple[str, str]]:
    """name → (token, text the explanation must show)."""
    now = int(time.time())
    forged = jwt.encode(jwt.decode(ci.mint(server.issuer), options={"verify_signature": False}),
                        ec.generate_private_key(ec.SECP256R1()), algorithm="ES256",
                        headers={"kid": ci.keys.signing_key()[0]})
    return {
        "wrong issuer": (other.mint(server.issuer), f"FAIL  issuer: no trust policy for issuer {other.issuer!r}"),
        "wrong audience": (ci.mint("https://sts.amazonaws.com"), "FAIL  audience: aud must contain"),
        "expired": (ci.mint(server.issuer, now=now - 400), "FAIL  exp: expired at"),
        "future iat": (ci.mint(server.issuer, iat=now + 600), "FAIL  iat: issued at"),
        "future nbf": (ci.mint(server.issuer, nbf=now + 600), "FAIL  nbf: not valid before"),
        "bad signature": (forged, "FAIL  signature: signature verification failed"),
        "unknown kid": (ci.mint(server.issuer, kid="ci-unknown"), "FAIL  signature: no key with kid 'ci-unknown'"),
        "eq condition": (ci.mint(server.issuer, repository="acme/other"),
                         "FAIL  repository == 'acme/api' (token has \"acme/other\")"),
        "glob condition": (ci.mint(server.issuer, ref="refs/heads/dev"),
                           "FAIL  ref matches 'refs/heads/main' (token has \"refs/heads/dev\")"),
        "missing claim": (ci.mint(server.issuer, environment=None), "FAIL  subject: cannot render"),
    }


@sqlite_only
def test_explain_each_refusal(server: LiveServer, ci: Any, tmp_path: Path) -> None:
    add(server, ci)
    other = start_ci(tmp_path / "other")
    try:
        for name, (token, shown) in _refusals(server, ci, other).items():
            r = exchange(server, token)
            assert r.status_code == 400 and r.json()["error"] == "invalid_grant", name
            code, out = explain(server, tmp_path, token)
            assert code == 2, name
            assert "Result: REFUSED (invalid_grant)" in out, (name, out)
            assert shown in out, (name, out)
    finally:
        other.stop()


def test_explain_replayed_jti_and_removed_policy(server: LiveServer, ci: Any, tmp_path: Path) -> None:
    pid = add(server, ci, "--one-time-jti")["policy_id"]
    token = ci.mint(server.issuer)
    assert exchange(server, token).status_code == 200
    code, out = explain(server, tmp_path, token)
    assert code == 2 and "FAIL  jti_unused: this token was already exchanged" in out
    server.cli("federation", "trust", "remove", pid, "--yes")
    code, out = explain(server, tmp_path, ci.mint(server.issuer), "--json")
    assert code == 2 and json.loads(out)["reason"] == f"issuer: no trust policy for issuer {ci.issuer!r}"


def test_explain_client_rules(server: LiveServer, ci: Any, tmp_path: Path) -> None:
    runner = server.create_client(grant_types=["urn:ietf:params:oauth:grant-type:token-exchange"])
    add(server, ci, "--client", runner["client_id"])
    token = ci.mint(server.issuer)
    code, out = explain(server, tmp_path, token)
    assert code == 2 and "the caller did not authenticate" in out
    code, out = explain(server, tmp_path, token, "--client", runner["client_id"])
    assert code == 0 and f"client_id '{runner['client_id']}'" in out
