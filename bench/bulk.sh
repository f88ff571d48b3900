#!/usr/bin/env bash
# Bulk benchmarks (issue 9, point 8): `pds-trace bulk` on sample files that mock-pds writes
# from its population (mocks/pds/README.md, "Sample bulk files").
#  (a) a 100,000-row and a 1,000,000-row simple file from 20,000 people (so people repeat,
#      as in a council's file), rate limit raised (--rate 1000, mock-pds without one), each
#      run with a cold cache: rows/s, peak RSS of the bulk process (VmHWM, polled), PDS
#      calls per row (the run's bulk_summary line). Target: RSS flat and under 64 MB.
#  (b) the 100,000-row file again, every row answered by the Redis cache: rows/s, against
#      redis-benchmark GET (-c 16 -P 1) on the same Redis in the same run, and the ratio.
#  (c) a soak at 5 requests/s (--rate 5) against mock-pds with --rate-limit 300 (429 above
#      300 requests in any 60 s) for about BULK_SOAK_SECONDS (600), on a file of mostly
#      distinct people sized to end near the window (about 1.05 PDS calls a row; SIGINT at
#      the end of the window if it has not ended): utilisation = PDS requests at the mock /
#      (5 x elapsed s), the 429s the mock gave, calls per row.
# Run by hand (not by CI): bench/bulk.sh. BULK_CONCURRENCY (64) is --concurrency and
# pds.concurrency for (a) and (b); BULK_ROWS (100000) and BULK_ROWS_BIG (1000000) size
# the two files (smaller for a quick look).
source "$(dirname "$0")/lib.sh"
trap bench_cleanup EXIT
soak=${BULK_SOAK_SECONDS:-600}
conc=${BULK_CONCURRENCY:-64}
small=${BULK_ROWS:-100000}
big=${BULK_ROWS_BIG:-1000000}
bin=$root/build-bench
echo "load before: $(uptime)"
bench_build
"$bin/pds-trace" bulk --help >/dev/null || { echo "pds-trace bulk is not there yet" >&2; exit 1; }
bench_redis
until redis-cli -p "$redis_port" ping >/dev/null 2>&1; do sleep 0.05; done
(umask 077 && openssl rand -hex 32 > "$work/secret")

wait_log() { for _ in $(seq 600); do grep -qs '"listening"' "$1" && return 0; sleep 0.05; done; return 1; }
stop_pid() { kill "$1" 2>/dev/null; wait "$1" 2>/dev/null || true; }
start_mock() { # $@: extra arguments. Sets mock_port, mock_pid.
  mock_port=$(free_port)
  "$bin/mock-pds" --port "$mock_port" --generate 20000 --seed 7 "$@" 2>"$work/mock.log" &
  pids+=($!); mock_pid=$!
  wait_log "$work/mock.log"
}
sample() { # $1: rows, $2: sample seed, $3: file
  "$bin/mock-pds" --generate 20000 --seed 7 --sample simple --rows "$1" --sample-seed "$2" \
    --out "$3"
}

# One bulk run: $1 name, $2 input, $3 Redis key prefix, then bulk options; the array
# bulk_env adds settings. Polls the peak RSS while it runs; stderr keeps the log lines but
# the per-row audit lines. With BULK_STOP_AFTER=S it is stopped by SIGINT after S s (it
# then writes what is done and exits 1). Sets secs, rss_kb, summary.
bulk_env=()
run_bulk() {
  local name=$1 input=$2 prefix=$3; shift 3
  local t0 t1 pid hwm rc=0 stopped=""
  t0=$(date +%s%N)
  env PDS_TRACE_REDIS_URL="redis://127.0.0.1:$redis_port/0" PDS_TRACE_REDIS_KEY_PREFIX="$prefix" \
    PDS_TRACE_SECRET_FILE="$work/secret" PDS_TRACE_PDS_AUTH=none PDS_TRACE_LOG_LEVEL=info \
    PDS_TRACE_PDS_BASE_URL="http://127.0.0.1:$mock_port/personal-demographics/FHIR/R4" \
    "${bulk_env[@]}" "$bin/pds-trace" bulk "$input" -o "$work/$name.out.csv" "$@" \
    2> >(grep -v '"msg":"audit"' > "$work/$name.err") &
  pid=$!; pids+=($pid)
  rss_kb=0
  while kill -0 "$pid" 2>/dev/null; do
    hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    [ -n "$hwm" ] && [ "$hwm" -gt "$rss_kb" ] && rss_kb=$hwm
    if [ -n "${BULK_STOP_AFTER:-}" ] && [ -z "$stopped" ] &&
       [ $(($(date +%s%N) - t0)) -ge $((BULK_STOP_AFTER * 1000000000)) ]; then
      kill -INT "$pid"; stopped=1
    fi
    sleep 0.1
  done
  wait "$pid" || rc=$?
  t1=$(date +%s%N)
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", (b - a) / 1e9}')
  sleep 0.2 # the grep behind stderr writes its last lines
  summary=$(grep '"msg":"bulk_summary"' "$work/$name.err" | tail -n 1)
  if [ "$rc" -ne 0 ] && [ -z "$stopped" ]; then
    echo "$name: pds-trace bulk exited $rc before the end of its file:"
    grep -v '"msg":"bulk_' "$work/$name.err" | tail -n 3
  fi
  [ -n "$summary" ] || summary='{}'
}
num() { sed -n "s/.*\"$1\":\"\{0,1\}\([0-9.]*\).*/\1/p" <<<"$summary"; }
table=()
add_row() { # $1: name; after run_bulk
  local rows calls
  rows=$(num rows_done); calls=$(num pds_calls)
  table+=("$(awk -v n="$1" -v r="${rows:-0}" -v s="$secs" -v m="$rss_kb" -v c="${calls:-0}" 'BEGIN {
    printf "%-26s %9d %8.1f %9.0f %11.1f %10d %9.2f", n, r, s, r / s, m / 1024, c, r ? c / r : 0 }')")
  echo "${table[-1]}"
}

