#!/usr/bin/env python3
"""Client-credentials tokens through HAProxy to three Ostiary nodes (each in its own network namespace), against
one node reached directly and one node behind HAProxy, in the same run: tokens/s per node and per core.

The cluster is tests/cluster_support.py's (root needed: ``ip netns``; Debian's haproxy, socat and wrk). Each cell
runs ``wrk -t1 -cC`` with bench/wrk/token.lua for ``--duration`` seconds; the cells are interleaved over
``--runs``. Around each cell it reads every node's ``ostiary_tokens_issued_total`` (which node served how many)
and the CPU time of every node's processes, of HAProxy and of the socat forwarders (``/proc/<pid>/stat``), so
"per core" is tokens per CPU-second the nodes spent, which a noisy machine disturbs far less than tokens/s.

    sudo .venv/bin/python bench/cluster_bench.py --help
    sudo .venv/bin/python bench/cluster_bench.py --duration 5 --runs 1 --concurrency 32
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
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.cluster_support import Cluster, missing_capability  # noqa: E402 - the repository root first

CLK_TCK = os.sysconf("SC_CLK_TCK")
TOKEN_LUA = ROOT / "bench" / "wrk" / "token.lua"
ISSUED = re.compile(r'^ostiary_tokens_issued_total\{grant_type="client_credentials"\} ([0-9.e+]+)$', re.M)


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / CLK_TCK


def children(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    parent_of = {}
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            parent_of[int(p)] = int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
    found, frontier = [pid], [pid]
    while frontier:
        nxt = [c for c, par in parent_of.items() if par in frontier]
        found += nxt
        frontier = nxt
    return found


def issued(url: str) -> float:
    m = ISSUED.search(httpx.get(url + "/metrics", timeout=10).text)
    return float(m.group(1)) if m else 0.0


@dataclass
class Cell:
    name: str
    url: str  # wrk's target
    nodes: list[int]  # which nodes serve (indexes)


@dataclass
class Sample:
    cell: str
    rps: float
    p99_ms: float
    per_node: list[float]  # tokens/s each node issued
    node_cpu: list[float]  # CPU-seconds per wall second, each node (1.0 = one core busy)
    haproxy_cpu: float
    socat_cpu: float
    wrk_cpu: float
    errors: int


def run_cell(cluster: Cluster, cell: Cell, conc: int, duration: float, env: dict[str, str]) -> Sample:
    nodes = cluster.nodes
    node_pids = [n.pids() for n in nodes]
    haproxy = children(cluster.haproxy_pid)
    socat = [p for pid in cluster.forwarder_pids for p in children(pid)]
    before = [issued(n.url) for n in nodes]
    cpu0 = [cpu_seconds(p) for p in node_pids], cpu_seconds(haproxy), cpu_seconds(socat)
    t0 = time.monotonic()
    proc = subprocess.Popen(["wrk", "-t1", f"-c{conc}", f"-d{duration:g}s", "--timeout", "5s", "--latency",
                             "-s", str(TOKEN_LUA), cell.url + "/token"], env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    out = proc.stdout.read().decode(errors="replace")
    _, status, rusage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - t0
    socat = [p for pid in cluster.forwarder_pids for p in children(pid)]  # socat forks per connection
    cpu1 = [cpu_seconds(p) for p in node_pids], cpu_seconds(haproxy), cpu_seconds(socat)
    after = [issued(n.url) for n in nodes]
    m = re.search(r"^BENCH_JSON (\{.*\})$", out, re.M)
    if os.waitstatus_to_exitcode(status) != 0 or not m:
        raise RuntimeError(f"wrk failed:\n{out}")
    doc = json.loads(m.group(1))
    errors = sum(int(v) for k, v in doc.items() if k.startswith("err_"))
    return Sample(cell=cell.name, rps=doc["requests"] / (doc["duration_us"] / 1e6), p99_ms=doc["p99_us"] / 1000,
                  per_node=[(a - b) / wall for a, b in zip(after, before, strict=True)],
                  node_cpu=[(a - b) / wall for a, b in zip(cpu1[0], cpu0[0], strict=True)],
                  haproxy_cpu=(cpu1[1] - cpu0[1]) / wall, socat_cpu=max(0.0, cpu1[2] - cpu0[2]) / wall,
                  wrk_cpu=(rusage.ru_utime + rusage.ru_stime) / wall, errors=errors)


def set_servers(cluster: Cluster, serving: list[int]) -> None:
    """HAProxy sends traffic only to ``serving`` (the others are put in maintenance through the stats socket)."""
    for i, node in enumerate(cluster.nodes):
        cluster.haproxy_command(f"{'enable' if i in serving else 'disable'} server nodes/{node.name}")
    cluster.wait_backends({n.name: ("UP" if i in serving else "MAINT") for i, n in enumerate(cluster.nodes)})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=8, help="seconds per cell (default 8)")
    parser.add_argument("--runs", type=int, default=1, help="interleaved runs; medians are reported (default 1)")
    parser.add_argument("--concurrency", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--workers", type=int, default=1, help="Uvicorn workers per node (default 1)")
    args = parser.parse_args()
    reason = missing_capability()
    if reason:
        print(f"cluster_bench: {reason}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="ostiary-cluster-bench-") as tmp, \
            Cluster(Path(tmp), workers=args.workers, extra_env={"OSTIARY_LOG_LEVEL": "warning"}) as cluster:
        with cluster.admin() as admin:
            client = admin.post("/clients", json={"name": "bench", "scopes": ["api:read"],
                                                  "audiences": ["urn:example:api"]}).json()
        env = {"BENCH_CLIENT_ID": client["client_id"], "BENCH_CLIENT_SECRET": client["client_secret"],
               "BENCH_SCOPE": "api:read"}
        cells = [Cell("one node, direct", cluster.nodes[0].url, [0]),
                 Cell("one node behind HAProxy", cluster.url, [0]),
                 Cell("three nodes behind HAProxy", cluster.url, [0, 1, 2])]
        set_servers(cluster, [0, 1, 2])
        run_cell(cluster, cells[2], args.concurrency, 2, env)  # warm-up: every node, connections, caches
        samples: dict[str, list[Sample]] = {c.name: [] for c in cells}
        for run in range(args.runs):
            for cell in cells[run % 3:] + cells[:run % 3]:
                set_servers(cluster, cell.nodes)
                samples[cell.name].append(run_cell(cluster, cell, args.concurrency, args.duration, env))
        report(args, cells, samples)
    return 0


def report(args: argparse.Namespace, cells: list[Cell], samples: dict[str, list[Sample]]) -> None:
    def med(values: list[float]) -> float:
        return statistics.median(values)

    base = med([s.rps for s in samples[cells[0].name]])
    print(f"\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.node()}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}; wrk -t1 -c{args.concurrency}, {args.duration:g} s x {args.runs} run(s), "
          f"{args.workers} worker(s) per node\n")
    print("| cell | tokens/s | vs one node direct | p99 | tokens/s per node | node CPU (cores) | tokens per "
          "node CPU-second | HAProxy CPU | socat CPU | errors |")
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    for cell in cells:
        ss = samples[cell.name]
        rps = med([s.rps for s in ss])
        per_node = [med([s.per_node[i] for s in ss]) for i in range(3)]
        node_cpu = med([sum(s.node_cpu) for s in ss])
        per_core = med([sum(s.per_node) / sum(s.node_cpu) for s in ss if sum(s.node_cpu) > 0])
        print(f"| {cell.name} | {rps:,.0f} | {rps / base:.2f} | {med([s.p99_ms for s in ss]):.1f} ms | "
              f"{' / '.join(f'{v:,.0f}' for v in per_node)} | {node_cpu:.2f} | {per_core:,.0f} | "
              f"{med([s.haproxy_cpu for s in ss]):.2f} | {med([s.socat_cpu for s in ss]):.2f} | "
              f"{sum(s.errors for s in ss)} |")


if __name__ == "__main__":
    sys.exit(main())
