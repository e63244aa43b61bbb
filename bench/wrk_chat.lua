-- wrk script for bench/overhead.py: POST one small chat request, print a JSON summary.
--   WRK_MODEL=fake wrk -t1 -c1 -d10s -s bench/wrk_chat.lua http://127.0.0.1:PORT/v1/chat/completions
-- The last stdout line is {"requests":..,"duration_us":..,"p50_us":..,...}; the errors
-- are wrk's own counts: connect/read/write/timeout socket errors and status >= 400.

local model = os.getenv("WRK_MODEL") or "fake"
-- WRK_LOGPROBS=1 asks for top-20 logprobs: what the gateway asks its upstream for, so a
-- direct call with it is the like-for-like baseline
local logprobs = os.getenv("WRK_LOGPROBS") == "1"

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"' .. model .. '","messages":[{"role":"user",'
    .. '"content":"What is the capital of France?"}],"max_tokens":16'
    .. (logprobs and ',"logprobs":true,"top_logprobs":20}' or '}')

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        '{"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,'
        .. '"max_us":%d,"mean_us":%.1f,"err_connect":%d,"err_read":%d,"err_write":%d,'
        .. '"err_timeout":%d,"err_status":%d}\n',
        summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
        latency:percentile(99), latency.max, latency.mean, e.connect, e.read, e.write,
        e.timeout, e.status))
end
