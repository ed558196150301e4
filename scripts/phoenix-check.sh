#!/usr/bin/env bash
# llmopsd's OTLP trace export, checked end to end against a real receiver: Arize Phoenix.
#   scripts/phoenix-check.sh                     HTTP/protobuf and gRPC export of target/release/llmopsd
#   scripts/phoenix-check.sh --protocol http     one protocol only (http or grpc)
#   scripts/phoenix-check.sh --phoenix-only      just start Phoenix and check it with hand-built spans
#   scripts/phoenix-check.sh --keep              keep the temporary directory (configs, logs, Phoenix's DB)
# Starts Phoenix on free loopback ports with a temporary working dir, a fake OpenAI upstream, and llmopsd with
# [export.otlp] pointing at Phoenix; sends chat completions through llmopsd and checks the spans Phoenix stored
# (GET /v1/projects/llmops-e2e/spans). Prints PASS/FAIL per check; exits 1 on a failed check, 2 on a setup error.
# Build llmopsd first: scripts/run.sh, or `cargo build --release --workspace --bins`.
# Environment: LLMOPSD_BIN (the binary, default target/release/llmopsd), LLMOPS_PHOENIX_VENV (the virtual
# environment, default ${XDG_CACHE_HOME:-~/.cache}/llmops/phoenix-venv, created with pip on first use: ~1 min,
# ~900 MB), LLMOPS_PHOENIX_SPEC (what pip installs, default the version this was checked with), PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."

spec=${LLMOPS_PHOENIX_SPEC:-arize-phoenix==20.26.1}
venv=${LLMOPS_PHOENIX_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/llmops/phoenix-venv}
bin=${LLMOPSD_BIN:-$PWD/target/release/llmopsd}

phoenix_only=0
for arg in "$@"; do
  [ "$arg" = --phoenix-only ] && phoenix_only=1
  if [ "$arg" = -h ] || [ "$arg" = --help ]; then sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0; fi
done
if [ "$phoenix_only" = 0 ] && [ ! -x "$bin" ]; then
  echo "phoenix-check: $bin not found; build it first: scripts/run.sh, or cargo build --release --workspace --bins" >&2
  exit 2
fi

# Phoenix needs Python 3.11 to 3.14.
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.llmops-spec" 2>/dev/null)" != "$spec" ]; then
  python=${PYTHON:-}
  if [ -z "$python" ]; then
    for candidate in python3 python3.13 python3.12 python3.11 python3.14; do
      if command -v "$candidate" >/dev/null &&
        "$candidate" -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] < (3, 15)))' 2>/dev/null; then
        python=$candidate
        break
      fi
    done
  fi
  if [ -z "$python" ]; then
    echo "phoenix-check: Phoenix needs Python 3.11 to 3.14 (none found; set PYTHON=/path/to/python3.x)" >&2
    exit 2
  fi
  echo "phoenix-check: installing $spec into $venv (once; about a minute)"
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "$spec" opentelemetry-proto grpcio requests
  echo "$spec" >"$venv/.llmops-spec"
fi

# The helper starts and stops every process itself (process groups; SIGINT/SIGTERM/SIGHUP stop them too) and
# removes its temporary directory.
exec "$venv/bin/python" scripts/phoenix_check.py --bin "$bin" "$@"
