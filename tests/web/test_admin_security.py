"""Issue 17 items 1, 3, 9: who may administer, what a password reset ends, what changing a second factor takes.

Against live servers (SQLite and PostgreSQL): a user's token never opens the admin API, whatever scope its
client holds; ``admin`` is refused on user-facing clients; every admin call is audited; failed admin
authentication is locked out per address; a password reset, a disabled account or a reset second factor
kills the user's refresh and access tokens; turning off or replacing a second factor needs the password or a
current code and signs the other browsers out.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pyotp
import pytest

from ostiary.core.audit import AuditEvent
from ostiary.core.clients import Client
from ostiary.store.sql import SqlStore

from ..support import LiveServer
from ._codeflow import REDIRECT, Browser, exchange, forms, get_code, new_user, refresh, web_client

API = "https://api.example.com"


@pytest.fixture
def browser(server: LiveServer) -> Iterator[Browser]:
    b = Browser(server)
    yield b
    b.close()


def admin_api(server: LiveServer, token: str) -> httpx.Client:
    return httpx.Client(base_url=server.base_url + "/admin/api", timeout=30,
                        headers={"Authorization": f"Bearer {token}"})


def problem(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json") and "Traceback" not in r.text
    description: str = r.json()["error_description"]
    return description


def add_client_behind_the_api(server: LiveServer, client: Client) -> None:
    """A client stored as an older version (or a hand-edited database) could have: no registration rules."""
    async def go() -> None:
        store = SqlStore.from_url(server.env["OSTIARY_DATABASE_URL"])
        try:
            await store.add_client(client)
        finally:
            await store.close()

    asyncio.run(go())


def audit_events(server: LiveServer, until: Callable[[list[AuditEvent]], bool]) -> list[AuditEvent]:
    """The server's ``admin.*`` audit events, once ``until`` holds (events are written in batches)."""
    async def read() -> list[AuditEvent]:
        store = SqlStore.from_url(server.env["OSTIARY_DATABASE_URL"])
        try:
            return await store.list_events(1000, "admin.")
        finally:
            await store.close()

    deadline = time.monotonic() + 20
    while True:
        events = asyncio.run(read())
        if until(events) or time.monotonic() > deadline:
            return events
        time.sleep(0.2)


# ---------------------------------------------------------------- item 1: only admin clients administer

@pytest.mark.parametrize("flagged", [False, True])
def test_a_users_token_with_the_admin_scope_never_opens_the_admin_api(server: LiveServer, browser: Browser,
                                                                     flagged: bool) -> None:
    """The reproduction of issue 17 item 1, with the client stored behind the API's back (as before the fix);
    even flagged admin, a code-flow client's user tokens are refused: they are not client-credentials tokens."""
    cid = "codeflow-admin-" + secrets.token_hex(4)
    add_client_behind_the_api(server, Client(
        client_id=cid, name="legacy console", client_type="public", token_endpoint_auth_method="none",
        grant_types=frozenset({"authorization_code", "refresh_token"}), scopes=frozenset({"openid", "admin"}),
        audiences=(server.issuer + "/admin",), redirect_uris=(REDIRECT,), first_party=True, admin=flagged,
        created_at=time.time(), updated_at=time.time()))
    client = {"client_id": cid}
    user = new_user(server)
    code, verifier, _ = get_code(browser, client, user, scope="openid admin")
    tokens = exchange(server, client, code, verifier).json()
    assert "admin" in tokens["scope"].split(), tokens
    with admin_api(server, tokens["access_token"]) as c:
        problem(c.get("/users"), 401)
        problem(c.post("/clients", json={"name": "backdoor", "audiences": [API]}), 401)
    with server.admin() as admin:
        assert "backdoor" not in {c["name"] for c in admin.get("/clients").json()}


