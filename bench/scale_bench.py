#!/usr/bin/env python3
"""Flat cost as data grows (issue 15.3): the same request against a small and a large database, in one run.

Each scenario starts one ``ostiary serve --workers 2`` per database size on its own fresh PostgreSQL database
(production settings but for the raised rate limits: client cache on, metrics, batched audit), grows the large
ones with rows cloned in SQL from a real row (``generate_series``; every clone is a valid row of its table),
and then loads the servers in turn, interleaved over ``--runs`` runs, with ``--concurrency`` raw keep-alive
HTTP/1.1 connections each for ``--duration`` seconds. Reported per size: requests/s (median run), p50/p99, the
ratio to the smallest size measured in the same run (of the medians, and ``paired``: the median of the run-by-run
ratios), and what the server's database did per request whatever the machine's load: shared buffers touched
and rows read by sequential scans (``pg_stat_database``, ``pg_stat_user_tables``, before and after each load).
A ratio well under 1.0, or buffers or seq-scanned rows that grow with the size, is a cost that grows with the
data: a defect to fix (index, partition, purge), not a number to report. After cloning, each grown table is
vacuumed and the server checkpointed (``--no-settle``: not), so the load does not pay for the bulk clone's
write-back, which a deployment whose data grew over months never sees.

Scenarios (``--scenarios``, comma-separated):

* ``clients``    client-credentials tokens with 1, 10,000 and 100,000 registered clients; the load comes from
                 one client, and (``clients-spread``) from 1,000 different clients in turn, so the per-process
                 client cache holds every one of them.
* ``families``   refresh rotations with 10,000 and 1,000,000 live token families (each with a refresh token).
* ``introspect`` ``POST /introspect`` of a live access token with 1,000 and 1,000,000 revoked-jti rows.
* ``audit``      client-credentials tokens (each writes an audit row) with an empty audit table and with
                 10,000,000 rows older than ``audit.retention`` while the retention purge deletes them (this
                 process runs one maintenance tick's purge, the store's own 20 batches of 10,000 rows back to
                 back, from the start of each measurement: what every node does once a minute).

    .venv/bin/python bench/scale_bench.py                                  # everything (about 15 minutes)
    .venv/bin/python bench/scale_bench.py --scenarios clients --small      # smoke test: sizes / 100

It imports ``tests.support`` (databases, server start-up) and ``tests.web._codeflow`` (the sign-in driver),
stops the servers it started and drops the databases it created.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _rawhttp import RawConnection  # noqa: E402  (bench/ is on sys.path: this script's folder)
from tests.support import LiveServer, create_pg_database, drop_pg_database, ensure_services, start_server  # noqa: E402
from tests.web._codeflow import Browser, exchange, get_code, new_user, web_client  # noqa: E402

AUDIENCE = "https://api.bench.example"
PROD_LIKE = {
    "OSTIARY_CLIENTS__CACHE_TTL": "5",  # the tests turn the cache off; production has it on
    "OSTIARY_KEYS__REFRESH_INTERVAL": "5",
    "OSTIARY_RATE_LIMITS__PER_CLIENT": "10000000",
    "OSTIARY_RATE_LIMITS__PER_IP": "10000000",
    "OSTIARY_RATE_LIMITS__PER_CLIENT_BURST": "10000000",
    "OSTIARY_RATE_LIMITS__PER_IP_BURST": "10000000",
}


SETTLE = True  # --no-settle: ANALYZE only after a clone, no CHECKPOINT before the load (the script's old behaviour)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def psql(db: str, sql: str) -> str:
    out = subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1", "-qAtc", sql],
                         check=True, capture_output=True, text=True, timeout=3600)
    return out.stdout.strip()


def clone(db: str, table: str, where: str, n: int, overrides: dict[str, str]) -> None:
    """Insert ``n`` copies of the row ``where`` selects, with ``overrides`` (SQL over ``g``, 1..n) per column."""
    cols = psql(db, f"SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns "
                    f"WHERE table_name = '{table}' AND column_default IS DISTINCT FROM "
                    f"'nextval(''{table}_id_seq''::regclass)'").split(",")
    exprs = [overrides.get(c, c) for c in cols]
    t0 = time.perf_counter()
    psql(db, f"INSERT INTO {table} ({','.join(cols)}) SELECT {','.join(exprs)} "
             f"FROM (SELECT * FROM {table} WHERE {where} LIMIT 1) AS src, generate_series(1, {n}) AS g")
    # what autovacuum does to a table that grew, before the load: statistics, hint bits, visibility map (one
    # ANALYZE alone left the clones' first reads and the server's autovacuum, when on, to the measurement)
    psql(db, f"VACUUM (ANALYZE) {table}" if SETTLE else f"ANALYZE {table}")
    log(f"  {db}: {n:,} rows cloned into {table} in {time.perf_counter() - t0:.0f} s")


def settle() -> None:
    """Write the clones to disk before the load. A bulk clone leaves up to a gigabyte of dirty pages in the
    kernel and a WAL-triggered checkpoint under way; without this they were flushed during the large size's
    first runs (the first interleaved runs after setup are the large database's), which a deployment, whose
    data grew over months, never sees. One CHECKPOINT (the server's, shared) and a wait for the kernel."""
    t0 = time.perf_counter()
    psql("postgres", "CHECKPOINT")
    subprocess.run(["sync"], check=False, timeout=600)
    log(f"  settled (CHECKPOINT, sync) in {time.perf_counter() - t0:.0f} s")


# Per-database counters read before and after each load: what the server did per request, whatever the noise
# of a shared machine does to requests/s. Buffers (shared hits + reads) per request and rows read by sequential
# scans per request are flat when every statement on the path is an index look-up.
_COUNTERS = ("SELECT (SELECT blks_hit + blks_read FROM pg_stat_database WHERE datname = current_database()), "
             "(SELECT coalesce(sum(seq_tup_read), 0) FROM pg_stat_user_tables)")


def counters(db: str) -> tuple[int, int]:
    psql(db, "SELECT pg_stat_clear_snapshot()")
    buffers, seq_rows = psql(db, _COUNTERS).split("|")
    return int(buffers), int(seq_rows)


def db_name(srv: LiveServer) -> str:
    return srv.env["OSTIARY_DATABASE_URL"].rsplit("/", 1)[1]


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))] if s else float("nan")


