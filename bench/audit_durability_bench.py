#!/usr/bin/env python3
"""What ``audit.durability = "sync"`` costs: client-credentials tokens per second and latency, batched vs sync.

One Uvicorn worker on PostgreSQL per mode (started by ``tests.support.start_server``), ``--conc`` raw HTTP/1.1
keep-alive connections (bench/_rawhttp.py) for ``--duration`` seconds, ``--runs`` rounds with the modes
interleaved; the median round per mode is printed as a Markdown row for bench/RESULTS.md. Also counts the
audit rows against the tokens issued. Short by default: the machine is shared.

    .venv/bin/python bench/audit_durability_bench.py                  # 2 x 8 s per mode, 8 connections
    .venv/bin/python bench/audit_durability_bench.py --duration 3 --runs 1
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _rawhttp import RawConnection, token_request  # noqa: E402  (bench/ is on sys.path: this script's folder)
from tests.support import LiveServer, create_pg_database, drop_pg_database, ensure_services, start_server  # noqa: E402

MODES = ("batched", "sync")


async def load(srv: LiveServer, client: dict[str, Any], conc: int, duration: float) -> dict[str, float]:
    host, port = "127.0.0.1", int(srv.base_url.rsplit(":", 1)[1])
    payload = token_request(host, port, {"grant_type": "client_credentials", "client_id": client["client_id"],
                                         "client_secret": client["client_secret"]})
    latencies: list[float] = []
    errors = 0
    stop = time.monotonic() + duration

    async def worker() -> None:
        nonlocal errors
        conn = RawConnection(host, port)
        while time.monotonic() < stop:
            if not conn.usable():
                await conn.connect()
            t0 = time.perf_counter()
            status, _ = await conn.request(payload)
            latencies.append(time.perf_counter() - t0)
            errors += status != 200
        conn.close()

    t0 = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(conc)))
    elapsed = time.monotonic() - t0
    latencies.sort()
    return {"rps": len(latencies) / elapsed, "p50": latencies[len(latencies) // 2] * 1000,
            "p99": latencies[int(len(latencies) * 0.99)] * 1000, "n": len(latencies), "errors": errors}


async def audit_rows(url: str) -> int:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM audit_events WHERE type = 'token.issued'"))
    finally:
        await conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--conc", type=int, default=8)
    args = ap.parse_args()
    ensure_services()
    work = Path(tempfile.mkdtemp(prefix="ostiary-audit-bench-"))
    servers: dict[str, tuple[LiveServer, str, str, dict[str, Any]]] = {}
    results: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
    issued: dict[str, int] = {}
    try:
        for mode in MODES:
            name, url = create_pg_database()
            srv = start_server(url, work / mode, extra_env={"OSTIARY_AUDIT__DURABILITY": mode})
            client = srv.create_client(grant_types=["client_credentials"], scopes=["api:read"],
                                       audiences=["https://api"])
            servers[mode] = (srv, name, url, client)
            warm = asyncio.run(load(srv, client, args.conc, 1.0))  # warm-up
            issued[mode] = int(warm["n"] - warm["errors"])
        for run in range(args.runs):
            for mode in (MODES if run % 2 == 0 else MODES[::-1]):
                srv, _, _, client = servers[mode]
                results[mode].append(asyncio.run(load(srv, client, args.conc, args.duration)))
                print(mode, {k: round(v, 2) for k, v in results[mode][-1].items()}, file=sys.stderr)
        for mode in MODES:
            srv, _, url, _ = servers[mode]
            srv.stop()
            issued[mode] += int(sum(r["n"] - r["errors"] for r in results[mode]))
            rows = asyncio.run(audit_rows(url))
            best = sorted(results[mode], key=lambda r: r["rps"])[len(results[mode]) // 2]
            print(f"| {mode} | {args.conc} | {best['rps']:.0f} | {best['p50']:.1f} ms | {best['p99']:.1f} ms | "
                  f"{issued[mode]} tokens, {rows} audit rows |")
        print("median rps:", {m: round(statistics.median(r["rps"] for r in results[m])) for m in MODES})
    finally:
        for srv, name, _, _ in servers.values():
            srv.stop()
            drop_pg_database(name)


if __name__ == "__main__":
    main()
