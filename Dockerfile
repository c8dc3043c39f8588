# Container image for plausible-webhooks.
#
#   docker build -t plausible-webhooks .
#   docker run --rm -p 9464:9464 \
#     -v /path/to/config.toml:/etc/plausible-webhooks/config.toml:ro \
#     -e PLAUSIBLE_WEBHOOKS_POSTGRES__URL=postgres://... \
#     -e PLAUSIBLE_WEBHOOKS_CLICKHOUSE__PASSWORD=... \
#     plausible-webhooks run --config /etc/plausible-webhooks/config.toml
#
# Apply database migrations once (and after each upgrade) with the same image:
#   docker run --rm ... plausible-webhooks migrate --config /etc/plausible-webhooks/config.toml

# ---------------------------------------------------------------------------
# Build stage
# ---------------------------------------------------------------------------
FROM rust:1-bookworm AS build
WORKDIR /app

# 1. Build only the dependencies against placeholder sources, so this layer
#    stays cached until Cargo.toml / Cargo.lock change.
#    NOTE: this relies on the default target layout (src/lib.rs + src/main.rs).
#    If Cargo.toml gains explicit [[bin]]/[[test]]/[[bench]] paths or a
#    build.rs, mirror them with placeholders here.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
 && echo '' > src/lib.rs \
 && echo 'fn main() {}' > src/main.rs \
 && cargo build --release --locked --bin plausible-webhooks \
 && rm -rf src

# 2. Build the real binary. migrations/ is needed at compile time because the
#    SQL migrations are embedded into the binary; config/ likewise for any
#    files the code includes at compile time.
COPY src/ src/
COPY migrations/ migrations/
COPY config/ config/
# The placeholder build left artifacts whose timestamps may be newer than the
# copied sources (COPY keeps the build context's mtimes); touch the sources so
# cargo always rebuilds this crate instead of shipping the placeholder binary.
RUN find src -name '*.rs' -exec touch {} + \
 && cargo build --release --locked --bin plausible-webhooks \
 && install -D -m 0755 target/release/plausible-webhooks /out/plausible-webhooks

# ---------------------------------------------------------------------------
# Runtime stage
# ---------------------------------------------------------------------------
FROM debian:bookworm-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 plausible-webhooks \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin plausible-webhooks \
 && install -d -m 0755 /etc/plausible-webhooks

# The SQL migrations are compiled into the binary, so the runtime image needs
# neither the migrations/ directory nor any toolchain.
COPY --from=build /out/plausible-webhooks /usr/local/bin/plausible-webhooks

# The admin/metrics server defaults to 127.0.0.1:9464, which is unreachable
# from outside the container; listen on all interfaces instead. Beside
# /metrics and the health endpoints it serves the status page and admin API,
# which then need PLAUSIBLE_WEBHOOKS_HTTP__ADMIN_TOKEN: without it the daemon
# refuses to start. Do not publish the port to the internet.
ENV PLAUSIBLE_WEBHOOKS_HTTP__LISTEN=0.0.0.0:9464
EXPOSE 9464

# No HEALTHCHECK: the image deliberately contains no curl/wget. Orchestrators
# should probe the admin port directly instead:
#   liveness:  GET http://<container>:9464/health/live
#   readiness: GET http://<container>:9464/health/ready

USER 10001:10001

# The daemon shuts down cleanly on SIGTERM (the default stop signal) and runs
# fine as PID 1: it handles the signal itself and spawns no child processes.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/plausible-webhooks"]
CMD ["run"]
