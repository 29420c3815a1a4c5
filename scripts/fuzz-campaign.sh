#!/usr/bin/env bash
# A recorded fuzzing campaign: every cargo-fuzz target (or those named) for
# N seconds each (default 1800, half an hour), one after the other, on a
# quiet machine. Unlike scripts/fuzz.sh (the short runs of check.sh), a
# crash does not stop the campaign: it is counted, its input kept in
# fuzz/artifacts/<target>/, and the next target runs. At the end each
# target's grown corpus is minimised (cargo fuzz cmin) and one row per
# target is appended to the results file:
#
#   date, commit, target, seconds, executions, exec/s, coverage (cov),
#   features (ft), corpus files before and after cmin, crashes, peak RSS
#
#   scripts/fuzz-campaign.sh [seconds] [target...]
#   FUZZ_RESULTS=path     results file (default fuzz/CAMPAIGN.md)
#   FUZZ_ASAN=1           build with AddressSanitizer (RUSTC_BOOTSTRAP=1,
#                         nightly flags on stable); default -s none
#
# Exits non-zero if any target crashed. docs/FUZZING.md says how a crash
# becomes a regression test, and which corpus files to commit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds="${1:-1800}"
shift || true
results="${FUZZ_RESULTS:-fuzz/CAMPAIGN.md}"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
sanitizer=(-s none)
mode="no sanitizer"
if [[ -n "${FUZZ_ASAN:-}" ]]; then
    export RUSTC_BOOTSTRAP=1
    sanitizer=(-s address)
    mode="AddressSanitizer"
fi
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    mapfile -t targets < <(cargo fuzz list)
fi

cargo fuzz build "${sanitizer[@]}"
mkdir -p target/fuzz-logs
commit=$(git rev-parse --short HEAD)
if [[ ! -f "$results" ]]; then
    {
        echo "# Fuzzing campaigns"
        echo
        echo "Appended by \`scripts/fuzz-campaign.sh\`; see docs/FUZZING.md."
        echo
        echo "| date (UTC) | commit | mode | machine | target | s | executions | exec/s | cov | ft | corpus | after cmin | crashes | peak RSS MB |"
        echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    } >"$results"
fi
machine="$(nproc) cores, $(rustc --version | awk '{print $2}')"

# The last value of `name: N` in a libFuzzer log (its pulse lines and
# final stats), or "?".
last_stat() {
    grep -oE "$1[: ]+[0-9]+" "$2" | tail -n 1 | grep -oE '[0-9]+$' || echo '?'
}

failed=0
printf '%-24s %12s %8s %6s %7s %8s %8s\n' target runs exec/s cov ft corpus crashes
for t in "${targets[@]}"; do
    log="target/fuzz-logs/campaign-$t.log"
    artifacts="fuzz/artifacts/$t"
    mkdir -p "$artifacts" "fuzz/corpus/$t"
    before=$(find "$artifacts" -type f | wc -l)
    status=0
    # -rss_limit_mb: a target that grows past 2 GiB has a memory bug.
    cargo fuzz run "${sanitizer[@]}" "$t" -- -max_total_time="$seconds" -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1 || status=$?
    crashes=$(($(find "$artifacts" -type f | wc -l) - before))
    if [[ $status -ne 0 && $crashes -eq 0 ]]; then
        # libFuzzer failed without leaving an input: count it, keep the log.
        crashes=1
    fi
    runs=$(last_stat 'stat::number_of_executed_units' "$log")
    rate=$(last_stat 'stat::average_exec_per_sec' "$log")
    cov=$(last_stat 'cov' "$log")
    ft=$(last_stat 'ft' "$log")
    rss=$(last_stat 'stat::peak_rss_mb' "$log")
    corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
    # Minimise the grown corpus in place: the smallest set with the same
    # coverage. cmin renames what it keeps by hash, so the seed-* files
    # (the committed, hand-made seeds) are put back under their names.
    seeds=$(mktemp -d)
    cp "fuzz/corpus/$t"/seed-* "$seeds"/ 2>/dev/null || true
    cargo fuzz cmin "${sanitizer[@]}" "$t" >>"$log" 2>&1 || true
    cp "$seeds"/* "fuzz/corpus/$t"/ 2>/dev/null || true
    rm -rf "$seeds"
    after=$(find "fuzz/corpus/$t" -type f | wc -l)
    printf '%-24s %12s %8s %6s %7s %8s %8s\n' "$t" "$runs" "$rate" "$cov" "$ft" "$corpus" "$crashes"
    echo "| $(date -u '+%Y-%m-%d %H:%M') | $commit | $mode | $machine | $t | $seconds | $runs | $rate | $cov | $ft | $corpus | $after | $crashes | $rss |" >>"$results"
    if [[ $crashes -ne 0 ]]; then
        echo "  $t crashed: inputs in $artifacts/, log in $log" >&2
        failed=1
    fi
done
echo "results appended to $results"
exit "$failed"
