"""Operations: graceful shutdown keeps the audit trail, several workers share metrics, readiness."""

from __future__ import annotations

import asyncio
import signal

import httpx

from ostiary.store.sql import SqlStore

from ..support import drop_pg_database

API = "https://api.example.com"


def _events(db_url: str) -> list:
    async def go() -> list:
        store = SqlStore.from_url(db_url)
        try:
            return await store.list_events(limit=1000)
        finally:
            await store.close()

    return asyncio.run(go())


def test_sigterm_flushes_every_audit_event_to_the_database(make_server) -> None:
    srv = make_server("postgres")
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
