#!/usr/bin/env bash
# GET /healthz requests per second with wrk at 64 connections, against nginx returning a
# fixed JSON body on loopback in the same run. Target: ratio >= 0.7.
source "$(dirname "$0")/lib.sh"
trap bench_cleanup EXIT
bench_build
bench_redis
bench_nginx '{"status":"ok"}'
svc_port=$(free_port)
(umask 077 && openssl rand -hex 32 > "$work/secret")
PDS_TRACE_SECRET_FILE=$work/secret PDS_TRACE_LISTEN=127.0.0.1:$svc_port PDS_TRACE_REDIS_URL=redis://127.0.0.1:$redis_port/0 \
  PDS_TRACE_LOG_LEVEL=warn "$root/build-bench/pds-trace" serve &
pids+=($!)
wait_port "$svc_port"
bench_wrk "http://127.0.0.1:$svc_port/healthz" >/dev/null   # warm-up
nginx_rps=$(bench_wrk "http://127.0.0.1:$nginx_port/")
svc_rps=$(bench_wrk "http://127.0.0.1:$svc_port/healthz")
ratio=$(awk -v a="$svc_rps" -v b="$nginx_rps" 'BEGIN {printf "%.2f", a / b}')
printf 'nginx (1 worker, fixed JSON): %s req/s\npds-trace /healthz:           %s req/s\nratio: %s (target >= 0.7)\n' \
  "$nginx_rps" "$svc_rps" "$ratio"
