# Sourced by run.sh and test.sh (one build for both). The default build is portable: x86-64-v3 on x86-64
# (.cargo/config.toml), so a binary built here runs on every host of a fleet from Haswell / Zen 1 on.
#   LLMOPS_TARGET_CPU=native     build for this host's CPU (AVX-512 and, on Sapphire Rapids and later, llama.cpp's
#                                AMX kernels, which crash on some of those hosts: ggml-org/llama.cpp#20824)
#   LLMOPS_TARGET_CPU=x86-64-v4  AVX-512 without AMX, for a fleet of AVX-512 hosts
# Changing it rebuilds everything, llama.cpp included.
if [ -n "${LLMOPS_TARGET_CPU:-}" ]; then
  export RUSTFLAGS="-C target-cpu=$LLMOPS_TARGET_CPU"
  echo "build: target-cpu=$LLMOPS_TARGET_CPU (LLMOPS_TARGET_CPU)"
fi
