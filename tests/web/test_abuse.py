"""Rate limits (429 + Retry-After) and failed-authentication throttling, in memory and in Redis."""

from __future__ import annotations

import asyncio

import httpx
import pyotp
import pytest

from ..support import LiveServer
from ._codeflow import CSRF_RE, Browser, new_user

API = "https://api.example.com"


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_per_client_rate_limit_answers_429_with_retry_after(make_server, backend: str) -> None:
    env = {"OSTIARY_RATE_LIMITS__PER_CLIENT": "1", "OSTIARY_RATE_LIMITS__PER_CLIENT_BURST": "5"}
    if backend == "redis":
        env["OSTIARY_REDIS_URL"] = "redis://127.0.0.1:6379/0"
    srv = make_server(extra_env=env)
    client = srv.create_client(audiences=[API])
    other = srv.create_client(audiences=[API])
    statuses = []
    with httpx.Client(base_url=srv.base_url) as http:
        for _ in range(12):
            r = http.post("/token", data={"grant_type": "client_credentials"},
                          auth=(client["client_id"], client["client_secret"]))
            statuses.append(r.status_code)
            if r.status_code == 429:
                assert int(r.headers["retry-after"]) >= 1
                assert r.json()["error"] == "slow_down"
        assert statuses[:5] == [200] * 5
        assert 429 in statuses
        # the limit is per client: another client is unaffected
        r = http.post("/token", data={"grant_type": "client_credentials"}, auth=(other["client_id"], other["client_secret"]))
        assert r.status_code == 200
    metrics = httpx.get(srv.base_url + "/metrics").text
    assert 'ostiary_rate_limited_total{scope="client"}' in metrics


def test_repeated_failed_client_authentication_is_throttled(make_server) -> None:
    srv = make_server(extra_env={"OSTIARY_RATE_LIMITS__FAILED_AUTH_MAX": "3"})
    client = srv.create_client(audiences=[API])
    with httpx.Client(base_url=srv.base_url) as http:
        codes = [http.post("/token", data={"grant_type": "client_credentials"},
                           auth=(client["client_id"], f"guess-{i}")).status_code for i in range(5)]
        assert codes[:3] == [401, 401, 401]
        assert codes[3:] == [429, 429]
        # even the right secret waits out the lock-out from this address
        r = http.post("/token", data={"grant_type": "client_credentials"},
                      auth=(client["client_id"], client["client_secret"]))
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0


def test_per_ip_rate_limit(make_server) -> None:
    srv = make_server(extra_env={"OSTIARY_RATE_LIMITS__PER_IP": "1", "OSTIARY_RATE_LIMITS__PER_IP_BURST": "3"})
    with httpx.Client(base_url=srv.base_url) as http:
        codes = [http.post("/introspect", data={"token": "x"}).status_code for _ in range(6)]
    assert codes[:3] == [401, 401, 401] and codes[-1] == 429


def test_logs_never_contain_tokens_or_secrets(make_server) -> None:
    srv = make_server(extra_env={"OSTIARY_LOG_LEVEL": "debug"})
    client = srv.create_client(audiences=[API])
    r = httpx.post(srv.base_url + "/token", data={"grant_type": "client_credentials"},
                   auth=(client["client_id"], client["client_secret"]))
    token = r.json()["access_token"]
    httpx.post(srv.base_url + "/introspect", data={"token": token}, auth=(client["client_id"], client["client_secret"]))
    httpx.post(srv.base_url + "/token", data={"grant_type": "client_credentials"}, auth=(client["client_id"], "ost_cs_wrong"))
    srv.stop()
    log = srv.log()
    assert '"token.issued"' in log and "client.auth_failed" in log  # audit events are there…
    assert client["client_secret"] not in log  # …but never a secret or token
    assert token not in log and token.split(".")[1] not in log
    assert "ost_cs_wrong" not in log
    assert srv.admin_token not in log


def test_redis_outage_falls_back_to_per_process_limits(make_server) -> None:
    srv = make_server(extra_env={"OSTIARY_REDIS_URL": "redis://127.0.0.1:1/0",  # nothing listens there
                                 "OSTIARY_RATE_LIMITS__FAILED_AUTH_MAX": "2"})
    client = srv.create_client(audiences=[API])
    with httpx.Client(base_url=srv.base_url) as http:
        r = http.post("/token", data={"grant_type": "client_credentials"},
                      auth=(client["client_id"], client["client_secret"]))
        assert r.status_code == 200
        codes = [http.post("/token", data={"grant_type": "client_credentials"},
                           auth=(client["client_id"], "wrong")).status_code for _ in range(3)]
        assert codes == [401, 401, 429]  # the lock-out still holds, in this process
    assert "Redis unavailable" in srv.log()


# -- sign-in throttling ---------------------------------------------------------------------------------


def _backend_env(backend: str, **extra: str) -> dict[str, str]:
    # the per-address counter lives in the shared Redis across test runs (all from 127.0.0.1): out of the way
    env = {"OSTIARY_LOGIN__MAX_FAILURES_PER_IP": "100000", **extra}
    if backend == "redis":
        env["OSTIARY_REDIS_URL"] = "redis://127.0.0.1:6379/0"
    return env


