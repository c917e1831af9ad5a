#!/usr/bin/env python3
"""Where a rotation's PostgreSQL CPU goes: the rotation statement alone, under pgbench, and variants of it.

The statement is the store's own (``ostiary.store.sql.tokens._ROTATE_PG``), with its parameters replaced by
literals and by one pgbench variable, the token to spend (a sequence hands each token out once, so every
transaction rotates a live token). A fresh database with ``--families`` families of one live token each is
copied from a template before each cell; pgbench runs ``--clients`` connections, prepared statements, for
``--duration`` seconds; the CPU of the database's backends per transaction comes from /proc. Variants, each the
same statement with one part taken out (for measuring only: none is correct):

- ``full``: the statement as the store sends it;
- ``full, synchronous_commit off``: the same without waiting for the WAL flush at commit;
- ``no JSON``: the granted scopes and audience as constants instead of read from the family's JSON columns;
- ``reads and locks``: no writes (the spend, the access-token jti and the successor never happen);
- ``reads``: no writes and no row locks;
- ``SELECT 1``: the transaction's floor (its ``nextval`` and one trivial statement).

    .venv/bin/python bench/rotation_sql.py --runs 3
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from refresh_bench import pg_cpu  # noqa: E402  (bench/ is on sys.path: this script's folder)

from ostiary.store.sql.tokens import _ROTATE_PG  # noqa: E402

PSQL = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-q"]
SCOPES = "{openid,offline_access,api_read}"  # no ':' in literals: pgbench would take ':read' for a variable
LITERALS = {
    "token_hash": "md5(CAST(:n AS text)) || md5(CAST(:n AS text) || 'x')",
    "client_id": "'c1'", "now": "1e9::float8", "requested": "'{}'::text[]",
    "client_scopes": f"'{SCOPES}'::text[]", "client_audiences": "'{https//api}'::text[]",
    "userinfo": "'https//issuer/userinfo'::text", "refresh_allowed": "true",
    "jti": "md5(random()::text)", "access_expires_at": "(1e9 + 300)::float8",
    "successor_hash": "md5(random()::text) || md5(random()::text)", "idle_ttl": "86400::float8",
    "x5t_s256": "NULL::text", "dpop_jkt": "NULL::text",
}
SEED = """
INSERT INTO users VALUES ('u1', 'alice', NULL, 'Alice', false, false, 'x', NULL, 0, 0);
INSERT INTO token_families (family_id, client_id, user_id, scopes, audience, created_at, expires_at, auth_time, amr)
    SELECT 'f' || n, 'c1', 'u1', '["openid", "offline_access", "api_read"]', '["https//api"]', 0, 4e9, 0, '["pwd"]'
    FROM generate_series(1, {n}) n;
INSERT INTO refresh_tokens (token_hash, family_id, client_id, user_id, scopes, created_at, expires_at)
    SELECT md5(n::text) || md5(n::text || 'x'), 'f' || n, 'c1', 'u1', '["openid", "offline_access", "api_read"]',
           0, 4e9
    FROM generate_series(1, {n}) n;
CREATE SEQUENCE bench_tokens;
VACUUM ANALYZE;
"""


def statement() -> str:
    sql = re.sub(r"(?<!:):([a-z0-9_]+)\b", lambda m: LITERALS[m.group(1)], _ROTATE_PG.text)
    return "SELECT nextval('bench_tokens') AS n \\gset\n" + sql.strip() + ";\n"


def _replace(old: str, new: str) -> Callable[[str], str]:
    def apply(sql: str) -> str:
        if old not in sql:
            raise SystemExit(f"the rotation statement changed: {old!r} not found; update bench/rotation_sql.py")
        return sql.replace(old, new)
    return apply


def _no_json(sql: str) -> str:
    constants = (f"reg AS (SELECT '{SCOPES}'::text[] AS granted, '{SCOPES}'::text[] AS scopes, "
                 "'{https//api}'::text[] AS audience FROM fam\n), ok AS")
    out, count = re.subn(r"reg AS \(.*?\n\), ok AS", constants, sql, flags=re.S)
    if count != 1:
        raise SystemExit("the rotation statement changed: its reg CTE not found; update bench/rotation_sql.py")
    return out


_no_writes = _replace("FROM ok WHERE refresh_tokens.token_hash", "FROM ok WHERE false AND refresh_tokens.token_hash")


def _no_locks(sql: str) -> str:
    return _replace(" FOR SHARE OF f", "")(_replace(" FOR UPDATE", "")(_no_writes(sql)))


VARIANTS: dict[str, tuple[Callable[[str], str], str]] = {
    "full": (lambda s: s, ""),
    "full, synchronous_commit off": (lambda s: s, "-c synchronous_commit=off"),
    "no JSON": (_no_json, ""),
    "reads and locks": (_no_writes, ""),
    "reads": (_no_locks, ""),
    "SELECT 1": (lambda s: "SELECT nextval('bench_tokens') AS n \\gset\nSELECT 1;\n", ""),
}


def psql(db: str, *args: str, script: str | None = None) -> str:
    """psql's output; ``script`` is read from stdin, each statement its own transaction."""
    return subprocess.run([*PSQL, "-d", db, "-tA", *args], check=True, capture_output=True, text=True,
                          input=script).stdout


