#!/usr/bin/env python3
"""Server CPU per refresh-token rotation and per client-credentials token, in this process, under concurrency.

The server's application is created in this process on a fresh PostgreSQL database (families made through the
code flow of a live ``ostiary serve``, as in bench/refresh_bench.py) and driven by raw ASGI calls (no HTTP client,
no socket): ``--concurrency`` coroutines each rotate their own family, so the event loop is never idle (one
request at a time, every database round trip wakes an idle core, which on a VM costs more than the work). Then
client-credentials tokens, one after the other (they wait on no database). Each rep reports
``time.process_time`` per request (this process: the application, the audit writer, the little ASGI driver) and
the CPU of the database's PostgreSQL backends per request (from /proc, 10 ms ticks: use a few thousand requests).
Reps alternate rotations and cc tokens; the medians are printed. ``--profile PREFIX`` writes a process-time
cProfile of the last rep (PREFIX.rotation.pstats, PREFIX.cc.pstats).

    .venv/bin/python bench/rotation_cpu.py --requests 960 --reps 5
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from refresh_bench import app_for, make_families, pg_cpu  # noqa: E402  (bench/ is on sys.path: this script's folder)
from tests.support import LiveServer, create_pg_database, drop_pg_database, start_server  # noqa: E402
from tests.web._codeflow import new_user, web_client  # noqa: E402


async def post(app: Any, host: str, body: str, headers: list[tuple[bytes, bytes]]) -> tuple[int, bytes]:
    data = body.encode()
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/token", "raw_path": b"/token", "query_string": b"", "root_path": "",
             "headers": [(b"host", host.encode()), (b"content-type", b"application/x-www-form-urlencoded"),
                         (b"content-length", str(len(data)).encode()), *headers],
             "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 80), "state": {}}
    out: dict[str, Any] = {"status": 0, "body": b""}
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": data, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(msg: dict[str, Any]) -> None:
        if msg["type"] == "http.response.start":
            out["status"] = msg["status"]
        elif msg["type"] == "http.response.body":
            out["body"] += msg.get("body", b"")

    await app(scope, receive, send)
    return out["status"], out["body"]


async def measure(srv: LiveServer, client_id: str, tokens: list[str], cc: dict[str, Any], n: int, reps: int,
                  profile: str | None) -> dict[str, list[float]]:
    app = app_for(srv)
    host = srv.base_url.split("//", 1)[1]
    basic = base64.b64encode(f"{cc['client_id']}:{cc['client_secret']}".encode())
    database = srv.env["OSTIARY_DATABASE_URL"].rsplit("/", 1)[1]

    async def rotate(i: int, count: int) -> None:
        for _ in range(count):
            status, body = await post(app, host, urlencode({"grant_type": "refresh_token", "refresh_token": tokens[i],
                                                            "client_id": client_id}), [])
            assert status == 200, body
            tokens[i] = json.loads(body)["refresh_token"]

    async def rotations(count: int) -> None:
        await asyncio.gather(*(rotate(i, count // len(tokens)) for i in range(len(tokens))))

    async def cc_tokens(count: int) -> None:
        for _ in range(count):
            status, body = await post(app, host, "grant_type=client_credentials&scope=api%3Aread",
                                      [(b"authorization", b"Basic " + basic)])
            assert status == 200, body

    out: dict[str, list[float]] = {"rotation": [], "rotation_pg": [], "cc": [], "cc_pg": []}
    async with app.router.lifespan_context(app):
        audit = app.state.runtime.audit
        await rotations(len(tokens) * 5)
        await cc_tokens(50)
        await audit.flush()
        for rep in range(reps):
            for kind, run in (("rotation", rotations), ("cc", cc_tokens)):
                prof = cProfile.Profile(time.process_time) if profile and rep == reps - 1 else None
                pg0, cpu0 = pg_cpu(database), time.process_time()
                if prof:
                    prof.enable()
                await run(n)
                await audit.flush()  # the audit rows of these requests, written now
                if prof:
                    prof.disable()
                    prof.dump_stats(f"{profile}.{kind}.pstats")
                out[kind].append((time.process_time() - cpu0) / n * 1000)
                out[kind + "_pg"].append((pg_cpu(database) - pg0) / n * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=960, help="requests of each kind per rep")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=16, help="families rotated at once")
    ap.add_argument("--profile", metavar="PREFIX")
    args = ap.parse_args()
    name, url = create_pg_database()
    srv = start_server(url, Path(tempfile.mkdtemp(prefix="ost-rotation-cpu-")), workers=1,
                       extra_env={"OSTIARY_CLIENTS__CACHE_TTL": "5", "OSTIARY_KEYS__REFRESH_INTERVAL": "5",
                                  "OSTIARY_RATE_LIMITS__PER_CLIENT": "1000000",
                                  "OSTIARY_RATE_LIMITS__PER_CLIENT_BURST": "1000000",
                                  "OSTIARY_RATE_LIMITS__PER_IP": "1000000",
                                  "OSTIARY_RATE_LIMITS__PER_IP_BURST": "1000000"})
    try:
        client = web_client(srv, name="bench rotations")
        tokens = make_families(srv, client, new_user(srv), args.concurrency)
        cc = srv.create_client(grant_types=["client_credentials"], scopes=["api:read"])
        res = asyncio.run(measure(srv, client["client_id"], tokens, cc, args.requests, args.reps, args.profile))
    finally:
        srv.stop()
        drop_pg_database(name)
    med = statistics.median
    for kind in ("rotation", "cc"):
        print(f"{kind:8} ms CPU/request: this process {med(res[kind]):.3f} (reps "
              + " ".join(f"{x:.3f}" for x in res[kind]) + f"), PostgreSQL backends {med(res[kind + '_pg']):.3f}")
    total_rot, total_cc = med(res["rotation"]) + med(res["rotation_pg"]), med(res["cc"]) + med(res["cc_pg"])
    print(f"CPU ratio cc/rotation (application + PostgreSQL): {total_cc / total_rot:.3f}")


if __name__ == "__main__":
    main()
