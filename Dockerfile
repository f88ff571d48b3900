# pds-trace: build on Debian bookworm, run on bookworm-slim as a non-root user.
#   docker build -t pds-trace .
#   docker run -p 8080:8080 -e PDS_TRACE_REDIS_URL=redis://redis:6379/0 \
#     -v /path/to/secrets:/run/secrets:ro pds-trace
FROM debian:bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config libuv1-dev libcurl4-openssl-dev libjansson-dev \
      libssl-dev libhiredis-dev libhttp-parser-dev libcsv-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPDS_BUILD_TESTS=OFF \
    && cmake --build /build -j"$(nproc)" \
    && cmake --install /build --prefix /opt/pds-trace --strip

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends \
      libuv1 libcurl4 libjansson4 libssl3 libhiredis0.14 libhttp-parser2.9 libcsv3 \
      ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin pdstrace
COPY --from=build /opt/pds-trace/bin/pds-trace /usr/local/bin/pds-trace
COPY config/pds-trace.example.json /etc/pds-trace/pds-trace.example.json
USER 10001
# Settings: an optional JSON file given with --config (mount one at
# /etc/pds-trace/pds-trace.json and add "--config", "/etc/pds-trace/pds-trace.json" to the
# command) and PDS_TRACE_* environment variables, which win. Secrets (API keys file,
# secret file, PDS private key, case system token) are files: mount them read-only,
# e.g. under /run/secrets, and point PDS_TRACE_*_FILE at them.
ENV PDS_TRACE_LISTEN=0.0.0.0:8080
EXPOSE 8080
# Kubernetes uses /healthz (liveness) and /readyz (readiness): see deploy/kubernetes.yaml.
HEALTHCHECK --interval=10s --timeout=2s CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
# SIGTERM drains in-flight requests for up to server.drain_ms (10 s) and exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/pds-trace"]
CMD ["serve"]
