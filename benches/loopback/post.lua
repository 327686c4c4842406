-- wrk script: POST $BODY with the JSON content type and, if $SECRET is set, a Bearer secret; prints one
-- machine-readable RESULT line. non2xx counts responses with status >= 400 (wrk's errors.status).
wrk.method = "POST"
wrk.body = os.getenv("BODY") or "{}"
wrk.headers["Content-Type"] = "application/json"
local secret = os.getenv("SECRET")
if secret and secret ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. secret
end

done = function(summary, latency, requests)
  local seconds = summary.duration / 1e6
  io.write(string.format(
    "RESULT rps=%.0f p50_us=%.0f p99_us=%.0f requests=%d non2xx=%d socket_errors=%d\n",
    summary.requests / seconds, latency:percentile(50), latency:percentile(99), summary.requests,
    summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
