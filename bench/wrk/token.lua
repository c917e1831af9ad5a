-- wrk script: POST /token, client credentials grant, client_secret_basic (RFC 6749 §2.3.1, §4.4).
--   BENCH_CLIENT_ID / BENCH_CLIENT_SECRET  client credentials (already URL-safe, so the
--                                          form-urlencoding of RFC 6749 §2.3.1 is the identity)
--   BENCH_SCOPE                            scope (default api:read)
--   BENCH_DPOP_PROOFS                      optional: a file of DPoP proofs (RFC 9449), one per line, signed
--                                          beforehand (wrk's Lua cannot sign); each request sends the next one.
--                                          A proof is never sent twice: with BENCH_THREADS = wrk's -t, thread n
--                                          takes lines n, n + N, …; a thread that runs out sends "exhausted" (a
--                                          400, counted as a status error), never a replay
--   BENCH_DYNAMIC                          1: build each request in Lua even without proofs, so a Bearer cell
--                                          costs wrk what a DPoP cell does (bench/dpop_bench.py). Neither set: no
--                                          request() function, wrk sends one static request
-- Usage: BENCH_CLIENT_ID=cc-client BENCH_CLIENT_SECRET=... \
--        wrk -t1 -c64 -d10s --latency -s bench/wrk/token.lua http://127.0.0.1:3000/token
-- done() prints one line "BENCH_JSON {...}" with exact percentiles for the harness.

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
local secret = os.getenv("BENCH_CLIENT_SECRET") or "cc-secret-0123456789abcdef0123456789abcdef"
local scope = os.getenv("BENCH_SCOPE") or "api:read"

wrk.method = "POST"
wrk.body = "grant_type=client_credentials&scope=" .. scope:gsub(":", "%%3A"):gsub(" ", "+")
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. b64(id .. ":" .. secret)
wrk.headers["Accept"] = "application/json"

local proofs_file = os.getenv("BENCH_DPOP_PROOFS")
if proofs_file == "" then proofs_file = nil end
if proofs_file ~= nil or os.getenv("BENCH_DYNAMIC") == "1" then
  local counter = 0
  function setup(thread)
    counter = counter + 1
    thread:set("tid", counter)
  end

  local proofs, next_proof, headers = nil, 1, {}

  function init(args)
    for k, v in pairs(wrk.headers) do headers[k] = v end
    if proofs_file == nil then return end
    local n, total = tonumber(tid) or 1, tonumber(os.getenv("BENCH_THREADS") or "1")
    local i = 0
    proofs = {}
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
