#!/usr/bin/env bash
# Abandoned traces and a hung PDS (issue 6, point 8): N callers send a trace and hang up
# after 0.2 s while PDS answers slowly at the rate limit; then one more trace is timed, as
# is a trace against a PDS that never answers. Prints the figures.
#   bench/abandoned.sh [BUILD_DIR]      (default: a release build in build-bench/)
#   ABANDON=3000 by default.
source "$(dirname "$0")/lib.sh"
trap bench_cleanup EXIT
bin=${1:-}
if [ -z "$bin" ]; then bench_build; bin=$root/build-bench; fi
n=${ABANDON:-3000}

bench_redis
pds_port=$(free_port)
"$bin/mock-pds" --port "$pds_port" --generate 2000 --latency-ms 200 >"$work/pds.log" 2>&1 &
pids+=($!)
head -c 32 /dev/urandom >"$work/secret"
"$bin/pds-trace" apikey bench trace >"$work/minted"
tail -n 1 "$work/minted" | sed 's/.*/[&]/' >"$work/keys.json"
key=$(head -n 1 "$work/minted" | sed 's/^key: //')
svc_port=$(free_port)
PDS_TRACE_LISTEN=127.0.0.1:$svc_port PDS_TRACE_REDIS_URL=redis://127.0.0.1:$redis_port/0 \
PDS_TRACE_PDS_BASE_URL=http://127.0.0.1:$pds_port/personal-demographics/FHIR/R4 \
PDS_TRACE_SECRET_FILE=$work/secret PDS_TRACE_API_KEYS_FILE=$work/keys.json \
PDS_TRACE_CACHE_TTL_S=0 PDS_TRACE_CACHE_NEGATIVE_TTL_S=0 PDS_TRACE_PDS_MAX_QUEUE=100000 \
  "$bin/pds-trace" serve >"$work/svc.log" 2>&1 &
pids+=($!)
wait_port "$svc_port"; sleep 0.3

trace() { # $1: family, $2: curl --max-time
  curl -s -o /dev/null -w '%{http_code} %{time_total}\n' --max-time "$2" \
    -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
    -d "{\"family\":\"$1\",\"given\":[\"Nemo\"],\"birth_date\":\"1970-01-01\",\"postcode\":\"LS1 6AE\"}" \
    "http://127.0.0.1:$svc_port/v1/trace" || true
}
export -f trace; export key svc_port
seq "$n" | tr 0-9 a-j | xargs -P 200 -I{} bash -c 'trace Abandoned{} 0.2' >/dev/null
sleep 1
echo "after $n abandoned traces, one new trace (status, seconds; 000 = gave up after 120 s): $(trace Newcomer 120)"
pds_reqs=$(curl -s "http://127.0.0.1:$pds_port/_admin/requests" | python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])')
echo "PDS requests made so far: $pds_reqs"
curl -s -X PUT -d '{"hang_next":1000,"latency_ms":0}' "http://127.0.0.1:$pds_port/_admin/faults" >/dev/null
echo "a trace against a PDS that never answers (status, seconds): $(trace Hung 120)"
