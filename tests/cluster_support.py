"""Three Ostiary nodes on one machine, each in its own network namespace, behind HAProxy.

Used by tests/cluster/, ``make demo-cluster`` (examples/cluster/run.py) and bench/cluster_bench.py. Needs root
(``ip netns``), Debian's ``haproxy`` and ``socat`` (scripts/ensure-haproxy.sh installs both).

Topology (``X`` is a free /24 third octet of 10.231.0.0/16, picked at start; node ``i`` = 0, 1, 2)::

    client ──► HAProxy 127.0.0.1:PORT ──┬─► 10.231.X.(4i+2):8000  node i  (netns ostc-<pid>-<hex>-i)
       (host)   health checks /readyz   │        │ DB and Redis at its host-side address 10.231.X.(4i+1):
                                        │        └─► socat on 10.231.X.(4i+1):5432/6379 ─► 127.0.0.1:5432/6379
                                        └─► … one veth pair (a /30) per node

PostgreSQL and Redis listen on 127.0.0.1 only and are shared with everything else on the machine, so they are
never reconfigured: a small ``socat`` forwarder per node (owned by this harness) listens on the node's host-side
address and connects to 127.0.0.1. Every node has the same issuer (the HAProxy address), secret key, database and
Redis prefix; HAProxy's addresses (the host side of the veths) are the nodes' trusted proxies.

Everything is made and removed by :class:`Cluster` itself (``with Cluster(...) as c:``), also on failure. Children
get ``PR_SET_PDEATHSIG`` so they die with the harness; namespaces, processes and databases left by a harness that
was killed (``ostc-<pid>-…`` with a dead pid) are removed by the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from .support import BIN, PG_ADMIN_DSN, base_env, free_port, ostiary

NETNS_PREFIX = "ostc-"
DB_PREFIX = "ost_cluster_"
NODE_PORT = 8000
LOCK_FILE = Path("/run/ostiary-cluster.lock")
_NETNS_RE = re.compile(r"^ostc-(\d+)-([0-9a-f]{6})-(\d+)$")
_PR_SET_PDEATHSIG = 1


def missing_capability() -> str | None:
    """Why a cluster cannot run here (not root, a tool missing, no network namespaces), or None."""
    if os.geteuid() != 0:
        return "needs root: network namespaces and veth pairs (ip netns) are created by the test"
    for tool in ("ip", "haproxy", "socat"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/ensure-haproxy.sh installs haproxy and socat)"
    probe = f"{NETNS_PREFIX}probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the harness process goes, however it goes."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    os.setsid()  # its own process group: a node is killed as a whole (supervisor and workers)


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _netns_list() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _remove_netns(name: str) -> None:
    """Kill whatever still runs in the namespace, then delete it (its veth end goes, and with it the pair)."""
    pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    subprocess.run(["ip", "netns", "del", name], capture_output=True)


async def pg_fetch(sql: str, *args: Any) -> list[Any]:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def cleanup_stale() -> list[str]:
    """Remove what harnesses that died without cleaning up left: namespaces ``ostc-<pid>-…`` (and the processes
    in them), their socat/haproxy processes, and databases ``ost_cluster_<pid>_…``, when ``<pid>`` is dead."""
    removed = []
    for name in _netns_list():
        m = _NETNS_RE.match(name)
        if m and not _alive(int(m.group(1))):
            _remove_netns(name)
            removed.append(name)
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{p}/cmdline", "rb") as fh:
                cmd = fh.read().split(b"\0")
        except OSError:
            continue
        # socat and haproxy carry the harness's tag, ostc-tag-<pid>-<hex>, on their command line
        tag = next((c for c in cmd if c.startswith(b"ostc-tag-")), None)
        if tag and not _alive(int(tag.split(b"-")[2])):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(p), signal.SIGKILL)
                removed.append(f"process {p}")
    try:
        rows = asyncio.run(pg_fetch("SELECT datname FROM pg_database WHERE datname LIKE $1", DB_PREFIX + "%"))
    except OSError:
        rows = []
    for (datname,) in rows:
        owner = datname[len(DB_PREFIX):].split("_")[0]
        if owner.isdigit() and not _alive(int(owner)):
            asyncio.run(pg_fetch(f'DROP DATABASE IF EXISTS "{datname}" WITH (FORCE)'))
            removed.append(datname)
    return removed


def _used_octets() -> set[int]:
    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True).stdout
    return {int(m.group(1)) for m in re.finditer(r"inet 10\.231\.(\d+)\.", out)}


@contextlib.contextmanager
def _allocation_lock() -> Iterator[None]:
    with open(LOCK_FILE, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@dataclass
class Node:
    index: int
    netns: str
    host_if: str  # the host end of its veth pair
    host_addr: str  # the host side of its veth: HAProxy's source address, and where its DB/Redis forwarders listen
    addr: str  # its own address, inside its namespace
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.addr}:{NODE_PORT}"

    @property
    def name(self) -> str:
        return f"node{self.index + 1}"

    def kill(self) -> None:
        """SIGKILL to the node's supervisor and workers at once, as a machine that loses power."""
        if self.proc is not None and self.proc.poll() is None:
            _kill_group(self.proc.pid)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        _kill_group(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()

    def pids(self) -> list[int]:
        """The node's processes (supervisor and workers)."""
        if self.proc is None:
            return []
        out = subprocess.run(["ip", "netns", "pids", self.netns], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class Cluster:
    """``with Cluster(workdir) as c:`` — three nodes behind HAProxy on one PostgreSQL database and one Redis."""

    workdir: Path
    nodes_count: int = 3
    workers: int = 1
    extra_env: dict[str, str] = field(default_factory=dict)
    haproxy_port: int = 0
    stats_port: int = 0
    nodes: list[Node] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # the nodes' settings, with the database as the host sees it
    admin_token: str = ""
    db_name: str = ""
    _suffix: str = ""
    _host_procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _haproxy: subprocess.Popen[bytes] | None = None

    # ---- public surface ----

    @property
    def url(self) -> str:
        """The issuer: HAProxy's address."""
        return f"http://127.0.0.1:{self.haproxy_port}"

    @property
    def stats_url(self) -> str:
        return f"http://127.0.0.1:{self.stats_port}/"

    @property
    def haproxy_addresses(self) -> list[str]:
        return [n.host_addr for n in self.nodes]

    def admin(self, base_url: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=(base_url or self.url) + "/admin/api", timeout=30,
                            headers={"Authorization": f"Bearer {self.admin_token}"})

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``ostiary ARGS`` on the host, against the cluster's database."""
        return ostiary(list(args), self.env, check=check)

    @property
    def haproxy_pid(self) -> int:
        assert self._haproxy is not None
        return self._haproxy.pid

    @property
    def forwarder_pids(self) -> list[int]:
        """The socat forwarders (each forks a child per connection)."""
        return [p.pid for p in self._host_procs]

    def haproxy_command(self, command: str) -> str:
        """A command on HAProxy's stats socket (``show stat``, ``disable server nodes/node2``, …)."""
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.workdir / "haproxy.sock"))
            s.sendall(command.encode() + b"\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        return data.decode()

    def backend_status(self) -> dict[str, str]:
        """HAProxy's view: ``{"node1": "UP", "node2": "DOWN", …}`` (``MAINT`` when disabled)."""
        lines = self.haproxy_command("show stat").splitlines()
        header = lines[0].lstrip("# ").split(",")
        out = {}
        for line in lines[1:]:
            row = dict(zip(header, line.split(","), strict=False))
            if row.get("pxname") == "nodes" and row.get("svname", "").startswith("node"):
                out[row["svname"]] = row["status"].split()[0]
        return out

    def wait_backends(self, want: dict[str, str], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.backend_status()
            if all(status.get(k) == v for k, v in want.items()):
                return
            time.sleep(0.1)
        raise AssertionError(f"HAProxy did not reach {want}: {self.backend_status()}")

    # ---- lifecycle ----

    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cleanup_stale()
        self._suffix = secrets.token_hex(3)
        tag = f"ostc-tag-{os.getpid()}-{self._suffix}"
        self.db_name = f"{DB_PREFIX}{os.getpid()}_{self._suffix}"
        asyncio.run(pg_fetch(f'CREATE DATABASE "{self.db_name}"'))
        self.haproxy_port = self.haproxy_port or free_port()
        self.stats_port = self.stats_port or free_port()
        self.admin_token = "admin-" + secrets.token_urlsafe(24)
        with _allocation_lock():
            octet = next(o for o in secrets.SystemRandom().sample(range(1, 255), 254) if o not in _used_octets())
            for i in range(self.nodes_count):
                self._make_node(i, octet)
        host_db = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{self.db_name}"
        self.env = base_env(host_db, self.url, secrets.token_urlsafe(40), self.admin_token, {
            "OSTIARY_REDIS_URL": "redis://127.0.0.1:6379/0",
            "OSTIARY_SERVER__TRUSTED_PROXIES": f"10.231.{octet}.0/24",
            # production-like: the per-client/IP limits are the test's to choose (base_env raises them)
            **self.extra_env,
        })
        _prepare_database(self.env)
        for node in self.nodes:  # the forwarders: the node's DB and Redis at its host-side address
            for port in (5432, 6379):
                self._host_procs.append(subprocess.Popen(
                    ["socat", "-lp", tag, f"TCP-LISTEN:{port},bind={node.host_addr},reuseaddr,fork,backlog=512",
                     f"TCP:127.0.0.1:{port},nodelay"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent))
        for node in self.nodes:
            for port in (5432, 6379):
                _wait_port(node.host_addr, port)
        for node in self.nodes:
            self._spawn(node, wait=False)
        for node in self.nodes:
            self._wait_ready(node)
        self._start_haproxy(tag)
        self.wait_backends({n.name: "UP" for n in self.nodes})

    def stop(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.stop()
        if self._haproxy is not None and self._haproxy.poll() is None:
            self._haproxy.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._haproxy.wait(timeout=5)
            if self._haproxy.poll() is None:
                self._haproxy.kill()
        for proc in self._host_procs:
            _kill_group(proc.pid)  # socat forks a child per connection: the whole group
            with contextlib.suppress(Exception):
                proc.wait(timeout=5)
        self._host_procs.clear()
        for node in self.nodes:
            _remove_netns(node.netns)  # its veth end goes with it, and the pair with that end
            subprocess.run(["ip", "link", "del", node.host_if], capture_output=True)  # made, never moved
        self.nodes.clear()
        if self.db_name:
            with contextlib.suppress(Exception):
                asyncio.run(pg_fetch(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)'))
            self.db_name = ""

    def restart(self, node: Node) -> None:
        """Start a stopped or killed node again (same namespace, address and settings)."""
        node.stop()
        self._spawn(node)

    # ---- the parts ----

    def _make_node(self, i: int, octet: int) -> None:
        netns = f"{NETNS_PREFIX}{os.getpid()}-{self._suffix}-{i}"
        host_if, node_if = f"oc{self._suffix}{i}h", f"oc{self._suffix}{i}n"
        host_addr, addr = f"10.231.{octet}.{4 * i + 1}", f"10.231.{octet}.{4 * i + 2}"
        node = Node(i, netns, host_if, host_addr, addr, self.workdir / f"node{i + 1}.log")
        self.nodes.append(node)  # before anything is made: stop() removes whatever part of it exists
        _ip("netns", "add", netns)
        _ip("link", "add", host_if, "type", "veth", "peer", "name", node_if)
        _ip("link", "set", node_if, "netns", netns)
        _ip("addr", "add", f"{host_addr}/30", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("-n", netns, "addr", "add", f"{addr}/30", "dev", node_if)
        _ip("-n", netns, "link", "set", node_if, "up")
        _ip("-n", netns, "link", "set", "lo", "up")

    def _node_env(self, node: Node) -> dict[str, str]:
        env = dict(self.env)
        env["OSTIARY_DATABASE_URL"] = f"postgresql+asyncpg://postgres@{node.host_addr}:5432/{self.db_name}"
        env["OSTIARY_REDIS_URL"] = f"redis://{node.host_addr}:6379/0"
        return env

    def _spawn(self, node: Node, *, wait: bool = True) -> None:
        with open(node.log_path, "ab") as log:
            node.proc = subprocess.Popen(
                ["ip", "netns", "exec", node.netns, str(BIN / "ostiary"), "serve", "--host", node.addr,
                 "--port", str(NODE_PORT), "--workers", str(self.workers)],
                env=self._node_env(node), stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        if wait:
            self._wait_ready(node)

    def _wait_ready(self, node: Node, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        assert node.proc is not None
        while time.monotonic() < deadline:
            if node.proc.poll() is not None:
                raise RuntimeError(f"{node.name} exited with {node.proc.returncode}:\n{node.log()[-4000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(node.url + "/readyz", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{node.name} did not become ready:\n{node.log()[-4000:]}")

    def _start_haproxy(self, tag: str) -> None:
        servers = "\n".join(f"    server {n.name} {n.addr}:{NODE_PORT} check" for n in self.nodes)
        cfg = self.workdir / "haproxy.cfg"
        cfg.write_text(f"""\
# written by tests/cluster_support.py; this haproxy process belongs to the harness ({tag})
global
    maxconn 4096
    stats socket {self.workdir / "haproxy.sock"} mode 600 level admin

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout http-request 10s
    # a connection refused by a dead node is tried again on another node; a request a node had already
    # received is never sent twice (retry-on is conn-failure only: a token request is not idempotent)
    retries 2
    option redispatch 1

frontend ostiary
    bind 127.0.0.1:{self.haproxy_port}
    option forwardfor
    http-response set-header X-Ostiary-Node %[srv_name]
    default_backend nodes

backend nodes
    balance roundrobin
    option httpchk
    http-check send meth GET uri /readyz
    http-check expect status 200
    # a refused connection fails a check at once; a slow answer only after 3 s: a node busy under load
    # (a /readyz taking longer than the check interval) is not taken out of service for being busy
    timeout check 3s
    default-server inter 500ms fall 2 rise 2
{servers}

frontend stats
    bind 127.0.0.1:{self.stats_port}
    stats enable
    stats uri /
    stats refresh 2s
""")
        check = subprocess.run(["haproxy", "-c", "-q", "-f", str(cfg)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy refused its config:\n{check.stdout}{check.stderr}")
        log = open(self.workdir / "haproxy.log", "ab")  # noqa: SIM115 - the process holds it
        self._haproxy = subprocess.Popen(["haproxy", "-db", "-f", str(cfg), "-L", tag], stdout=log,
                                         stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        log.close()
        _wait_port("127.0.0.1", self.haproxy_port)
        deadline = time.monotonic() + 15
        while not (self.workdir / "haproxy.sock").exists():
            if self._haproxy.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"haproxy did not start:\n{(self.workdir / 'haproxy.log').read_text()}")
            time.sleep(0.05)


def _prepare_database(env: dict[str, str]) -> None:
    """``ostiary migrate`` and the first signing keys, in this process (a CLI start costs seconds on a busy
    machine). The keys exist before the nodes start, so three first starts cannot each create their own."""
    from ostiary._clock import SystemClock
    from ostiary.config import load_settings
    from ostiary.core.keys import ensure_signing_key
    from ostiary.store.sql import SqlStore, upgrade

    settings = load_settings(environ=env)
    upgrade(settings.database_url)

    async def first_keys() -> None:
        store = SqlStore.from_url(settings.database_url)
        try:
            await ensure_signing_key(store, settings.policy(), settings.master_keys().key_encryption, SystemClock())
        finally:
            await store.close()

    asyncio.run(first_keys())


def _wait_port(host: str, port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port}")
