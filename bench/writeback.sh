#!/usr/bin/env bash
# Objection and write-back benchmarks (issue 8, point 9), each against a reference measured
# in the same run. Redis runs with AOF (appendfsync everysec), as write-backs require.
#  (a) cached POST /v1/trace with a case_id and write_back false (objection checks by case
#      and by number, nothing queued) with 10,000 objections on record: requests/s, wrk at
#      64 connections, against nginx returning the same body (target: ratio >= 0.5), and
#      against "today": a second instance (own key prefix) with no objection on record,
#      traced without a case_id (target: ratio about 1, the check is in memory). Three
#      rounds, alternating, so that a load change hits all three; the best of each counts.
#  (b) write-back throughput: 10,000 write-backs queued, then the time from starting a
#      service until the mock case system has received all 10,000 -> deliveries/s, at
#      case.concurrency 4 (the default) and 32. No target.
#  (c) p50 a cached trace gains by queueing its write-back (one EVAL before the answer; the
#      worker delivering meanwhile, on the same loop and cores): p50 with write_back true
#      and a new case_id each time minus p50 with write_back false, wrk at 1 and at 8
#      connections. No target; at 1, about one Redis round trip is expected.
source "$(dirname "$0")/lib.sh"
trap bench_cleanup EXIT
ulimit -n 65536 2>/dev/null || true
secs=${BENCH_SECONDS:-10}
n=10000
echo "load before: $(uptime)"
bench_build
bench_redis
until redis-cli -p "$redis_port" ping >/dev/null 2>&1; do sleep 0.05; done
rcli() { redis-cli -p "$redis_port" "$@"; }
rcli config set appendonly yes >/dev/null
digest=$(printf '%s' bench-key | sha256sum | cut -d' ' -f1)
printf '[{"name":"bench","key_sha256":"%s","roles":["trace","objections"]}]' "$digest" > "$work/keys.json"
(umask 077 && openssl rand -hex 32 > "$work/secret" && openssl rand -hex 32 > "$work/case-token")

wait_log() { for _ in $(seq 100); do grep -q '"listening"' "$1" && return 0; sleep 0.05; done; return 1; }
mock_port=$(free_port)
"$root/build-bench/mock-pds" --port "$mock_port" --generate 2000 --seed 7 2>"$work/mock.log" &
pids+=($!); wait_log "$work/mock.log"
# A case system that accepts connections and never answers: a worker pointed at it holds
# case.concurrency entries and takes no more, so write-backs can be queued undisturbed.
# (Refusing connections would not do: every entry would be tried and put off with backoff.)
hole_port=$(free_port)
python3 -c 'import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(64); time.sleep(3600)' \
  "$hole_port" &
pids+=($!)

start_case() { # a fresh mock case system on $case_port
  case_port=$(free_port)
  "$root/build-bench/mock-case-system" --port "$case_port" --token-file "$work/case-token" \
    2>"$work/case.log" &
  pids+=($!); case_pid=$!
  wait_log "$work/case.log"
}

start_service() { # $1: case system port; then extra environment. Sets svc_port, svc_pid.
  local case=$1; shift
  svc_port=$(free_port)
  env PDS_TRACE_LISTEN=127.0.0.1:$svc_port PDS_TRACE_REDIS_URL=redis://127.0.0.1:$redis_port/0 \
    PDS_TRACE_API_KEYS_FILE=$work/keys.json PDS_TRACE_SECRET_FILE=$work/secret \
    PDS_TRACE_PDS_BASE_URL=http://127.0.0.1:$mock_port/personal-demographics/FHIR/R4 \
    PDS_TRACE_CASE_BASE_URL=http://127.0.0.1:$case PDS_TRACE_CASE_TOKEN_FILE=$work/case-token \
    PDS_TRACE_LOG_LEVEL=${BENCH_LOG_LEVEL:-info} "$@" \
    "$root/build-bench/pds-trace" serve 2>>"$work/svc.log" &
  pids+=($!); svc_pid=$!
  # Ready: until the objections are loaded, traces with a number fail closed (503).
  for _ in $(seq 200); do
    curl -sf -o /dev/null "http://127.0.0.1:$svc_port/readyz" && return 0; sleep 0.05
  done
  return 1
}
# For queueing write-backs undisturbed: its worker holds one entry, stuck on the hole.
start_queuer() { start_service "$hole_port" PDS_TRACE_CASE_CONCURRENCY=1 PDS_TRACE_CASE_TIMEOUT_MS=600000 "$@"; }

stop_pid() { kill "$1" 2>/dev/null; wait "$1" 2>/dev/null || true; }
person='"family":"Smith","given":["Jane"],"birth_date":"2010-10-22","gender":"female","postcode":"LS1 6AE"'
trace() { # $1: port, $2: fields before the person's
  curl -s -H 'Authorization: Bearer bench-key' -H 'Content-Type: application/json' \
    -d "{$2$person}" "http://127.0.0.1:$1/v1/trace"
}
wb_wrk() { # $1: WB_MODE of writeback.lua, $2: port; then wrk arguments
  local mode=$1 port=$2; shift 2
  WB_MODE=$mode wrk "$@" -s "$root/bench/writeback.lua" "http://127.0.0.1:$port/v1/trace"
}
rps() { awk '/Requests\/sec/ {print $2}' <<<"$1"; }
field() { sed -n "s/.*$1=\([0-9]*\).*/\1/p" <<<"$2"; }
best() { tr ' ' '\n' | sort -g | tail -n 1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }

