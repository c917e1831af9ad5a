-- wrk script: plain GET (used for GET /healthz, the HTTP ceiling of the same server).
-- Usage: wrk -t1 -c64 -d10s --latency -s bench/wrk/get.lua http://127.0.0.1:8000/healthz
-- done() prints one line "BENCH_JSON {...}" with exact percentiles for the harness.

wrk.method = "GET"
wrk.headers["Accept"] = "application/json"

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