async def load(srv: LiveServer, make: Callable[[int, int], bytes], conc: int, duration: float,
               after: Callable[[int, bytes], None] | None = None) -> dict[str, Any]:
    """``conc`` connections send ``make(worker, i)`` in a loop for ``duration`` s after a 1 s warm-up."""
    url = urlsplit(srv.base_url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    lat: list[float] = []
    errors: dict[str, int] = {}
    state = {"measuring": False, "stop": False}
    done = [0]  # every response, warm-up included (the per-request server counters divide by it)

    async def worker(w: int) -> None:
        conn = RawConnection(host, port)
        await conn.connect()
        i = 0
        try:
            while not state["stop"]:
                if not conn.usable():
                    await conn.connect()
                t0 = time.perf_counter()
                status, body = await conn.request(make(w, i))
                dt = time.perf_counter() - t0
                i += 1
                done[0] += 1
                if status != 200:
                    key = f"{status} {body[:80]!r}"
                    errors[key] = errors.get(key, 0) + 1
                    if len(errors) > 5 or errors[key] > 100:
                        state["stop"] = True
                    continue
                if after is not None:
                    after(w, body)
                if state["measuring"]:
                    lat.append(dt)
        finally:
            conn.close()

    tasks = [asyncio.create_task(worker(w)) for w in range(conc)]
    await asyncio.sleep(1.0)
    state["measuring"] = True
    t0 = time.perf_counter()
    await asyncio.sleep(duration)
    state["measuring"] = False
    elapsed = time.perf_counter() - t0
    state["stop"] = True
    await asyncio.gather(*tasks)
    return {"rps": len(lat) / elapsed, "p50": pct(lat, 50) * 1000, "p99": pct(lat, 99) * 1000, "errors": errors,
            "total": done[0]}


def post(srv: LiveServer, path: str, fields: dict[str, str], basic: tuple[str, str] | None = None) -> bytes:
    """A raw HTTP/1.1 form POST, with client_secret_basic when ``basic`` is given."""
    url = urlsplit(srv.base_url)
    body = urlencode(fields).encode()
    auth = ""
    if basic is not None:
        auth = "Authorization: Basic " + base64.b64encode(
            f"{quote(basic[0], safe='')}:{quote(basic[1], safe='')}".encode()).decode() + "\r\n"
    return (f"POST {path} HTTP/1.1\r\nHost: {url.hostname}:{url.port}\r\n{auth}"
            f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


class Scenario:
    """Servers by size label; ``make`` builds the request of worker w; ``prepare`` grows one database."""

    name = ""
    sizes: list[tuple[str, int]] = []

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.servers: dict[str, LiveServer] = {}
        self.dbs: list[str] = []
        self.background: Callable[[LiveServer], Any] | None = None

    def start(self, label: str) -> LiveServer:
        name, url = create_pg_database()
        self.dbs.append(name)
        srv = start_server(url, self.workdir / f"{self.name}-{label}", workers=2, extra_env=PROD_LIKE)
        self.servers[label] = srv
        return srv

    def close(self) -> None:
        for srv in self.servers.values():
            srv.stop()
        for name in self.dbs:
            drop_pg_database(name)

    def setup(self) -> None:
        raise NotImplementedError

    def request(self, label: str) -> tuple[Callable[[int, int], bytes], Callable[[int, bytes], None] | None]:
        raise NotImplementedError


def scale(n: int, args: argparse.Namespace) -> int:
    return max(1, n // 100) if args.small else n


class Clients(Scenario):
    name = "clients"

    def setup(self) -> None:
        for label, extra in (("1", 0), ("10,000", 10_000), ("100,000", 100_000)):
            srv = self.start(label)
            c = srv.create_client(grant_types=["client_credentials"], scopes=["read"], audiences=[AUDIENCE])
            setattr(srv, "bench_client", c)
            setattr(srv, "clones", scale(extra, self.args) - 1 if extra else 0)
            if extra:
                clone(db_name(srv), "clients", f"client_id = '{c['client_id']}'", scale(extra, self.args) - 1,
                      {"client_id": "'scale-' || g"})

    def request(self, label: str) -> tuple[Callable[[int, int], bytes], None]:
        srv = self.servers[label]
        c = getattr(srv, "bench_client")
        spread = self.args.spread and label != "1"
        ids = [f"scale-{g}" for g in range(1, min(1000, getattr(srv, "clones")) + 1)] if spread else [c["client_id"]]
        payloads = [post(srv, "/token", {"grant_type": "client_credentials", "resource": AUDIENCE},
                         (cid, c["client_secret"])) for cid in ids]
        # each connection walks the clients in its own random order (no lock-step on one client's cache miss)
        orders = [random.Random(w).sample(range(len(payloads)), len(payloads)) for w in range(self.args.concurrency)]
        return (lambda w, i: payloads[orders[w][i % len(payloads)]]), None


class Families(Scenario):
    name = "families"

    def setup(self) -> None:
        for label, extra in (("10,000", 10_000), ("1,000,000", 1_000_000)):
            srv = self.start(label)
            client, user = web_client(srv, name="scale"), new_user(srv)
            b = Browser(srv)
            tokens: list[str] = []
            try:
                for _ in range(self.args.concurrency):
                    code, verifier, _ = get_code(b, client, user)
                    r = exchange(srv, client, code, verifier)
                    assert r.status_code == 200, r.text
                    tokens.append(r.json()["refresh_token"])
            finally:
                b.close()
            setattr(srv, "bench", (client, tokens))
            db = db_name(srv)
            n = scale(extra, self.args)
            fam = psql(db, "SELECT family_id FROM token_families LIMIT 1")
            clone(db, "token_families", f"family_id = '{fam}'", n, {"family_id": "'scale-' || g"})
            clone(db, "refresh_tokens", f"family_id = '{fam}'", n, {
                # a key like the server's own (43 characters of base64url HMAC-SHA256), so the index is as large
                "family_id": "'scale-' || g",
                "token_hash": "rtrim(translate(encode(sha256(('a' || g)::bytea), 'base64'), '+/', '-_'), '=')",
                "parent_hash": "NULL", "used_at": "NULL"})

    def request(self, label: str) -> tuple[Callable[[int, int], bytes], Callable[[int, bytes], None]]:
        srv = self.servers[label]
        client, tokens = getattr(srv, "bench")

        def make(w: int, i: int) -> bytes:
            return post(srv, "/token", {"grant_type": "refresh_token", "refresh_token": tokens[w],
                                        "client_id": client["client_id"]})

        def after(w: int, body: bytes) -> None:
            tokens[w] = json.loads(body)["refresh_token"]
        return make, after


class Introspect(Scenario):
    name = "introspect"

    def setup(self) -> None:
        for label, extra in (("1,000", 1_000), ("1,000,000", 1_000_000)):
            srv = self.start(label)
            svc = srv.create_client(grant_types=["client_credentials"], scopes=["read"], audiences=[AUDIENCE])
            import httpx
            tok = httpx.post(srv.base_url + "/token", data={"grant_type": "client_credentials", "resource": AUDIENCE},
                             auth=(svc["client_id"], svc["client_secret"]), timeout=30).json()["access_token"]
            # a resource server for AUDIENCE: without resource_audiences the endpoint answers inactive before it
            # looks at the revoked-jti table, and the scenario measured nothing of it
            rs = srv.create_client(grant_types=["client_credentials"], scopes=["read"], audiences=[AUDIENCE],
                                   resource_audiences=[AUDIENCE])
            # one revoked token gives a row to clone (revoke a second token of the same client)
            other = httpx.post(srv.base_url + "/token", data={"grant_type": "client_credentials", "resource": AUDIENCE},
                               auth=(svc["client_id"], svc["client_secret"]), timeout=30).json()["access_token"]
            httpx.post(srv.base_url + "/revoke", data={"token": other}, auth=(svc["client_id"], svc["client_secret"]),
                       timeout=30).raise_for_status()
            setattr(srv, "bench", (tok, rs))
            clone(db_name(srv), "revoked_tokens", "true", scale(extra, self.args), {"jti": "'scale-' || g"})
            for token, active in ((tok, True), (other, False)):  # the request measured is the look-up wanted
                r = httpx.post(srv.base_url + "/introspect", data={"token": token},
                               auth=(rs["client_id"], rs["client_secret"]), timeout=30)
                assert r.json()["active"] is active, r.text

    def request(self, label: str) -> tuple[Callable[[int, int], bytes], None]:
        srv = self.servers[label]
        tok, rs = getattr(srv, "bench")
        payload = post(srv, "/introspect", {"token": tok}, (rs["client_id"], rs["client_secret"]))
        return (lambda w, i: payload), None


class Audit(Scenario):
    name = "audit"

    def setup(self) -> None:
        for label, extra in (("empty", 0), ("10,000,000 purging", 10_000_000)):
            srv = self.start(label)
            c = srv.create_client(grant_types=["client_credentials"], scopes=["read"], audiences=[AUDIENCE])
            setattr(srv, "bench_client", c)
            if extra:
                db = db_name(srv)
                for _ in range(50):  # the client creation's event, written by the batched sink
                    if psql(db, "SELECT count(*) FROM audit_events") != "0":
                        break
                    time.sleep(0.2)
                year_ago = time.time() - 400 * 86400
                clone(db, "audit_events", "true", scale(extra, self.args), {"at": f"{year_ago} + g / 1000.0"})

    def request(self, label: str) -> tuple[Callable[[int, int], bytes], None]:
        srv = self.servers[label]
        c = getattr(srv, "bench_client")
        payload = post(srv, "/token", {"grant_type": "client_credentials", "resource": AUDIENCE},
                       (c["client_id"], c["client_secret"]))
        return (lambda w, i: payload), None

    @contextlib.asynccontextmanager
    async def around(self, label: str) -> Any:
        """The large database's retention purge runs during its measurement (the store's own bounded batches)."""
        if "purging" not in label:
            yield {}
            return
        from ostiary.store.sql import SqlStore
        from ostiary.web.runtime import AUDIT_PURGE_BATCH, AUDIT_PURGE_BATCHES

        store = SqlStore.from_url(self.servers[label].env["OSTIARY_DATABASE_URL"])
        stats = {"deleted": 0, "batches": 0}
        stop = asyncio.Event()

        async def purge() -> None:  # one maintenance tick's worth, back to back, as a node runs it each minute
            before = time.time() - 365 * 86400
            while not stop.is_set() and stats["batches"] < AUDIT_PURGE_BATCHES:
                stats["deleted"] += await store.purge_events(before, AUDIT_PURGE_BATCH)
                stats["batches"] += 1
        task = asyncio.create_task(purge())
        try:
            yield stats
        finally:
            stop.set()
            await task
            await store.close()


SCENARIOS: dict[str, type[Scenario]] = {"clients": Clients, "families": Families, "introspect": Introspect,
                                        "audit": Audit}


async def measure(sc: Scenario, runs: int, conc: int, duration: float) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {label: [] for label in sc.servers}
    for run in range(runs):
        labels = list(sc.servers) if run % 2 == 0 else list(reversed(sc.servers))  # interleaved, alternating order
        for label in labels:
            make, after = sc.request(label)
            around = getattr(sc, "around", None)
            db = db_name(sc.servers[label])
            before = counters(db)
            async with (around(label) if around else contextlib.nullcontext({})) as extra:
                res = await load(sc.servers[label], make, conc, duration, after)
            await asyncio.sleep(1.5)  # the server's backends report their statistics within a second of idling
            end = counters(db)
            res.update(extra or {})
            res["buffers"] = (end[0] - before[0]) / max(1, res["total"])
            res["seq_rows"] = (end[1] - before[1]) / max(1, res["total"])
            out[label].append(res)
            log(f"  {sc.name} {label} run {run + 1}: {res['rps']:.0f}/s p99 {res['p99']:.1f} ms, "
                f"{res['buffers']:.0f} buffers and {res['seq_rows']:.0f} seq-scanned rows per request "
                f"{res['errors'] or ''}"
                + (f" (purged {res['deleted']:,} rows)" if "deleted" in res else ""))
    return out


def report(name: str, results: dict[str, list[dict[str, Any]]]) -> list[str]:
    """One row per size. ``ratio``: of the median requests/s; ``paired``: the median over runs of this size's
    requests/s divided by the smallest size's in the same run (the two loads seconds apart: drift in the
    machine's load cancels). Buffers and seq-scanned rows are per request, medians over runs."""
    rows = []
    base = None
    base_samples: list[dict[str, Any]] = []
    for label, samples in results.items():
        med = statistics.median(s["rps"] for s in samples)
        if base is None:
            base, base_samples = med, samples
        paired = statistics.median(s["rps"] / b["rps"] for s, b in zip(samples, base_samples) if b["rps"])
        p50 = statistics.median(s["p50"] for s in samples)
        p99 = statistics.median(s["p99"] for s in samples)
        buffers = statistics.median(s["buffers"] for s in samples)
        seq_rows = statistics.median(s["seq_rows"] for s in samples)
        errs = sum(sum(s["errors"].values()) for s in samples)
        rows.append(f"| {name} | {label} | {med:,.0f} | {p50:.1f} | {p99:.1f} | {med / base:.2f} | {paired:.2f} "
                    f"| {buffers:.0f} | {seq_rows:.0f} | {errs} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenarios", default="clients,families,introspect,audit")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=float, default=6.0)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--spread", action=argparse.BooleanOptionalAction, default=False,
                    help="clients: the load comes from 1,000 different clients (needs the larger sizes)")
    ap.add_argument("--small", action="store_true", help="sizes / 100 (a smoke test of the script)")
    ap.add_argument("--settle", action=argparse.BooleanOptionalAction, default=True,
                    help="CHECKPOINT and sync after the clones, before the load (--no-settle: the old behaviour)")
    args = ap.parse_args()
    global SETTLE
    SETTLE = args.settle
    ensure_services()
    lines = [f"machine: {platform.node()} {platform.machine()}, Python {platform.python_version()}; "
             f"load before: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}",
             "", "| scenario | size | req/s (median) | p50 ms | p99 ms | ratio to smallest | paired ratio "
                 "| buffers/req | seq-scanned rows/req | errors |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory(prefix="ostiary-scale-") as tmp:
        for name in args.scenarios.split(","):
            sc = SCENARIOS[name](args, Path(tmp))
            try:
                log(f"{name}: setting up")
                sc.setup()
                if SETTLE:
                    settle()
                log(f"{name}: measuring")
                results = asyncio.run(measure(sc, args.runs, args.concurrency, args.duration))
                lines += report(name + ("-spread" if name == "clients" and args.spread else ""), results)
            finally:
                sc.close()
    lines.append(f"load after: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
