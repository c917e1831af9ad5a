#!/usr/bin/env python3
"""Client-credentials token benchmark: Ostiary (PostgreSQL and SQLite, Uvicorn and Granian) side by side
with the HTTP ceiling of the same server (``GET /healthz``) and the peer node-oidc-provider (ES256 JWT).

Everything is measured in one run on one machine with ``wrk``; the systems are interleaved (each run
visits every cell in a rotated order) so that drift on a shared machine affects all of them alike, and
the median of ``--runs`` runs is reported per cell together with the ratio Ostiary/peer.

The script starts every server itself, checks each answers a real token request before timing, samples
per-process CPU of every server (to catch Uvicorn putting all keep-alive connections on one worker),
stops every process it started by PID, drops the PostgreSQL database it created, and writes
``bench/RESULTS-token.md``.

    .venv/bin/python bench/token_bench.py --help
    .venv/bin/python bench/token_bench.py                       # full matrix, 10 s x 3 runs x c=1,16,64
    .venv/bin/python bench/token_bench.py --systems peer --duration 3 --runs 1   # harness smoke test
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import json
import os
import platform
import re
import secrets
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
VENV_BIN = ROOT / ".venv" / "bin"
OSTIARY = VENV_BIN / "ostiary"
WRK_DIR = BENCH_DIR / "wrk"
HOST = "127.0.0.1"

PEER_PORT = 3000
PEER_CLIENT_ID = "cc-client"
PEER_CLIENT_SECRET = "cc-secret-0123456789abcdef0123456789abcdef"
SCOPE = "api:read"
AUDIENCE = "urn:example:api"
TOKEN_BODY = b"grant_type=client_credentials&scope=api%3Aread"

PG_ADMIN_DSN = ["-h", HOST, "-U", "postgres", "-d", "test"]
SERVERS = ("uvicorn", "granian")
DBS = ("pg", "sqlite")
ALL_SYSTEMS = (
    "peer",
    "ostiary-pg-uvicorn",
    "ostiary-pg-granian",
    "ostiary-sqlite-uvicorn",
    "ostiary-sqlite-granian",
    "healthz-uvicorn",
    "healthz-granian",
)
CLK_TCK = os.sysconf("SC_CLK_TCK")
MANUAL_MARKER = "<!-- hand-written below: kept when token_bench.py rewrites this file -->"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# processes


def _proc_children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (from /proc, so it works for any process manager)."""
    tree = _proc_children()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(tree.get(p, []))
    return out


