#!/usr/bin/env bash
# The mock PDS on a large population: (a) the time from starting mock-pds on a population
# file to its "listening" line, which is mostly loading and indexing the file (target:
# < 1 s; the README says about 0.3 s for 20,000 people); (b) its search, which scans every
# person (mocks/pds/search.c), against a retrieve on the same server in the same run (a
# bsearch, so the cost of HTTP alone): p50 latency of each on one connection, and their
# difference, the cost of the scan (target: < 1 ms; the README says about 0.6 ms in a
# Debug build). Timed here rather than in tests/unit/test_mock_pds.c, where a loaded
# machine made the same figures fail.
#   bench/mock_search.sh [BUILD_DIR]    (default: a release build in build-bench/)
#   MOCK_PEOPLE=20000, BENCH_SECONDS=10 by default.
source "$(dirname "$0")/lib.sh"
trap bench_cleanup EXIT
bin=${1:-}
if [ -z "$bin" ]; then bench_build; bin=$root/build-bench; fi
people=${MOCK_PEOPLE:-20000}
base=/personal-demographics/FHIR/R4/Patient
search="$base?family=Smi*&given=Jane&birthdate=eq2010-10-22&_history=true"

"$bin/mock-pds" --generate "$people" --seed 3 --out "$work/people.json" >"$work/gen.log" 2>&1
port=$(free_port)
t0=$(date +%s%N)
"$bin/mock-pds" --port "$port" --population "$work/people.json" >"$work/mock.log" 2>&1 &
pids+=($!)
for _ in $(seq 3000); do grep -qs '"listening"' "$work/mock.log" && break; sleep 0.01; done
load_ms=$((($(date +%s%N) - t0) / 1000000))
echo "(a) start on a file of $people people ($(du -m "$work/people.json" | cut -f1) MB): $load_ms ms (target < 1000 ms)"
url=http://127.0.0.1:$port
# The search must find the one person, or the figure times something else.
curl -s -H 'X-Request-ID: 8c2b7a4e-2f0d-4f6e-9d1a-3b5c7e9f1a2b' "$url$search" | grep -q '"9000000009"' ||
  { echo "the search did not find 9000000009; see $work/mock.log" >&2; exit 1; }

measure() { # $1: path; prints the line of mock_search.lua
  wrk -t1 -c1 -d"${BENCH_SECONDS:-10}"s -s "$root/bench/mock_search.lua" "$url$1" | grep p50_us
}
measure "$search" >/dev/null # warm-up
s=$(measure "$search")
r=$(measure "$base/9000000009")
s50=$(sed 's/.*p50_us=\([0-9]*\).*/\1/' <<<"$s"); r50=$(sed 's/.*p50_us=\([0-9]*\).*/\1/' <<<"$r")
printf '(b) search, %s people: %s\n    retrieve:           %s\n    scan (search p50 - retrieve p50): %s us (target < 1000 us)\n' \
  "$people" "$s" "$r" "$((s50 - r50))"
