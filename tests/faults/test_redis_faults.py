"""Redis faults (issue 10.3): a Redis that accepts connections and never answers, and a Redis nobody listens for.

Against real server processes on PostgreSQL. Either way: ``/token`` answers without waiting on Redis, the
failed-client-authentication lock-out and the sign-in throttling still apply (per process), device polls are
still told to slow down, ``/readyz`` says ``"redis": false`` (and stays 200: degraded, not down), and
``ostiary_redis_fallback_total`` counts the fallback.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from tests.support import LiveServer
from tests.web._codeflow import Browser, new_user

API = "https://api.example.com"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


class HungRedis:
    """Accepts connections, reads nothing, answers nothing (a hung Redis, or one black-holed after connect)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.conns: list[socket.socket] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.sock.getsockname()[1]}/0"

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:  # the accept timeout, or closed
                continue
            self.conns.append(conn)

    def close(self) -> None:
        self.stopped.set()
        self.thread.join()
        for c in self.conns:
            c.close()
        self.sock.close()


@pytest.fixture(params=["hung", "unreachable"])
def redis_fault(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "unreachable":
        with socket.create_server(("127.0.0.1", 0)) as s:  # a port nobody listens on once closed
            port = s.getsockname()[1]
        yield f"redis://127.0.0.1:{port}/0"
        return
    hung = HungRedis()
    try:
        yield hung.url
    finally:
        hung.close()


def _metric(text: str, name: str, labels: str) -> float:
    m = re.search(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


async def _tokens(srv: LiveServer, client: dict, n: int) -> list[int]:
    """``n`` token requests one after another (a 5 s wait on Redis each would take far beyond the timeout)."""
    statuses = []
    async with httpx.AsyncClient(base_url=srv.base_url, timeout=30) as http:
        for _ in range(n):
            r = await http.post("/token", data={"grant_type": "client_credentials"},
                                auth=(client["client_id"], client["client_secret"]))
            statuses.append(r.status_code)
    return statuses


def test_without_redis_the_server_answers_and_every_limit_still_holds(make_server, redis_fault: str) -> None:
    srv = make_server("postgres", extra_env={"OSTIARY_REDIS_URL": redis_fault,
                                             "OSTIARY_RATE_LIMITS__FAILED_AUTH_MAX": "3"})
    client = srv.create_client(audiences=[API])

    statuses = asyncio.run(asyncio.wait_for(_tokens(srv, client, 40), timeout=60))
    assert statuses == [200] * 40

    with httpx.Client(base_url=srv.base_url, timeout=30) as http:
        # the failed-client-authentication lock-out
        wrong = [http.post("/token", data={"grant_type": "client_credentials"},
                           auth=(client["client_id"], f"wrong-{i}")).status_code for i in range(4)]
        assert wrong == [401, 401, 401, 429]
        r = http.post("/token", data={"grant_type": "client_credentials"},
                      auth=(client["client_id"], client["client_secret"]))
        assert r.status_code == 429 and r.json()["error"] == "slow_down"

        # readiness: degraded, not down
        r = http.get("/readyz")
        assert r.status_code == 200
        assert r.json() == {"status": "degraded", "checks": {"database": True, "keys": True, "redis": False}}

        # device polls are still told to slow down
        device = srv.create_client(client_type="public", grant_types=[DEVICE_GRANT], scopes=["openid"])
        start = http.post("/device_authorization", data={"client_id": device["client_id"]}).json()
        polls = [http.post("/token", data={"grant_type": DEVICE_GRANT, "device_code": start["device_code"],
                                           "client_id": device["client_id"]}) for _ in range(2)]
        assert [p.json()["error"] for p in polls] == ["authorization_pending", "slow_down"]

        metrics = http.get("/metrics").text
    assert _metric(metrics, "ostiary_redis_fallback_total", 'component="ratelimit"') >= 40
    assert _metric(metrics, "ostiary_redis_fallback_total", 'component="device_poll"') >= 1

    # sign-in throttling: five wrong passwords, then even the right one waits
    user = new_user(srv)
    b = Browser(srv)
    try:
        page = b.http.get("/login")
        assert [b.login(page, user["username"], "wrong password").status_code for _ in range(5)] == [400] * 5
        r = b.login(page, user["username"], user["password"])
        assert r.status_code == 429 and "Too many attempts" in r.text
    finally:
        b.close()
    assert "Redis unavailable" in srv.log()
