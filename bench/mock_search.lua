-- bench/mock_search.sh: a FHIR request to the mock PDS (the path comes with the URL), and
-- its latency percentiles and rate in microseconds and requests/s.
wrk.headers["X-Request-ID"] = "8c2b7a4e-2f0d-4f6e-9d1a-3b5c7e9f1a2b"
function done(summary, latency, requests)
  io.write(string.format("p50_us=%d p99_us=%d rps=%.0f non200=%d\n",
    latency:percentile(50), latency:percentile(99),
    summary.requests / (summary.duration / 1e6), summary.errors.status))
end
