-- POST /v1/trace with one fixed person (Jane Smith of the mock population).
wrk.method = "POST"
wrk.body = '{"case_id":"LAS-000123","family":"Smith","given":["Jane"],"birth_date":"2010-10-22","gender":"female","postcode":"LS1 6AE"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer bench-key"

-- Counts answers other than 200, so that a run with errors cannot pass for a fast one.
local bad = 0
function response(status, headers, body)
  if status ~= 200 then bad = bad + 1 end
end
function done(summary, latency, requests)
  io.write(string.format("p50_us=%d p99_us=%d non200=%d errors=%d\n",
    latency:percentile(50), latency:percentile(99), bad,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout))
end
