#!/usr/bin/env python3
"""What DPoP (RFC 9449) costs at the token endpoint: a client-credentials token with a DPoP proof against a plain
Bearer one, on the same server in the same run, interleaved; and the replay cache in process memory against Redis.

Two live ``ostiary serve --workers 1`` on one fresh PostgreSQL database each: one without Redis (proof ids in
process memory), one with ``redis_url`` (proof ids in Redis, ``SET NX PX``). Each run visits the four cells
(memory/Redis × Bearer/DPoP) in a rotated order; a cell is ``--requests`` sequential client-credentials requests on
one keep-alive connection. The proofs are signed *before* the cell is timed (each is single use), so the client's
signing is not counted. Reported per cell, median over ``--runs``: the server's own mean time per ``/token``
request (the Prometheus histogram ``ostiary_http_request_seconds{route="token"}``, sum/count deltas), the server
process's CPU per request (``/proc``, user+system of the worker and its supervisor), and the client's p50 latency;
and the DPoP/Bearer ratio of each. The issue's goal: a DPoP token costs at most 1.3× a Bearer one.

With ``--wrk`` it then measures throughput, the cost that matters to capacity: two more servers, ``--workers 2``
(memory and Redis, as above), loaded by ``wrk`` at ``--wrk-concurrency`` for ``--wrk-duration`` seconds per cell
(bench/wrk/token.lua with ``BENCH_DPOP_PROOFS``: client credentials, each request with its own proof, signed
beforehand and read from a file; the Bearer cell runs the same script with requests also built in Lua, without
proofs), Bearer and DPoP interleaved over ``--runs``. Reported: tokens/s of each and Bearer tokens/s ÷ DPoP
tokens/s, i.e. what a DPoP token costs the machine (server, PostgreSQL and wrk on the same cores) relative to a
Bearer one; and the server's own CPU per token under that load (``/proc``, the supervisor and both workers), DPoP ÷
Bearer. Any non-200 answer fails the cell.

    .venv/bin/python bench/dpop_bench.py                       # 2,000 requests x 5 runs
    .venv/bin/python bench/dpop_bench.py --wrk                 # and the throughput cells
    .venv/bin/python bench/dpop_bench.py --requests 200 --runs 1 --wrk --wrk-duration 2 --output -   # smoke test

It imports ``tests.support`` (database creation, server start-up) and the tests' proof helper
(``tests/web/_dpop.py``); it stops the servers it started and drops the databases it created.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from refresh_bench import proc_cpu  # noqa: E402  (bench/ is on sys.path: this script's folder)
from tests.support import (  # noqa: E402
    LiveServer,
    create_pg_database,
    drop_pg_database,
    start_server,
    worker_pids,
)
from tests.web._dpop import DPoPKey  # noqa: E402

HIST = re.compile(r'ostiary_http_request_seconds_(sum|count)\{[^}]*route="token"[^}]*\} ([0-9.e+-]+)')
REDIS = "redis://127.0.0.1:6379/0"


def token_hist(srv: LiveServer) -> tuple[float, float]:
    text = httpx.get(srv.base_url + "/metrics", timeout=30).text
    vals = {"sum": 0.0, "count": 0.0}
    for kind, v in HIST.findall(text):
        vals[kind] += float(v)
    return vals["sum"], vals["count"]


def cell(srv: LiveServer, pids: list[int], client: dict[str, Any], n: int, dpop: bool) -> dict[str, float]:
    url = srv.issuer + "/token"
    key = DPoPKey()
    proofs = [key.proof(url) for _ in range(n)] if dpop else []
    lat: list[float] = []
    with httpx.Client(base_url=srv.base_url, auth=(client["client_id"], client["client_secret"]), timeout=30) as c:
        c.post("/token", data={"grant_type": "client_credentials"})  # warm the connection
        s0, n0 = token_hist(srv)
        cpu0 = proc_cpu(pids)
        for i in range(n):
            headers = {"DPoP": proofs[i]} if dpop else {}
            t0 = time.perf_counter()
            r = c.post("/token", data={"grant_type": "client_credentials"}, headers=headers)
            lat.append(time.perf_counter() - t0)
            if r.status_code != 200 or r.json()["token_type"] != ("DPoP" if dpop else "Bearer"):
                raise SystemExit(f"unexpected answer: {r.status_code} {r.text[:300]}")
        cpu1 = proc_cpu(pids)
        s1, n1 = token_hist(srv)
    count = n1 - n0 - 0  # the /metrics calls are not /token
    return {"server_ms": (s1 - s0) / count * 1000, "cpu_ms": (cpu1 - cpu0) / n * 1000,
            "p50_ms": statistics.median(lat) * 1000}


def wrk_cell(srv: LiveServer, client: dict[str, Any], conc: int, duration: float, dpop: bool,
             work: Path) -> dict[str, float]:
    """tokens/s, p50/p99 and the server's CPU per token of one wrk cell; the proofs (more than the cell can use)
    are signed before it."""
    env = {**os.environ, "BENCH_CLIENT_ID": client["client_id"], "BENCH_CLIENT_SECRET": client["client_secret"],
           "BENCH_THREADS": "1", "BENCH_DYNAMIC": "1"}
    if dpop:
        key = DPoPKey()
        url = srv.issuer + "/token"
        path = work / "proofs.txt"
        # under 6,000 tokens/s on this kind of machine: 9,000 per second of the cell leaves a margin
        path.write_text("\n".join(key.proof(url) for _ in range(int(9_000 * (duration + 1)))) + "\n")
        env["BENCH_DPOP_PROOFS"] = str(path)
    pids = [srv.procs[0].pid, *worker_pids(srv.procs[0].pid)]
    cpu0 = proc_cpu(pids)
    out = subprocess.run(["wrk", "-t1", f"-c{conc}", f"-d{duration:g}s", "--latency", "-s",
                          str(ROOT / "bench" / "wrk" / "token.lua"), srv.base_url + "/token"],
                         env=env, capture_output=True, text=True, timeout=duration + 60)
    cpu1 = proc_cpu(pids)
    line = next((x for x in out.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if out.returncode != 0 or line is None:
        raise SystemExit(f"wrk failed ({out.returncode}): {out.stdout}{out.stderr}")
    r = json.loads(line[len("BENCH_JSON "):])
    errors = sum(r[k] for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout"))
    if errors:
        raise SystemExit(f"wrk cell had {errors} errors (non-200 answers or socket errors): {r}")
    return {"tps": r["requests"] / (r["duration_us"] / 1e6), "p50_ms": r["p50_us"] / 1000,
            "p99_ms": r["p99_us"] / 1000, "cpu_ms": (cpu1 - cpu0) / r["requests"] * 1000}


def throughput(args: argparse.Namespace, env: dict[str, str], tmp: Path
               ) -> dict[tuple[str, bool], list[dict[str, float]]]:
    dbs: list[str] = []
    servers: dict[str, tuple[LiveServer, dict[str, Any]]] = {}
    try:
        for name, extra in (("memory", {}), ("redis", {"OSTIARY_REDIS_URL": REDIS})):
            db, url = create_pg_database()
            dbs.append(db)
            srv = start_server(url, tmp / f"wrk-{name}", extra_env={**env, **extra}, workers=2)
            client = srv.create_client(grant_types=["client_credentials"], scopes=["api:read"],
                                       audiences=["urn:example:api"])
            servers[name] = (srv, client)
            wrk_cell(srv, client, args.wrk_concurrency, 2, False, tmp)  # warm-up
        cells = [(s, d) for s in ("memory", "redis") for d in (False, True)]
        results: dict[tuple[str, bool], list[dict[str, float]]] = {c: [] for c in cells}
        for run in range(args.runs):
            order = cells[run % len(cells):] + cells[: run % len(cells)]
            for store, dpop in order:
                srv, client = servers[store]
                results[(store, dpop)].append(wrk_cell(srv, client, args.wrk_concurrency, args.wrk_duration, dpop,
                                                       tmp))
                print(f"wrk run {run + 1} {store} {'DPoP' if dpop else 'Bearer'}: "
                      f"{results[(store, dpop)][-1]}", file=sys.stderr)
        return results
    finally:
        for srv, _ in servers.values():
            srv.stop()
        for db in dbs:
            drop_pg_database(db)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--wrk", action="store_true", help="also measure throughput with wrk (two workers per server)")
    ap.add_argument("--wrk-concurrency", type=int, default=16)
    ap.add_argument("--wrk-duration", type=float, default=6.0)
    ap.add_argument("--output", default=str(ROOT / "bench" / "RESULTS.md"),
                    help="RESULTS.md to update (its 'DPoP (issue 12)' section), or - for stdout")
    args = ap.parse_args()
    env = {"OSTIARY_LOG_LEVEL": "warning", "OSTIARY_CLIENTS__CACHE_TTL": "5", "OSTIARY_KEYS__REFRESH_INTERVAL": "5",
           "OSTIARY_DPOP__IAT_WINDOW": "600"}  # proofs are signed before a cell; a cell may take a while
    dbs: list[str] = []
    servers: dict[str, tuple[LiveServer, list[int], dict[str, Any]]] = {}
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"dpop-bench-{os.getpid()}"
    try:
        for name, extra in (("memory", {}), ("redis", {"OSTIARY_REDIS_URL": REDIS})):
            db, url = create_pg_database()
            dbs.append(db)
            srv = start_server(url, tmp / name, extra_env={**env, **extra})
            pids = [srv.procs[0].pid, *worker_pids(srv.procs[0].pid)]
            client = srv.create_client(grant_types=["client_credentials"], scopes=["api:read"],
                                       audiences=["urn:example:api"])
            servers[name] = (srv, pids, client)
        cells = [(s, d) for s in ("memory", "redis") for d in (False, True)]
        results: dict[tuple[str, bool], list[dict[str, float]]] = {c: [] for c in cells}
        for run in range(args.runs):
            order = cells[run % len(cells):] + cells[: run % len(cells)]
            for store, dpop in order:
                srv, pids, client = servers[store]
                results[(store, dpop)].append(cell(srv, pids, client, args.requests, dpop))
                print(f"run {run + 1} {store} {'DPoP' if dpop else 'Bearer'}: {results[(store, dpop)][-1]}",
                      file=sys.stderr)
    finally:
        for srv, _, _ in servers.values():
            srv.stop()
        for db in dbs:
            drop_pg_database(db)
    tput = throughput(args, env, tmp) if args.wrk else None
    write(results, args, tput)


def med(rows: list[dict[str, float]], k: str) -> float:
    return statistics.median(r[k] for r in rows)


def write(results: dict[tuple[str, bool], list[dict[str, float]]], args: argparse.Namespace,
          tput: dict[tuple[str, bool], list[dict[str, float]]] | None = None) -> None:
    load = os.getloadavg()
    lines = [
        "## DPoP (issue 12) — `bench/dpop_bench.py`",
        "",
        f"`.venv/bin/python bench/dpop_bench.py --requests {args.requests} --runs {args.runs}"
        f"{' --wrk' if tput is not None else ''}` "
        f"({time.strftime('%Y-%m-%d', time.gmtime())}; nproc {os.cpu_count()}, Python {platform.python_version()}; "
        f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} at the end: the machine was shared with other "
        "work, so absolute times are inflated; the ratios come from interleaved cells of one run).",
        "",
        "Client-credentials tokens, `ostiary serve --workers 1` on PostgreSQL, sequential requests on one keep-alive "
        "connection, medians over the runs. DPoP: a fresh ES256 proof per request (signed before the cell).",
        "",
        "| replay cache | token | server ms/request (histogram) | server CPU ms/request | client p50 ms |",
        "|---|---|---|---|---|",
    ]
    for store in ("memory", "redis"):
        for dpop in (False, True):
            rows = results[(store, dpop)]
            lines.append(f"| {store} | {'DPoP' if dpop else 'Bearer'} | {med(rows, 'server_ms'):.3f} | "
                         f"{med(rows, 'cpu_ms'):.3f} | {med(rows, 'p50_ms'):.3f} |")
    lines += ["", "| replay cache | DPoP/Bearer, server time | DPoP/Bearer, server CPU | DPoP/Bearer, client p50 |",
              "|---|---|---|---|"]
    for store in ("memory", "redis"):
        b, d = results[(store, False)], results[(store, True)]
        lines.append(f"| {store} | {med(d, 'server_ms') / med(b, 'server_ms'):.2f}× | "
                     f"{med(d, 'cpu_ms') / med(b, 'cpu_ms'):.2f}× | {med(d, 'p50_ms') / med(b, 'p50_ms'):.2f}× |")
    if tput is not None:
        lines += ["", f"Throughput: `ostiary serve --workers 2`, wrk -t1 -c{args.wrk_concurrency} "
                      f"-d{args.wrk_duration:g}s (bench/wrk/token.lua), medians over the runs; wrk, the server and "
                      "PostgreSQL share the machine's cores.", "",
                  "| replay cache | Bearer tokens/s | DPoP tokens/s | **Bearer ÷ DPoP** (runs) | server CPU ms per "
                  "token, Bearer / DPoP | **DPoP ÷ Bearer, server CPU** (runs) | Bearer p50 / p99 ms | DPoP p50 / p99 "
                  "ms |", "|---|---|---|---|---|---|---|---|"]
        for store in ("memory", "redis"):
            b, d = tput[(store, False)], tput[(store, True)]
            per_run = ", ".join(f"{x['tps'] / y['tps']:.2f}" for x, y in zip(b, d, strict=True))
            cpu_runs = ", ".join(f"{y['cpu_ms'] / x['cpu_ms']:.2f}" for x, y in zip(b, d, strict=True))
            lines.append(f"| {store} | {med(b, 'tps'):,.0f} | {med(d, 'tps'):,.0f} | "
                         f"**{med(b, 'tps') / med(d, 'tps'):.2f}×** ({per_run}) | {med(b, 'cpu_ms'):.3f} / "
                         f"{med(d, 'cpu_ms'):.3f} | **{med(d, 'cpu_ms') / med(b, 'cpu_ms'):.2f}×** ({cpu_runs}) | "
                         f"{med(b, 'p50_ms'):.2f} / "
                         f"{med(b, 'p99_ms'):.2f} | {med(d, 'p50_ms'):.2f} / {med(d, 'p99_ms'):.2f} |")
    text = "\n".join(lines) + "\n"
    if args.output == "-":
        print(text)
        return
    path = Path(args.output)
    old = path.read_text() if path.exists() else ""
    start = old.find("## DPoP (issue 12)")
    if start >= 0:
        end = old.find("\n## ", start + 1)
        old = old[:start] + (old[end + 1:] if end >= 0 else "")
    path.write_text(old.rstrip("\n") + "\n\n" + text)
    print(text)


if __name__ == "__main__":
    main()