@pytest.mark.parametrize(("spec", "words"), [
    ({"client_type": "public", "grant_types": ["authorization_code", "refresh_token"], "scopes": ["openid", "admin"],
      "redirect_uris": [REDIRECT]}, "user-facing grants (authorization_code, refresh_token)"),
    ({"client_type": "public", "grant_types": ["authorization_code"], "scopes": ["openid"],
      "redirect_uris": [REDIRECT], "audiences": ["{issuer}/admin"]}, "user-facing grants (authorization_code)"),
    ({"client_type": "public", "grant_types": ["urn:ietf:params:oauth:grant-type:device_code"],
      "scopes": ["admin"]}, "urn:ietf:params:oauth:grant-type:device_code"),
    ({"grant_types": ["client_credentials", "refresh_token"], "scopes": ["admin"], "admin": True,
      "audiences": ["https://api.example.com"]},
     "user-facing grants (refresh_token)"),
    ({"client_type": "public", "grant_types": ["authorization_code"], "redirect_uris": [REDIRECT], "admin": True},
     "user-facing grants"),
    ({"scopes": ["admin"], "audiences": ["{issuer}/admin"]}, "--admin"),
    ({"audiences": ["{issuer}/admin"]}, "--admin"),
    ({"grant_types": [], "admin": True, "audiences": [API]}, "client_credentials grant only"),
])
def test_registration_refuses_admin_on_user_facing_or_unflagged_clients(server: LiveServer, spec: dict[str, Any],
                                                                        words: str) -> None:
    body = {"name": "x", **{k: [v.replace("{issuer}", server.issuer) for v in val] if isinstance(val, list) else val
                            for k, val in spec.items()}}
    with server.admin() as admin:
        description = problem(admin.post("/clients", json=body), 422)
        assert words in description, description
        # the same rules on a change of an existing client
        existing = web_client(server)
        change = {k: v for k, v in body.items() if k in ("scopes", "audiences", "grant_types", "admin")}
        problem(admin.patch(f"/clients/{existing['client_id']}", json={**change, "redirect_uris": [REDIRECT]}), 422)
        assert admin.get(f"/clients/{existing['client_id']}").json()["admin"] is False


def test_cli_refuses_the_admin_scope_on_a_code_flow_client_and_creates_admin_clients(server: LiveServer) -> None:
    proc = server.cli("client", "create", "--name", "console", "--public", "--grant-type", "authorization_code",
                      "--redirect-uri", REDIRECT, "--scope", "openid admin", check=False)
    assert proc.returncode == 1 and "user-facing grants" in proc.stderr.replace("\n", " "), proc.stderr
    proc = server.cli("client", "create", "--name", "ops", "--scope", "admin", "--audience", server.issuer + "/admin",
                      "--json", check=False)
    assert proc.returncode == 1 and "--admin" in proc.stderr.replace("\n", ""), proc.stderr
    ops = json.loads(server.cli("client", "create", "--name", "ops", "--admin", "--scope", "admin", "--audience",
                                server.issuer + "/admin", "--json").stdout)
    assert ops["admin"] is True and ops["grant_types"] == ["client_credentials"]
    r = httpx.post(server.base_url + "/token", data={"grant_type": "client_credentials"},
                   auth=(ops["client_id"], ops["client_secret"]))
    with admin_api(server, r.json()["access_token"]) as c:
        assert c.get("/users").status_code == 200


def test_an_admin_clients_token_stops_working_when_the_flag_is_removed(server: LiveServer) -> None:
    ops = server.create_client(scopes=["admin"], audiences=[server.issuer + "/admin"], admin=True)
    token = httpx.post(server.base_url + "/token", data={"grant_type": "client_credentials"},
                       auth=(ops["client_id"], ops["client_secret"])).json()["access_token"]
    with admin_api(server, token) as c:
        assert c.get("/clients").status_code == 200
    with server.admin() as admin:
        r = admin.patch(f"/clients/{ops['client_id']}", json={"admin": False, "scopes": ["api:read"],
                                                              "audiences": [API]})
        assert r.status_code == 200 and r.json()["admin"] is False, r.text
    with admin_api(server, token) as c:  # still signed and unexpired: refused all the same
        problem(c.get("/clients"), 401)


def test_every_admin_call_is_audited_with_who_made_it(server: LiveServer) -> None:
    ops = server.create_client(scopes=["admin"], audiences=[server.issuer + "/admin"], admin=True)
    token = httpx.post(server.base_url + "/token", data={"grant_type": "client_credentials"},
                       auth=(ops["client_id"], ops["client_secret"])).json()["access_token"]
    marker = "audited-" + secrets.token_hex(4)
    with admin_api(server, token) as c:
        assert c.get(f"/users/{marker}").status_code == 404
    with server.admin() as admin:
        assert admin.get(f"/clients/{marker}").status_code == 404
    with admin_api(server, "not-a-token") as c:
        assert c.delete(f"/clients/{marker}").status_code == 401

    def mine(events: list[AuditEvent]) -> list[AuditEvent]:
        return [e for e in events if marker in str(e.detail.get("path"))]

    events = mine(audit_events(server, lambda es: len(mine(es)) >= 3))
    seen = {(e.detail["actor"], e.detail["method"], e.detail["status"], e.outcome) for e in events}
    assert seen == {(f"client:{ops['client_id']}", "GET", 404, "failure"), ("admin-token", "GET", 404, "failure"),
                    ("anonymous", "DELETE", 401, "failure")}, seen
    by_client = next(e for e in events if e.detail["actor"].startswith("client:"))
    assert by_client.client_id == ops["client_id"] and by_client.type == "admin.request" and by_client.ip
    assert all(token not in str(e.as_dict()) for e in events)


