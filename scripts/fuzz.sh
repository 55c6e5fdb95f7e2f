#!/usr/bin/env bash
# Fuzzes clusterd's request decoders: every target of fuzz/ for SECONDS each (default 60).
#
#   scripts/fuzz.sh [seconds-per-target] [target...]
#
# Installs cargo-fuzz (and a C++ compiler for libFuzzer) when missing. Runs on the stable
# toolchain through RUSTC_BOOTSTRAP=1 (cargo-fuzz passes nightly-only flags), without a
# sanitizer (the findings sought are panics, overflows, aborts, memory blow-ups and slow
# inputs in safe Rust; ASan would halve the executions) but with overflow checks and
# debug assertions on. The committed seeds (fuzz/corpus/<target>) are read, never written:
# what libFuzzer finds goes to fuzz/target/corpus-work/<target>, which later runs reuse.
#
# Exits non-zero when a target crashes, and prints where the crashing input is. Keep it
# as fuzz/regressions/<target>/<short-name> with a unit test in src/fuzzing/tests.rs.
# An input that runs longer than FUZZ_TIMEOUT_S (default 1) or needs more than
# FUZZ_RSS_LIMIT_MB (default 2048) counts as a crash.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
shift || true
all_targets=(execute_json execute_proto documents_parquet documents_json)
if [ "$#" -gt 0 ]; then targets=("$@"); else targets=("${all_targets[@]}"); fi
timeout_s="${FUZZ_TIMEOUT_S:-1}"
rss_mb="${FUZZ_RSS_LIMIT_MB:-2048}"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v c++ >/dev/null 2>&1; then
    as_root apt-get update -qq
    as_root apt-get install -y -qq g++
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
# One set of flags for build and run, or `run` would rebuild with its defaults.
flags=(-O -a -s none --codegen-units 16 --target-dir fuzz/target)
cargo fuzz build "${flags[@]}"

failed=()
for target in "${targets[@]}"; do
    work="fuzz/target/corpus-work/$target"
    artifacts="fuzz/artifacts/$target/"
    mkdir -p "$work" "$artifacts"
    echo "== $target: ${seconds}s"
    log="fuzz/target/fuzz-$target.log"
    if cargo fuzz run "${flags[@]}" "$target" "$work" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -timeout="$timeout_s" -rss_limit_mb="$rss_mb" \
        -artifact_prefix="$artifacts" -print_final_stats=1 >"$log" 2>&1; then
        grep -E '^stat::number_of_executed_units|^Done ' "$log" | sed "s/^/   /" || true
    else
        failed+=("$target")
        echo "   CRASH in $target; the end of $log:"
        tail -n 30 "$log" | sed "s/^/   | /"
        echo "   crashing input(s):"
        grep -Eo "Test unit written to [^ ]+" "$log" | sed "s/Test unit written to /   /" || true
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzzing found crashes in: ${failed[*]} (inputs under fuzz/artifacts/)"
    exit 1
fi
echo "no crash in ${targets[*]} (${seconds}s each)"
