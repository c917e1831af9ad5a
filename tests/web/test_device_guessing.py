"""RFC 8628 §5.1: guessing user codes. Wrong codes are throttled per browser and per IP (the global count only
alerts); a bounded brute-force run against live codes finds none of them."""

from __future__ import annotations

import asyncio
import random
import secrets

import httpx

from ostiary.core.device import USER_CODE_ALPHABET

from ..support import LiveServer

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def _env(**limits: int) -> dict[str, str]:
    return {f"OSTIARY_DEVICE__{k.upper()}": str(v) for k, v in limits.items()}


def _client(server: LiveServer) -> dict:
    return server.create_client(client_type="public", grant_types=[DEVICE_GRANT], scopes=["openid"])


def _start(server: LiveServer, client: dict) -> dict:
    r = httpx.post(server.base_url + "/device_authorization", data={"client_id": client["client_id"]})
    assert r.status_code == 200, r.text
    return r.json()


class Browser:
    def __init__(self, server: LiveServer) -> None:
        self.http = httpx.Client(base_url=server.base_url, timeout=30)
        page = self.http.get("/device").text
        self.csrf = page.split('name="csrf_token" id="csrf_token" value="')[1].split('"')[0]

    def try_code(self, code: str) -> httpx.Response:
        return self.http.post("/device", data={"csrf_token": self.csrf, "user_code": code})

    def close(self) -> None:
        self.http.close()


def _random_code() -> str:
    return "".join(random.choice(USER_CODE_ALPHABET) for _ in range(8))


def test_wrong_codes_throttle_the_browser(make_server) -> None:
    srv = make_server("sqlite", extra_env=_env(attempts_per_session=3, attempts_per_ip=1000, attempts_global=1000))
    code = _start(srv, _client(srv))["user_code"]
    b = Browser(srv)
    for _ in range(3):
        r = b.try_code(_random_code())
        assert r.status_code == 400 and "not valid" in r.text
    r = b.try_code(code)  # even the right code: this browser is throttled
    assert r.status_code == 429 and "Too many attempts" in r.text
    b.close()
    other = Browser(srv)  # another browser (same IP, under its limit) still gets through
    assert "login-form" in other.try_code(code).text
    other.close()


def test_wrong_codes_throttle_the_ip(make_server) -> None:
    srv = make_server("sqlite", extra_env=_env(attempts_per_session=100, attempts_per_ip=4, attempts_global=1000))
    code = _start(srv, _client(srv))["user_code"]
    for _ in range(4):  # a fresh browser each time: the per-IP limit still applies
        b = Browser(srv)
        assert b.try_code(_random_code()).status_code == 400
        b.close()
    b = Browser(srv)
    assert b.try_code(code).status_code == 429
    b.close()


def test_the_global_count_alerts_but_never_refuses_a_valid_code(make_server) -> None:
    """Issue 17.5: wrong codes from many browsers (cookies dropped) past the server-wide count used to lock
    everyone out; now they raise an alert (metric, log) and a victim's valid code still goes through."""
    srv = make_server("sqlite", extra_env=_env(attempts_per_session=100, attempts_per_ip=100, attempts_global=3))
    code = _start(srv, _client(srv))["user_code"]
    for _ in range(8):  # a fresh browser each time
        b = Browser(srv)
        r = b.try_code(_random_code())
        assert r.status_code == 400 and "not valid" in r.text  # wrong codes are still just wrong
        b.close()
    victim = Browser(srv)
    r = victim.try_code(code)
    assert r.status_code == 200 and "login-form" in r.text, "a valid code is never refused for the global count"
    victim.close()
    metrics = httpx.get(srv.base_url + "/metrics").text
    assert "ostiary_device_code_guessing_total 5.0" in metrics
    assert "user-code guessing" in srv.log()


async def _parallel_codes(srv: LiveServer, n: int) -> list[int]:
    async with httpx.AsyncClient(base_url=srv.base_url, timeout=120) as http:
        page = (await http.get("/device")).text
        csrf = page.split('name="csrf_token" id="csrf_token" value="')[1].split('"')[0]
        rs = await asyncio.gather(*(http.post("/device", data={"csrf_token": csrf, "user_code": _random_code()})
                                    for _ in range(n)))
    return [r.status_code for r in rs]


def test_parallel_wrong_codes_never_exceed_the_limit(make_server) -> None:
    """Attempts are reserved before the look-up: 30 wrong codes at once from one browser (limit 5) check 5."""
    srv = make_server("postgres", extra_env={**_env(attempts_per_session=5, attempts_per_ip=10**6),
                                             "OSTIARY_REDIS_URL": "redis://127.0.0.1:6379/0"})
    _start(srv, _client(srv))
    statuses = asyncio.run(_parallel_codes(srv, 30))
    assert statuses.count(400) == 5 and statuses.count(429) == 25, statuses


def test_bounded_brute_force_finds_no_code(make_server) -> None:
    """300 guesses against 25 live codes: the chance of a hit is 25·300/20⁸ ≈ 3·10⁻⁷, and the default per-IP
    limit (20 wrong codes per 15 minutes) stops the run long before that many guesses."""
    srv = make_server("sqlite", extra_env=_env(attempts_per_session=10**6, attempts_per_ip=10**6,
                                               attempts_global=10**6))
    client = _client(srv)
    live = {_start(srv, client)["user_code"].replace("-", "") for _ in range(25)}
    found = 0
    b = Browser(srv)
    for i in range(300):
        guess = _random_code()
        if guess in live:
            continue  # not a guess an attacker could know is live; skip the astronomically unlikely hit
        r = b.try_code(guess[:4] + "-" + guess[4:] if i % 2 else guess.lower())
        assert r.status_code == 400, r.text
        found += "login-form" in r.text or "device-confirm-form" in r.text
    b.close()
    assert found == 0

    limited = make_server("sqlite")  # default limits
    _start(limited, _client(limited))
    statuses = []
    for _ in range(25):
        b = Browser(limited)
        statuses.append(b.try_code(_random_code()).status_code)
        b.close()
    assert statuses[:20] == [400] * 20 and set(statuses[20:]) == {429}


def test_device_authorization_requires_the_grant_and_a_known_client(server: LiveServer) -> None:
    svc = server.create_client(audiences=["https://api.example.com"])
    r = httpx.post(server.base_url + "/device_authorization", data={"client_id": svc["client_id"]},
                   auth=(svc["client_id"], svc["client_secret"]))
    assert r.status_code == 400 and r.json()["error"] == "unauthorized_client"
    r = httpx.post(server.base_url + "/device_authorization", data={"client_id": "nobody-" + secrets.token_hex(3)})
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    r = httpx.post(server.base_url + "/device_authorization", data={"scope": "openid"})
    assert r.status_code == 401
    meta = httpx.get(server.base_url + "/.well-known/openid-configuration").json()
    assert meta["device_authorization_endpoint"] == server.issuer + "/device_authorization"
    assert DEVICE_GRANT in meta["grant_types_supported"]


def test_the_device_forms_need_their_csrf_token_and_a_live_code(make_server) -> None:
    srv = make_server()
    code = _start(srv, _client(srv))["user_code"]
    b = Browser(srv)
    try:
        for action in ("/device/login", "/device/login/totp", "/device/confirm"):
            r = b.http.post(action, data={"user_code": code, "username": "x", "password": "x", "decision": "approve"})
            assert r.status_code == 403, action  # no CSRF token
            r = b.http.post(action, data={"csrf_token": b.csrf, "user_code": "BCDF-GHJK"})
            assert r.status_code == 400 and "not valid, or it has expired" in r.text, action  # no such code
    finally:
        b.http.close()
