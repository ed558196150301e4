#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo fuzz, libFuzzer) of what reaches the daemon from outside: a client's request
# (request_parser), an engine's event stream (sse_splitter) and an operator's config (config_parser).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET ...]     default: 600 s each, every target
#
# Needs the nightly toolchain (`rustup toolchain install nightly`) and cargo-fuzz (installed here when
# missing). Each target starts from its committed corpus (fuzz/corpus/TARGET, kept minimal) and the
# hand-written seeds (fuzz/seeds/TARGET); new inputs go to the corpus. Crashes land in fuzz/artifacts/TARGET;
# turn each into a regression test beside the code it broke. Prints executions and crashes per target and
# exits non-zero when a target crashed.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-600}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  targets=(request_parser sse_splitter config_parser)
fi
case "$seconds" in
  '' | *[!0-9]*) echo "fuzz.sh: SECONDS_PER_TARGET must be a whole number, got '$seconds'" >&2; exit 2 ;;
esac

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz.sh: cargo fuzz needs the nightly toolchain: rustup toolchain install nightly" >&2
  exit 2
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
summary=()
crashed=0
for target in "${targets[@]}"; do
  if [ ! -f "fuzz/fuzz_targets/$target.rs" ]; then
    echo "fuzz.sh: no target '$target' (fuzz/fuzz_targets/)" >&2
    exit 2
  fi
  mkdir -p "fuzz/corpus/$target"
  echo "== $target: ${seconds} s"
  status=0
  # -s none: the code under test is safe Rust (unsafe is denied); -O with debug assertions keeps overflow
  # checks on. libFuzzer prints its final stats on stderr.
  (cd fuzz && cargo +nightly fuzz run -s none -O "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -dict="dicts/$target.dict" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048) \
    >"$logs/$target.log" 2>&1 || status=$?
  executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$target.log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$logs/$target.log" | tail -n 1)
  corpus=$(find "fuzz/corpus/$target" -type f | wc -l)
  crashes=0
  if [ "$status" -ne 0 ]; then
    crashed=1
    crashes=1
    tail -n 40 "$logs/$target.log"
  fi
  summary+=("$(printf '%-16s %8s s %14s execs %10s execs/s %6s corpus %3s crashes' \
    "$target" "$seconds" "${executions:-?}" "${rate:-?}" "$corpus" "$crashes")")
done

echo
printf '%s\n' "${summary[@]}"
if [ "$crashed" -ne 0 ]; then
  echo "fuzz.sh: a target crashed; its input is in fuzz/artifacts/" >&2
  exit 1
fi
