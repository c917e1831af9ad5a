"""``ostiary audit bundle``: a corpus of real-looking bundles, clean ones included.

The secrets are assembled at run time (never committed whole), so that no scanner mistakes this file for a leak.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from ostiary.audit.bundle_scan import scan_bundle
from ostiary.core import jose

from ..support import ostiary

RND = secrets.token_urlsafe(32)
OST_SECRET = "ost_" + "cs_" + RND
GOOGLE_SECRET = "GOCSPX" + "-" + secrets.token_urlsafe(21)
RANDOM_SECRET = secrets.token_hex(20)
REFRESH = "ost_" + "rt_" + secrets.token_urlsafe(32)

# A minified production bundle that does everything right: PKCE, no secret, tokens only at runtime.
CLEAN_MAIN = (
    '!function(){"use strict";var e={authority:"https://id.example.com",client_id:"spa-7f3a",'
    'redirect_uri:window.location.origin+"/callback",response_type:"code",scope:"openid profile offline_access",'
    'code_challenge_method:"S256"};function t(n){return n.refresh_token}function r(n){return n.response_type==="token"'
    '?Promise.reject(new Error("implicit flow not supported")):fetch(e.authority+"/token",{method:"POST",body:'
    'new URLSearchParams({grant_type:"authorization_code",code:n.code,code_verifier:n.v,client_id:e.client_id})})}'
    'var o={grant_type:"refresh_token",refresh_token:t(window.__s)};window.app={e:e,r:r,o:o}}();\n'
    '//# sourceMappingURL=main.4f1c2d.js.map\n'
)
CLEAN_SOURCE = (
    "// Public client: PKCE replaces the secret (never put a client_secret here).\n"
    "export const config = {\n"
    "  clientId: 'spa-7f3a',\n"
    "  clientSecret: process.env.CLIENT_SECRET,\n"
    "  client_secret: 'YOUR_CLIENT_SECRET',\n"
    "  refreshToken: '<refresh_token>',\n"
    "  responseType: 'code',\n"
    "};\n"
)
CLEAN_HTML = ('<!doctype html><html><head><meta charset="utf-8"><title>Acme</title>'
              '<script defer src="/static/js/main.4f1c2d.js"></script></head>'
              '<body><div id="root"></div></body></html>\n')


def _public_jwks() -> str:
    return json.dumps({"keys": [jose.public_jwk(jose.generate_private_key("ES256"), "k1")]})


def _private_jwk() -> str:
    key = jose.generate_private_key("ES256")
    jwk = jose.public_jwk(key, "k1")
    jwk["d"] = jose.b64url(key.private_numbers().private_value.to_bytes(32, "big"))  # type: ignore[union-attr]
    return json.dumps({"keys": [jwk]})


def _pem() -> str:
    return jose.key_to_pem(jose.generate_private_key("ES256")).decode()


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _clean_spa(root: Path) -> Path:
    return _write(root, {
        "index.html": CLEAN_HTML,
        "static/js/main.4f1c2d.js": CLEAN_MAIN,
        "static/js/main.4f1c2d.js.map": json.dumps({"version": 3, "sources": ["src/auth/config.ts"],
                                                    "sourcesContent": [CLEAN_SOURCE], "mappings": "AAAA"}),
        "static/js/vendor.js": "/*! lib */var a=\"0123456789abcdef\",b={kty:\"EC\",crv:\"P-256\"};" * 20,
        "asset-manifest.json": json.dumps({"files": {"main.js": "/static/js/main.4f1c2d.js"}}),
        ".well-known/jwks.json": _public_jwks(),
        # what real libraries and docs contain: a PEM prefix test, a placeholder key, a key read at runtime
        "static/js/jose.js": 'function importPKCS8(p){if(p.indexOf("-----BEGIN PRIVATE KEY-----")!==0)'
                             'throw new TypeError("PKCS#8 expected")}',
        "docs/config.html": '<pre>key="-----BEGIN PRIVATE KEY-----\\nXXXX\\nXXXX\\n-----END PRIVATE KEY-----"</pre>',
        "static/js/env.js": "const key = process.env.PRIVATE_KEY, secret = import.meta.env.VITE_CLIENT_SECRET;",
    })


def _clean_apk(root: Path) -> Path:
    return _write(root, {
        "res/values/strings.xml": '<?xml version="1.0" encoding="utf-8"?>\n<resources>\n'
                                  '  <string name="app_name">Acme</string>\n'
                                  '  <string name="oauth_client_id">android-acme</string>\n'
                                  '  <string name="oauth_redirect">com.acme.app:/oauth/callback</string>\n'
                                  '</resources>\n',
        "assets/auth_config.json": json.dumps({"client_id": "android-acme", "redirect_uri":
                                               "com.acme.app:/oauth/callback", "authorization_scope": "openid"}),
        "classes.dex": "dex\n035\x00binary",
    })


def test_clean_bundles_have_no_finding(tmp_path: Path) -> None:
    for root in (_clean_spa(tmp_path / "spa"), _clean_apk(tmp_path / "apk")):
        report = scan_bundle(root)
        assert report.assessed and report.findings == [], report.as_dict()


DIRTY = [
    ("static/js/main.js", f'var c={{client_id:"web",client_secret:"{RANDOM_SECRET}"}};', "bundle.client-secret", 10),
    ("static/js/main.js", f'fetch(t,{{body:"grant_type=client_credentials&client_secret={RANDOM_SECRET}"}})',
     "bundle.client-secret", 10),
    ("static/js/chunk.js", f'const k="{OST_SECRET}";', "bundle.client-secret", 10),
    ("assets/config.json", json.dumps({"google": {"secret": GOOGLE_SECRET}}), "bundle.client-secret", 10),
    ("res/raw/key.pem", "{pem}", "bundle.private-key", 10),
    ("static/js/sign.js", 'const k = "{pem_escaped}";', "bundle.private-key", 10),
    ("static/jwks-private.json", "{jwk}", "bundle.private-key", 10),
    ("static/js/session.js", f'localStorage.setItem("rt","{REFRESH}")', "bundle.refresh-token", 10),
    ("static/js/session.js", f'var s={{refreshToken:"{secrets.token_urlsafe(40)}"}}', "bundle.refresh-token", 10),
    ("static/js/login.js", 'location.href=a+"/authorize?response_type=token&client_id=spa"', "bundle.implicit", 1),
    ("static/js/login.js", "new UserManager({response_type:'id_token token'})", "bundle.implicit", 1),
    ("static/js/login.js", 'body:"grant_type=password&username="+u+"&password="+p', "bundle.password-grant", 5),
    ("static/js/login.js", "{grantType: 'password', username: u}", "bundle.password-grant", 5),
]


@pytest.mark.parametrize("name,text,expected,mistake", DIRTY, ids=[f"{d[2]}-{i}" for i, d in enumerate(DIRTY)])
def test_each_leak_is_found_with_file_and_line(tmp_path: Path, name: str, text: str, expected: str,
                                               mistake: int) -> None:
    root = _clean_spa(tmp_path)
    body = text.replace("{pem}", _pem()).replace("{jwk}", _private_jwk()) \
        .replace("{pem_escaped}", _pem().replace("\n", "\\n"))
    _write(root, {name: "// build 2026-11-30\n\n" + body + "\n"})
    report = scan_bundle(root)
    assert [f.check.id for f in report.findings] == [expected], report.as_dict()
    finding = report.findings[0]
    assert finding.check.mistake == mistake
    assert finding.path == name and finding.line == 3
    assert finding.evidence.startswith(f"{name}:3: ")
    for secret in (RANDOM_SECRET, OST_SECRET, GOOGLE_SECRET, REFRESH):
        assert secret not in finding.evidence


def test_a_secret_in_a_source_map(tmp_path: Path) -> None:
    root = _clean_spa(tmp_path)
    source = CLEAN_SOURCE.replace("process.env.CLIENT_SECRET", f"'{RANDOM_SECRET}'")
    _write(root, {"static/js/main.4f1c2d.js.map": json.dumps({"version": 3, "sources": ["src/auth/config.ts"],
                                                               "sourcesContent": [source]})})
    report = scan_bundle(root)
    assert report.ids() == ["bundle.client-secret"]
    assert report.findings[0].evidence.startswith("static/js/main.4f1c2d.js.map (src/auth/config.ts):4: ")


def test_cli_exit_codes_and_sarif(tmp_path: Path) -> None:
    env = {"COLUMNS": "200", "NO_COLOR": "1", "PATH": "/usr/bin:/bin"}
    clean = _clean_spa(tmp_path / "clean")
    dirty = _write(_clean_spa(tmp_path / "dirty"), {"static/js/x.js": f'\nconst k="{OST_SECRET}";\n'})
    assert ostiary(["audit", "bundle", str(clean)], env, check=False).returncode == 0
    proc = ostiary(["audit", "bundle", str(dirty), "--sarif"], env, check=False)
    assert proc.returncode == 1
    sarif = json.loads(proc.stdout)
    result = sarif["runs"][0]["results"][0]
    assert result["ruleId"] == "bundle.client-secret"
    assert result["locations"][0]["physicalLocation"] == {"artifactLocation": {"uri": "static/js/x.js"},
                                                          "region": {"startLine": 2}}
    assert OST_SECRET not in proc.stdout
    data = json.loads(ostiary(["audit", "bundle", str(dirty), "--json"], env, check=False).stdout)
    assert data["kind"] == "bundle" and data["findings"][0]["mistake"] == 10
    missing = ostiary(["audit", "bundle", str(tmp_path / "nope"), "--json"], env, check=False)
    assert missing.returncode == 2 and json.loads(missing.stdout)["assessed"] is False
