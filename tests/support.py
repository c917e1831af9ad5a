"""Test support: real PostgreSQL databases and live server processes."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PG_ADMIN_DSN = os.environ.get("OSTIARY_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_services() -> None:
    subprocess.run(["bash", str(ROOT / "scripts" / "ensure-services.sh")], check=True)


async def _pg(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_pg_database() -> tuple[str, str]:
    """A fresh database; returns (name, SQLAlchemy URL)."""
    name = "ost_test_" + secrets.token_hex(6)
    asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
    return name, f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"


def drop_pg_database(name: str) -> None:
    asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def base_env(db_url: str, issuer: str, secret_key: str, admin_token: str, extra: dict[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OSTIARY_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update({
        "OSTIARY_ISSUER": issuer,
        "OSTIARY_DATABASE_URL": db_url,
        "OSTIARY_SECRET_KEY": secret_key,
        "OSTIARY_ADMIN_TOKEN": admin_token,
        "OSTIARY_KEYS__REFRESH_INTERVAL": "1",
        "OSTIARY_KEYS__PUBLISH_DELAY": "0",
        "OSTIARY_CLIENTS__CACHE_TTL": "0",
        # each server its own Redis keys: counters left in the shared Redis by another run never apply here
        "OSTIARY_REDIS_PREFIX": "ostiary-test-" + secrets.token_hex(4) + ":",
        "OSTIARY_RATE_LIMITS__PER_CLIENT": "100000",
        "OSTIARY_RATE_LIMITS__PER_IP": "100000",
        "OSTIARY_RATE_LIMITS__PER_CLIENT_BURST": "100000",
        "OSTIARY_RATE_LIMITS__PER_IP_BURST": "100000",
        "OSTIARY_RATE_LIMITS__ADMIN_FAILED_AUTH_MAX": "100000",  # every test calls from 127.0.0.1
    })
    env.update(extra or {})
    return env


def ostiary(args: list[str], env: dict[str, str], *, check: bool = True, input: str | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(BIN / "ostiary"), *args], env=env, capture_output=True, text=True, input=input,
                          cwd=cwd, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"ostiary {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@dataclass
class LiveServer:
    base_url: str
    env: dict[str, str]
    admin_token: str
    log_path: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    #: how its HTTPS certificate is checked (httpx ``verify``): an SSLContext for a server with its own test CA
    verify: ssl.SSLContext | bool = True

    @property
    def issuer(self) -> str:
        return self.env["OSTIARY_ISSUER"]

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url + "/admin/api", timeout=30, verify=self.verify,
                            headers={"Authorization": f"Bearer {self.admin_token}"})

    def create_client(self, **spec: Any) -> dict[str, Any]:
        spec.setdefault("name", "test client " + secrets.token_hex(3))
        if spec.get("client_type") == "public":
            # new public clients are DPoP-bound by default (tests/web/test_dpop_default.py); the tests of other
            # features drive them with clients that make no proofs, so they ask for unbound ones by name
            spec.setdefault("dpop_bound_access_tokens", False)
        if "client_credentials" in spec.get("grant_types", ["client_credentials"]):
            spec.setdefault("audiences", ["https://api.test.example"])  # a service client names its API
        with self.admin() as c:
            r = c.post("/clients", json=spec)
        assert r.status_code == 201, r.text
        out: dict[str, Any] = r.json()
        return out

    def cli(self, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return ostiary(list(args), self.env, check=check, input=input)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()


def start_server(db_url: str, workdir: Path, *, extra_env: dict[str, str] | None = None, workers: int = 1,
                 migrate: bool = True, port: int | None = None, secret_key: str | None = None,
                 server: str = "uvicorn") -> LiveServer:
    port = port or free_port()
    issuer = f"http://127.0.0.1:{port}"
    admin_token = "admin-" + secrets.token_urlsafe(24)
    env = base_env(db_url, issuer, secret_key or secrets.token_urlsafe(40), admin_token, extra_env)
    workdir.mkdir(parents=True, exist_ok=True)
    if migrate:
        ostiary(["migrate"], env)
    log_path = workdir / f"server-{port}.log"
    srv = LiveServer(base_url=issuer, env=env, admin_token=admin_token, log_path=log_path)
    spawn(srv, port, workers, server)
    return srv


def spawn(srv: LiveServer, port: int, workers: int = 1, server: str = "uvicorn") -> subprocess.Popen[bytes]:
    with open(srv.log_path, "ab") as log:
        proc = subprocess.Popen([str(BIN / "ostiary"), "serve", "--port", str(port), "--workers", str(workers),
                                 "--server", server], env=srv.env, stdout=log, stderr=subprocess.STDOUT)
    srv.procs.append(proc)
    wait_ready(f"http://127.0.0.1:{port}", proc, srv)
    return proc


def wait_ready(base_url: str, proc: subprocess.Popen[bytes], srv: LiveServer, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{srv.log()}")
        try:
            if httpx.get(base_url + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    srv.stop()
    raise AssertionError(f"server did not become ready:\n{srv.log()}")


def worker_pids(supervisor_pid: int) -> list[int]:
    """The supervisor's Uvicorn worker processes (not multiprocessing's resource tracker)."""
    out = []
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{p}/stat") as fh:
                parent = int(fh.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{p}/cmdline", "rb") as fh:
                worker = b"spawn_main" in fh.read()
        except OSError:
            continue
        if parent == supervisor_pid and worker:
            out.append(int(p))
    return out


def sockets_per_process(port: int, pids: list[int], state: str) -> collections.Counter[int]:
    """How many TCP sockets on local ``port`` in ``state`` (/proc/net/tcp: 01 established, 0A listening) each
    of ``pids`` holds."""
    owner = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if target.startswith("socket:["):
                    owner[target[8:-1]] = pid
    count: collections.Counter[int] = collections.Counter()
    with open("/proc/net/tcp") as fh:
        for line in fh.read().splitlines()[1:]:
            f = line.split()
            if int(f[1].split(":")[1], 16) == port and f[3] == state and f[9] in owner:
                count[owner[f[9]]] += 1
    return count
