-- wrk script: POST /token, refresh_token grant (RFC 6749 §6), public client (client_id in the form, no secret).
-- Each wrk thread keeps a queue of live refresh tokens. request() pops one and presents it; response() takes
-- the new refresh_token out of a 200 answer and pushes it back. A token whose answer was not a 200 (or never
-- came: requests still in flight when wrk stops) is never presented again: re-presenting a spent token is a
-- reuse, which revokes its whole family (RFC 9700 §4.14.2).
--   BENCH_REFRESH_IN     file with one live refresh token per line (one per token family); thread k of n takes
--                        lines k, k+n, k+2n, ...: give each thread at least as many tokens as it has connections
--   BENCH_REFRESH_OUT    file that done() writes the still-unused live tokens to (one per line), for a next run
--   BENCH_CLIENT_ID      the public client's id
--   BENCH_THREADS        wrk's -t (default 1)
-- Usage: BENCH_REFRESH_IN=/tmp/in BENCH_REFRESH_OUT=/tmp/out BENCH_CLIENT_ID=... \
--        wrk -t1 -c64 -d10s --latency -s bench/wrk/refresh.lua http://127.0.0.1:3000/token
-- A request finding its thread's queue empty (only after tokens were lost to errors) is a GET of /healthz,
-- counted as "idle", not as a rotation. done() prints one line "BENCH_JSON {...}": "rotations" counts only 200
-- answers that carried a refresh_token; "non200" counts every other answer, "first_error" shows one of them.

local function urlencode(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

local client_id = urlencode(os.getenv("BENCH_CLIENT_ID") or "bench-client")
local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

queue = {}   -- globals: done() reads them with thread:get
head, tail = 1, 0
rotations, non200, idle, loaded = 0, 0, 0, 0
first_error = ""
local form_head = "grant_type=refresh_token&client_id=" .. client_id .. "&refresh_token="
local post_headers = { ["Content-Type"] = "application/x-www-form-urlencoded", ["Accept"] = "application/json" }

function init(args)
  local path = os.getenv("BENCH_REFRESH_IN")
  local f = assert(io.open(path, "r"), "cannot read BENCH_REFRESH_IN " .. tostring(path))
  local i = 0
  for line in f:lines() do
    if line ~= "" then
      if i % nthreads == tid then
        tail = tail + 1
        queue[tail] = line
        loaded = loaded + 1
      end
      i = i + 1
    end
  end
  f:close()
  verified = tid ~= 0
end

function request()
  if not verified then  -- wrk calls request() once in thread 0 after init() to check it: no token for that one
    verified = true
    return wrk.format("GET", "/healthz")
  end
  if head > tail then
    idle = idle + 1
    return wrk.format("GET", "/healthz")
  end
  local token = queue[head]
  queue[head] = nil
  head = head + 1
  return wrk.format("POST", nil, post_headers, form_head .. urlencode(token))
end

function response(status, headers, body)
  if status == 200 then
    local token = body:match('"refresh_token"%s*:%s*"([^"]+)"')
    if token then
      rotations = rotations + 1
      tail = tail + 1
      queue[tail] = token
      return
    end
    if not body:find('"access_token"', 1, true) then
      return  -- a /healthz answer (empty queue)
    end
  end
  non200 = non200 + 1
  if first_error == "" then
    first_error = status .. " " .. body:sub(1, 160)
  end
end

local function jsonstr(s)
  return '"' .. s:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
end

function done(summary, latency, requests)
  local rot, bad, idl, ld, live, err = 0, 0, 0, 0, {}, ""
  for _, t in ipairs(threads) do
    rot = rot + t:get("rotations")
    bad = bad + t:get("non200")
    idl = idl + t:get("idle")
    ld = ld + t:get("loaded")
    if err == "" then err = t:get("first_error") end
    local q, h, tl = t:get("queue"), t:get("head"), t:get("tail")
    for i = h, tl do table.insert(live, q[i]) end
  end
  local out = os.getenv("BENCH_REFRESH_OUT")
  if out then
    local f = assert(io.open(out, "w"))
    for _, tok in ipairs(live) do f:write(tok, "\n") end
    f:close()
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"rotations":%d,"non200":%d,"idle":%d,"loaded":%d,"live":%d,"duration_us":%d,'
      .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,"err_connect":%d,"err_read":%d,'
      .. '"err_write":%d,"err_status":%d,"err_timeout":%d,"first_error":%s}\n',
    summary.requests, rot, bad, idl, ld, #live, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout, jsonstr(err)))
end
