"""``ostiary audit api``: an API built with ostiary.resource passes; each hand-written API with one mistake is
caught; a dead or open route is never reported as secure."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ostiary.audit.api_probe import ApiAudit, audit_api

from ..support import LiveServer, ostiary, start_server
from .targets import insecure_api, secure_api, serve

API = "https://api.test.example"
OTHER = "https://reports.test.example"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("audit-api")
    srv = start_server(f"sqlite+aiosqlite:///{tmp / 'a.db'}", tmp)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def tokens(live: LiveServer) -> dict[str, str]:
    """A token for the API, one for another API, one without the route's scope (all genuine)."""
    c = live.create_client(grant_types=["client_credentials"], scopes=["api:read", "api:write"],
                           audiences=[API, OTHER])

    def get(**form: str) -> str:
        r = httpx.post(live.issuer + "/token", data={"grant_type": "client_credentials", **form},
                       auth=(c["client_id"], c["client_secret"]))
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])

    return {"good": get(scope="api:read api:write"), "other": get(scope="api:read", resource=OTHER),
            "noscope": get(scope="api:write")}


def _run(url: str, issuer: str, token: str, extra: list[str] | None = None, scope: str | None = None) -> Any:
    return audit_api(ApiAudit(url + "/orders", issuer, token, extra or [], "GET", scope, 10.0))


def test_an_api_built_with_ostiary_resource_passes(live: LiveServer, tokens: dict[str, str]) -> None:
    env = {"COLUMNS": "200", "NO_COLOR": "1", "PATH": "/usr/bin:/bin"}
    with serve(secure_api(live.issuer, API)) as base:
        full = ostiary(["audit", "api", base + "/orders", "--issuer", live.issuer, "--token-stdin", "--scope",
                        "api:read", "--json"], env, check=False,
                       input="\n".join([tokens["good"], tokens["other"], tokens["noscope"]]) + "\n")
        assert full.returncode == 0, full.stdout + full.stderr
        data = json.loads(full.stdout)
        assert data["assessed"] is True and data["kind"] == "api"
        assert [f["id"] for f in data["findings"] if f["severity"] != "info"] == [], data
        alone = _run(base, live.issuer, tokens["good"])
    assert alone.assessed and [f.check.id for f in alone.findings] == ["api.claims-not-assessed"]
    assert tokens["good"] not in full.stdout


CASES = [
    ("no-signature", {"api.alg-none", "api.hmac-public-key", "api.signature-stripped", "api.signature-corrupted",
                      "api.payload-tampered", "api.unknown-kid", "api.key-from-token", "api.crit-ignored",
                      "api.typ-not-checked"}, 8),
    ("no-aud", {"api.wrong-audience"}, 7),
    ("any-issuer", {"api.any-issuer"}, 9),
    ("jku", {"api.key-from-token"}, 8),
    ("query", {"api.query-token"}, 4),
]


@pytest.mark.parametrize("mistake,expected,number", CASES, ids=[c[0] for c in CASES])
def test_each_insecure_api_yields_its_finding(live: LiveServer, tokens: dict[str, str], mistake: str,
                                              expected: set[str], number: int) -> None:
    with serve(insecure_api(live.issuer, API, mistake)) as base:
        report = _run(base, live.issuer, tokens["good"], [tokens["other"]])
    assert report.assessed
    found = {f.check.id for f in report.findings if f.severity != "info"}
    assert found == expected, report.as_dict()
    assert any(f.check.mistake == number for f in report.findings)


@pytest.mark.parametrize("mistake", ["always-401", "open", "quota"])
def test_a_dead_or_open_route_is_not_assessed(live: LiveServer, tokens: dict[str, str], mistake: str,
                                              tmp_path: Path) -> None:
    env = {"COLUMNS": "200", "NO_COLOR": "1", "PATH": "/usr/bin:/bin"}
    with serve(insecure_api(live.issuer, API, mistake)) as base:
        proc = ostiary(["audit", "api", base + "/orders", "--issuer", live.issuer, "--token-stdin", "--json"], env,
                       check=False, input=tokens["good"] + "\n")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    assert data["assessed"] is False and "api.not-assessed" in [f["id"] for f in data["findings"]]


@pytest.mark.parametrize("url,issuer,token", [("http://[bad", "http://127.0.0.1:9", "abc"),
                                              ("ftp://x/y", "http://127.0.0.1:9", "abc"),
                                              ("http://127.0.0.1:9/x", "http://127.0.0.1:9", "tøken"),
                                              ("http://127.0.0.1:9/x", "http://127.0.0.1:9", "a.b.c")])
def test_bad_input_is_not_assessed_never_a_crash(url: str, issuer: str, token: str) -> None:
    report = audit_api(ApiAudit(url, issuer, token))
    assert report.assessed is False and report.ids() == ["api.not-assessed"]


def test_a_user_route_that_takes_a_service_token(live: LiveServer, tokens: dict[str, str]) -> None:
    """Mistake 6: a client-credentials token names no user; a route that acts for a user must refuse it."""
    from ..web._codeflow import Browser, exchange, get_code, new_user, web_client

    client = web_client(live, audiences=[API], scopes=["openid", "profile", "email", "offline_access", "api:read"])
    user = new_user(live)
    b = Browser(live)
    try:
        code, verifier, _ = get_code(b, client, user, scope="openid api:read")
    finally:
        b.close()
    r = exchange(live, client, code, verifier)
    assert r.status_code == 200, r.text
    user_token = r.json()["access_token"]
    with serve(secure_api(live.issuer, API, user_only=True)) as good, \
            serve(insecure_api(live.issuer, API, "proper")) as bad:
        ok = audit_api(ApiAudit(good + "/orders", live.issuer, user_token, [tokens["good"]], user_route=True))
        caught = audit_api(ApiAudit(bad + "/orders", live.issuer, user_token, [tokens["good"]], user_route=True))
        direct = audit_api(ApiAudit(bad + "/orders", live.issuer, tokens["good"], user_route=True))
    assert ok.assessed and [f.check.id for f in ok.findings if f.severity != "info"] == [], ok.as_dict()
    assert {f.check.id for f in caught.findings if f.severity != "info"} == {"api.service-token-on-user-route"}
    assert caught.findings[0].check.mistake == 6 and "stdin line 2" in caught.findings[0].evidence
    assert "api.service-token-on-user-route" in direct.ids()
