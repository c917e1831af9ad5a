#!/usr/bin/env bash
# Start the peer node-oidc-provider (../shared/peers/oidc-provider) on 127.0.0.1:3000.
#
# Copies the peer into a temp dir (shared/ is read-only), runs `npm install` there (cached across
# calls in $PEER_DIR, default ${TMPDIR:-/tmp}/ostiary-bench-peer), and starts it in the foreground
# with `exec`, so the PID of this script becomes the PID of node (stop it by that PID).
#
#   bench/peer.sh                    # ES256 JWT access tokens, WORKERS=2, production mode
#   JWT_ALG=RS256 WORKERS=1 bench/peer.sh
#   bench/peer.sh --install-only     # just prepare $PEER_DIR (used by token_bench.py before timing)
#
# Environment passed through to the peer: PORT (3000), AT_FORMAT (jwt), JWT_ALG (ES256), WORKERS (2).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SRC="${PEER_SRC:-$HERE/../../shared/peers/oidc-provider}"
PEER_DIR="${PEER_DIR:-${TMPDIR:-/tmp}/ostiary-bench-peer}"

if [[ ! -f "$SRC/server.mjs" ]]; then
  echo "peer.sh: no server.mjs in $SRC (set PEER_SRC)" >&2
  exit 2
fi

mkdir -p "$PEER_DIR"
# Refresh sources (keeps node_modules and keys.json between calls).
cp "$SRC/server.mjs" "$SRC/package.json" "$PEER_DIR/"
if [[ ! -d "$PEER_DIR/node_modules/oidc-provider" ]]; then
  (cd "$PEER_DIR" && npm install --no-audit --no-fund --loglevel=error >&2)
fi

if [[ "${1:-}" == "--install-only" ]]; then
  echo "$PEER_DIR"
  exit 0
fi

cd "$PEER_DIR"
export NODE_ENV=production
export AT_FORMAT="${AT_FORMAT:-jwt}"
export JWT_ALG="${JWT_ALG:-ES256}"
export WORKERS="${WORKERS:-2}"
export PORT="${PORT:-3000}"
exec node server.mjs