async def _login_page(http: httpx.AsyncClient) -> str:
    page = await http.get("/login")
    m = CSRF_RE.search(page.text)
    assert m is not None
    return m.group(1)


async def _login(http: httpx.AsyncClient, csrf: str, username: str, password: str) -> httpx.Response:
    return await http.post("/login", data={"csrf_token": csrf, "authz": "", "username": username,
                                           "password": password})


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_parallel_wrong_passwords_never_exceed_the_account_limit(make_server, backend: str) -> None:
    """40 wrong passwords at once for one account (limit 5): 5 are checked, 35 refused; the right password
    then waits out the lock-out. (Checked, hashed, then counted, all 40 used to be checked.)"""
    srv = make_server("postgres", extra_env=_backend_env(backend))
    asyncio.run(_parallel_wrong_passwords(srv, new_user(srv)))


async def _parallel_wrong_passwords(srv: LiveServer, user: dict) -> None:
    async with httpx.AsyncClient(base_url=srv.base_url, timeout=120) as http:
        csrf = await _login_page(http)
        rs = await asyncio.gather(*(_login(http, csrf, user["username"], f"wrong password {i}") for i in range(40)))
        statuses = [r.status_code for r in rs]
        assert statuses.count(400) == 5 and statuses.count(429) == 35, statuses
        r = await _login(http, csrf, user["username"], user["password"])
        assert r.status_code == 429 and "Too many attempts" in r.text


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_parallel_wrong_second_factors_never_exceed_the_account_limit(make_server, backend: str) -> None:
    srv = make_server("postgres", extra_env=_backend_env(backend))
    user = new_user(srv)
    b = Browser(srv)
    try:  # enrol a second factor
        assert b.login(b.http.get("/login"), user["username"], user["password"]).status_code == 303
        enrol = b.http.get("/account/totp")
        secret = enrol.text.split('id="totp-secret">')[1].split("<")[0]
        assert b.submit(enrol, "totp-enroll-form", code=pyotp.TOTP(secret).now()).status_code == 200
    finally:
        b.close()
    asyncio.run(_parallel_wrong_second_factors(srv, user, secret))


async def _parallel_wrong_second_factors(srv: LiveServer, user: dict, secret: str) -> None:
    async with httpx.AsyncClient(base_url=srv.base_url, timeout=120) as http:
        csrf = await _login_page(http)
        r = await _login(http, csrf, user["username"], user["password"])
        assert 'id="totp-form"' in r.text  # signed in with the password; the second factor is pending
        right = pyotp.TOTP(secret).now()
        wrong = [c for c in (f"{i:06d}" for i in range(1000)) if c != right][:60]
        rs = await asyncio.gather(*(http.post("/login/totp", data={"csrf_token": csrf, "authz": "", "code": c})
                                    for c in wrong))
        statuses = [r.status_code for r in rs]
        assert statuses.count(400) == 5 and statuses.count(429) == 55, statuses
        r = await http.post("/login/totp", data={"csrf_token": csrf, "authz": "", "code": pyotp.TOTP(secret).now()})
        assert r.status_code == 429


def test_the_username_and_the_email_share_one_account_counter(make_server) -> None:
    srv = make_server()
    user = new_user(srv)
    b = Browser(srv)
    try:
        page = b.http.get("/login")
        for login in (user["username"], user["email"], user["email"].upper(), user["username"], user["email"]):
            assert b.login(page, login, "wrong password").status_code == 400
        r = b.login(page, user["username"], user["password"])
        assert r.status_code == 429 and "Too many attempts" in r.text
    finally:
        b.close()


def test_a_successful_sign_in_gives_its_attempt_back(make_server) -> None:
    srv = make_server(extra_env={"OSTIARY_LOGIN__MAX_FAILURES_PER_ACCOUNT": "2"})
    user = new_user(srv)
    b = Browser(srv)
    try:
        page = b.http.get("/login")
        for _ in range(4):  # more sign-ins than the limit: only failures count
            assert b.login(page, user["username"], user["password"]).status_code == 303
        assert b.login(page, user["username"], "wrong password").status_code == 400
        assert b.login(page, user["username"], user["password"]).status_code == 303
    finally:
        b.close()


def test_sign_ins_beyond_the_hashing_threads_are_refused_not_queued(make_server) -> None:
    """argon2 runs in a bounded pool off the event loop; a sign-in that finds it full gets 429 at once."""
    srv = make_server(extra_env={"OSTIARY_LOGIN__HASH_WORKERS": "1", "OSTIARY_LOGIN__HASH_QUEUE": "0"})
    asyncio.run(_hashing_pool_full(srv))


async def _hashing_pool_full(srv: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=srv.base_url, timeout=120) as http:
        csrf = await _login_page(http)
        rs = await asyncio.gather(*(_login(http, csrf, f"nobody-{i}", "some password") for i in range(30)))
        statuses = [r.status_code for r in rs]
        assert set(statuses) <= {400, 429} and 400 in statuses, statuses
        busy = [r for r in rs if r.status_code == 429]
        assert busy and all("Too many sign-ins at the moment" in r.text for r in busy)
        assert (await http.get("/healthz")).status_code == 200
        metrics = (await http.get("/metrics")).text
    assert "ostiary_password_hash_busy_total" in metrics