echo "== sample files (mock-pds --generate 20000 --seed 7 --sample simple)"
sample "$small" 0 "$work/small.csv"
sample "$big" 0 "$work/big.csv"
ls -l "$work/small.csv" "$work/big.csv" | awk '{print $5, $9}'

echo "== (a) cold cache, --rate 1000, mock-pds without a rate limit"
start_mock
bulk_env=(PDS_TRACE_PDS_CONCURRENCY="$conc")
run_bulk a_small "$work/small.csv" small: --rate 1000 --concurrency "$conc"
add_row "(a) $((small / 1000))k, cold cache"
echo "== (b) the same $((small / 1000))k file, every row from the Redis cache"
run_bulk b_small "$work/small.csv" small: --rate 1000 --concurrency "$conc"
add_row "(b) $((small / 1000))k, cached"
cached_rps=$(awk -v r="$(num rows_done)" -v s="$secs" 'BEGIN {printf "%.0f", r / s}')
cached_calls=$(num pds_calls)
rb=$(redis-benchmark -p "$redis_port" -t get -n 200000 -c 16 -P 1 -q | tr '\r' '\n' | grep 'GET:' | tail -n 1)
get_rps=$(sed -n 's/^GET: \([0-9.]*\) requests per second.*/\1/p' <<<"$rb")
echo "redis-benchmark -t get -n 200000 -c 16 -P 1: $rb"
run_bulk a_big "$work/big.csv" big: --rate 1000 --concurrency "$conc"
add_row "(a) $((big / 1000))k, cold cache"
stop_pid "$mock_pid"
bulk_env=()

echo "== (c) ${soak} s at --rate 5, mock-pds --rate-limit 300"
# Another sample, so most rows are people not seen before and the cache answers few; at
# about 1.05 calls a row, 4.5 rows a second of the window take about 95 % of it. (Rows
# still in flight at a SIGINT have made calls that bulk_summary does not count.)
sample $((soak * 9 / 2)) 1 "$work/soak.csv"
start_mock --rate-limit 300
curl -s -X DELETE "http://127.0.0.1:$mock_port/_admin/requests" >/dev/null
BULK_STOP_AFTER=$soak run_bulk soak "$work/soak.csv" soak: --rate 5
add_row "(c) soak ${soak} s, --rate 5"
soak_calls=$(num pds_calls) soak_rows=$(num rows_done)
curl -s "http://127.0.0.1:$mock_port/_admin/requests" > "$work/requests.json"
read -r made limited span < <(python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
r = [e for e in d["requests"] if "/Patient" in e["path"]]
span = (r[-1]["time_ms"] - r[0]["time_ms"]) / 1000 if len(r) > 1 else 0
print(len(r), sum(1 for e in r if e["status"] == 429), span)' "$work/requests.json")
stop_pid "$mock_pid"

echo
echo "== results"
printf '%-26s %9s %8s %9s %11s %10s %9s\n' run rows s rows/s "peak RSS MB" "PDS calls" calls/row
printf '%s\n' "${table[@]}"
echo
printf '(a) peak RSS: flat from %sk to %sk rows and under 64 MB is the target\n' $((small / 1000)) $((big / 1000))
printf '(b) cached: %s rows/s (%s PDS calls) vs redis-benchmark GET %s req/s: ratio %s\n' \
  "$cached_rps" "${cached_calls:-?}" "${get_rps:-?}" \
  "$(awk -v a="$cached_rps" -v b="${get_rps:-0}" 'BEGIN {printf "%.3f", b ? a / b : 0}')"
awk -v m="$made" -v l="$limited" -v s="$secs" -v w="$span" -v c="${soak_calls:-0}" 'BEGIN {
  printf "(c) mock saw %d PDS requests in %.0f s (first to last; the bulk counted %d), %d answered 429;\n", m, w, c, l
  printf "    utilisation %.3f of 5/s over the bulk run (%.1f s), %.3f over the mock'"'"'s span\n",
    m / (5 * s), s, w ? m / (5 * w) : 0 }'
if [ "${soak_rows:-0}" -lt $((soak * 9 / 2)) ]; then
  echo "    (stopped by SIGINT at the end of the window: ${soak_rows:-0} of $((soak * 9 / 2)) rows written)"
fi
echo "load after: $(uptime)"
