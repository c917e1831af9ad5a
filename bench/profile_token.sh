#!/usr/bin/env bash
# Profile one Ostiary worker under py-spy while wrk loads POST /token (client credentials).
#
#   bench/profile_token.sh                 # PostgreSQL, Uvicorn, 1 worker, c=16, 10 s
#   DB=sqlite SERVER=granian DURATION=10 CONC=16 bench/profile_token.sh
#
# Writes to bench/out/ (git-ignored):
#   profile-token-<db>-<server>.txt       py-spy raw (collapsed stacks: "frame;frame;… count"); open it in
#                                         https://www.speedscope.app or feed it to flamegraph.pl / inferno
#   profile-token-<db>-<server>.svg       py-spy flame graph of a second window of the same length
#   profile-token-<db>-<server>-summary.txt  top functions by self time and by inclusive time
# and prints the summary. Every process it starts is stopped by PID; the PostgreSQL database is dropped.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
VENV="$ROOT/.venv/bin"
OUT="$HERE/out"
DB="${DB:-pg}"
SERVER="${SERVER:-uvicorn}"
DURATION="${DURATION:-10}"
CONC="${CONC:-16}"
PORT="${PORT:-8010}"
RATE="${RATE:-250}"
PGDB="ostiary_profile"
NAME="profile-token-$DB-$SERVER"

command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 2; }
[[ -x "$VENV/py-spy" ]] || "$VENV/pip" install -q py-spy
mkdir -p "$OUT"
WORK="$(mktemp -d -t ostiary-profile-XXXXXX)"
SERVER_PID=""
WRK_PID=""

cleanup() {
  set +e
  [[ -n "$WRK_PID" ]] && kill "$WRK_PID" 2>/dev/null
  if [[ -n "$SERVER_PID" ]]; then
    kids="$(pgrep -P "$SERVER_PID" || true)"
    kill -TERM "$SERVER_PID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" $kids 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
  fi
  if [[ "$DB" == pg ]]; then
    psql -h 127.0.0.1 -U postgres -d test -qc "DROP DATABASE IF EXISTS $PGDB WITH (FORCE)" >/dev/null 2>&1
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ "$DB" == pg ]]; then
  pg_isready -h 127.0.0.1 -q || pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | tail -1)" main start
  psql -h 127.0.0.1 -U postgres -d test -qc "DROP DATABASE IF EXISTS $PGDB" -c "CREATE DATABASE $PGDB"
  export OSTIARY_DATABASE_URL="postgresql+asyncpg://postgres@127.0.0.1:5432/$PGDB"
else
  export OSTIARY_DATABASE_URL="sqlite+aiosqlite:///$WORK/ostiary.db"
fi
export OSTIARY_ISSUER="http://127.0.0.1:$PORT"
OSTIARY_SECRET_KEY="$("$VENV/python" -c 'import secrets; print(secrets.token_urlsafe(48))')"
export OSTIARY_SECRET_KEY
# Raised so the one benchmark client on one IP is not answered with 429s; everything else stays on.
export OSTIARY_RATE_LIMITS__PER_CLIENT=1000000 OSTIARY_RATE_LIMITS__PER_IP=1000000

"$VENV/ostiary" migrate >"$WORK/migrate.log" 2>&1 || { cat "$WORK/migrate.log" >&2; exit 1; }
CLIENT_JSON="$("$VENV/ostiary" client create --name bench --grant-type client_credentials \
  --scope api:read --audience urn:example:api --json)"
