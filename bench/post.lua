-- wrk script: POST one single-sample JSON request (a real Fashion-MNIST test
-- image) to /predict, and print a machine-readable summary line at the end.
--
--   BENCH_BODY=bench/out/request.json wrk -t1 -c32 -d10s --timeout 30s \
--       -s bench/post.lua http://127.0.0.1:PORT/predict
--
-- BENCH_BODY: file holding the request body (bench/run.sh writes it from
-- models/fashion_mnist_data.py load("test")[0]); without it the script falls
-- back to models/examples/sample_0.json.
-- BENCH_CONTENT_TYPE: the body's Content-Type [application/json].
-- BENCH_V2_HEADER_LENGTH: for a v2 binary-tensor body, the length of its JSON
-- part, sent as Inference-Header-Content-Length.
--
-- The summary line (latencies in microseconds; non2xx counts non-2xx/3xx
-- answers, timeouts counts requests that took longer than --timeout):
--   BENCH requests=N duration_us=D rps=R p50_us=A p90_us=B p99_us=C max_us=M
--         mean_us=E non2xx=S connect_err=X read_err=Y write_err=Z timeouts=T

local function read_file(path)
   local f = io.open(path, "rb")
   if not f then return nil end
   local s = f:read("*a")
   f:close()
   return s
end

local path = os.getenv("BENCH_BODY") or "models/examples/sample_0.json"
local body = read_file(path)
if not body or #body == 0 then
   io.stderr:write("post.lua: cannot read request body from " .. path .. "\n")
   os.exit(2)
end

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = os.getenv("BENCH_CONTENT_TYPE") or "application/json"
local v2_len = os.getenv("BENCH_V2_HEADER_LENGTH")
if v2_len and #v2_len > 0 then
   wrk.headers["Inference-Header-Content-Length"] = v2_len
end

function done(summary, latency, requests)
   local secs = summary.duration / 1e6
   local e = summary.errors
   io.write(string.format(
      "BENCH requests=%d duration_us=%d rps=%.2f p50_us=%d p90_us=%d p99_us=%d max_us=%d " ..
      "mean_us=%.1f non2xx=%d connect_err=%d read_err=%d write_err=%d timeouts=%d\n",
      summary.requests, summary.duration, summary.requests / secs,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
      latency.mean, e.status, e.connect, e.read, e.write, e.timeout))
end
