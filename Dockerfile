# mlp-lab in a container: built with cargo in the official Rust image, run on slim Debian as
# an unprivileged user, storing its models, versions, datasets and jobs in the /data volume.
#
#   docker build -t mlp-lab .
#   docker run --rm -p 8080:8080 -v mlp-lab-data:/data mlp-lab
#
# Flags go after the image name (`docker run … mlp-lab --log-format json`); every flag also
# has an MLP_LAB_* variable (`-e MLP_LAB_MAX_RUNNING_JOBS=2`). See `mlp-lab --help`.

ARG RUST_IMAGE=rust:1-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# ---- builder -------------------------------------------------------------------------------
FROM ${RUST_IMAGE} AS builder
WORKDIR /build
# The debug info of the release profile is for profiling benchmarks, not for the image.
ENV CARGO_PROFILE_RELEASE_STRIP=debuginfo

# Dependencies first, in a layer of their own that is rebuilt only when a manifest or
# Cargo.lock changes: compile them against placeholder sources for the workspace's targets
# (the manifests name src/lib.rs, src/main.rs and benches/nn_bench.rs, and row-json's
# src/lib.rs, so all of them must exist), then forget the placeholder crates themselves.
COPY Cargo.toml Cargo.lock ./
COPY crates/row-json/Cargo.toml ./crates/row-json/
RUN mkdir -p src benches crates/row-json/src \
    && echo 'fn main() {}' > src/main.rs \
    && echo 'fn main() {}' > benches/nn_bench.rs \
    && touch src/lib.rs crates/row-json/src/lib.rs \
    && cargo build --release --locked --bin mlp-lab \
    && cargo clean --release --locked -p mlp-lab -p row-json \
    && rm -rf src benches crates/row-json/src

# The crates themselves (the server, and crates/ for the JSON parser it depends on).
# `include_str!` embeds assets/datasets/*.csv and openapi.yaml, and the manifest's nn-bench
# target lives in benches/, so all of them are part of the build.
COPY src ./src
COPY benches ./benches
COPY crates ./crates
COPY assets ./assets
COPY openapi.yaml ./
RUN cargo build --release --locked --bin mlp-lab \
    && cp target/release/mlp-lab /usr/local/bin/mlp-lab

# ---- runtime -------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS runtime
# curl serves only the HEALTHCHECK below. Its version is not pinned: bookworm's security
# updates replace old package versions, and a pinned one would stop the image from building.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 mlp-lab \
    && useradd --system --uid 10001 --gid mlp-lab --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin mlp-lab \
    && mkdir -p /data \
    && chown mlp-lab:mlp-lab /data

COPY --from=builder /usr/local/bin/mlp-lab /usr/local/bin/mlp-lab

# Listen on every interface inside the container (the default, 127.0.0.1, would be unreachable
# through a published port) and keep state in the volume.
ENV MLP_LAB_ADDR=0.0.0.0:8080 \
    MLP_LAB_DATA_DIR=/data
VOLUME ["/data"]
WORKDIR /data
USER 10001:10001
EXPOSE 8080

# The port is taken from MLP_LAB_ADDR, so the check follows `-e MLP_LAB_ADDR=0.0.0.0:9000`.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["sh", "-c", "curl -fsS --max-time 4 -o /dev/null \"http://127.0.0.1:${MLP_LAB_ADDR##*:}/healthz\" || exit 1"]

# The server handles SIGTERM itself (graceful shutdown), also as PID 1.
ENTRYPOINT ["/usr/local/bin/mlp-lab"]