def test_failed_admin_authentication_is_locked_out_per_address(make_server: Any) -> None:
    srv: LiveServer = make_server("sqlite", extra_env={"OSTIARY_RATE_LIMITS__ADMIN_FAILED_AUTH_MAX": "3"})
    with admin_api(srv, "guess-" + secrets.token_hex(8)) as c:
        for _ in range(3):
            problem(c.get("/clients"), 401)
        r = c.get("/clients")
        problem(r, 429)
        assert int(r.headers["retry-after"]) > 0
    with srv.admin() as admin:  # the address is locked, whatever it presents
        problem(admin.get("/clients"), 429)
    events = audit_events(srv, lambda es: any(e.detail.get("status") == 429 for e in es))
    assert any(e.detail.get("status") == 429 for e in events)


# ---------------------------------------------------------------- item 3: a reset ends every token

def _signed_in_tokens(server: LiveServer, browser: Browser) -> tuple[dict[str, Any], dict[str, Any],
                                                                      dict[str, Any], dict[str, Any]]:
    client = web_client(server, audiences=[API])
    user = new_user(server)
    code, verifier, _ = get_code(browser, client, user)
    tokens = exchange(server, client, code, verifier).json()
    assert tokens["refresh_token"] and tokens["access_token"]
    rs = server.create_client(resource_audiences=[API])
    return client, user, tokens, rs


def _userinfo(server: LiveServer, access_token: str) -> httpx.Response:
    return httpx.get(server.base_url + "/userinfo", headers={"Authorization": f"Bearer {access_token}"})


def _introspect(server: LiveServer, rs: dict[str, Any], token: str) -> dict[str, Any]:
    r = httpx.post(server.base_url + "/introspect", data={"token": token}, auth=(rs["client_id"], rs["client_secret"]))
    out: dict[str, Any] = r.json()
    return out


def _reset(server: LiveServer, how: str, user: dict[str, Any]) -> str:
    """Run the reset; returns what the operator is told."""
    new_password = "a brand new password " + secrets.token_hex(4)
    if how == "cli set-password":
        return server.cli("user", "set-password", user["username"], "--password-stdin", input=new_password + "\n").stdout
    if how == "cli disable":
        return server.cli("user", "disable", user["username"]).stdout
    if how == "cli reset-totp":
        return server.cli("user", "reset-totp", user["username"]).stdout
    with server.admin() as admin:
        if how == "api set-password":
            r = admin.post(f"/users/{user['id']}/password", json={"password": new_password})
        else:
            r = admin.post(f"/users/{user['id']}/reset-totp")
    assert r.status_code == 200, r.text
    return r.text


@pytest.mark.parametrize("how", ["cli set-password", "api set-password", "cli disable", "cli reset-totp",
                                 "api reset-totp"])
def test_a_reset_revokes_the_users_refresh_and_access_tokens(server: LiveServer, browser: Browser, how: str) -> None:
    client, user, tokens, rs = _signed_in_tokens(server, browser)
    assert _userinfo(server, tokens["access_token"]).status_code == 200
    assert _introspect(server, rs, tokens["access_token"])["active"] is True
    told = _reset(server, how, user)
    r = refresh(server, client, tokens["refresh_token"])
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant", r.text
    assert _userinfo(server, tokens["access_token"]).status_code == 401
    assert _introspect(server, rs, tokens["access_token"]) == {"active": False}
    assert browser.http.get("/account").status_code == 303  # the browser session ended too
    # and the operator is told
    if how.startswith("cli"):
        assert "1 grant(s) revoked" in told and "1 access token(s) revoked" in told, told
    else:
        assert '"token_families_revoked":1' in told and '"access_tokens_revoked":1' in told, told