def cell(template: str, script: Path, options: str, clients: int, duration: float) -> tuple[float, float]:
    """(transactions/s, backend CPU ms per transaction) of one pgbench run on a fresh copy of ``template``."""
    db = template.removesuffix("_tpl")
    psql("postgres", "-c", f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)', "-c",
         f'CREATE DATABASE "{db}" TEMPLATE "{template}"')
    psql(db, "-c", "CHECKPOINT")
    env = {**os.environ, "PGOPTIONS": options}
    bench = subprocess.Popen(["pgbench", "-h", "127.0.0.1", "-U", "postgres", "-n", "-M", "prepared", "-c",
                              str(clients), "-j", "1", "-T", str(int(duration + 3)), "-f", str(script), db],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(2)  # connected, statements prepared, plans settled
    cpu0, n0, t0 = pg_cpu(db), int(psql(db, "-c", "SELECT last_value FROM bench_tokens")), time.monotonic()
    time.sleep(duration)
    cpu1, n1, t1 = pg_cpu(db), int(psql(db, "-c", "SELECT last_value FROM bench_tokens")), time.monotonic()
    _, err = bench.communicate()
    if bench.returncode != 0:
        raise SystemExit(f"pgbench failed: {err[-2000:]}")
    done = n1 - n0
    return done / (t1 - t0), (cpu1 - cpu0) * 1000 / max(done, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="rounds; the variants alternate within each round")
    ap.add_argument("--duration", type=float, default=8.0, help="seconds measured per cell")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--families", type=int, default=300_000, help="live tokens in the template (one use each)")
    args = ap.parse_args()
    template = f"ost_rotsql_{os.getpid()}_tpl"
    psql("postgres", "-c", f'CREATE DATABASE "{template}"')
    try:
        env = {**os.environ, "OSTIARY_DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:5432/{template}"}
        subprocess.run([str(Path(sys.executable).parent / "ostiary"), "migrate"], env=env, check=True,
                       capture_output=True)
        psql(template, script=SEED.format(n=args.families))
        full = statement()
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in VARIANTS}
        with tempfile.TemporaryDirectory() as tmp:
            scripts: dict[str, Path] = {}
            for name, (change, _) in VARIANTS.items():
                scripts[name] = Path(tmp) / f"{len(scripts)}.sql"
                scripts[name].write_text(change(full))
            for run in range(args.runs):
                for name, (_, options) in VARIANTS.items():
                    results[name].append(cell(template, scripts[name], options, args.clients, args.duration))
                    print(f"run {run + 1} {name}: {results[name][-1][0]:,.0f} tx/s, "
                          f"{results[name][-1][1]:.3f} ms CPU/tx", file=sys.stderr)
    finally:
        psql("postgres", "-c", f'DROP DATABASE IF EXISTS "{template.removesuffix("_tpl")}" WITH (FORCE)', "-c",
             f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')
    print(f"\n{args.clients} pgbench connections, medians of {args.runs} runs of {args.duration:g} s\n")
    print("| variant | transactions/s | backend CPU ms per transaction (runs) |")
    print("|---|---:|---|")
    for name, cells in results.items():
        cpu = [c for _, c in cells]
        print(f"| {name} | {statistics.median(t for t, _ in cells):,.0f} | **{statistics.median(cpu):.3f}** "
              f"({', '.join(f'{c:.3f}' for c in cpu)}) |")


if __name__ == "__main__":
    main()
