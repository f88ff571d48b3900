#!/usr/bin/env bash
# Trace benchmarks, each against a reference measured in the same run:
#  (a) cached POST /v1/trace requests/s with wrk at 64 connections, against nginx returning
#      a fixed JSON body of the same size (target: ratio >= 0.5);
#  (b) uncached traces (cache off) against the mock PDS with 50 ms added latency: p50 of a
#      one-search trace minus p50 of the same search sent to the mock directly (target:
#      < 1 ms), then 1,000 traces in flight at once (target: no errors).
source "$(dirname "$0")/lib.sh"
trap bench_cleanup EXIT
ulimit -n 65536 2>/dev/null || true
bench_build
bench_redis
digest=$(printf '%s' bench-key | sha256sum | cut -d' ' -f1)
printf '[{"name":"bench","key_sha256":"%s","roles":["trace"]}]' "$digest" > "$work/keys.json"
(umask 077 && openssl rand -hex 32 > "$work/secret")

start_mock() { # $1: extra arguments
  mock_port=$(free_port)
  "$root/build-bench/mock-pds" --port "$mock_port" --generate 2000 --seed 7 $1 2>"$work/mock.log" &
  pids+=($!); mock_pid=$!
  for _ in $(seq 100); do grep -q '"listening"' "$work/mock.log" && break; sleep 0.05; done
}

start_service() { # $@: extra environment
  svc_port=$(free_port)
  env PDS_TRACE_LISTEN=127.0.0.1:$svc_port PDS_TRACE_REDIS_URL=redis://127.0.0.1:$redis_port/0 \
    PDS_TRACE_API_KEYS_FILE=$work/keys.json PDS_TRACE_SECRET_FILE=$work/secret \
    PDS_TRACE_PDS_BASE_URL=http://127.0.0.1:$mock_port/personal-demographics/FHIR/R4 \
    PDS_TRACE_PDS_AUTH=none PDS_TRACE_LOG_LEVEL=${BENCH_LOG_LEVEL:-info} "$@" \
    "$root/build-bench/pds-trace" serve 2>"$work/svc.log" &
  pids+=($!); svc_pid=$!
  wait_port "$svc_port"
}

stop_pid() { kill "$1" 2>/dev/null; wait "$1" 2>/dev/null || true; }

echo "== (a) cached trace vs nginx"
start_mock ""
start_service
curl -s -o /dev/null -H 'Authorization: Bearer bench-key' -H 'Content-Type: application/json' \
  -d "$(sed -n "s/^wrk.body = '\(.*\)'$/\1/p" "$root/bench/trace.lua")" "http://127.0.0.1:$svc_port/v1/trace"
body=$(curl -s -H 'Authorization: Bearer bench-key' -H 'Content-Type: application/json' \
  -d "$(sed -n "s/^wrk.body = '\(.*\)'$/\1/p" "$root/bench/trace.lua")" "http://127.0.0.1:$svc_port/v1/trace")
echo "answer: $body"
bench_nginx "$body"
bench_wrk "http://127.0.0.1:$svc_port/v1/trace" -s "$root/bench/trace.lua" >/dev/null
nginx_rps=$(bench_wrk "http://127.0.0.1:$nginx_port/")
svc_out=$(wrk -t2 -c64 -d"${BENCH_SECONDS:-10}"s -s "$root/bench/trace.lua" "http://127.0.0.1:$svc_port/v1/trace")
svc_rps=$(awk '/Requests\/sec/ {print $2}' <<<"$svc_out")
printf 'nginx fixed JSON: %s req/s\ncached trace:     %s req/s (%s)\nratio (a): %s (target >= 0.5)\n' \
  "$nginx_rps" "$svc_rps" "$(grep non200 <<<"$svc_out")" \
  "$(awk -v a="$svc_rps" -v b="$nginx_rps" 'BEGIN {printf "%.2f", a / b}')"
stop_pid "$svc_pid"; stop_pid "$mock_pid"

echo "== (b) uncached trace, mock PDS with 50 ms latency"
start_mock "--latency-ms 50"
# A key prefix of its own: what (a) cached must not answer (b).
start_service PDS_TRACE_CACHE_TTL_S=0 PDS_TRACE_CACHE_NEGATIVE_TTL_S=0 PDS_TRACE_PDS_RATE=1000 \
  PDS_TRACE_PDS_CONCURRENCY=1000 PDS_TRACE_REDIS_KEY_PREFIX=b:
direct=$(wrk -t1 -c8 -d"${BENCH_SECONDS:-10}"s -s "$root/bench/pds_direct.lua" "http://127.0.0.1:$mock_port" | grep p50_us)
traced=$(wrk -t1 -c8 -d"${BENCH_SECONDS:-10}"s -s "$root/bench/trace.lua" "http://127.0.0.1:$svc_port/v1/trace" | grep p50_us)
d50=$(sed 's/.*p50_us=\([0-9]*\).*/\1/' <<<"$direct"); t50=$(sed 's/.*p50_us=\([0-9]*\).*/\1/' <<<"$traced")
printf 'mock directly:   %s\nthrough service: %s\nadded p50 (b): %s us (target < 1000 us)\n' \
  "$direct" "$traced" "$((t50 - d50))"
stop_pid "$svc_pid"
start_service PDS_TRACE_CACHE_TTL_S=0 PDS_TRACE_CACHE_NEGATIVE_TTL_S=0 PDS_TRACE_PDS_RATE=1000 \
  PDS_TRACE_PDS_CONCURRENCY=1000 PDS_TRACE_SERVER_MAX_CONNECTIONS=5000 \
  PDS_TRACE_SERVER_MAX_CONNECTIONS_PER_CLIENT=5000 PDS_TRACE_REDIS_KEY_PREFIX=c:
set +e
out=$(wrk -t2 -c1000 -d"${BENCH_SECONDS:-10}"s --timeout 30s -s "$root/bench/trace.lua" "http://127.0.0.1:$svc_port/v1/trace")
echo "1000 in flight: $(awk '/Requests\/sec/ {print $2}' <<<"$out") traces/s, $(grep non200 <<<"$out") (target: non200=0 errors=0)"