def cpu_ticks(pid: int) -> int | None:
    """utime + stime of a whole process (all threads), in clock ticks."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12])


def proc_cmd(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((HOST, port)) == 0


def wait_port(port: int, *, up: bool, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port) == up:
            return
        if up and proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {proc.returncode} before listening")
        time.sleep(0.1)
    raise RuntimeError(f"port {port} still {'closed' if up else 'open'} after {timeout:.0f} s")


@dataclasses.dataclass
class Server:
    """One server process tree that this script started (and must stop)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    port: int
    cwd: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def command_line(self, shown_env: Sequence[str]) -> str:
        env = " ".join(f"{k}={shlex.quote(self.env[k])}" for k in shown_env if k in self.env)
        return f"{env} {shlex.join(self.argv)}".strip()

    def start(self) -> None:
        if port_open(self.port):
            raise RuntimeError(f"port {self.port} is already in use; stop whatever listens there first")
        log(f"starting {self.name}: {shlex.join(self.argv)} (log {self.log_path})")
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                [*NICE, *self.argv],
                cwd=self.cwd,
                env={**os.environ, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        set_autogroup_nice(self.proc.pid)
        wait_port(self.port, up=True, timeout=60, proc=self.proc)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is None:
            return
        tree = descendants(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                log(f"{self.name} ignored SIGTERM; killing pids {tree}")
        # Whatever of the tree is still alive (orphaned workers, a stuck main process) gets SIGKILL by PID.
        deadline = time.monotonic() + 5
        for pid in tree:
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            if Path(f"/proc/{pid}").exists() and not _is_zombie(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc = None
        with contextlib.suppress(RuntimeError):
            wait_port(self.port, up=False, timeout=10)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


# --------------------------------------------------------------------------------------------------
# targets


@dataclasses.dataclass
class Target:
    name: str
    server: Server
    path: str
    kind: str  # "token" or "healthz"
    client_id: str = ""
    client_secret: str = dataclasses.field(default="", repr=False)
    validation: str = ""

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server.port}{self.path}"

    @property
    def script(self) -> Path:
        return WRK_DIR / ("token.lua" if self.kind == "token" else "get.lua")

    @property
    def wrk_env(self) -> dict[str, str]:
        if self.kind != "token":
            return {}
        return {
            "BENCH_CLIENT_ID": self.client_id,
            "BENCH_CLIENT_SECRET": self.client_secret,
            "BENCH_SCOPE": SCOPE,
        }


def http_check(target: Target) -> str:
    """One real request before timing: the cell only counts if the server answers it correctly."""
    headers = {"Accept": "application/json"}
    data = None
    if target.kind == "token":
        basic = base64.b64encode(f"{target.client_id}:{target.client_secret}".encode()).decode()
        headers |= {"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"}
        data = TOKEN_BODY
    req = urllib.request.Request(target.url, data=data, headers=headers, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status, body, hdrs = resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"{target.name}: {target.url} answered {exc.code}: {exc.read()[:300]!r}") from exc
    if status != 200:
        raise RuntimeError(f"{target.name}: {target.url} answered {status}")
    doc = json.loads(body)
    if target.kind != "token":
        return f"200, {len(body)} B JSON"
    token = doc.get("access_token", "")
    if doc.get("token_type", "").lower() not in {"bearer", "dpop"} or token.count(".") != 2:
        raise RuntimeError(f"{target.name}: not a JWT access token response: {body[:300]!r}")
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    return (
        f"200, Cache-Control: {hdrs.get('Cache-Control')}, {len(body)} B; JWT alg={header.get('alg')} "
        f"typ={header.get('typ')} aud={claims.get('aud')} scope={claims.get('scope')} "
        f"exp-iat={claims.get('exp', 0) - claims.get('iat', 0)} s"
    )


# --------------------------------------------------------------------------------------------------
# wrk


@dataclasses.dataclass
class Sample:
    target: str
    conc: int
    run: int
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: dict[str, int]
    proc_cpu: list[tuple[int, float]]  # (pid, % of one core) for each process of the server tree
    wrk_cpu: float  # % of one core
    machine_idle: float  # % of all cores idle during the run
    machine_steal: float
    other_cpu: float  # % of one core used by processes other than this server and wrk (noise)
    busy_before: float = 0.0  # % of one core busy on the machine in the second before the cell
    attempts: int = 1


def read_proc_stat() -> list[int]:
    first = Path("/proc/stat").read_text().splitlines()[0].split()
    return [int(x) for x in first[1:]]


NICE: list[str] = []  # ["nice", "-n", "N"] with --nice: servers and wrk start with that niceness


def set_autogroup_nice(pid: int) -> None:
    """With --nice, also give the process's scheduler autogroup (its session) that niceness.

    Linux's autogroup scheduling shares CPU fairly between sessions first, so a plain ``nice`` only
    matters inside one session; each server (and each wrk) runs in its own session.
    """
    if NICE and Path(f"/proc/{pid}/autogroup").exists():
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/autogroup").write_text(NICE[-1])


def wrk_command(target: Target, conc: int, duration: float, threads: int) -> list[str]:
    return [
        *NICE,
        "wrk",
        f"-t{min(threads, conc)}",
        f"-c{conc}",
        f"-d{duration:g}s",
        "--timeout",
        "5s",
        "--latency",
        "-s",
        str(target.script),
        target.url,
    ]


def run_wrk(target: Target, conc: int, duration: float, threads: int, run: int) -> Sample:
    argv = wrk_command(target, conc, duration, threads)
    pids = descendants(target.server.pid)
    before = {p: cpu_ticks(p) for p in pids}
    stat0 = read_proc_stat()
    t0 = time.monotonic()
    proc = subprocess.Popen(
        argv,
        env={**os.environ, **target.wrk_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=bool(NICE),
    )
    set_autogroup_nice(proc.pid)
    assert proc.stdout is not None
    out = proc.stdout.read().decode(errors="replace")
    _, status, rusage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - t0
    stat1 = read_proc_stat()
    after = {p: cpu_ticks(p) for p in pids}
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {out}")
    match = re.search(r"^BENCH_JSON (\{.*\})$", out, re.M)
    if not match:
        raise RuntimeError(f"no BENCH_JSON line in wrk output:\n{out}")
    doc = json.loads(match.group(1))
    proc_cpu = []
    for p in pids:
        b, a = before.get(p), after.get(p)
        if b is not None and a is not None:
            proc_cpu.append((p, 100.0 * (a - b) / CLK_TCK / wall))
    delta = [b - a for a, b in zip(stat0, stat1, strict=True)]
    total = sum(delta[:8]) or 1  # user nice system idle iowait irq softirq steal
    errors = {k[4:]: int(v) for k, v in doc.items() if k.startswith("err_") and v}
    wrk_cpu = 100.0 * (rusage.ru_utime + rusage.ru_stime) / wall
    busy = 100.0 * (os.cpu_count() or 1) * (1 - (delta[3] + delta[4] + delta[7]) / total)  # % of one core
    return Sample(
        target=target.name,
        conc=conc,
        run=run,
        rps=doc["requests"] / (doc["duration_us"] / 1e6),
        p50_ms=doc["p50_us"] / 1000,
        p99_ms=doc["p99_us"] / 1000,
        requests=doc["requests"],
        errors=errors,
        proc_cpu=proc_cpu,
        wrk_cpu=wrk_cpu,
        other_cpu=max(0.0, busy - sum(c for _, c in proc_cpu) - wrk_cpu),
        machine_idle=100.0 * (delta[3] + delta[4]) / total,
        machine_steal=100.0 * delta[7] / total,
    )


# --------------------------------------------------------------------------------------------------
# Ostiary setup


def ostiary_env(db_url: str, port: int, secret_key: str) -> dict[str, str]:
    return {
        "OSTIARY_ISSUER": f"http://{HOST}:{port}",
        "OSTIARY_DATABASE_URL": db_url,
        "OSTIARY_SECRET_KEY": secret_key,
        # Raised so the limiter does not turn the load into 429s; the limiter itself still runs.
        "OSTIARY_RATE_LIMITS__PER_CLIENT": "1000000",
        "OSTIARY_RATE_LIMITS__PER_IP": "1000000",
    }


def run_cli(argv: list[str], env: dict[str, str]) -> str:
    res = subprocess.run(argv, env={**os.environ, **env}, capture_output=True, text=True, timeout=120, cwd=ROOT)
    if res.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res.stdout


def psql(sql: str) -> None:
    subprocess.run(
        ["psql", *PG_ADMIN_DSN, "-v", "ON_ERROR_STOP=1", "-qc", sql],
        check=True,
        capture_output=True,
        timeout=60,
    )


def ensure_postgres() -> None:
    if port_open(5432):
        return
    clusters = sorted(os.listdir("/etc/postgresql"))
    log("PostgreSQL is down; starting it")
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", clusters[-1], "main", "start"], check=True)
    wait_port(5432, up=True, timeout=30)


def create_client(env: dict[str, str]) -> tuple[str, str]:
    out = run_cli(
        [
            str(OSTIARY),
            "client",
            "create",
            "--name",
            "bench",
            "--grant-type",
            "client_credentials",
            "--scope",
            SCOPE,
            "--audience",
            AUDIENCE,
            "--json",
        ],
        env,
    )
    doc = json.loads(out[out.index("{") :])
    return doc["client_id"], doc["client_secret"]


# --------------------------------------------------------------------------------------------------
# the benchmark


@dataclasses.dataclass
class Bench:
    args: argparse.Namespace
    workdir: Path
    servers: list[Server] = dataclasses.field(default_factory=list)
    targets: list[Target] = dataclasses.field(default_factory=list)
    pg_databases: list[str] = dataclasses.field(default_factory=list)
    setup_commands: list[str] = dataclasses.field(default_factory=list)

    def wanted(self) -> list[str]:
        return [s for s in ALL_SYSTEMS if s in self.args.systems]

    def setup(self) -> None:
        wanted = self.wanted()
        if "peer" in wanted:
            self._setup_peer()
        need: set[tuple[str, str]] = set()
        for name in wanted:
            if name.startswith("ostiary-"):
                _, db, srv = name.split("-")
                need.add((db, srv))
            elif name.startswith("healthz-"):
                need.add(("pg" if "pg" in self.args.healthz_db else "sqlite", name.split("-")[1]))
        port = self.args.base_port
        for db in DBS:
            for srv in SERVERS:
                if (db, srv) in need:
                    self._setup_ostiary(db, srv, port, wanted)
                port += 1

    def _setup_peer(self) -> None:
        peer_sh = BENCH_DIR / "peer.sh"
        peer_dir = self.workdir / "peer"
        env = {
            "PEER_DIR": str(peer_dir),
            "WORKERS": str(self.args.workers),
            "JWT_ALG": "ES256",
            "AT_FORMAT": "jwt",
            "PORT": str(PEER_PORT),
        }
        log("installing the peer (npm install)")
        run_cli([str(peer_sh), "--install-only"], env)
        server = Server("peer", [str(peer_sh)], env, PEER_PORT, ROOT, self.workdir / "peer.log")
        self.servers.append(server)
        server.start()
        self.setup_commands.append(
            f"PEER_DIR={peer_dir} bench/peer.sh   # = cd $PEER_DIR && NODE_ENV=production AT_FORMAT=jwt "
            f"JWT_ALG=ES256 WORKERS={self.args.workers} PORT={PEER_PORT} node server.mjs"
        )
        self.targets.append(Target("peer", server, "/token", "token", PEER_CLIENT_ID, PEER_CLIENT_SECRET))

    def _setup_ostiary(self, db: str, srv: str, port: int, wanted: list[str]) -> None:
        if db == "pg":
            ensure_postgres()
            dbname = f"{self.args.pg_database}_{srv}"
            psql(f"DROP DATABASE IF EXISTS {dbname}")
            psql(f"CREATE DATABASE {dbname}")
            self.pg_databases.append(dbname)
            url = f"postgresql+asyncpg://postgres@{HOST}:5432/{dbname}"
            self.setup_commands.append(f"psql {shlex.join(PG_ADMIN_DSN)} -c 'CREATE DATABASE {dbname}'")
        else:
            url = f"sqlite+aiosqlite:///{self.workdir / f'ostiary-{srv}.db'}"
        env = ostiary_env(url, port, secrets.token_urlsafe(48))
        shown = [
            "OSTIARY_ISSUER",
            "OSTIARY_DATABASE_URL",
            "OSTIARY_RATE_LIMITS__PER_CLIENT",
            "OSTIARY_RATE_LIMITS__PER_IP",
        ]
        prefix = " ".join(f"{k}={env[k]}" for k in shown) + " OSTIARY_SECRET_KEY=<48 random bytes>"
        run_cli([str(OSTIARY), "migrate"], env)
        client_id, client_secret = create_client(env)
        self.setup_commands.append(f"{prefix} ostiary migrate")
        self.setup_commands.append(
            f"{prefix} ostiary client create --name bench --grant-type client_credentials --scope {SCOPE} "
            f"--audience {AUDIENCE} --json"
        )
        argv = [
            str(OSTIARY),
            "serve",
            "--host",
            HOST,
            "--port",
            str(port),
            "--workers",
            str(self.args.workers),
            "--server",
            srv,
            *self.args.ostiary_serve_arg,
        ]
        server = Server(f"ostiary-{db}-{srv}", argv, env, port, ROOT, self.workdir / f"ostiary-{db}-{srv}.log")
        self.servers.append(server)
        server.start()
        self.setup_commands.append(f"{prefix} {shlex.join(['ostiary', *argv[1:]])}")
        if f"ostiary-{db}-{srv}" in wanted:
            self.targets.append(Target(f"ostiary-{db}-{srv}", server, "/token", "token", client_id, client_secret))
        if f"healthz-{srv}" in wanted and db == self.args.healthz_db:
            self.targets.append(Target(f"healthz-{srv}", server, self.args.healthz_path, "healthz"))

    def teardown(self) -> None:
        for server in reversed(self.servers):
            try:
                server.stop()
            except Exception as exc:  # keep stopping the others
                log(f"stopping {server.name}: {exc}")
        for dbname in self.pg_databases:
            try:
                psql(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
            except Exception as exc:
                log(f"dropping {dbname}: {exc}")

    def measure(self) -> list[Sample]:
        self.targets.sort(key=lambda t: ALL_SYSTEMS.index(t.name))
        for t in self.targets:
            t.validation = http_check(t)
            log(f"{t.name}: {t.validation}")
        if self.args.warmup > 0:
            for t in self.targets:
                log(f"warm-up {t.name} ({self.args.warmup:g} s, c=16)")
                run_wrk(t, 16, self.args.warmup, self.args.threads, 0)
        samples: list[Sample] = []
        cells = len(self.targets) * len(self.args.concurrency) * self.args.runs
        n = 0
        for run in range(1, self.args.runs + 1):
            for ci, conc in enumerate(self.args.concurrency):
                shift = (run - 1 + ci) % len(self.targets)
                order = self.targets[shift:] + self.targets[:shift]  # rotate so no system is always first
                for t in order:
                    n += 1
                    for attempt in range(1, self.args.retries + 2):
                        busy_before = wait_cell_quiet(self.args.max_busy, self.args.cell_wait)
                        s = run_wrk(t, conc, self.args.duration, self.args.threads, run)
                        s.busy_before, s.attempts = busy_before, attempt
                        errs = f" errors={s.errors}" if s.errors else ""
                        log(
                            f"[{n}/{cells}] run {run} c={conc:<3} {t.name:<24} {s.rps:9.0f}/s"
                            f"  p50 {s.p50_ms:7.2f} ms  p99 {s.p99_ms:7.2f} ms"
                            f"  cpu {fmt_cpu(s.proc_cpu)}  other {s.other_cpu:.0f}%{errs}"
                        )
                        if s.other_cpu <= self.args.max_other or attempt > self.args.retries:
                            break
                        log(f"  other processes used {s.other_cpu:.0f}% of a core meanwhile; measuring again")
                    samples.append(s)
                    if self.args.pause:
                        time.sleep(self.args.pause)
        return samples


def fmt_cpu(proc_cpu: list[tuple[int, float]]) -> str:
    shown = [f"{c:.0f}" for _, c in proc_cpu if c >= 2.0]
    return "/".join(shown) + "%" if shown else "0%"


def worker_imbalance(proc_cpu: list[tuple[int, float]]) -> float:
    """Share of the busiest process in the server's CPU (1.0 = everything on one process)."""
    busy = [c for _, c in proc_cpu if c >= 2.0]
    total = sum(busy)
    return max(busy) / total if len(busy) >= 1 and total > 0 else 0.0


def machine_info() -> dict[str, str]:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.splitlines()
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain"], capture_output=True, text=True)
    code = head.stdout.strip() or "?"
    changed = len(dirty.stdout.splitlines())
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "node": node,
        "wrk": wrk_version[0] if wrk_version else "?",
        "mem": f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f} GiB",
        "code": f"commit {code}" + (f" with {changed} uncommitted changed files" if changed else ""),
    }


def machine_busy(interval: float = 1.0) -> float:
    """CPU busy on the whole machine over ``interval`` seconds, in % of one core."""
    a = read_proc_stat()
    time.sleep(interval)
    d = [y - x for x, y in zip(a, read_proc_stat(), strict=True)]
    total = sum(d[:8]) or 1
    return 100.0 * (os.cpu_count() or 1) * (1 - (d[3] + d[4] + d[7]) / total)


def wait_cell_quiet(max_busy: float, max_wait: float) -> float:
    """Before a cell: wait (at most ``max_wait`` s) until the machine is nearly idle; return the last probe."""
    deadline = time.monotonic() + max_wait
    busy = machine_busy()
    while busy > max_busy and time.monotonic() < deadline:
        busy = machine_busy(2.0)
    return busy


def wait_quiet(max_load: float, max_wait: float) -> str:
    deadline = time.monotonic() + max_wait
    while True:
        load = Path("/proc/loadavg").read_text().split()[:3]
        if float(load[0]) <= max_load or time.monotonic() >= deadline:
            return " ".join(load)
        log(f"loadavg {' '.join(load)} > {max_load}; waiting for the machine to quieten")
        time.sleep(10)


def med(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


@dataclasses.dataclass
class Cell:
    target: str
    conc: int
    samples: list[Sample]

    @property
    def rps(self) -> float:
        return med([s.rps for s in self.samples])

    @property
    def p50(self) -> float:
        return med([s.p50_ms for s in self.samples])

    @property
    def p99(self) -> float:
        return med([s.p99_ms for s in self.samples])

    @property
    def median_sample(self) -> Sample:
        return sorted(self.samples, key=lambda s: s.rps)[len(self.samples) // 2]

    @property
    def errors(self) -> int:
        return sum(sum(s.errors.values()) for s in self.samples)

    @property
    def requests(self) -> int:
        return sum(s.requests for s in self.samples)


def build_cells(samples: list[Sample]) -> dict[tuple[str, int], Cell]:
    cells: dict[tuple[str, int], Cell] = {}
    for s in samples:
        cells.setdefault((s.target, s.conc), Cell(s.target, s.conc, [])).samples.append(s)
    return cells


LABELS = {
    "peer": "node-oidc-provider, ES256 JWT, in-memory, 2 workers",
    "ostiary-pg-uvicorn": "Ostiary /token, PostgreSQL, Uvicorn",
    "ostiary-pg-granian": "Ostiary /token, PostgreSQL, Granian",
    "ostiary-sqlite-uvicorn": "Ostiary /token, SQLite, Uvicorn",
    "ostiary-sqlite-granian": "Ostiary /token, SQLite, Granian",
    "healthz-uvicorn": "Ostiary GET /healthz (HTTP ceiling), Uvicorn",
    "healthz-granian": "Ostiary GET /healthz (HTTP ceiling), Granian",
}


def report(
    bench: Bench, samples: list[Sample], info: dict[str, str], load_before: str, started: str, elapsed: float
) -> str:
    args = bench.args
    cells = build_cells(samples)
    targets = [t.name for t in bench.targets]
    lines: list[str] = []
    w = lines.append
    w("# Client-credentials token benchmark (issue 2)")
    w("")
    w(
        f"Generated by `bench/token_bench.py` on {started} ({elapsed / 60:.0f} min). "
        f"Cells: {', '.join(targets)} x c={','.join(map(str, args.concurrency))}; "
        f"{args.runs} runs of {args.duration:g} s each, interleaved "
        "(every run visits every cell, order rotated); "
        "figures are medians of the runs."
    )
    w("")
    w("## Machine")
    w("")
    w(
        f"- {info['nproc']} CPUs, {info['cpu']}, {info['mem']} RAM, Linux {info['kernel']}; "
        f"Python {info['python']}, Node {info['node']}, {info['wrk']}"
    )
    w(f"- Ostiary code: {info['code']} (when the servers started)")
    if args.nice:
        w(
            f"- every server and wrk ran with niceness {args.nice}, also as the nice value of its scheduler "
            "autogroup (`--nice`), the rest of the machine at 0"
        )
    w(f"- loadavg before the run: **{load_before}** (1, 5, 15 min)")
    idle = med([s.machine_idle for s in samples])
    steal = med([s.machine_steal for s in samples])
    other = med([s.other_cpu for s in samples])
    w(
        f"- during timed runs: median machine idle {idle:.0f} %, median steal {steal:.1f} %, "
        f"median CPU of processes other than the measured server and wrk {other:.0f} % of one core "
        "(*other CPU* column: the noise from the rest of the machine)"
    )
    retried = sum(1 for s in samples if s.attempts > 1)
    noisy = sum(1 for s in samples if s.other_cpu > args.max_other)
    w(
        f"- noise control: before each cell the harness waited (≤ {args.cell_wait:g} s) for the machine to use "
        f"≤ {args.max_busy:g} % of one core; a cell during which other processes used > {args.max_other:g} % of "
        f"one core was measured again (≤ {args.retries} times): {retried} of {len(samples)} cells were "
        f"re-measured, {noisy} stayed above the threshold"
    )
    w("")
    w("## Results")
    w("")
    w(
        "tokens/s (requests/s for /healthz), p50 and p99 latency from wrk's HdrHistogram, "
        "median of the runs. "
        "*vs peer* = Ostiary tokens/s ÷ peer tokens/s at the same concurrency. *CPU per process* is the "
        "median run's CPU of each process of the server's tree with ≥ 2 % (100 % = one core); "
        "*top share* is the busiest process's share of the server's CPU (≈ 0.5 when 2 workers are balanced, "
        "1.0 when one worker serves every connection); "
        "*other CPU* = CPU used meanwhile by everything else on the machine."
    )
    w("")
    w(
        "| system | c | tokens/s | p50 ms | p99 ms | vs peer | runs (tokens/s) | errors / requests "
        "| CPU per process | top share | wrk CPU | other CPU |"
    )
    w("|---|---:|---:|---:|---:|---:|---|---:|---|---:|---:|---:|")
    for conc in args.concurrency:
        peer = cells.get(("peer", conc))
        for name in targets:
            cell = cells.get((name, conc))
            if cell is None:
                continue
            ratio = f"{cell.rps / peer.rps:.2f}" if peer and name != "peer" and name.startswith("ostiary") else ""
            ms = cell.median_sample
            w(
                f"| {name} | {conc} | {cell.rps:,.0f} | {cell.p50:.2f} | {cell.p99:.2f} | {ratio} | "
                f"{', '.join(f'{s.rps:,.0f}' for s in cell.samples)} | {cell.errors} / {cell.requests:,} | "
                f"{fmt_cpu(ms.proc_cpu)} | {worker_imbalance(ms.proc_cpu):.2f} | {ms.wrk_cpu:.0f}% | "
                f"{ms.other_cpu:.0f}% |"
            )
    w("")
    w("### Ratios")
    w("")
    w(
        "| c | "
        + " | ".join(f"{n} / peer" for n in targets if n.startswith("ostiary"))
        + " | "
        + " | ".join(f"{n.replace('healthz', 'token')} / {n}" for n in targets if n.startswith("healthz"))
        + " |"
    )
    w("|---:|" + "---:|" * (sum(1 for n in targets if n.startswith(("ostiary", "healthz")))))
    for conc in args.concurrency:
        peer = cells.get(("peer", conc))
        row = [str(conc)]
        for n in targets:
            if n.startswith("ostiary"):
                c = cells.get((n, conc))
                row.append(f"{c.rps / peer.rps:.2f}" if c and peer else "")
        for n in targets:
            if n.startswith("healthz"):
                srv = n.split("-")[1]
                tok = cells.get((f"ostiary-{args.healthz_db}-{srv}", conc))
                hz = cells.get((n, conc))
                row.append(f"{tok.rps / hz.rps:.2f}" if tok and hz else "")
        w("| " + " | ".join(row) + " |")
    w("")
    servers_cmp = []
    for db in DBS:
        for conc in args.concurrency:
            u, g = cells.get((f"ostiary-{db}-uvicorn", conc)), cells.get((f"ostiary-{db}-granian", conc))
            if u and g:
                servers_cmp.append(
                    f"{db} c={conc}: Granian/Uvicorn = {g.rps / u.rps:.2f} ({g.rps:,.0f} vs {u.rps:,.0f} tokens/s)"
                )
    if servers_cmp:
        w("### Uvicorn or Granian")
        w("")
        for line in servers_cmp:
            w(f"- {line}")
        w("")
    imbalanced = [s for s in samples if args.workers > 1 and s.conc > 1 and worker_imbalance(s.proc_cpu) > 0.75]
    w("### Worker balance")
    w("")
    if imbalanced:
        for s in imbalanced:
            w(
                f"- run {s.run}, {s.target}, c={s.conc}: CPU per process {fmt_cpu(s.proc_cpu)} "
                f"(top share {worker_imbalance(s.proc_cpu):.2f}) at {s.rps:,.0f}/s"
            )
    else:
        w("- no timed run had one process doing more than 75 % of its server's CPU.")
    w("")
    w("## What was run")
    w("")
    w("Checked once per system before timing (one real request each):")
    w("")
    for t in bench.targets:
        w(f"- {t.name} `{t.server.argv[0].split('/')[-1]} … {t.path}`: {t.validation}")
    w("")
    w(
        "Setup (each Ostiary server has its own fresh database and its own client; all servers run at once, "
        "idle while another is measured):"
    )
    w("")
    w("```sh")
    for cmd in bench.setup_commands:
        w(cmd)
    w("```")
    w("")
    w(
        "Load (one wrk process per cell; BENCH_CLIENT_ID/SECRET are the client printed by `ostiary client "
        "create`, or cc-client for the peer):"
    )
    w("")
    w("```sh")
    for t in bench.targets:
        env = " ".join(f"{k}=…" for k in t.wrk_env)
        w(f"{env} {shlex.join(wrk_command(t, 64, args.duration, args.threads))}".strip().replace(str(ROOT) + "/", ""))
    w("```")
    w("")
    w("## Notes")
    w("")
    w(
        "- Ostiary runs its production configuration (hashed client secrets, metrics, audit events, rate "
        "limiter on); the only change is that the rate limits are raised to 1,000,000 per client and per IP "
        "(`OSTIARY_RATE_LIMITS__PER_CLIENT`, `OSTIARY_RATE_LIMITS__PER_IP`), because the load comes from one "
        "client on one IP and would otherwise be answered with 429s after the first few requests."
    )
    w(
        "- The peer uses node-oidc-provider's in-memory adapter (nothing is written to a database) and "
        "compares client secrets in plain text; "
        "Ostiary writes to PostgreSQL/SQLite and checks a hashed secret."
    )
    w(
        "- wrk counts only HTTP status ≥ 400 and socket errors/timeouts as errors (the *errors* column); "
        "each system answered a correct token before timing."
    )
    w(
        f"- wrk: `-t{args.threads}` (one thread per connection at c=1), `--timeout 5s`; "
        f"{args.warmup:g} s warm-up per system at c=16 before the timed runs."
    )
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--systems",
        default=",".join(ALL_SYSTEMS),
        help=f"comma-separated subset of: {', '.join(ALL_SYSTEMS)} (default: all)",
    )
    p.add_argument("--concurrency", default="1,16,64", help="comma-separated wrk connection counts (default 1,16,64)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per timed cell (default 10)")
    p.add_argument("--runs", type=int, default=3, help="runs per cell; the median is reported (default 3)")
    p.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds per system before timing (default 3)")
    p.add_argument("--threads", type=int, default=1, help="wrk threads (default 1, capped at the concurrency)")
    p.add_argument("--workers", type=int, default=2, help="server workers for Ostiary and the peer (default 2)")
    p.add_argument("--pause", type=float, default=1.0, help="seconds between cells (default 1)")
    p.add_argument(
        "--base-port",
        type=int,
        default=8000,
        help="Ostiary ports: base+0 pg-uvicorn, +1 pg-granian, +2 sqlite-uvicorn, +3 sqlite-granian",
    )
    p.add_argument("--healthz-db", choices=DBS, default="pg", help="which Ostiary servers' /healthz to load")
    p.add_argument("--healthz-path", default="/healthz")
    p.add_argument(
        "--pg-database",
        default="ostiary_bench",
        help="prefix of the PostgreSQL databases created (and dropped) per server",
    )
    p.add_argument(
        "--ostiary-serve-arg",
        action="append",
        default=[],
        help="extra argument for `ostiary serve` (repeatable)",
    )
    p.add_argument("--max-load", type=float, default=0.5, help="wait until 1-min loadavg ≤ this (default 0.5)")
    p.add_argument("--max-wait", type=float, default=120.0, help="…but at most this many seconds (default 120)")
    p.add_argument(
        "--max-busy",
        type=float,
        default=30.0,
        help="before each cell wait until the machine uses ≤ this %% of one core (default 30)",
    )
    p.add_argument("--cell-wait", type=float, default=60.0, help="…but at most this many seconds (default 60)")
    p.add_argument(
        "--max-other",
        type=float,
        default=40.0,
        help="measure a cell again when other processes used > this %% of one core during it (default 40)",
    )
    p.add_argument("--retries", type=int, default=2, help="…at most this many times (default 2)")
    p.add_argument(
        "--nice",
        type=int,
        default=0,
        help="start every server and wrk with this niceness (e.g. -5 on a machine shared with other work, so "
        "single-threaded servers are not starved more than multi-threaded ones; default 0)",
    )
    p.add_argument(
        "--output",
        type=Path,
        default=BENCH_DIR / "RESULTS-token.md",
        help="markdown file to write (default bench/RESULTS-token.md; '-' for none)",
    )
    p.add_argument("--keep-workdir", action="store_true", help="keep the temp dir with server logs and SQLite files")
    args = p.parse_args(argv)
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(args.systems) - set(ALL_SYSTEMS)
    if unknown:
        p.error(f"unknown systems: {', '.join(sorted(unknown))}")
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    return args


@contextlib.contextmanager
def signals_as_exit() -> Iterator[None]:
    """Turn SIGTERM/SIGHUP into SystemExit so the finally-block stops every server."""

    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.nice:
        NICE[:] = ["nice", "-n", str(args.nice)]
    if shutil.which("wrk") is None:
        print("wrk not found: apt-get install -y wrk", file=sys.stderr)
        return 2
    if any(s != "peer" for s in args.systems) and not OSTIARY.exists():
        print(f"{OSTIARY} not found: install the project into .venv first", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="ostiary-token-bench-"))
    bench = Bench(args, workdir)
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    t0 = time.monotonic()
    with signals_as_exit():
        try:
            info = machine_info()
            bench.setup()
            load_before = wait_quiet(args.max_load, args.max_wait)
            log(f"loadavg before timing: {load_before}")
            samples = bench.measure()
            md = report(bench, samples, info, load_before, started, time.monotonic() - t0)
            for server in bench.servers:
                text = server.log_path.read_text(errors="replace") if server.log_path.exists() else ""
                bad = [
                    ln
                    for ln in text.splitlines()
                    if re.search(r'Traceback|"level": "(error|critical)"|\[(ERROR|CRITICAL)\]', ln)
                ]
                if bad:
                    md += f"- {server.name}'s log has {len(bad)} error lines; first: `{bad[0][:200]}`\n"
        finally:
            bench.teardown()
            if args.keep_workdir:
                log(f"kept {workdir}")
            else:
                shutil.rmtree(workdir, ignore_errors=True)
    print(md)
    if str(args.output) != "-":
        # Hand-written notes after the marker (e.g. the profiling summary) survive a rerun.
        if args.output.exists() and MANUAL_MARKER in (old := args.output.read_text()):
            md += "\n" + old[old.index(MANUAL_MARKER) :]
        args.output.write_text(md)
        log(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
