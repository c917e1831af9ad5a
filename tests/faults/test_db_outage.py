"""Issue 10.4: while the server's PostgreSQL database refuses connections, every endpoint that needs it answers
503 with Retry-After and RFC 6749's ``temporarily_unavailable`` (no 500, no traceback); the log says "database
unavailable" once and "database available again" once per worker; afterwards everything works again."""

from __future__ import annotations

import json
import secrets

import httpx

from ..web._codeflow import Browser, exchange, get_code, new_user, web_client
from .conftest import FaultServer, database_outage, no_traceback, token_for, wait_until

API = "https://api.example.com"


def _requests(fs: FaultServer, client: dict[str, str], token: str, user_token: str, refresh_token: str,
              web: dict[str, str], cookies: httpx.Cookies) -> list[tuple[str, str, dict[str, object]]]:
    auth = {"auth": (client["client_id"], client["client_secret"])}
    admin = {"headers": {"Authorization": f"Bearer {fs.srv.admin_token}"}}
    return [
        ("POST", "/token", {"data": {"grant_type": "client_credentials"}, **auth}),
        ("POST", "/introspect", {"data": {"token": token}, **auth}),
        ("POST", "/revoke", {"data": {"token": token}, **auth}),
        ("POST", "/device_authorization", {"data": {"client_id": client["client_id"]}, **auth}),
        ("GET", "/authorize", {"params": {"client_id": client["client_id"], "response_type": "code",
                                          "redirect_uri": "http://127.0.0.1:9/cb", "scope": "openid",
                                          "code_challenge": "x" * 43, "code_challenge_method": "S256"}}),
        ("GET", "/userinfo", {"headers": {"Authorization": f"Bearer {user_token}"}}),
        ("POST", "/token", {"data": {"grant_type": "refresh_token", "refresh_token": refresh_token,
                                     "client_id": web["client_id"]}}),
        ("GET", "/account", {"cookies": cookies}),
        ("GET", "/admin/api/clients", admin),
        ("GET", "/admin/api/users", admin),
    ]


def _assert_unavailable(method: str, path: str, r: httpx.Response) -> None:
    assert r.status_code == 503, f"{method} {path}: {r.status_code} {r.text}"
    assert r.headers["retry-after"].isdigit() and int(r.headers["retry-after"]) >= 1, r.headers
    assert r.headers["content-type"].startswith("application/json"), r.headers
    assert r.json()["error"] == "temporarily_unavailable", r.text
    assert no_traceback(r.text)


def test_database_outage_answers_503_and_logs_each_transition_once(pg_server) -> None:
    fs = pg_server(workers=2)
    client = fs.srv.create_client(audiences=[API], grant_types=["client_credentials",
                                                                "urn:ietf:params:oauth:grant-type:device_code"],
                                  redirect_uris=["http://127.0.0.1:9/cb"], scopes=["openid", "api:read"])
    token = token_for(fs.srv, client)
    web, user, browser = web_client(fs.srv), new_user(fs.srv), Browser(fs.srv)
    code, verifier, _ = get_code(browser, web, user)
    tokens = exchange(fs.srv, web, code, verifier).json()
    requests = _requests(fs, client, token, tokens["access_token"], tokens["refresh_token"], web,
                         browser.http.cookies)
    browser.close()

    with database_outage(fs.db_name):
        # new connections each time, so both workers answer some (SO_REUSEPORT spreads them)
        for _ in range(3):
            for method, path, kwargs in requests:
                r = httpx.request(method, fs.base_url + path, timeout=30, **kwargs)  # type: ignore[arg-type]
                _assert_unavailable(method, path, r)
        ready = httpx.get(fs.base_url + "/readyz", timeout=30)
        assert ready.status_code == 503 and ready.json()["checks"]["database"] is False
        assert httpx.get(fs.base_url + "/healthz").status_code == 200
        assert httpx.get(fs.base_url + "/jwks").status_code == 200  # verifiers keep getting the keys
        # a browser asking for a page gets a page, with the same status and Retry-After
        page = httpx.get(fs.base_url + "/authorize", params=requests[4][2]["params"],  # type: ignore[arg-type]
                         headers={"Accept": "text/html"}, timeout=30)
        assert page.status_code == 503 and page.headers["retry-after"].isdigit()
        assert page.headers["content-type"].startswith("text/html") and no_traceback(page.text)

    assert wait_until(lambda: httpx.get(fs.base_url + "/readyz").status_code == 200)
    for _ in range(6):  # both workers serve again
        r = httpx.post(fs.base_url + "/token", data={"grant_type": "client_credentials"},
                       auth=(client["client_id"], client["client_secret"]))
        assert r.status_code == 200, r.text
    with fs.srv.admin() as admin:
        assert admin.get("/clients").status_code == 200
    assert httpx.post(fs.base_url + "/introspect", data={"token": token},
                      auth=(client["client_id"], client["client_secret"])).json()["active"] is True  # revoke got 503
    log = fs.log()
    assert no_traceback(log), log[-3000:]
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    down = [r["pid"] for r in records if r["msg"] == "database unavailable"]
    back = [r["pid"] for r in records if r["msg"] == "database available again"]
    assert down and sorted(down) == sorted(set(down)), down  # at most one line per worker
    assert sorted(back) == sorted(down), (down, back)  # and each announced its recovery once
    assert all(r.get("cause") for r in records if r["msg"] == "database unavailable")


def test_sqlstate_of_an_ordinary_error_is_not_an_outage(pg_server) -> None:
    """A client error the database refuses (a duplicate) stays what it is: not a 503, no outage logged."""
    fs = pg_server()
    spec = {"client_id": "dup-" + secrets.token_hex(3), "name": "dup", "audiences": [API]}
    with fs.srv.admin() as admin:
        assert admin.post("/clients", json=spec).status_code == 201
        r = admin.post("/clients", json=spec)
    assert r.status_code == 409, r.text
    assert "database unavailable" not in fs.log()
