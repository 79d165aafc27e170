# syntax=docker/dockerfile:1
#
# One multi-stage build for the whole fleet. Build one image per component with --target:
#
#   docker build --target api-gateway      -t fleet/api-gateway:0.1.0 .
#   docker build --target order-api        -t fleet/order-api:0.1.0 .
#   docker build --target payment-api      -t fleet/payment-api:0.1.0 .
#   docker build --target notification     -t fleet/notification:0.1.0 .
#   docker build --target payment-provider -t fleet/payment-provider:0.1.0 .
#   docker build --target trace-desk       -t fleet/trace-desk:0.1.0 .
#   docker build --target fleet            -t fleet/fleet:0.1.0 .       (the CLI: `fleet load`)
#
# `make images` builds them all. The workspace is compiled ONCE (stage `builder`); every runtime
# stage only copies its binary. Dependencies are cached by cargo-chef: the `cook` layer is rebuilt
# only when Cargo.toml/Cargo.lock change, not when our sources do.
#
# Runtime: distroless cc (glibc, no shell, uid 65532). For health checks without a shell each
# runtime image carries ONE extra file: a statically linked busybox installed under the name
# `wget`, so it only ever runs its wget applet (see docs/deploy.md, "Health checks").

ARG RUST_VERSION=1.95
ARG CARGO_CHEF_VERSION=0.1.78

# ---- toolchain + cargo-chef -------------------------------------------------------------------
FROM rust:${RUST_VERSION}-slim-trixie AS chef
ARG CARGO_CHEF_VERSION
RUN cargo install cargo-chef --version "${CARGO_CHEF_VERSION}" --locked
WORKDIR /src

# ---- the dependency recipe (depends only on manifests and the lock file) ----------------------
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# ---- compile: dependencies first (cached), then the workspace, once ---------------------------
FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --workspace --exclude fleet-bench --bins \
 && mkdir -p /out \
 && for bin in api-gateway order-api payment-api notification payment-provider trace-desk fleet; do \
      cp "target/release/${bin}" /out/ ; \
    done

# ---- the health-check probe: a static busybox, used only as `wget` ----------------------------
FROM busybox:1.37.0-musl AS healthprobe

# ---- common runtime base ----------------------------------------------------------------------
FROM gcr.io/distroless/cc-debian13:nonroot AS runtime
COPY --from=healthprobe /bin/busybox /usr/local/bin/wget
ENV LOG_FORMAT=json
USER 65532:65532

# ---- one small image per component ------------------------------------------------------------
FROM runtime AS api-gateway
COPY --from=builder /out/api-gateway /usr/local/bin/api-gateway
ENV LISTEN_ADDR=0.0.0.0:8080 OTEL_SERVICE_NAME=api-gateway
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=12 \
  CMD ["/usr/local/bin/wget", "-q", "-T", "2", "-O", "/dev/null", "http://127.0.0.1:8080/readyz"]
ENTRYPOINT ["/usr/local/bin/api-gateway"]

FROM runtime AS order-api
COPY --from=builder /out/order-api /usr/local/bin/order-api
ENV LISTEN_ADDR=0.0.0.0:8081 OTEL_SERVICE_NAME=order-api
EXPOSE 8081
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=12 \
  CMD ["/usr/local/bin/wget", "-q", "-T", "2", "-O", "/dev/null", "http://127.0.0.1:8081/readyz"]
ENTRYPOINT ["/usr/local/bin/order-api"]

FROM runtime AS payment-api
COPY --from=builder /out/payment-api /usr/local/bin/payment-api
ENV LISTEN_ADDR=0.0.0.0:50051 OTEL_SERVICE_NAME=payment-api
EXPOSE 50051
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=12 \
  CMD ["/usr/local/bin/wget", "-q", "-T", "2", "-O", "/dev/null", "http://127.0.0.1:50051/readyz"]
ENTRYPOINT ["/usr/local/bin/payment-api"]

FROM runtime AS notification
COPY --from=builder /out/notification /usr/local/bin/notification
ENV LISTEN_ADDR=0.0.0.0:50052 OTEL_SERVICE_NAME=notification
EXPOSE 50052
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=12 \
  CMD ["/usr/local/bin/wget", "-q", "-T", "2", "-O", "/dev/null", "http://127.0.0.1:50052/readyz"]
ENTRYPOINT ["/usr/local/bin/notification"]

FROM runtime AS payment-provider
COPY --from=builder /out/payment-provider /usr/local/bin/payment-provider
ENV LISTEN_ADDR=0.0.0.0:8090
EXPOSE 8090
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=12 \
  CMD ["/usr/local/bin/wget", "-q", "-T", "2", "-O", "/dev/null", "http://127.0.0.1:8090/readyz"]
ENTRYPOINT ["/usr/local/bin/payment-provider"]

FROM runtime AS trace-desk
COPY --from=builder /out/trace-desk /usr/local/bin/trace-desk
ENV DESK_API_ADDR=0.0.0.0:3200 DESK_OTLP_GRPC_ADDR=0.0.0.0:4317 DESK_OTLP_HTTP_ADDR=0.0.0.0:4318
EXPOSE 3200 4317 4318
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=12 \
  CMD ["/usr/local/bin/wget", "-q", "-T", "2", "-O", "/dev/null", "http://127.0.0.1:3200/ready"]
ENTRYPOINT ["/usr/local/bin/trace-desk"]

# The CLI, for `fleet load` (compose profile `load`, the k8s load Job) and `fleet traces`.
FROM runtime AS fleet
COPY --from=builder /out/fleet /usr/local/bin/fleet
ENTRYPOINT ["/usr/local/bin/fleet"]
CMD ["--help"]
