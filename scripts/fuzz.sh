#!/usr/bin/env bash
# Builds idsync's libFuzzer targets on the stable toolchain and runs each for SECONDS
# (default 600), then prints per target: executions, coverage (cov) and features (ft).
#   scripts/fuzz.sh [SECONDS] [TARGET ...]
# The test command runs it with a few seconds per target so the targets cannot rot.
# New inputs the fuzzer finds stay in target/fuzz/corpus/<target> (not committed); a crash
# is written to target/fuzz/artifacts/<target>/ and fails the script: turn it into a seed
# in fuzz/corpus/<target>/ (replayed by `cargo test`) once fixed.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-600}
shift || true
all=(config ldif ldap_filter wandb_scim idp_sources saved_plan)
targets=("$@")
((${#targets[@]})) || targets=("${all[@]}")

triple=$(rustc -vV | sed -n 's/^host: //p')
# What cargo-fuzz passes, minus -Zsanitizer (nightly-only): LLVM's sanitizer-coverage
# passes are stable codegen options. --target keeps them off build scripts and macros.
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
export CARGO_TARGET_DIR=target/fuzz/build
bins=()
for t in "${targets[@]}"; do bins+=(--bin "$t"); done
echo "== building fuzz targets (${targets[*]})"
cargo build --quiet --release --locked --manifest-path fuzz/Cargo.toml --target "$triple" "${bins[@]}"

status=0
printf '%-12s %12s %8s %8s %8s\n' target execs cov ft corpus
for t in "${targets[@]}"; do
  corpus=target/fuzz/corpus/$t
  artifacts=target/fuzz/artifacts/$t/
  mkdir -p "$corpus" "$artifacts"
  log=target/fuzz/$t.log
  # Seeds first (read-only), then the growing corpus. Bounded: time, input size, memory.
  if ! "$CARGO_TARGET_DIR/$triple/release/$t" "$corpus" "fuzz/corpus/$t" \
      -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
      -artifact_prefix="$artifacts" -print_final_stats=1 >"$log" 2>&1; then
    echo "fuzz target $t FAILED; see $log and $artifacts" >&2
    tail -30 "$log" >&2
    status=1
  fi
  done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$done_line")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$done_line")
  printf '%-12s %12s %8s %8s %8s\n' "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$(ls "$corpus" | wc -l)"
done
exit $status
