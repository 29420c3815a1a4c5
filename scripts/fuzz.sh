#!/usr/bin/env bash
# Builds every cargo-fuzz target and runs each for N seconds (default 60).
# Fails on the first crash, leaving the input in fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh [seconds] [target...]
#
# Runs on stable Rust without a sanitizer (`-s none`: fastest). For
# AddressSanitizer, run a target by hand: RUSTC_BOOTSTRAP=1 cargo fuzz run <target>
# Each target starts from its committed seeds (fuzz/corpus/<target>/seed-*)
# and whatever corpus earlier runs left there.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds="${1:-60}"
shift || true
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    mapfile -t targets < <(cargo fuzz list)
fi

cargo fuzz build -s none
mkdir -p target/fuzz-logs
printf '%-24s %10s %12s %8s\n' target runs exec/s corpus
for t in "${targets[@]}"; do
    log="target/fuzz-logs/$t.log"
    # -rss_limit_mb: a target that grows past 2 GiB has a memory bug.
    if ! cargo fuzz run -s none "$t" -- -max_total_time="$seconds" -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1; then
        echo "fuzz target $t FAILED; the log is $log, the input is in fuzz/artifacts/$t/" >&2
        tail -n 40 "$log" >&2
        exit 1
    fi
    runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo '?')
    rate=$(grep -oE 'stat::average_exec_per_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo '?')
    corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
    printf '%-24s %10s %12s %8s\n' "$t" "$runs" "$rate" "$corpus"
done
