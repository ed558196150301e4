#!/usr/bin/env bash
# Installs what llmops needs beyond a Rust toolchain: the system packages that build llama.cpp (cmake, and
# libclang for bindgen) and tmux (the console's end-to-end test), and the Python test clients (openai, grpcio) in .venv. Idempotent; safe to run again. `--bench` also installs nginx (the one-hop proxy baseline of the benchmark)
# and wrk (the independent load generator of benches/wrk-crosscheck.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "setup: cargo not found: install Rust (rustup) first" >&2; exit 1; }
command -v python3 >/dev/null || { echo "setup: python3 not found" >&2; exit 1; }

if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
apt_install() {
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# The embedded engine builds llama.cpp from source: cmake drives it, bindgen needs libclang. curl: run.sh waits
# for /readyz with it. prometheus: its promtool checks the daemon's /metrics in the suite.
missing=()
# tmux runs llmops-top in a real terminal for its end-to-end test.
for package in cmake libclang1-14 libclang-common-14-dev tmux curl prometheus; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]} (to build llama.cpp and test the console)"
  apt_install "${missing[@]}"
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv for the Python test clients"
  python3 -m venv .venv
fi
stamp=.venv/.requirements.sha
want=$(sha256sum tests/python/requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing tests/python/requirements.txt"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
  echo "$want" > "$stamp"
fi

if [ "${1:-}" = "--bench" ] && ! { command -v nginx && command -v wrk; } >/dev/null; then
  echo "setup: installing nginx and wrk for the benchmarks"
  apt_install wrk nginx-light || apt_install wrk nginx
fi
echo "setup: ok"
