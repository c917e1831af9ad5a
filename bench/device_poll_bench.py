"""Device-flow polling under load (issue 4): N devices poll a live server on PostgreSQL at their interval.

Each simulated device starts a device authorization, then polls POST /token (grant_type device_code) every
``interval`` seconds, as RFC 8628 §3.5 asks, for ``--duration`` seconds. A few devices are approved through the
verification pages mid-run, so the run also contains "decisions". Reported: polls/s served, latency
percentiles, the answers seen, and the database writes during the polling window, from PostgreSQL's own
counters (pg_stat_database: xact_commit, tup_inserted/updated/deleted; pg_stat_user_tables per table), taken
before and after with a forced stats flush.

    .venv/bin/python bench/device_poll_bench.py                  # 2,000 devices, 60 s, writes bench/RESULTS-device.md
    .venv/bin/python bench/device_poll_bench.py --devices 200 --duration 15 --output -
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import create_pg_database, drop_pg_database, ensure_services, start_server  # noqa: E402

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
PASSWORD = "correct horse battery staple"


async def pg_counters(dbname: str) -> dict[str, Any]:
    import asyncpg

    conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:5432/{dbname}")
    try:
        # the server's pooled connections publish their counters once idle for 10 s (PostgreSQL 15)
        await asyncio.sleep(11)
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        db = await conn.fetchrow("SELECT xact_commit, tup_inserted, tup_updated, tup_deleted FROM pg_stat_database "
                                 "WHERE datname = $1", dbname)
        tables = await conn.fetch("SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables")
    finally:
        await conn.close()
    return {"db": dict(db), "tables": {r["relname"]: (r["n_tup_ins"], r["n_tup_upd"], r["n_tup_del"]) for r in tables}}


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    db = {k: after["db"][k] - before["db"][k] for k in after["db"]}
    tables = {}
    for name, (i, u, d) in after["tables"].items():
        bi, bu, bd = before["tables"].get(name, (0, 0, 0))
        if (i - bi, u - bu, d - bd) != (0, 0, 0):
            tables[name] = {"inserted": i - bi, "updated": u - bu, "deleted": d - bd}
    return {"db": db, "tables": tables}


def approve(base: str, user_code: str, username: str) -> None:
    """The verification pages, as a browser would use them (one decision)."""
    with httpx.Client(base_url=base, timeout=30) as b:
        page = b.get("/device").text
        csrf = re.search(r'name="csrf_token" id="csrf_token" value="([^"]+)"', page).group(1)
        b.post("/device", data={"csrf_token": csrf, "user_code": user_code})
        b.post("/device/login", data={"csrf_token": csrf, "user_code": user_code, "username": username,
                                      "password": PASSWORD})
        r = b.post("/device/confirm", data={"csrf_token": csrf, "user_code": user_code, "decision": "approve"})
        assert 'data-outcome="approved"' in r.text, r.text[:500]


def run(args: argparse.Namespace) -> dict[str, Any]:
    ensure_services()
    dbname, url = create_pg_database()
    workdir = Path(tempfile.mkdtemp(prefix="ost-device-bench-"))
    srv = start_server(url, workdir, workers=args.workers, extra_env={
        "OSTIARY_CLIENTS__CACHE_TTL": "5", "OSTIARY_LOG_LEVEL": "warning",
        "OSTIARY_DEVICE__INTERVAL": str(args.interval), "OSTIARY_DEVICE__EXPIRES_IN": "1800",
        "OSTIARY_DEVICE__ATTEMPTS_PER_IP": "100000", "OSTIARY_DEVICE__ATTEMPTS_GLOBAL": "100000",
        **({"OSTIARY_REDIS_URL": "redis://127.0.0.1:6379/0"} if args.redis else {})})
    try:
        return asyncio.run(load(args, srv, dbname))
    finally:
        srv.stop()
        drop_pg_database(dbname)


async def load(args: argparse.Namespace, srv: Any, dbname: str) -> dict[str, Any]:
    if True:
        client = srv.create_client(client_type="public", grant_types=[DEVICE_GRANT, "refresh_token"],
                                   scopes=["openid", "offline_access"])
        with srv.admin() as a:
            r = a.post("/users", json={"username": "bench", "name": "Bench", "password": PASSWORD})
            assert r.status_code == 201, r.text
        limits = httpx.Limits(max_connections=args.connections, max_keepalive_connections=args.connections)
        async with httpx.AsyncClient(base_url=srv.base_url, limits=limits,
                                     timeout=httpx.Timeout(30, pool=120)) as http:
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
            before = await pg_counters(dbname)
            latencies: list[float] = []
            answers: Counter[str] = Counter()
            t0 = time.monotonic()
            end = t0 + args.duration

            # devices are spread over several small connection pools (one big pool with thousands of waiters
            # costs the load generator more CPU than the server spends)
            pools = [httpx.AsyncClient(base_url=srv.base_url, timeout=httpx.Timeout(30, pool=120),
                                       limits=httpx.Limits(max_connections=8, max_keepalive_connections=8))
                     for _ in range(max(1, args.connections // 8))]

            async def device(i: int, d: dict[str, Any]) -> None:
                http = pools[i % len(pools)]
                interval = d["interval"]
                await asyncio.sleep(random.uniform(0, interval))
                form = {"grant_type": DEVICE_GRANT, "device_code": d["device_code"], "client_id": client["client_id"]}
                while time.monotonic() < end:
                    s = time.perf_counter()
                    try:
                        resp = await http.post("/token", data=form)
                    except httpx.HTTPError as exc:  # counted, and the device carries on as a real one would
                        answers["client error: " + type(exc).__name__] += 1
                        await asyncio.sleep(interval)
                        continue
                    latencies.append(time.perf_counter() - s)
                    ok = resp.status_code < 500
                    answer = resp.json().get("error", "tokens") if ok else f"HTTP {resp.status_code}"
                    answers[answer] += 1
                    if answer == "tokens" or answer in ("access_denied", "expired_token", "invalid_grant"):
                        return
                    if answer == "slow_down":
                        interval += 5
                    await asyncio.sleep(interval)

            async def decisions() -> int:
                await asyncio.sleep(args.duration / 3)
                chosen = devices[: args.approvals]
                for d in chosen:
                    await asyncio.to_thread(approve, srv.base_url, d["user_code"], "bench")
                return len(chosen)

            results = await asyncio.gather(decisions(), *(device(i, d) for i, d in enumerate(devices)))
            for pool in pools:
                await pool.aclose()
            elapsed = time.monotonic() - t0
            after = await pg_counters(dbname)
    lat = sorted(latencies)
    q = statistics.quantiles(lat, n=100) if len(lat) >= 100 else [max(lat)] * 99
    return {
        "devices": args.devices, "duration": args.duration, "elapsed": elapsed, "interval": args.interval,
        "workers": args.workers, "redis": args.redis, "approvals": results[0], "polls": len(lat),
        "polls_per_s": len(lat) / elapsed, "p50_ms": statistics.median(lat) * 1000, "p99_ms": q[98] * 1000,
        "max_ms": lat[-1] * 1000, "answers": dict(answers), "writes": diff(before, after),
    }


def render(runs: list[dict[str, Any]], command: str) -> str:
    med = lambda key: statistics.median(r[key] for r in runs)  # noqa: E731
    first = runs[0]
    lines = [
        "# Device flow: polling cost (issue 4)", "",
        f"Machine: {platform.node()}, {os.cpu_count()} CPUs, {platform.platform()}, "
        f"Python {platform.python_version()}; load before: {Path('/proc/loadavg').read_text().split()[0]}.",
        f"Server: {first['workers']} uvicorn worker(s), PostgreSQL 15 on 127.0.0.1, poll timing in "
        f"{'Redis' if first['redis'] else 'process memory'}; load generator: one asyncio + httpx process on the same "
        "machine.", "",
        f"Command: `{command}`", "",
        f"Runs: {len(runs)} (medians below). {first['devices']} devices, each polling every {first['interval']} s "
        f"(the server's interval) for {first['duration']} s; {first['approvals']} of them approved through the "
        "verification pages a third of the way in.", "",
        "| metric | median |", "|---|---|",
        f"| polls served per second | {med('polls_per_s'):.0f} |",
        f"| polls in the window | {med('polls'):.0f} |",
        f"| latency p50 | {med('p50_ms'):.1f} ms |",
        f"| latency p99 | {med('p99_ms'):.1f} ms |", "",
        "Answers seen (first run): " + ", ".join(f"{k} {v}" for k, v in sorted(first["answers"].items())), "",
        "## Database writes during the polling window", "",
        "From pg_stat_database / pg_stat_user_tables, before and after the window (stats flushed). "
        "`xact_commit` also counts read-only transactions (every poll reads its row), so the tuple counters are "
        "the measure of writes.", "",
    ]
    for i, r in enumerate(runs, 1):
        w = r["writes"]
        lines.append(f"Run {i}: {r['polls']} polls, {r['approvals']} decisions → tuples inserted "
                     f"{w['db']['tup_inserted']}, updated {w['db']['tup_updated']}, deleted {w['db']['tup_deleted']}"
                     f" (xact_commit {w['db']['xact_commit']}).")
        for table, c in sorted(w["tables"].items()):
            lines.append(f"  - {table}: +{c['inserted']} inserted, {c['updated']} updated, {c['deleted']} deleted")
    lines += ["", "Per decision the expected writes are: the sign-in (a login_sessions row, an audit event or two), "
              "the decision (1 update of device_authorizations), the redemption (1 update to consumed, a token family, "
              "its first refresh token, the access-token jti, the audit event). Pending polls write nothing.", ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", type=int, default=2000)
    p.add_argument("--duration", type=float, default=60)
    p.add_argument("--interval", type=int, default=5)
    p.add_argument("--approvals", type=int, default=10)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--connections", type=int, default=160, help="connections in all (8 per pool)")
    p.add_argument("--redis", action="store_true", help="keep poll timing in Redis (shared by workers)")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--output", default=str(ROOT / "bench" / "RESULTS-device.md"), help="file, or - for stdout")
    args = p.parse_args()
    runs = [run(args) for _ in range(args.runs)]
    text = render(runs, "python bench/device_poll_bench.py " + " ".join(sys.argv[1:]))
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
