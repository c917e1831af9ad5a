"""Audit trail under faults (issue 10.1, 10.7): a poisoned event, forwarded headers, a worker killed with -9.

Real server processes on PostgreSQL; the audit table is read with asyncpg, as an operator would query it."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from ostiary.core.audit import AuditEvent
from ostiary.store.sql import SqlStore
from ostiary.store.sql import tables as t
from ostiary.web import audit as audit_mod
from ostiary.web.audit import BatchingAuditSink, bounded
from ostiary.web.client_ip import ClientAddress

from ..support import LiveServer, create_pg_database, drop_pg_database, ostiary, start_server, worker_pids

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg(tmp_path: Path) -> Any:
    name, url = create_pg_database()
    yield url
    drop_pg_database(name)


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


def _rows(url: str, sql: str, *args: Any) -> list[Any]:
    async def go() -> list[Any]:
        conn = await asyncpg.connect(_dsn(url))
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    return asyncio.run(go())


def _wait_rows(url: str, sql: str, count: int, timeout: float = 10.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    rows = _rows(url, sql)
    while len(rows) < count and time.monotonic() < deadline:
        time.sleep(0.1)
        rows = _rows(url, sql)
    return rows


def _service(srv: LiveServer) -> tuple[str, str]:
    c = srv.create_client(grant_types=["client_credentials"], scopes=["api:read"], audiences=["https://api"])
    return c["client_id"], c["client_secret"]


def _jti(access_token: str) -> str:
    payload = access_token.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"])


# --- 10.1: forwarded headers and a poisoned event ---------------------------------------------------------

POISON = "a" * 65  # longer than audit_events.ip (varchar 64): the batch insert used to fail for good
TOKEN_EVENTS = "type IN ('client.auth_failed', 'token.issued')"  # not the admin API's own events


def test_poisoned_forwarded_for_no_longer_stops_the_audit_trail(pg: str, tmp_path: Path) -> None:
    """The issue's curl: before the fix the `ip` did not fit its column, the batch was put back at the head of
    the queue forever and no later event was written. Uvicorn no longer believes X-Forwarded-For from
    127.0.0.1 (no trusted proxy configured), so the event carries the peer address and everything is written."""
    srv = start_server(pg, tmp_path)
    try:
        client_id, secret = _service(srv)
        r = httpx.post(srv.base_url + "/token", headers={"X-Forwarded-For": POISON}, auth=("bogus", "x"),
                       data={"grant_type": "client_credentials"})
        assert r.status_code == 401
        spoofed = httpx.post(srv.base_url + "/token", headers={"X-Forwarded-For": "203.0.113.9"},
                             auth=("bogus", "x"), data={"grant_type": "client_credentials"})
        assert spoofed.status_code == 401
        issued = [httpx.post(srv.base_url + "/token", auth=(client_id, secret),
                             data={"grant_type": "client_credentials"}) for _ in range(5)]
        assert all(r.status_code == 200 for r in issued)
        rows = _wait_rows(pg, f"SELECT type, ip, jti FROM audit_events WHERE {TOKEN_EVENTS} ORDER BY id", 7)
    finally:
        srv.stop()
    assert [r["type"] for r in rows] == ["client.auth_failed"] * 2 + ["token.issued"] * 5
    assert {r["ip"] for r in rows} == {"127.0.0.1"}  # the peer: a header from an untrusted peer is ignored
    assert {r["jti"] for r in rows[2:]} == {_jti(r.json()["access_token"]) for r in issued}


def test_trusted_proxy_forwarded_for_and_request_id(pg: str, tmp_path: Path) -> None:
    """With 127.0.0.1 as a trusted proxy: a valid X-Forwarded-For names the client (right-most untrusted hop),
    a bogus one is ignored (the peer is the client), and the proxy's X-Request-ID is kept."""
    srv = start_server(pg, tmp_path, extra_env={"OSTIARY_SERVER__TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8"})
    try:
        def fail(xff: str, **headers: str) -> httpx.Response:
            return httpx.post(srv.base_url + "/token", headers={"X-Forwarded-For": xff, **headers},
                              auth=("bogus", "x"), data={"grant_type": "client_credentials"})

        assert fail(POISON).status_code == 401
        r = fail("198.51.100.1, 203.0.113.7, 10.1.2.3", **{"X-Request-ID": "proxy-id_42"})
        assert r.status_code == 401 and r.headers["x-request-id"] == "proxy-id_42"
        assert fail("203.0.113.8, unknown").status_code == 401  # a hop we cannot read: the header is ignored
        bad_id = fail("192.0.2.5", **{"X-Request-ID": "no spaces allowed"})
        assert bad_id.headers["x-request-id"] != "no spaces allowed"
        rows = _wait_rows(pg, f"SELECT ip FROM audit_events WHERE {TOKEN_EVENTS} ORDER BY id", 4)
        log = srv.log()
    finally:
        srv.stop()
    assert [r["ip"] for r in rows] == ["127.0.0.1", "203.0.113.7", "127.0.0.1", "192.0.2.5"]
    access = [json.loads(line) for line in log.splitlines() if '"ostiary.access"' in line]
    assert any(a["request_id"] == "proxy-id_42" and a["ip"] == "203.0.113.7" for a in access)