BENCH_CLIENT_ID="$(sed -n 's/.*"client_id": *"\([^"]*\)".*/\1/p' <<<"$CLIENT_JSON" | head -1)"
BENCH_CLIENT_SECRET="$(sed -n 's/.*"client_secret": *"\([^"]*\)".*/\1/p' <<<"$CLIENT_JSON" | head -1)"
export BENCH_CLIENT_ID BENCH_CLIENT_SECRET

setsid "$VENV/ostiary" serve --host 127.0.0.1 --port "$PORT" --workers 1 --server "$SERVER" \
  >"$WORK/server.log" 2>&1 </dev/null &
SERVER_PID=$!
for _ in $(seq 300); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
  sleep 0.1
done

URL="http://127.0.0.1:$PORT/token"
code="$(curl -s -o /dev/null -w '%{http_code}' -u "$BENCH_CLIENT_ID:$BENCH_CLIENT_SECRET" \
  -d 'grant_type=client_credentials&scope=api%3Aread' "$URL")"
[[ "$code" == 200 ]] || { echo "POST /token answered $code" >&2; cat "$WORK/server.log" >&2; exit 1; }

echo "warm-up 3 s" >&2
wrk -t1 -c"$CONC" -d3s -s "$HERE/wrk/token.lua" "$URL" >/dev/null

# The worker is the process of the server's tree that used the most CPU during the warm-up.
WORKER="$("$VENV/python" - "$SERVER_PID" <<'PY'
import os, sys
root = int(sys.argv[1])
kids = {}
for p in filter(str.isdigit, os.listdir("/proc")):
    try:
        f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        continue
    kids.setdefault(int(f[1]), []).append((int(p), int(f[11]) + int(f[12])))
best, todo = (root, -1), [root]
cpu = {root: -1}
while todo:
    for pid, ticks in kids.get(todo.pop(), []):
        todo.append(pid)
        if ticks > best[1]:
            best = (pid, ticks)
print(best[0])
PY
)"
echo "profiling worker pid $WORKER ($(tr '\0' ' ' </proc/"$WORKER"/cmdline | cut -c1-100)) for 2 x ${DURATION}s at c=$CONC" >&2

wrk -t1 -c"$CONC" -d"$((2 * DURATION + 2))s" --latency -s "$HERE/wrk/token.lua" "$URL" >"$OUT/$NAME-wrk.txt" &
WRK_PID=$!
sleep 1
"$VENV/py-spy" record --pid "$WORKER" --duration "$DURATION" --rate "$RATE" --nonblocking \
  --format raw --output "$OUT/$NAME.txt" >/dev/null 2>"$WORK/pyspy1.log" || cat "$WORK/pyspy1.log" >&2
"$VENV/py-spy" record --pid "$WORKER" --duration "$DURATION" --rate "$RATE" --nonblocking \
  --format flamegraph --output "$OUT/$NAME.svg" >/dev/null 2>"$WORK/pyspy2.log" || cat "$WORK/pyspy2.log" >&2
wait "$WRK_PID"; WRK_PID=""

"$VENV/python" - "$OUT/$NAME.txt" "$OUT/$NAME-wrk.txt" >"$OUT/$NAME-summary.txt" <<'PY'
"""Aggregate py-spy raw (collapsed) stacks: self time = the innermost frame of each stack."""
import collections, re, sys

raw, wrk = sys.argv[1], sys.argv[2]
self_t: collections.Counter[str] = collections.Counter()
incl: collections.Counter[str] = collections.Counter()
area: collections.Counter[str] = collections.Counter()
total = 0

def key(frame: str) -> str:
    # "func (path/to/file.py:123)" -> "func (path/to/file.py)"
    return re.sub(r":\d+\)$", ")", frame.strip())

def where(frame: str) -> str:
    m = re.search(r"\(([^)]*)\)$", frame)
    path = m.group(1) if m else frame
    for marker, name in (("ostiary", "ostiary"), ("sqlalchemy", "sqlalchemy"), ("asyncpg", "asyncpg"),
                         ("aiosqlite", "aiosqlite"), ("sqlite3", "sqlite3"), ("starlette", "starlette"),
                         ("uvicorn", "uvicorn"), ("granian", "granian"), ("jwt", "pyjwt"),
                         ("cryptography", "cryptography"), ("prometheus", "prometheus_client"),
                         ("pydantic", "pydantic"), ("orjson", "orjson"), ("json", "json"), ("asyncio", "asyncio"),
                         ("logging", "logging"), ("hmac", "hmac/hashlib"), ("hashlib", "hmac/hashlib")):
        if marker in path:
            return name
    return path.rsplit("/", 1)[-1] or "?"

with open(raw) as fh:
    for line in fh:
        line = line.rstrip("\n")
        if not line:
            continue
        stack, _, count_s = line.rpartition(" ")
        n = int(count_s)
        frames = [f for f in stack.split(";") if f]
        if not frames:
            continue
        total += n
        self_t[key(frames[-1])] += n
        area[where(frames[-1])] += n
        for k in {key(f) for f in frames}:
            incl[k] += n

rps = re.search(r"Requests/sec:\s+([\d.]+)", open(wrk).read())
print(f"py-spy samples (on-CPU, GIL-holding or not): {total}; wrk during profiling: "
      f"{rps.group(1) if rps else '?'} tokens/s (with py-spy attached)\n")
print("Top 15 functions by self time")
for k, n in self_t.most_common(15):
    print(f"  {100 * n / total:5.1f}%  {k}")
print("\nSelf time by library (innermost frame's file)")
for k, n in area.most_common(15):
    print(f"  {100 * n / total:5.1f}%  {k}")
print("\nTop 25 Ostiary functions by inclusive time")
shown = 0
for k, n in incl.most_common():
    if "ostiary" in k:
        print(f"  {100 * n / total:5.1f}%  {k}")
        shown += 1
        if shown == 25:
            break
PY
cat "$OUT/$NAME-summary.txt"
echo >&2
echo "wrote $OUT/$NAME.txt (raw collapsed stacks), $OUT/$NAME.svg, $OUT/$NAME-summary.txt" >&2
