#!/usr/bin/env bash
# Builds the fuzz targets and runs each for SECONDS_PER_TARGET seconds (default 60):
#
#   tests/fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Exits non-zero when a target crashes, printing the reproducer's path; replay one with
# `RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir tests/fuzz TARGET PATH`. Corpora grow in
# tests/fuzz/corpus/ from run to run (config_toml starts from config/*.toml).
#
# cargo fuzz wants a nightly compiler for `-Z sanitizer=address`; RUSTC_BOOTSTRAP=1 lets
# the stable one accept the flag. The target bodies live in targets.rs, which
# tests/fuzz_props.rs also runs under proptest on every `cargo test`.
set -euo pipefail

secs=${1:-60}
shift || true
fuzz=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$fuzz/../.." && pwd)
cd "$root"

if ! command -v cargo-fuzz >/dev/null; then
  cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
# Build with the server's dependency versions (cargo adds libfuzzer-sys).
cp Cargo.lock "$fuzz/Cargo.lock"

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list --fuzz-dir "$fuzz")
fi
cargo fuzz build --fuzz-dir "$fuzz"

mkdir -p "$fuzz/corpus/config_toml"
cp -n config/*.toml "$fuzz/corpus/config_toml/" 2>/dev/null || true

failed=()
for t in "${targets[@]}"; do
  log="$fuzz/artifacts/$t.log"
  mkdir -p "$fuzz/artifacts/$t" "$fuzz/corpus/$t"
  echo "== $t: ${secs}s"
  if cargo fuzz run --fuzz-dir "$fuzz" "$t" -- -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    echo "   ok: ${runs:-?} runs, $(( ${runs:-0} / secs )) execs/s"
  else
    failed+=("$t")
    echo "   CRASH (log: $log)"
    grep -E "^(thread|panicked)|panicked at|ERROR: AddressSanitizer|SUMMARY" "$log" | head -5 | sed 's/^/   /'
    sed -n 's/.*Test unit written to \(.*\)$/   reproducer: \1/p' "$log"
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "crashed: ${failed[*]}" >&2
  exit 1
fi
echo "no crash in ${#targets[@]} targets"