def test_client_address_resolution() -> None:
    xff = ClientAddress(["127.0.0.1", "10.0.0.0/8"])
    h = [(b"x-forwarded-for", b"1.1.1.1, 2.2.2.2"), (b"x-forwarded-for", b"10.0.0.1")]
    assert xff.resolve("127.0.0.1", h) == "2.2.2.2"  # several header lines are one list
    assert xff.resolve("192.0.2.1", h) == "192.0.2.1"  # untrusted peer: header ignored
    assert xff.resolve("127.0.0.1", [(b"x-forwarded-for", b"10.0.0.2, 10.0.0.1")]) == "10.0.0.2"
    assert xff.resolve("127.0.0.1", [(b"x-forwarded-for", b"1.2.3.4:5678")]) == "1.2.3.4"
    assert xff.resolve("127.0.0.1", [(b"x-forwarded-for", b"1.2.3.4, " + POISON.encode())]) == "127.0.0.1"
    assert xff.resolve("127.0.0.1", [(b"forwarded", b"for=1.2.3.4")]) == "127.0.0.1"  # not the chosen header
    fwd = ClientAddress(["127.0.0.1"], "forwarded")
    assert fwd.resolve("127.0.0.1", [(b"forwarded", b'for=192.0.2.60;proto=http, for="[2001:db8::1]:4711"')]) \
        == "2001:db8::1"
    assert fwd.resolve("127.0.0.1", [(b"forwarded", b"for=_hidden")]) == "127.0.0.1"
    assert fwd.resolve("127.0.0.1", [(b"forwarded", b"proto=https")]) == "127.0.0.1"
    assert ClientAddress().resolve("127.0.0.1", h) == "127.0.0.1"  # nothing trusted by default


# --- 10.1: the sink sets aside only the event the database refuses --------------------------------------


def test_bounded_fields_fit_the_table() -> None:
    for name, limit in audit_mod.LIMITS.items():
        assert getattr(t.audit_events.c, name).type.length == limit
    assert t.audit_events.c.ip.type.length >= 45  # the longest IPv6 text
    e = bounded(AuditEvent(type="t" * 100, outcome="odd", at=1.0, client_id="c\x00" * 300, subject="\ud800x",
                           ip=POISON, jti="j" * 99, detail={"big": "x" * 10_000}))
    assert len(e.type) == 64 and e.outcome == "failure" and e.ip is None and len(e.jti or "") == 64
    assert e.client_id == "c" * 256 and "\x00" not in (e.client_id or "") and e.subject == "?x"
    assert e.detail == {"truncated": True, "bytes": 10_010}
    assert bounded(AuditEvent(type="x", outcome="success", at=1.0, ip=" 2001:DB8::1")).ip is None
    assert bounded(AuditEvent(type="x", outcome="success", at=1.0, ip="2001:DB8::1")).ip == "2001:db8::1"


def test_bounding_a_valid_event_keeps_every_field() -> None:
    """``bounded`` builds a new event field by field: none may be left at its default."""
    import dataclasses

    values = {"type": "token.issued", "outcome": "success", "at": 12.5, "client_id": "c", "subject": "s",
              "grant_type": "client_credentials", "jti": "j", "ip": "192.0.2.1", "detail": {"scope": "a b"}}
    assert set(values) == {f.name for f in dataclasses.fields(AuditEvent)}
    assert bounded(AuditEvent(**values)) == AuditEvent(**values)  # type: ignore[arg-type]


def test_sink_sets_aside_only_the_refused_event(pg: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A poisoned event that bypassed bounding (injected at the queue) is refused by PostgreSQL: before the fix
    the whole batch went back to the head of the queue for ever; now only that event is set aside, logged with
    the reason and counted, and every other event (before and after it) is written."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OSTIARY_")}
    env.update({"OSTIARY_DATABASE_URL": pg, "OSTIARY_SECRET_KEY": "k" * 40})
    ostiary(["migrate"], env)

    async def go() -> tuple[list[Any], float]:
        store = SqlStore.from_url(pg)
        sink = BatchingAuditSink(store, max_batch=50)
        good = [AuditEvent(type="token.issued", outcome="success", at=float(i), jti=f"j{i}") for i in range(120)]
        poison = AuditEvent(type="token.issued", outcome="failure", at=0.5, ip=POISON, jti="poison")
        nul = AuditEvent(type="token.issued", outcome="failure", at=0.6, subject="a\x00b", jti="nul")
        before = _dropped("rejected")
        sink.enqueue(good[:37] + [poison] + good[37:90] + [nul] + good[90:])
        await sink.flush()
        await sink.flush()  # nothing left to retry
        rows = await store.list_events(limit=1000)
        await store.close()
        return rows, _dropped("rejected") - before

    with caplog.at_level(logging.ERROR, logger="ostiary.audit"):
        rows, dropped = asyncio.run(go())
    assert sorted(e.jti or "" for e in rows) == sorted(f"j{i}" for i in range(120))
    assert dropped == 2
    set_aside = [r for r in caplog.records if r.getMessage().startswith("audit event refused")]
    assert [r.audit["jti"] for r in set_aside] == ["poison", "nul"]  # type: ignore[attr-defined]
    assert all(r.reason for r in set_aside)  # type: ignore[attr-defined]


