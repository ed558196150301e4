#!/usr/bin/env bash
# Sets up, builds and runs llmopsd in the foreground.
#   scripts/run.sh                 a quick start: llmopsd on 127.0.0.1:8080 in front of a local demo upstream
#   scripts/run.sh CONFIG [ARGS]   llmopsd with your config (see config/llmopsd.example.toml)
# Until the embedded GGUF engine lands, the quick start's upstream is the deterministic echo server the tests
# use (tests/src/bin/fake-upstream.rs): it answers "echo: <your last message>", one word per token.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo build --release --bins
bin=target/release

if [ $# -gt 0 ]; then
  exec "$bin/llmopsd" --config "$@"
fi

data_dir=${LLMOPS_DATA_DIR:-$PWD/.llmops-data}
mkdir -p "$data_dir"
upstream_out=$(mktemp)
"$bin/fake-upstream" --listen 127.0.0.1:0 --token-delay-ms 20 >"$upstream_out" &
upstream_pid=$!
trap 'kill $upstream_pid 2>/dev/null || true; rm -f "$upstream_out"' EXIT
for _ in $(seq 100); do grep -q listening "$upstream_out" && break; sleep 0.1; done
upstream_url=$(grep -o 'http://[^ ]*' "$upstream_out" | head -1)
[ -n "$upstream_url" ] || { echo "run: the demo upstream did not start" >&2; exit 1; }

cat >"$data_dir/quickstart.toml" <<TOML
[engines.demo]
kind = "openai"
base_url = "$upstream_url"
models = ["demo-echo"]
TOML
cat <<MSG
llmopsd quick start (demo upstream at $upstream_url serving model "demo-echo")
  try:    curl -s localhost:8080/v1/chat/completions -H 'content-type: application/json' \\
            -d '{"model":"demo-echo","messages":[{"role":"user","content":"hello llmops"}]}'
  traces: LLMOPS_DATA_DIR=$data_dir $bin/llmopsctl traces
  stop:   Ctrl-C
MSG
LLMOPS_DATA_DIR="$data_dir" "$bin/llmopsd" --config "$data_dir/quickstart.toml" --data-dir "$data_dir"
