# Shared by the benchmarks: a release build, a private Redis, nginx serving a fixed JSON
# body (the reference), and wrk. Source it; call bench_cleanup on exit.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d /tmp/pdsbench.XXXXXX)
pids=()
bench_cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }

bench_build() {
  "$root/scripts/deps" --dev
  cmake -S "$root" -B "$root/build-bench" -DCMAKE_BUILD_TYPE=Release -DPDS_BUILD_TESTS=OFF >/dev/null
  cmake --build "$root/build-bench" -j"$(nproc)" >/dev/null
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_port() { for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0; sleep 0.05; done; return 1; }

bench_redis() {
  redis_port=$(free_port)
  redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no --dir "$work" \
    --logfile "$work/redis.log" &
  pids+=($!)
}

# nginx with one worker, as pds-trace runs one loop on one core: body $1 on port $nginx_port.
bench_nginx() {
  nginx_port=$(free_port)
  mkdir -p "$work/nginx"
  cat > "$work/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx;
  proxy_temp_path $work/nginx;
  fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx;
  scgi_temp_path $work/nginx;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$nginx_port;
    location / { default_type application/json; return 200 '$1'; }
  }
}
CONF
  nginx -c "$work/nginx/nginx.conf" &
  pids+=($!)
  wait_port "$nginx_port"
}

# wrk at 64 connections; prints requests/s. Extra arguments go to wrk (a -s script...).
bench_wrk() {
  local url=$1; shift
  wrk -t2 -c64 -d"${BENCH_SECONDS:-10}"s "$@" "$url" | awk '/Requests\/sec/ {print $2}'
}
