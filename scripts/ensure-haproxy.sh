#!/usr/bin/env bash
# The cluster test, `make demo-cluster` and bench/cluster_bench.py put Debian's HAProxy in front of three nodes.
# Only the binary is used: each run starts its own haproxy process with its own config on a free port (the
# system service is never started or configured); socat forwards each node's database and Redis connections to
# 127.0.0.1 (the shared services are never reconfigured); iproute2 gives `ip netns`.
set -euo pipefail
if command -v haproxy >/dev/null && command -v socat >/dev/null && command -v ip >/dev/null; then exit 0; fi
if [ "$(id -u)" != "0" ]; then
  echo "the cluster test needs haproxy, socat and iproute2: run 'sudo apt-get install -y haproxy socat iproute2'" >&2
  exit 0  # the cluster test skips (it needs root anyway); everything else runs
fi
echo "installing Debian's haproxy, socat and iproute2 for the cluster test"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends haproxy socat iproute2 >/dev/null