def _dropped(reason: str) -> float:
    from ostiary.web import metrics

    return float(metrics.AUDIT_DROPPED.labels(reason)._value.get())


def test_sink_keeps_events_while_the_database_is_unreachable(pg: str, caplog: pytest.LogCaptureFixture) -> None:
    """A database that cannot be reached is not a refused event: nothing is set aside, everything waits, and
    the outage is logged once (then every 30 s), not at every flush."""
    async def go() -> tuple[int, int, bool]:
        store = SqlStore.from_url("postgresql+asyncpg://postgres@127.0.0.1:1/nowhere")
        sink = BatchingAuditSink(store, durability="sync")
        sink.enqueue([AuditEvent(type="x", outcome="success", at=1.0)] * 3)
        await sink.flush()
        await sink.flush()
        written = await sink.write_now([AuditEvent(type="y", outcome="success", at=2.0)])  # sync: answer 503
        await store.close()
        return len(sink._queue), sink.dropped, written

    with caplog.at_level(logging.ERROR):
        assert asyncio.run(go()) == (4, 0, False)
    assert [r.getMessage() for r in caplog.records if r.name.startswith("ostiary")] == ["database unavailable"]


# --- 10.7: kill -9 a worker under load ------------------------------------------------------------------

MARGIN = 1.0  # seconds: one flush interval (0.2 s) plus the batch being written, with room for a busy machine


def _cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _load_and_kill(srv: LiveServer, client_id: str, secret: str) -> tuple[list[tuple[str, float]], float]:
    """Eight clients request tokens; after 300 tokens one worker is killed with SIGKILL; 300 more, then stop.
    Returns (jti, time its 200 arrived) for every token issued, and the time of the kill."""
    issued: list[tuple[str, float]] = []
    killed_at: list[float] = []
    lock = threading.Lock()

    async def client() -> None:
        async with httpx.AsyncClient(base_url=srv.base_url, timeout=10) as http:
            while True:
                with lock:
                    if len(issued) >= 600:
                        return
                try:
                    r = await http.post("/token", auth=(client_id, secret), data={"grant_type": "client_credentials"})
                except httpx.HTTPError:
                    continue  # the connection was on the killed worker
                if r.status_code != 200:
                    continue
                now = time.monotonic()
                with lock:
                    issued.append((_jti(r.json()["access_token"]), now))
                    if len(issued) == 300 and not killed_at:
                        # the busier worker: the one most likely to hold unwritten events
                        victim = max(worker_pids(srv.procs[0].pid), key=_cpu_ticks)
                        os.kill(victim, signal.SIGKILL)
                        killed_at.append(time.monotonic())

    async def run() -> None:
        await asyncio.gather(*(client() for _ in range(8)))

    asyncio.run(run())
    return issued, killed_at[0]


@pytest.mark.parametrize("durability", ["batched", "sync"])
def test_kill_9_of_a_worker_loses_at_most_the_documented_audit_events(
        durability: str, pg: str, tmp_path: Path) -> None:
    srv = start_server(pg, tmp_path, workers=2, extra_env={"OSTIARY_AUDIT__DURABILITY": durability})
    try:
        client_id, secret = _service(srv)
        issued, killed_at = _load_and_kill(srv, client_id, secret)
    finally:
        srv.stop()  # SIGTERM: the surviving and the restarted worker flush what they hold
    rows = {r["jti"] for r in _rows(pg, "SELECT jti FROM audit_events WHERE type = 'token.issued'")}
    logged = set()
    for line in srv.log().splitlines():
        obj = json.loads(line)
        if obj.get("logger") == "ostiary.audit" and obj.get("msg") == "token.issued":
            logged.add(obj["audit"]["jti"])
    missing_rows = [(jti, at) for jti, at in issued if jti not in rows]
    missing_lines = [(jti, at) for jti, at in issued if jti not in logged]
    print(f"{durability}: {len(issued)} tokens, {len(missing_rows)} without a row, "
          f"{len(missing_lines)} without a log line")
    assert len(issued) >= 600
    assert "exited with status -9; starting another" in srv.log()
    if durability == "sync":
        assert missing_rows == []  # the row is written before the response
    else:
        assert all(at > killed_at - MARGIN for _, at in missing_rows), missing_rows
    # audit log lines are flushed on their own 0.2 s timer in both modes
    assert all(at > killed_at - MARGIN for _, at in missing_lines), missing_lines
