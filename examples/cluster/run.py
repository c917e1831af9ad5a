"""Ostiary scaled out on one machine: three nodes, each in its own network namespace with its own address, behind
HAProxy, sharing one PostgreSQL database and one Redis. ``make demo-cluster`` (as root: it creates network
namespaces and veth pairs).

Starts the cluster (tests/cluster_support.py), prints its URLs, registers a service client, asks HAProxy for a
few tokens (each answered by another node, all verifiable with the one JWKS), then keeps the cluster up until
Ctrl-C, and removes everything it made: processes, namespaces, veths, the database.

    sudo .venv/bin/python examples/cluster/run.py [--workers 1] [--no-wait]
"""

from __future__ import annotations

import argparse
import base64
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.cluster_support import Cluster, missing_capability  # noqa: E402 - the repository root first


def _kid(token: str) -> str:
    head = token.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=1, help="Uvicorn workers per node (default 1)")
    parser.add_argument("--no-wait", action="store_true", help="tear down after the token requests (CI)")
    args = parser.parse_args()
    reason = missing_capability()
    if reason:
        print(f"demo-cluster: {reason}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # SIGTERM tears down like Ctrl-C
    with tempfile.TemporaryDirectory(prefix="ostiary-cluster-") as tmp:
        print("==> starting three nodes, the TCP forwarders to PostgreSQL and Redis, and HAProxy …", flush=True)
        started = time.monotonic()
        with Cluster(Path(tmp), workers=args.workers) as cluster:
            print(f"    up in {time.monotonic() - started:.0f} s\n")
            print(f"issuer (HAProxy)  {cluster.url}")
            print(f"HAProxy stats     {cluster.stats_url}")
            for node in cluster.nodes:
                print(f"{node.name}             {node.url}   netns {node.netns}   log {node.log_path}")
            print(f"database          postgresql://postgres@127.0.0.1:5432/{cluster.db_name}")
            print(f"Redis prefix      {cluster.env['OSTIARY_REDIS_PREFIX']}")
            with cluster.admin() as admin:
                r = admin.post("/clients", json={"name": "cluster demo", "audiences": ["https://api.example.com"]})
                r.raise_for_status()
                client = r.json()
            print(f"\n==> client {client['client_id']} registered (through HAProxy); six token requests:")
            with httpx.Client(base_url=cluster.url, timeout=30) as http:
                for _ in range(6):
                    r = http.post("/token", data={"grant_type": "client_credentials"},
                                  auth=(client["client_id"], client["client_secret"]))
                    r.raise_for_status()
                    print(f"    {r.headers.get('x-ostiary-node', '?')}: {r.status_code} token signed by key "
                          f"{_kid(r.json()['access_token'])}")
            print("\nTry it:")
            print(f"  curl -s -u '{client['client_id']}:{client['client_secret']}' "
                  f"-d grant_type=client_credentials {cluster.url}/token")
            print(f"  curl -s {cluster.nodes[0].url}/readyz          # one node, directly")
            print(f"  ip netns exec {cluster.nodes[1].netns} ss -ltn   # inside node2's namespace")
            if args.no_wait:
                return 0
            print("\nCtrl-C stops the cluster and removes everything it made.", flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                print("\n==> stopping …", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
