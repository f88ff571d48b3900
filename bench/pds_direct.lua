-- The mock PDS's own search for the same person: the reference for added latency.
wrk.method = "GET"
wrk.path = "/personal-demographics/FHIR/R4/Patient?family=Smith&given=Jane&birthdate=eq2010-10-22&address-postalcode=LS1%206AE&_history=true&_max-results=1"
wrk.headers["X-Request-ID"] = "8c2b7a4e-2f0d-4f6e-9d1a-3b5c7e9f1a2b"
function done(summary, latency, requests)
  io.write(string.format("p50_us=%d p99_us=%d\n", latency:percentile(50), latency:percentile(99)))
end
