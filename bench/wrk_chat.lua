-- wrk script for the non-stream figures: POSTs one JSON body again and again.
-- Why read the environment: one script drives both piagent (/chat) and the
-- fake Ollama directly (/api/chat, "the limit"), so both see identical load.
--   BENCH_PATH  request path (default /chat)
--   BENCH_BODY  JSON body (default a 20-token non-stream piagent request)
-- done() prints one line "BENCH_JSON {...}" that bench/wrk_load.py parses.
wrk.method = "POST"
wrk.path = os.getenv("BENCH_PATH") or "/chat"
wrk.body = os.getenv("BENCH_BODY") or '{"message":"bench tokens=20","stream":false}'
wrk.headers["Content-Type"] = "application/json"

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors_connect":%d,"errors_read":%d,"errors_write":%d,' ..
    '"errors_status":%d,"errors_timeout":%d,' ..
    '"p50_us":%.0f,"p90_us":%.0f,"p99_us":%.0f,"mean_us":%.1f,"max_us":%.0f}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max))
end
