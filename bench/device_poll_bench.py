"""Device-flow polling under load (issue 4): N devices poll a live server on PostgreSQL at their interval.

Each simulated device starts a device authorization, then polls POST /token (grant_type device_code) every
``interval`` seconds, as RFC 8628 §3.5 asks, for ``--duration`` seconds. A few devices are approved through the
verification pages mid-run, so the run also contains "decisions".

The polls go through a minimal HTTP/1.1 client on asyncio streams: ``--connections`` persistent keep-alive
connections handed out through a queue, each request pre-encoded bytes, so the load generator spends little
CPU of the machine it shares with the server. Reported for the polling window: polls/s served, latency
percentiles (and, separately, the time a poll waited for a free connection), the answers seen, the CPU of
the server (``ostiary serve`` and every process below it), of the PostgreSQL backends serving the bench
database and of the load generator, all from /proc; and the database work from PostgreSQL's own counters
(pg_stat_database: xact_commit, tup_inserted/updated/deleted; pg_stat_user_tables per table, with the scans
of device_authorizations as its reads), taken before and after with a forced stats flush.

    .venv/bin/python bench/device_poll_bench.py                  # 2,000 devices, 60 s, writes bench/RESULTS-device.md
    .venv/bin/python bench/device_poll_bench.py --redis          # poll timing in Redis instead of process memory
    .venv/bin/python bench/device_poll_bench.py --compare        # both, side by side (process memory, then Redis)
    .venv/bin/python bench/device_poll_bench.py --devices 200 --duration 15 --output -
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _rawhttp import RawConnection, token_request  # noqa: E402  (bench/ is on sys.path: this script's folder)
from tests.support import create_pg_database, drop_pg_database, ensure_services, start_server  # noqa: E402

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
PASSWORD = "correct horse battery staple"
REDIS_URL = "redis://127.0.0.1:6379/0"
REDIS_POLL_KEYS = "ostiary:poll:*"
PG_DSN = "postgresql://postgres@127.0.0.1:5432/{}"
CLK_TCK = os.sysconf("SC_CLK_TCK")
REQUEST_TIMEOUT = 30.0


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# raw HTTP/1.1 keep-alive client (the polls)


# --------------------------------------------------------------------------------------------------
# CPU from /proc


def proc_stat(pid: int) -> tuple[int, int, int] | None:
    """(ppid, starttime, utime + stime in clock ticks) of one process (all its threads), from /proc/<pid>/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # fields[0] is field 3 of proc(5): ppid is field 4, utime 14, stime 15, starttime 22
    return int(fields[1]), int(fields[19]), int(fields[11]) + int(fields[12])