echo "== (a) cached trace with a case_id and 10,000 objections on record"
start_queuer PDS_TRACE_REDIS_KEY_PREFIX=today:
today_port=$svc_port today_pid=$svc_pid
start_queuer # asks for no write-back in (a)
trace "$today_port" "" >/dev/null; trace "$svc_port" "" >/dev/null # PDS once; cached from then on
answer=$(trace "$svc_port" '"case_id":"BENCH-CASE","write_back":false,')
echo "answer: $answer"
bench_nginx "$answer"
OBJECTIONS=$n SKIP_NHS=$(sed -n 's/.*"nhs_number":"\([0-9]*\)".*/\1/p' <<<"$answer") \
  wrk -t1 -c16 -d60s -s "$root/bench/objections.lua" "http://127.0.0.1:$svc_port/" | grep created=
echo "objections on record: $(rcli hlen pdstrace:objections)"
wb_wrk plain "$today_port" -t2 -c64 -d3s >/dev/null; wb_wrk check "$svc_port" -t2 -c64 -d3s >/dev/null
nginx_all="" today_all="" checked_all=""
for round in 1 2 3; do
  nginx_rps=$(bench_wrk "http://127.0.0.1:$nginx_port/")
  today=$(wb_wrk plain "$today_port" -t2 -c64 -d"${secs}"s)
  checked=$(wb_wrk check "$svc_port" -t2 -c64 -d"${secs}"s)
  echo "round $round: nginx $nginx_rps, today $(rps "$today") ($(grep p50 <<<"$today"))," \
    "case_id + objections $(rps "$checked") ($(grep p50 <<<"$checked"))"
  nginx_all+=" $nginx_rps" today_all+=" $(rps "$today")" checked_all+=" $(rps "$checked")"
done
nginx_rps=$(best <<<"$nginx_all") today=$(best <<<"$today_all") checked=$(best <<<"$checked_all")
printf 'best: nginx %s, today %s, case_id + 10,000 objections %s req/s\n' "$nginx_rps" "$today" "$checked"
printf 'ratio (a) vs nginx: %s (target >= 0.5); vs today: %s (target: about 1)\n' \
  "$(ratio "$checked" "$nginx_rps")" "$(ratio "$checked" "$today")"
stop_pid "$svc_pid"; stop_pid "$today_pid"

echo "== (b) delivering 10,000 queued write-backs"
for conc in 4 32; do
  start_queuer
  out=$(WB_LIMIT=$n WB_TAG=b$conc wb_wrk queue "$svc_port" -t1 -c16 -d60s)
  stop_pid "$svc_pid"
  # A new consumer group from id 0 hands every entry, the stuck one too, to the next worker.
  rcli xgroup destroy pdstrace:writeback workers >/dev/null
  echo "queued: $(field queued "$out") (bad=$(field bad "$out")); in the stream: $(rcli xlen pdstrace:writeback)"
  start_case
  t0=$(date +%s%N)
  start_service "$case_port" PDS_TRACE_CASE_CONCURRENCY=$conc
  delivered=0
  while [ "$delivered" -lt "$n" ] && [ $(($(date +%s%N) - t0)) -lt 120000000000 ]; do
    sleep 0.02
    stats=$(curl -s "http://127.0.0.1:$case_port/_admin/stats")
    delivered=$(sed -n 's/.*"deliveries":\([0-9]*\).*/\1/p' <<<"$stats")
  done
  awk -v c="$conc" -v n="$delivered" -v t=$(($(date +%s%N) - t0)) -v s="$stats" 'BEGIN {
    printf "case.concurrency %2d: %.0f deliveries/s (%d in %.2f s; mock: %s)\n", c, n / (t / 1e9), n, t / 1e9, s }'
  stop_pid "$svc_pid"; stop_pid "$case_pid"
done

echo "== (c) p50 added by queueing a write-back"
start_case
start_service "$case_port"
wb_wrk check "$svc_port" -t1 -c8 -d3s >/dev/null # warm-up
for c in 1 8; do
  off=$(wb_wrk check "$svc_port" -t1 -c"$c" -d"${secs}"s | grep p50)
  on=$(WB_TAG=c$c wb_wrk queue "$svc_port" -t1 -c"$c" -d"${secs}"s | grep p50)
  printf -- '-c%s write_back false: %s\n-c%s write_back true:  %s\nadded p50 (c) at -c%s: %s us\n' \
    "$c" "$off" "$c" "$on" "$c" $(( $(field p50_us "$on") - $(field p50_us "$off") ))
  # Let the worker catch up, so that the next run starts without a backlog.
  for _ in $(seq 600); do [ "$(rcli zcard pdstrace:writeback:pending)" -eq 0 ] && break; sleep 0.1; done
done
echo "mock case system after (c): $(curl -s "http://127.0.0.1:$case_port/_admin/stats")"
echo "load after: $(uptime)"
