"""Operations: graceful shutdown keeps the audit trail, several workers share metrics, readiness."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time

import httpx
import pytest

from ostiary.store.sql import SqlStore

from ..support import drop_pg_database, sockets_per_process, worker_pids

API = "https://api.example.com"


def _events(db_url: str) -> list:
    async def go() -> list:
        store = SqlStore.from_url(db_url)
        try:
            return await store.list_events(limit=1000)
        finally:
            await store.close()

    return asyncio.run(go())


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_flushes_every_audit_event_to_the_database(make_server, workers: int) -> None:
    srv = make_server("postgres", workers=workers)
    client = srv.create_client(audiences=[API])
    jtis = set()
    with httpx.Client(base_url=srv.base_url) as http:
        for _ in range(20):
            r = http.post("/token", data={"grant_type": "client_credentials"}, auth=(client["client_id"], client["client_secret"]))
            assert r.status_code == 200
            jtis.add(httpx.post(srv.base_url + "/introspect", data={"token": r.json()["access_token"]},
                                auth=(client["client_id"], client["client_secret"])).json()["jti"])
        http.post("/token", data={"grant_type": "client_credentials"}, auth=(client["client_id"], "wrong"))
    procs = list(srv.procs)
    srv.stop()  # SIGTERM right away: the batch writer must flush before the process exits
    # uvicorn re-raises SIGTERM after its graceful shutdown, so the exit status reports the signal
    assert [p.returncode for p in procs] in ([0], [-signal.SIGTERM])
    events = _events(srv.env["OSTIARY_DATABASE_URL"])
    issued = {e.jti for e in events if e.type == "token.issued" and e.client_id == client["client_id"]}
    assert jtis <= issued
    assert any(e.type == "client.auth_failed" for e in events)
    assert all("ost_cs_" not in repr(e.detail) for e in events)


def test_metrics_aggregate_across_workers(make_server) -> None:
    srv = make_server(workers=2)
    client = srv.create_client(audiences=[API])
    n = 40
    for _ in range(n):  # new connections, so both workers get some
        r = httpx.post(srv.base_url + "/token", data={"grant_type": "client_credentials"},
                       auth=(client["client_id"], client["client_secret"]))
        assert r.status_code == 200
    text = httpx.get(srv.base_url + "/metrics").text
    line = next(ln for ln in text.splitlines() if ln.startswith('ostiary_tokens_issued_total{grant_type="client_credentials"'))
    assert float(line.split()[-1]) == n


def test_readyz_fails_when_the_database_is_gone(make_server) -> None:
    srv = make_server("postgres")
    assert httpx.get(srv.base_url + "/readyz").status_code == 200
    name = srv.env["OSTIARY_DATABASE_URL"].rsplit("/", 1)[1]
    drop_pg_database(name)  # WITH (FORCE): the server's pooled connections are cut too
    r = httpx.get(srv.base_url + "/readyz")
    assert r.status_code == 503
    assert r.json()["checks"]["database"] is False
    assert httpx.get(srv.base_url + "/healthz").status_code == 200


def test_granian_serves_the_same_app(make_server) -> None:
    srv = make_server("postgres", server="granian", workers=2)
    client = srv.create_client(audiences=[API])
    r = httpx.post(srv.base_url + "/token", data={"grant_type": "client_credentials"},
                   auth=(client["client_id"], client["client_secret"]))
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    assert httpx.get(srv.base_url + "/readyz").json()["status"] == "ready"
    srv.stop()  # graceful: the audit batch is flushed
    assert any(e.type == "token.issued" and e.client_id == client["client_id"]
               for e in _events(srv.env["OSTIARY_DATABASE_URL"]))


def test_keep_alive_connections_opened_at_once_spread_over_every_worker(make_server) -> None:
    # Uvicorn's shared listening socket let the first worker to wake take a whole burst of connections;
    # with one SO_REUSEPORT socket per worker the kernel spreads them (all 32 on one of 2: p = 2^-31).
    srv = make_server(workers=2)
    port = int(srv.base_url.rsplit(":", 1)[1])
    workers = worker_pids(srv.procs[0].pid)
    assert len(workers) == 2
    # /readyz answers once one worker is up; wait until both listen (a starting worker gets no connections)
    deadline = time.monotonic() + 30
    while len(sockets_per_process(port, workers, "0A")) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(32)]
    try:
        for c in conns:
            c.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        for c in conns:
            assert c.recv(4096).startswith(b"HTTP/1.1 200")
        spread = sockets_per_process(port, workers, "01")
        assert sum(spread.values()) == 32
        assert len(spread) == 2 and min(spread.values()) >= 4, spread
    finally:
        for c in conns:
            c.close()


def test_a_worker_that_dies_is_replaced(make_server) -> None:
    srv = make_server(workers=2)
    before = worker_pids(srv.procs[0].pid)
    os.kill(before[0], signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        now = worker_pids(srv.procs[0].pid)
        if len(now) == 2 and before[0] not in now:
            break
        time.sleep(0.1)
    assert len(now) == 2 and before[0] not in now
    for _ in range(10):  # new connections: whichever worker takes them answers
        assert httpx.get(srv.base_url + "/readyz").status_code == 200
    assert "starting another" in srv.log()


def test_workers_stop_when_the_supervisor_is_killed(make_server) -> None:
    """kill -9 of the supervisor (it cannot catch it) must not leave workers serving, unsupervised, on the port."""
    srv = make_server(workers=2)
    parent = srv.procs[0].pid
    workers = worker_pids(parent)
    assert len(workers) == 2
    os.kill(parent, signal.SIGKILL)
    srv.procs[0].wait(timeout=10)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{pid}") and _alive(pid) for pid in workers):
        time.sleep(0.1)
    assert not any(os.path.exists(f"/proc/{pid}") and _alive(pid) for pid in workers)
    with pytest.raises(httpx.ConnectError):
        httpx.get(srv.base_url + "/readyz", timeout=2)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"  # a zombie has exited
    except (OSError, IndexError):
        return False


def test_several_workers_on_a_new_database_create_one_signing_key_per_algorithm(make_server) -> None:
    srv = make_server("postgres", workers=2)
    keys = {(k["alg"], k["kid"]) for _ in range(10) for k in httpx.get(srv.base_url + "/jwks").json()["keys"]}
    assert sorted(alg for alg, _ in keys) == ["ES256", "RS256"]  # ES256 access tokens, RS256 ID tokens


def test_serve_refuses_a_port_that_is_already_served(make_server) -> None:
    srv = make_server(workers=2)
    port = srv.base_url.rsplit(":", 1)[1]
    proc = srv.cli("serve", "--port", port, "--workers", "2", check=False)
    assert proc.returncode == 1
    assert "already answers" in proc.stderr
    assert httpx.get(srv.base_url + "/readyz").status_code == 200