def test_after_a_password_reset_new_sign_ins_work(server: LiveServer, browser: Browser) -> None:
    client, user, tokens, _ = _signed_in_tokens(server, browser)
    new_password = "a brand new password " + secrets.token_hex(4)
    server.cli("user", "set-password", user["username"], "--password-stdin", input=new_password + "\n")
    assert refresh(server, client, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    fresh = Browser(server)
    try:
        code, verifier, _ = get_code(fresh, client, {**user, "password": new_password})
        again = exchange(server, client, code, verifier).json()
        assert _userinfo(server, again["access_token"]).status_code == 200
        assert refresh(server, client, again["refresh_token"]).status_code == 200
    finally:
        fresh.close()


# ---------------------------------------------------------------- item 9: changing the second factor

def _enrol(b: Browser, confirm: str | None = None) -> tuple[httpx.Response, str]:
    page = b.http.get("/account/totp")
    assert page.status_code == 200
    secret = page.text.split('id="totp-secret">')[1].split("<")[0]
    fields = {"code": pyotp.TOTP(secret).now()}
    if confirm is not None:
        fields["confirm"] = confirm
    return b.submit(page, "totp-enroll-form", **fields), secret


def _sign_in(server: LiveServer, user: dict[str, Any], code: str | None = None) -> Browser:
    b = Browser(server)
    r = b.login(b.http.get("/login"), user["username"], user["password"])
    if code is not None:
        r = b.submit(r, "totp-form", code=code)
    assert r.status_code == 303 and r.headers["location"] == "/account", r.text[:500]
    return b


def _recovery_codes(r: httpx.Response) -> list[str]:
    assert r.status_code == 200, r.text[:500]
    return r.text.split('id="recovery-codes">')[1].split("</code>")[0].split()


def test_turning_off_the_second_factor_needs_the_password_or_a_code(server: LiveServer) -> None:
    user = new_user(server)
    me = _sign_in(server, user)
    try:
        codes = _recovery_codes(_enrol(me)[0])
        other = _sign_in(server, user, codes[0])
        try:
            page = me.http.get("/account")
            form = forms(page.text)["totp-disable-form"]
            for proof in ({}, {"confirm": "not my password"}):
                r = me.http.post("/account/totp/disable", data={**form["fields"], **proof})
                assert r.status_code == 400 and "Enter your password or a current code" in r.text
                assert 'id="totp-status">On.' in r.text
            r = me.http.post("/account/totp/disable", data={**form["fields"], "confirm": codes[1]})
            assert r.status_code == 200 and 'id="totp-status">Off.' in r.text, r.text[:500]
            assert me.http.get("/account").status_code == 200  # this browser stays signed in
            assert other.http.get("/account").status_code == 303  # the other one is signed out
        finally:
            other.close()
    finally:
        me.close()


def test_replacing_the_authenticator_needs_the_password_or_a_code(server: LiveServer) -> None:
    user = new_user(server)
    me = _sign_in(server, user)
    try:
        codes = _recovery_codes(_enrol(me)[0])
        other = _sign_in(server, user, codes[0])
        try:
            r, _ = _enrol(me)
            assert r.status_code == 400 and "Enter your password or a current code" in r.text
            r, _ = _enrol(me, "wrong password")
            assert r.status_code == 400
            assert other.http.get("/account").status_code == 200  # nothing changed yet
            r, new_secret = _enrol(me, user["password"])
            _recovery_codes(r)
            assert other.http.get("/account").status_code == 303
        finally:
            other.close()
        # the old recovery codes are gone; the new authenticator works
        b = Browser(server)
        try:
            r = b.login(b.http.get("/login"), user["username"], user["password"])
            assert b.submit(r, "totp-form", code=codes[2]).status_code == 400
        finally:
            b.close()
    finally:
        me.close()
    assert new_secret


def test_short_secrets_are_refused_at_start_naming_the_setting(tmp_path: Any) -> None:
    from ..support import BIN, base_env

    db = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    for key, token, name in [("x", "a" * 40, "OSTIARY_SECRET_KEY"), ("k" * 31, "a" * 40, "OSTIARY_SECRET_KEY"),
                             ("k" * 40, "short-admin-token", "OSTIARY_ADMIN_TOKEN")]:
        env = base_env(db, "https://login.example.com", key, token, None)
        proc = subprocess.run([str(BIN / "ostiary"), "serve", "--port", "1"], env=env, capture_output=True, text=True,
                              timeout=60)
        out = (proc.stdout + proc.stderr).replace("\n", " ")
        assert proc.returncode != 0 and name in out and "at least 32 characters" in out, out
    env = base_env(db, "https://login.example.com", "k" * 32, "a" * 32, None)
    ok = subprocess.run([str(BIN / "ostiary"), "migrate"], env=env, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
