"""``ostiary audit issuer``: Ostiary's own server passes; each insecure toy issuer yields its finding."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from ostiary.audit.issuer import IssuerAudit, audit_issuer

from ..support import LiveServer, ostiary, start_server
from ..web._codeflow import Browser, exchange, get_code, new_user, web_client
from .targets import toy_issuer


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("audit-issuer")
    srv = start_server(f"sqlite+aiosqlite:///{tmp / 'a.db'}", tmp)
    yield srv
    srv.stop()


def _user_refresh_token(srv: LiveServer) -> tuple[str, str]:
    client, user = web_client(srv), new_user(srv)
    b = Browser(srv)
    try:
        code, verifier, _ = get_code(b, client, user)
    finally:
        b.close()
    r = exchange(srv, client, code, verifier)
    assert r.status_code == 200, r.text
    return client["client_id"], r.json()["refresh_token"]


def _audit(args: list[str], env: dict[str, str], stdin: str | None = None) -> tuple[int, dict[str, Any]]:
    proc = ostiary(["audit", "issuer", *args, "--json"], env, check=False, input=stdin)
    assert proc.returncode in (0, 1, 2), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_ostiary_passes_every_issuer_check(live: LiveServer) -> None:
    service = live.create_client(grant_types=["client_credentials"], scopes=["api:read"])
    public_id, refresh_token = _user_refresh_token(live)
    code, cc = _audit([live.issuer, "--client-id", service["client_id"], "--client-secret-stdin"], live.env,
                      service["client_secret"] + "\n")
    assert code == 0 and cc["assessed"] is True, cc
    assert [f["id"] for f in cc["findings"] if f["severity"] != "info"] == [], cc
    code, rt = _audit([live.issuer, "--client-id", public_id, "--refresh-token-stdin"], live.env,
                      refresh_token + "\n")
    assert code == 0 and rt["assessed"] is True, rt
    assert [f["id"] for f in rt["findings"] if f["severity"] != "info"] == [], rt
    assert "issuer.refresh-rotation-ok" in [f["id"] for f in rt["findings"]]
    assert refresh_token not in json.dumps(rt)


def _ids(issuer: Any, *, cc: bool = False, refresh: bool = False) -> set[str]:
    spec = IssuerAudit(issuer.base, issuer.client_id if cc or refresh else None, issuer.client_secret if cc else None,
                       issuer.new_refresh_token() if refresh else None)
    report = audit_issuer(spec)
    assert report.assessed, report.as_dict()
    return set(report.ids())


def test_the_secure_toy_issuer_has_no_finding() -> None:
    with toy_issuer() as issuer:
        assert _ids(issuer, cc=True) == set()
        assert _ids(issuer, refresh=True) == {"issuer.refresh-rotation-ok"}


CASES = [
    ({"response_types": ["code", "token", "id_token token"]}, {}, "issuer.implicit", 1),
    ({"response_types": ["code", "code id_token"]}, {}, "issuer.hybrid", 1),
    ({"grant_types": ["authorization_code", "password"]}, {}, "issuer.password-grant", 5),
    ({"pkce_methods": None}, {}, "issuer.pkce-not-advertised", None),
    ({"pkce_methods": ["plain", "S256"]}, {}, "issuer.pkce-plain", None),
    ({"pkce_methods": ["plain"]}, {}, "issuer.public-clients-without-pkce", None),
    ({"iss_parameter": False}, {}, "issuer.no-iss-parameter", None),
    ({"revocation": False}, {}, "issuer.no-revocation", None),
    ({"dpop": False}, {}, "issuer.no-sender-constraint", None),
    ({"public_host": "http://idp.example.com"}, {}, "issuer.not-https", None),
    ({"id_token_algs": ["none", "RS256"]}, {}, "issuer.alg-none", 8),
    ({"id_token_algs": ["HS256"]}, {}, "issuer.alg-hmac", None),
    ({"rsa_bits": 1024}, {}, "issuer.jwks-weak-key", None),
    ({"publish_private": True}, {}, "issuer.jwks-private-key", None),
    ({"cors_authorize": True}, {}, "issuer.cors-authorize", None),
    ({"lifetime": 86400}, {"cc": True}, "issuer.long-lived-token", 2),
    ({"aud": None}, {"cc": True}, "issuer.token-no-audience", 7),
    ({"aud": "*"}, {"cc": True}, "issuer.token-wildcard-audience", 7),
    ({"typ": "JWT"}, {"cc": True}, "issuer.token-typ", None),
    ({"no_store": False}, {"cc": True}, "issuer.token-cacheable", None),
    ({"no_store": False}, {"refresh": True}, "issuer.token-cacheable", None),
    ({"query_tokens": True}, {"cc": True}, "issuer.query-token", 4),
    ({"userinfo_accepts_service_tokens": True}, {"cc": True}, "issuer.service-token-as-user", 6),
    ({"rotate": False}, {"refresh": True}, "issuer.refresh-not-rotated", 3),
    ({"refuse_reuse": False}, {"refresh": True}, "issuer.refresh-reuse-accepted", 3),
    ({"revoke_family": False}, {"refresh": True}, "issuer.refresh-family-not-revoked", 3),
]

ALSO = {"issuer.token-cacheable": ("issuer.refresh-rotation-ok",),
        "issuer.public-clients-without-pkce": ("issuer.pkce-plain", "issuer.pkce-no-s256"),
        "issuer.pkce-not-advertised": ("issuer.public-clients-without-pkce",),
        "issuer.query-token": ("issuer.service-token-as-user",)}


@pytest.mark.parametrize("config,mode,expected,mistake", CASES, ids=[f"{c[2]}-{i}" for i, c in enumerate(CASES)])
def test_each_insecure_issuer_yields_its_finding(config: dict[str, Any], mode: dict[str, bool], expected: str,
                                                 mistake: int | None) -> None:
    from ostiary.audit import CHECKS

    assert CHECKS[expected].mistake == mistake
    with toy_issuer(**config) as issuer:
        ids = _ids(issuer, **mode)
    assert expected in ids, ids
    # and nothing else, but what follows from the same switch
    assert ids <= {expected, *ALSO.get(expected, ())}, ids


def test_exit_codes_json_and_sarif(tmp_path: Path) -> None:
    env = {"COLUMNS": "200", "NO_COLOR": "1", "PATH": "/usr/bin:/bin"}
    with toy_issuer(grant_types=["authorization_code", "password"], iss_parameter=False) as bad, toy_issuer() as good:
        code_bad, data = _audit([bad.base], env)
        assert code_bad == 1
        assert data["kind"] == "issuer" and data["target"] == bad.base and data["assessed"] is True
        finding = next(f for f in data["findings"] if f["id"] == "issuer.password-grant")
        assert set(finding) == {"id", "mistake", "severity", "title", "evidence", "fix", "reference"}
        assert finding["mistake"] == 5 and finding["severity"] == "high"
        assert finding["reference"].startswith("RFC 9700 §2.4")
        assert _audit([bad.base, "--fail-on", "low"], env)[0] == 1
        assert _audit([good.base], env)[0] == 0
        assert _audit([good.base, "--fail-on", "info"], env)[0] == 0
        sarif = json.loads(ostiary(["audit", "issuer", bad.base, "--sarif"], env, check=False).stdout)
        text = ostiary(["audit", "issuer", bad.base], env, check=False).stdout
    assert sarif["version"] == "2.1.0" and sarif["$schema"].endswith("sarif-2.1.0.json")
    run = sarif["runs"][0]
    assert {r["id"] for r in run["tool"]["driver"]["rules"]} == {"issuer.password-grant", "issuer.no-iss-parameter"}
    assert {r["ruleId"] for r in run["results"]} == {"issuer.password-grant", "issuer.no-iss-parameter"}
    assert next(r for r in run["results"] if r["ruleId"] == "issuer.password-grant")["level"] == "error"
    assert "Resource Owner Password grant offered" in text and "RFC 9700 §2.4" in text
    # an issuer that is not there: not assessed, exit 2, never a pass
    code, data = _audit(["http://127.0.0.1:9"], env)
    assert code == 2 and data["assessed"] is False and data["findings"][0]["id"] == "issuer.unreachable"
    # client credentials that do not work: not assessed either
    with toy_issuer() as good:
        code, data = _audit([good.base, "--client-id", "svc", "--client-secret-stdin"], env, "wrong\n")
    assert code == 2 and "issuer.client-credentials-failed" in [f["id"] for f in data["findings"]]


GARBAGE = [
    {"raw_metadata": {"issuer": "{base}", "response_types_supported": "code token", "grant_types_supported": {"a": 1},
                      "jwks_uri": 42, "token_endpoint": None, "authorization_endpoint": ["x"],
                      "code_challenge_methods_supported": "S256", "userinfo_endpoint": 7}},
    {"raw_metadata": {"issuer": "{base}", "jwks_uri": "{base}/jwks", "token_endpoint": "{base}/token",
                      "userinfo_endpoint": "{base}/userinfo"},
     "raw_jwks": {"keys": [1, "x", {"kty": "RSA", "n": 5}, {"kty": "oct", "k": "c2VjcmV0"}]}},
    {"raw_jwks": [1, 2], "raw_token": b'{"access_token": "a.b.c", "expires_in": "soon"}'},
    {"raw_token": b'{"access_token": ["x"]}'},
    {"raw_token": b"<html>not json</html>"},
    {"raw_metadata": ["not", "an", "object"]},
    # nested deeper than Python's recursion limit: json.loads raises RecursionError, not ValueError
    {"raw_token": b'{"access_token":' + b"[" * 3000 + b"]" * 3000 + b"}"},
    # numbers json.loads reads and int() refuses
    {"raw_token": b'{"access_token": "a.b.c", "expires_in": NaN}'},
    {"raw_token": b'{"access_token": "a.b.c", "expires_in": 1e400}'},
    {"raw_token": b'{"access_token": "a.b.c", "expires_in": "' + b"9" * 5000 + b'"}'},
    {"raw_token": b'{"expires_in": 60, "access_token": "'
                  + base64.urlsafe_b64encode(b"[" * 1500 + b"]" * 1500).rstrip(b"=") + b'.e30.c2ln"}'},
]


@pytest.mark.parametrize("config", GARBAGE, ids=[str(i) for i in range(len(GARBAGE))])
def test_garbage_from_the_issuer_is_reported_never_a_crash(config: dict[str, Any]) -> None:
    with toy_issuer(**config) as issuer:
        for spec in (IssuerAudit(issuer.base), IssuerAudit(issuer.base, "svc", issuer.client_secret),
                     IssuerAudit(issuer.base, "svc", None, issuer.new_refresh_token())):
            report = audit_issuer(spec)
            assert report.findings or spec.client_id is None, report.as_dict()
            json.dumps(report.as_dict())