def process_tree(root: int) -> list[int]:
    """``root`` and every process below it (children, grandchildren, ...), by ppid."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := proc_stat(int(entry))) is not None:
            children.setdefault(st[0], []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_ticks(pids: list[int]) -> dict[tuple[int, int], int]:
    """CPU ticks per process, keyed by (pid, starttime) so that a reused pid is not mistaken for the old one."""
    out = {}
    for pid in pids:
        if (st := proc_stat(pid)) is not None:
            out[(pid, st[1])] = st[2]
    return out


def cpu_delta(before: dict[tuple[int, int], int], after: dict[tuple[int, int], int]) -> tuple[float, int]:
    """CPU seconds spent between two snapshots by the processes alive at the end (those born in between count
    in full), and how many processes of the first snapshot were gone (their last ticks are lost)."""
    ticks = sum(t - before.get(key, 0) for key, t in after.items())
    return ticks / CLK_TCK, len(before.keys() - after.keys())


async def pg_backend_pids(dbname: str) -> list[int]:
    import asyncpg

    conn = await asyncpg.connect(PG_DSN.format(dbname))
    try:
        rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                                dbname)
    finally:
        await conn.close()
    return [int(r["pid"]) for r in rows]


@dataclass
class CpuSnapshot:
    server: dict[tuple[int, int], int]
    pg: dict[tuple[int, int], int]
    generator_before: float  # time.process_time() before and after reading /proc (so that the reading, ~2 ms,
    generator_after: float  # is in no span)
    wall: float  # time.perf_counter()
    polls: int  # polls answered so far


def cpu_snapshot(server_pid: int, pg_pids: list[int], polls: int) -> CpuSnapshot:
    before = time.process_time()
    server, pg = cpu_ticks(process_tree(server_pid)), cpu_ticks(pg_pids)
    return CpuSnapshot(server=server, pg=pg, generator_before=before, generator_after=time.process_time(),
                       wall=time.perf_counter(), polls=polls)


@dataclass
class CpuSpan:
    server: float = 0.0
    pg: float = 0.0
    generator: float = 0.0
    wall: float = 0.0
    polls: int = 0
    server_gone: int = 0
    pg_gone: int = 0

    def add(self, a: CpuSnapshot, b: CpuSnapshot) -> CpuSpan:
        server, server_gone = cpu_delta(a.server, b.server)
        pg, pg_gone = cpu_delta(a.pg, b.pg)
        return CpuSpan(self.server + server, self.pg + pg, self.generator + b.generator_before - a.generator_after,
                       self.wall + b.wall - a.wall, self.polls + b.polls - a.polls,
                       self.server_gone + server_gone, self.pg_gone + pg_gone)

    def per_poll_us(self, seconds: float) -> float:
        return seconds * 1e6 / self.polls if self.polls else float("nan")


# --------------------------------------------------------------------------------------------------
# PostgreSQL and Redis counters


async def pg_counters(dbname: str) -> dict[str, Any]:
    import asyncpg

    conn = await asyncpg.connect(PG_DSN.format(dbname))
    try:
        # the server's pooled connections publish their counters once idle for 10 s (PostgreSQL 15)
        await asyncio.sleep(11)
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        db = await conn.fetchrow("SELECT xact_commit, tup_inserted, tup_updated, tup_deleted FROM pg_stat_database "
                                 "WHERE datname = $1", dbname)
        tables = await conn.fetch("SELECT relname, n_tup_ins, n_tup_upd, n_tup_del, coalesce(seq_scan, 0) AS seq_scan, "
                                  "coalesce(idx_scan, 0) AS idx_scan FROM pg_stat_user_tables")
        version = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    return {"db": dict(db), "version": str(version).split()[0],
            "tables": {r["relname"]: {"inserted": r["n_tup_ins"], "updated": r["n_tup_upd"], "deleted": r["n_tup_del"],
                                      "seq_scan": r["seq_scan"], "idx_scan": r["idx_scan"]} for r in tables}}


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    db = {k: after["db"][k] - before["db"][k] for k in after["db"]}
    tables, scans = {}, {}
    zero = {"inserted": 0, "updated": 0, "deleted": 0, "seq_scan": 0, "idx_scan": 0}
    for name, now in after["tables"].items():
        d = {k: now[k] - before["tables"].get(name, zero)[k] for k in zero}
        scans[name] = d["seq_scan"] + d["idx_scan"]
        if (d["inserted"], d["updated"], d["deleted"]) != (0, 0, 0):
            tables[name] = {k: d[k] for k in ("inserted", "updated", "deleted")}
    return {"db": db, "tables": tables, "scans": scans}


async def flush_poll_keys() -> int:
    """Delete the poll timing a previous run left in Redis, so runs don't see each other's state."""
    import redis.asyncio as aioredis

    r = aioredis.from_url(REDIS_URL)
    try:
        keys = [k async for k in r.scan_iter(match=REDIS_POLL_KEYS, count=1000)]
        for i in range(0, len(keys), 500):
            await r.delete(*keys[i:i + 500])
    finally:
        await r.aclose()
    return len(keys)


# --------------------------------------------------------------------------------------------------
# the run


def approve(base: str, user_code: str, username: str) -> None:
    """The verification pages, as a browser would use them (one decision)."""
    with httpx.Client(base_url=base, timeout=30) as b:
        page = b.get("/device").text
        m = re.search(r'name="csrf_token" id="csrf_token" value="([^"]+)"', page)
        assert m is not None, page[:500]
        csrf = m.group(1)
        b.post("/device", data={"csrf_token": csrf, "user_code": user_code})
        b.post("/device/login", data={"csrf_token": csrf, "user_code": user_code, "username": username,
                                      "password": PASSWORD})
        r = b.post("/device/confirm", data={"csrf_token": csrf, "user_code": user_code, "decision": "approve"})
        assert 'data-outcome="approved"' in r.text, r.text[:500]


def run(args: argparse.Namespace, redis: bool) -> dict[str, Any]:
    ensure_services()
    if redis:
        n = asyncio.run(flush_poll_keys())
        log(f"deleted {n} Redis key(s) matching {REDIS_POLL_KEYS}")
    dbname, url = create_pg_database()
    workdir = Path(tempfile.mkdtemp(prefix="ost-device-bench-"))
    log(f"run: {args.devices} devices, {args.duration:g} s, poll timing in {'Redis' if redis else 'process memory'}")
    srv = start_server(url, workdir, workers=args.workers, extra_env={
        "OSTIARY_CLIENTS__CACHE_TTL": "5", "OSTIARY_LOG_LEVEL": "warning",
        "OSTIARY_DEVICE__INTERVAL": str(args.interval), "OSTIARY_DEVICE__EXPIRES_IN": "1800",
        "OSTIARY_DEVICE__ATTEMPTS_PER_IP": "100000", "OSTIARY_DEVICE__ATTEMPTS_GLOBAL": "100000",
        **({"OSTIARY_REDIS_URL": REDIS_URL} if redis else {})})
    try:
        out = asyncio.run(load(args, srv, dbname))
    finally:
        srv.stop()
        drop_pg_database(dbname)
    out["redis"] = redis
    return out


def pct(values: list[float], p: int) -> float:
    """The p-th percentile (1..99) of ``values``."""
    if not values:
        return float("nan")
    if len(values) < 100:
        return max(values) if p >= 50 else statistics.median(values)
    return statistics.quantiles(values, n=100)[p - 1]


async def load(args: argparse.Namespace, srv: Any, dbname: str) -> dict[str, Any]:
    client = srv.create_client(client_type="public", grant_types=[DEVICE_GRANT, "refresh_token"],
                               scopes=["openid", "offline_access"])
    with srv.admin() as a:
        r = a.post("/users", json={"username": "bench", "name": "Bench", "password": PASSWORD})
        assert r.status_code == 201, r.text

    # setup: the device authorizations (httpx is fine here, this is not timed)
    async with httpx.AsyncClient(base_url=srv.base_url, timeout=httpx.Timeout(30, pool=120),
                                 limits=httpx.Limits(max_connections=16, max_keepalive_connections=16)) as http:
        sem = asyncio.Semaphore(16)

        async def start() -> dict[str, Any]:
            for attempt in range(5):
                try:
                    async with sem:
                        resp = await http.post("/device_authorization", data={
                            "client_id": client["client_id"], "scope": "openid offline_access"})
                    resp.raise_for_status()
                    return dict(resp.json())
                except httpx.HTTPError:
                    if attempt == 4:
                        raise
                    await asyncio.sleep(1)
            raise AssertionError("unreachable")

        devices = await asyncio.gather(*(start() for _ in range(args.devices)))
    # the 11 s that pg_counters waits for the stats flush are idle: the server's baseline CPU (background tasks)
    server_pid = srv.procs[0].pid
    idle0 = cpu_snapshot(server_pid, await pg_backend_pids(dbname), 0)
    before = await pg_counters(dbname)
    idle = CpuSpan().add(idle0, cpu_snapshot(server_pid, list({pid for pid, _ in idle0.pg}), 0))

    # the polling window: raw keep-alive connections, opened before the window starts
    base = urlsplit(srv.base_url)
    host, port = base.hostname or "127.0.0.1", base.port or 80
    pool: asyncio.Queue[RawConnection] = asyncio.Queue()
    conns = [RawConnection(host, port) for _ in range(args.connections)]
    await asyncio.gather(*(c.connect() for c in conns))
    for c in conns:
        pool.put_nowait(c)

    latencies: list[float] = []
    waits: list[float] = []
    answers: Counter[str] = Counter()
    idle_reconnects = 0
    pg_pids = await pg_backend_pids(dbname)
    done: list[float] = []  # perf_counter when each answered poll completed
    cpu0 = cpu_snapshot(server_pid, pg_pids, 0)
    marks: list[CpuSnapshot] = []  # start and end of the approvals
    t0 = time.monotonic()
    end = t0 + args.duration

    async def pause(seconds: float) -> None:  # a device's wait, cut short at the end of the window
        await asyncio.sleep(min(seconds, max(0.0, end - time.monotonic())))

    async def device(d: dict[str, Any]) -> None:
        nonlocal idle_reconnects
        interval = d["interval"]
        payload = token_request(host, port, {"grant_type": DEVICE_GRANT, "device_code": d["device_code"],
                                             "client_id": client["client_id"]})
        await pause(random.uniform(0, interval))
        while time.monotonic() < end:
            w = time.perf_counter()
            conn = await pool.get()
            s = time.perf_counter()
            waits.append(s - w)
            try:
                if not conn.usable():  # the server closed it while idle (keep-alive timeout): not an error
                    conn.close()
                    await conn.connect()
                    idle_reconnects += 1
                    s = time.perf_counter()
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    status, body = await conn.request(payload)
                done.append(time.perf_counter())
                latencies.append(done[-1] - s)
            except (OSError, EOFError, TimeoutError, ValueError, IndexError) as exc:
                # EOF / reset mid-request (IncompleteReadError is an EOFError), or a malformed answer: counted,
                # the connection is replaced, and the device carries on as a real one would
                answers["client error: " + type(exc).__name__] += 1
                conn.close()
                with contextlib.suppress(OSError):  # else reopened by the next poll that gets it (usable())
                    await conn.connect()
                pool.put_nowait(conn)
                await pause(interval)
                continue
            pool.put_nowait(conn)
            if status >= 500:
                answer = f"HTTP {status}"
            else:
                try:
                    doc = json.loads(body)
                except ValueError:
                    doc = None
                if isinstance(doc, dict) and "error" in doc:
                    answer = str(doc["error"])
                elif isinstance(doc, dict) and "access_token" in doc:
                    answer = "tokens"
                else:
                    answer = f"HTTP {status} (neither error nor access_token)"
            answers[answer] += 1
            if answer in ("tokens", "access_denied", "expired_token", "invalid_grant"):
                return
            if answer == "slow_down":
                interval += 5
            await pause(interval)

    async def decisions() -> int:
        await asyncio.sleep(args.duration / 3)
        chosen = devices[: args.approvals]
        marks.append(cpu_snapshot(server_pid, pg_pids, len(latencies)))
        for d in chosen:
            await asyncio.to_thread(approve, srv.base_url, d["user_code"], "bench")
        marks.append(cpu_snapshot(server_pid, pg_pids, len(latencies)))
        return len(chosen)

    results = await asyncio.gather(decisions(), *(device(d) for d in devices))
    cpu1 = cpu_snapshot(server_pid, pg_pids, len(latencies))
    pg_later = sorted(set(await pg_backend_pids(dbname)) - set(pg_pids))
    pg_later_cpu = sum(cpu_ticks(pg_later).values()) / CLK_TCK  # their whole life is within the window
    for c in conns:
        c.close()
    after = await pg_counters(dbname)

    # the whole window, the approvals' span, and the window less that span (polls only: the sign-ins hash
    # passwords with argon2id, which would otherwise dominate the CPU per poll)
    a0, a1 = marks
    window = CpuSpan().add(cpu0, cpu1)
    approvals = CpuSpan().add(a0, a1)
    polling = CpuSpan().add(cpu0, a0).add(a1, cpu1)
    elapsed = window.wall
    lat = sorted(latencies)
    lat_polling = sorted(x for x, t in zip(latencies, done, strict=True) if not a0.wall <= t <= a1.wall)
    polls = len(lat)
    writes = diff(before, after)
    return {
        "devices": args.devices, "duration": args.duration, "elapsed": elapsed, "interval": args.interval,
        "workers": args.workers, "connections": args.connections, "approvals": results[0], "polls": polls,
        "polls_per_s": polls / elapsed, "p50_ms": statistics.median(lat) * 1000 if lat else float("nan"),
        "p99_ms": pct(lat, 99) * 1000, "max_ms": lat[-1] * 1000 if lat else float("nan"),
        "wait_p99_ms": pct(sorted(waits), 99) * 1000, "idle_reconnects": idle_reconnects,
        "answers": dict(answers),
        "errors": sum(v for k, v in answers.items() if k.startswith(("client error", "HTTP "))),
        "p99_polling_ms": pct(lat_polling, 99) * 1000,
        "server_cpu_s": window.server, "server_cpu_pct": 100 * window.server / elapsed,
        "server_procs": len(cpu1.server), "server_gone": window.server_gone,
        "approvals_s": approvals.wall, "approvals_polls": approvals.polls, "approvals_server_cpu_s": approvals.server,
        "polling_s": polling.wall, "polling_polls": polling.polls,
        "polling_server_cpu_pct": 100 * polling.server / polling.wall,
        "server_us_per_poll": polling.per_poll_us(polling.server),
        "server_us_per_poll_all": window.per_poll_us(window.server),
        "idle_server_cpu_pct": 100 * idle.server / idle.wall, "idle_pg_cpu_pct": 100 * idle.pg / idle.wall,
        "idle_s": idle.wall,
        "server_us_per_poll_net": polling.per_poll_us(polling.server - idle.server / idle.wall * polling.wall),
        "pg_us_per_poll_net": polling.per_poll_us(polling.pg - idle.pg / idle.wall * polling.wall),
        "pg_cpu_s": window.pg, "pg_us_per_poll": polling.per_poll_us(polling.pg), "pg_backends": len(pg_pids),
        "pg_gone": window.pg_gone, "pg_missed": len(pg_later), "pg_missed_cpu_s": pg_later_cpu,
        "gen_cpu_s": window.generator, "gen_us_per_poll": polling.per_poll_us(polling.generator),
        "xact_per_poll": writes["db"]["xact_commit"] / polls if polls else float("nan"),
        "reads_per_poll": writes["scans"].get("device_authorizations", 0) / polls if polls else float("nan"),
        "writes": writes, "pg_version": after["version"],
    }


# --------------------------------------------------------------------------------------------------
# report


def mode_name(redis: bool) -> str:
    return "poll timing in Redis" if redis else "poll timing in process memory"


def render(groups: list[list[dict[str, Any]]], command: str) -> str:
    """``groups``: the runs of each mode (one group, or two with --compare)."""
    first = groups[0][0]

    def row(label: str, key: str, fmt: str) -> str:
        cells = [format(statistics.median(r[key] for r in g), fmt) for g in groups]
        return f"| {label} | " + " | ".join(cells) + " |"

    def writes_cell(g: list[dict[str, Any]]) -> str:
        return "; ".join(f"{r['writes']['db']['tup_inserted']} / {r['writes']['db']['tup_updated']} / "
                         f"{r['writes']['db']['tup_deleted']} for {r['approvals']} decisions" for r in g)

    def plain_cell(g: list[dict[str, Any]], key: str) -> str:
        return "; ".join(str(r[key]) for r in g)

    modes = [mode_name(g[0]["redis"]) for g in groups]
    runs = len(groups[0])
    lines = [
        "# Device flow: polling cost (issue 4)", "",
        f"Machine: {platform.node()}, {os.cpu_count()} CPUs, {platform.platform()}, "
        f"Python {platform.python_version()}; load before: {Path('/proc/loadavg').read_text().split()[0]}.",
        f"Server: {first['workers']} uvicorn worker(s), PostgreSQL {first['pg_version']} on 127.0.0.1, "
        f"{' vs '.join(modes)}; load generator: one asyncio process with raw HTTP/1.1 keep-alive connections "
        f"({first['connections']} of them, handed out through a queue; httpx only for the setup and the approvals) "
        "on the same machine.", "",
        f"Command: `{command}`", "",
        f"Runs: {runs} per mode" + (" (medians below)" if runs > 1 else "") + f". {first['devices']} devices, "
        f"each polling every {first['interval']} s (the server's interval) for {first['duration']:g} s; "
        f"{first['approvals']} of them approved through the verification pages a third of the way in."
        + (" The modes alternate run by run, each on a fresh server and database; before each Redis run the "
           f"keys `{REDIS_POLL_KEYS}` are deleted." if len(groups) > 1 else ""), "",
        "| metric | " + " | ".join(modes) + " |", "|---|" + "---|" * len(groups),
        row("polls served per second", "polls_per_s", ".0f"),
        row("polls in the window", "polls", ".0f"),
        row("window (s)", "elapsed", ".1f"),
        row("latency p50 (ms)", "p50_ms", ".2f"),
        row("latency p99 (ms)", "p99_ms", ".2f"),
        row("latency p99 outside the approvals (ms)", "p99_polling_ms", ".2f"),
        row("latency max (ms)", "max_ms", ".1f"),
        row("pool wait p99 (ms)", "wait_p99_ms", ".2f"),
        row("errors (client errors, HTTP 5xx)", "errors", ".0f"),
        row("server CPU in the window (s)", "server_cpu_s", ".2f"),
        row("server CPU (% of one core), whole window", "server_cpu_pct", ".1f"),
        row("server CPU (% of one core), outside the approvals", "polling_server_cpu_pct", ".1f"),
        row("approvals: span (s)", "approvals_s", ".2f"),
        row("approvals: server CPU in that span (s)", "approvals_server_cpu_s", ".2f"),
        row("server CPU per poll (µs), outside the approvals", "server_us_per_poll", ".0f"),
        row("server CPU per poll (µs), whole window with the approvals", "server_us_per_poll_all", ".0f"),
        row("server CPU at idle, just before the window (% of one core)", "idle_server_cpu_pct", ".2f"),
        row("server CPU per poll (µs), outside the approvals, less the idle baseline", "server_us_per_poll_net",
            ".0f"),
        row("PostgreSQL backend CPU per poll (µs), outside the approvals", "pg_us_per_poll", ".0f"),
        row("PostgreSQL backend CPU per poll (µs), outside the approvals, less the idle baseline",
            "pg_us_per_poll_net", ".0f"),
        row("load generator CPU per poll (µs), outside the approvals", "gen_us_per_poll", ".0f"),
        row("xact_commit per poll", "xact_per_poll", ".2f"),
        row("reads of device_authorizations per poll (idx_scan + seq_scan)", "reads_per_poll", ".2f"),
        "| DB writes: tuples inserted / updated / deleted vs decisions | "
        + " | ".join(writes_cell(g) for g in groups) + " |",
        "| server processes measured | " + " | ".join(plain_cell(g, "server_procs") for g in groups) + " |",
        "| PostgreSQL backends measured | " + " | ".join(plain_cell(g, "pg_backends") for g in groups) + " |",
        "| PostgreSQL backends that connected later, not counted (their CPU, s) | "
        + " | ".join("; ".join(f"{r['pg_missed']} ({r['pg_missed_cpu_s']:.2f})" for r in g) for g in groups) + " |",
        "| idle keep-alive connections reopened | " + " | ".join(plain_cell(g, "idle_reconnects") for g in groups)
        + " |", "",
    ]
    for mode, g in zip(modes, groups, strict=True):
        for i, r in enumerate(g, 1):
            lines.append(f"Answers seen ({mode}, run {i}): "
                         + ", ".join(f"{k} {v}" for k, v in sorted(r["answers"].items())) + ".")
    lines += [
        "",
        "Latency is timed per poll on a connection already taken from the pool (write the request, read the whole "
        "answer); the time a poll waited for a free connection is the separate \"pool wait\", so queueing in the "
        "load generator shows there and not in the latency. A connection the server closed while idle (its "
        "keep-alive timeout) is reopened before the poll, untimed, and counted above; a connection lost mid-request "
        "counts as a client error.", "",
        "CPU is utime + stime from /proc/<pid>/stat over the polling window: the server is `ostiary serve` and every "
        "process below it (children and grandchildren, by ppid); PostgreSQL is the backends connected to the bench "
        "database when the window starts (pg_stat_activity); backends that connect later are not counted (the "
        "table gives how many, and their CPU by the end of the window), nor are PostgreSQL's own background "
        f"processes; /proc counts each process's CPU in ticks of 1/{CLK_TCK} s, so in a short run the small "
        "per-poll figures (PostgreSQL's above all) are rough. The load generator is this one process "
        "(time.process_time). The approvals (sign-in with an argon2id password check, decision, on the verification "
        "pages, through httpx in a thread) run in one "
        "span of the window; the per-poll CPU figures leave that span out (CPU and polls both) so that they are the "
        "cost of polling alone, and the span's own figures are shown beside them. The idle baseline is the CPU of "
        "the same processes over the ~11 s just before the window, while nothing is sent (the server's background "
        "tasks; tests.support sets OSTIARY_KEYS__REFRESH_INTERVAL=1, so each worker reloads its keys every "
        "second), scaled to the polling time and subtracted in the \"less the idle baseline\" rows. xact_commit "
        "and the reads are per poll over the whole window (the approvals' transactions included).", "",
        "## Database work during the polling window", "",
        "From pg_stat_database / pg_stat_user_tables, before and after the window (stats flushed). "
        "`xact_commit` also counts read-only transactions (every poll reads its row), so the tuple counters are "
        "the measure of writes, and the index and sequential scans of device_authorizations the measure of its "
        "reads.", "",
    ]
    for mode, g in zip(modes, groups, strict=True):
        for i, r in enumerate(g, 1):
            w = r["writes"]
            lines.append(f"{mode[0].upper()}{mode[1:]}, run {i}: {r['polls']} polls, {r['approvals']} decisions → "
                         f"tuples inserted {w['db']['tup_inserted']}, updated {w['db']['tup_updated']}, deleted "
                         f"{w['db']['tup_deleted']} (xact_commit {w['db']['xact_commit']}; device_authorizations "
                         f"scanned {w['scans'].get('device_authorizations', 0)} times).")
            for table, c in sorted(w["tables"].items()):
                lines.append(f"  - {table}: +{c['inserted']} inserted, {c['updated']} updated, {c['deleted']} deleted")
    lines += ["", "Per decision the expected writes are: the sign-in (a login_sessions row, an audit event or two), "
              "the decision (1 update of device_authorizations), the redemption (1 update to consumed, a token family, "
              "its first refresh token, the access-token jti, the audit event). Pending polls write nothing.", ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", type=int, default=2000, help="simulated devices (default 2000)")
    p.add_argument("--duration", type=float, default=60, help="polling window in seconds (default 60)")
    p.add_argument("--interval", type=int, default=5, help="the server's device polling interval (default 5)")
    p.add_argument("--approvals", type=int, default=10, help="devices approved a third of the way in (default 10)")
    p.add_argument("--workers", type=int, default=2, help="server worker processes (default 2)")
    p.add_argument("--connections", type=int, default=64,
                   help="persistent HTTP/1.1 keep-alive connections the polls share (default 64)")
    p.add_argument("--redis", action="store_true", help="keep poll timing in Redis (shared by workers)")
    p.add_argument("--compare", action="store_true",
                   help="run without Redis and with --redis (alternating), and report them side by side")
    p.add_argument("--runs", type=int, default=1, help="runs per mode; medians are reported (default 1)")
    p.add_argument("--output", default=str(ROOT / "bench" / "RESULTS-device.md"), help="file, or - for stdout")
    args = p.parse_args()
    modes = [False, True] if args.compare else [args.redis]
    groups: list[list[dict[str, Any]]] = [[] for _ in modes]
    for _ in range(args.runs):
        for group, redis in zip(groups, modes, strict=True):
            group.append(run(args, redis))
    text = render(groups, "python bench/device_poll_bench.py " + " ".join(sys.argv[1:]))
    if args.output != "-":
        Path(args.output).write_text(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
