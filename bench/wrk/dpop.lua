-- wrk script: POST /token, client credentials (client_secret_basic), each request with its own DPoP proof
-- (RFC 9449 §4): proofs are single use, and ES256 signing is not something wrk's Lua can do, so they are signed
-- beforehand and read from a file, one per line.
--   BENCH_CLIENT_ID / BENCH_CLIENT_SECRET  client credentials (URL-safe)
--   BENCH_DPOP_PROOFS                      file of proofs, one per line; unset: no DPoP header (Bearer tokens)
-- A proof is never sent twice: with several threads (BENCH_THREADS = wrk's -t) thread n takes lines n, n + N, …;
-- a thread that runs out sends "exhausted" (the server answers 400, a status error in wrk's count), never a replay.
-- Usage: BENCH_CLIENT_ID=… BENCH_CLIENT_SECRET=… BENCH_DPOP_PROOFS=/tmp/proofs \
--        wrk -t1 -c16 -d6s --latency -s bench/wrk/dpop.lua http://127.0.0.1:8000/token
-- done() prints one line "BENCH_JSON {...}" like token.lua.

local function b64(data)
  local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
  return ((data:gsub(".", function(x)
    local r, byte = "", x:byte()
    for i = 8, 1, -1 do r = r .. (byte % 2 ^ i - byte % 2 ^ (i - 1) > 0 and "1" or "0") end
    return r
  end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
    if #x < 6 then return "" end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
    return alphabet:sub(c + 1, c + 1)
  end) .. ({ "", "==", "=" })[#data % 3 + 1])
end

local id = os.getenv("BENCH_CLIENT_ID") or "cc-client"
local secret = os.getenv("BENCH_CLIENT_SECRET") or ""
local proofs_file = os.getenv("BENCH_DPOP_PROOFS")

wrk.method = "POST"
wrk.body = "grant_type=client_credentials"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. b64(id .. ":" .. secret)
wrk.headers["Accept"] = "application/json"

local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
end

local proofs, next_proof, headers = nil, 1, nil

function init(args)
  headers = {}
  for k, v in pairs(wrk.headers) do headers[k] = v end
  if proofs_file == nil or proofs_file == "" then return end
  local n, total = tonumber(tid) or 1, tonumber(os.getenv("BENCH_THREADS") or "1")
  proofs = {}
  local i = 0
  for line in io.lines(proofs_file) do
    if i % total == n - 1 then proofs[#proofs + 1] = line end
    i = i + 1
  end
end

function request()
  if proofs ~= nil then
    headers["DPoP"] = proofs[next_proof] or "exhausted"
    next_proof = next_proof + 1
  end
  return wrk.format(nil, nil, headers, nil)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,'
      .. '"max_us":%d,"mean_us":%.1f,"err_connect":%d,"err_read":%d,"err_write":%d,'
      .. '"err_status":%d,"err_timeout":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean, e.connect, e.read, e.write, e.status, e.timeout))
end
