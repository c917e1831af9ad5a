#!/usr/bin/env bash
# The HTTP benchmarks (`make bench`, bench/token_bench.py, refresh_bench.py, dpop_bench.py --wrk) load the server
# with Debian's wrk.
set -euo pipefail
if command -v wrk >/dev/null; then exit 0; fi
if [ "$(id -u)" != "0" ]; then
  echo "the benchmarks need wrk: run 'sudo apt-get install -y wrk', then 'make bench' again" >&2
  exit 1
fi
echo "installing Debian's wrk for the benchmarks"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends wrk >/dev/null
