#!/usr/bin/env bash
# Runs the fuzz targets: fuzz/run.sh [SECONDS] [TARGET...]
#
# Each target (all of them unless named) runs for SECONDS (default 60) under
# libFuzzer, starting from its seeds in fuzz/corpus/<target>/ plus what earlier
# runs found (kept outside the clone). Prints one line per target:
#   fuzz <target>: <runs> runs in <s> s, 0 crashes
# or the path of the input that crashed it, and exits non-zero if any target
# crashed or failed. Installs cargo-fuzz when it is missing.
#
# Works on stable Rust: targets are built with `--sanitizer none` (the code under
# test is safe Rust; what fuzzing looks for is panics, failed assertions, hangs
# and runaway memory). FUZZ_TOOLCHAIN=nightly runs `cargo +nightly fuzz` instead.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
    echo "usage: fuzz/run.sh [SECONDS] [TARGET...]" >&2
    exit 2
fi
[ $# -gt 0 ] && shift

export CARGO_TARGET_DIR="${EGRET_FUZZ_TARGET_DIR:-$HOME/.cache/egret/fuzz-target}"
corpus_root="${EGRET_FUZZ_CORPUS:-$HOME/.cache/egret/fuzz-corpus}"
log_dir="${EGRET_FUZZ_LOGS:-$CARGO_TARGET_DIR/logs}"
cargo_fuzz_version="0.13.2"
cargo=(cargo)
[ -n "${FUZZ_TOOLCHAIN:-}" ] && cargo=(cargo "+$FUZZ_TOOLCHAIN")

if ! "${cargo[@]}" fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz $cargo_fuzz_version (cargo install)…"
    cargo install cargo-fuzz --version "$cargo_fuzz_version" --locked >&2
fi

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <("${cargo[@]}" fuzz list)
fi

echo "building ${#targets[@]} fuzz target(s) in $CARGO_TARGET_DIR…"
start=$(date +%s)
if [ $# -gt 0 ]; then
    for t in "${targets[@]}"; do "${cargo[@]}" fuzz build -s none "$t"; done
else
    "${cargo[@]}" fuzz build -s none
fi
echo "built in $(( $(date +%s) - start )) s"

mkdir -p "$log_dir"
failed=0
for t in "${targets[@]}"; do
    mkdir -p "$corpus_root/$t" "fuzz/corpus/$t"
    log="$log_dir/$t.log"
    # Event messages may be up to 16 KiB; longer inputs reach the size checks.
    case "$t" in
        decode_*|ingest_body) max_len=20000 ;;
        *) max_len=4096 ;;
    esac
    status=0
    # New inputs go to the first corpus directory (outside the clone); the seeds
    # in fuzz/corpus/ are only read.
    "${cargo[@]}" fuzz run -s none "$t" "$corpus_root/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$seconds" -max_len="$max_len" -timeout=25 -rss_limit_mb=2048 -dict=fuzz/dict.txt \
        -print_final_stats=1 >"$log" 2>&1 || status=$?
    done_line=$(grep -E '^Done [0-9]+ runs in [0-9]+ second' "$log" | tail -n 1 || true)
    if [ "$status" -eq 0 ] && [ -n "$done_line" ]; then
        runs=$(awk '{print $2}' <<<"$done_line")
        secs=$(awk '{print $5}' <<<"$done_line")
        echo "fuzz $t: $runs runs in $secs s, 0 crashes"
    else
        failed=1
        runs=$(grep -oE 'stat::number_of_executed_units: [0-9]+' "$log" | tail -n 1 | awk '{print $2}' || true)
        artifact=$(grep -oE 'Test unit written to [^ ]+' "$log" | tail -n 1 | awk '{print $5}' || true)
        if [ -n "$artifact" ]; then
            echo "fuzz $t: CRASH after ${runs:-?} runs: $artifact (log: $log)"
            echo "  reproduce: cargo fuzz run -s none $t $artifact"
        else
            echo "fuzz $t: FAILED (exit $status) (log: $log)"
        fi
        grep -E 'panicked at|assertion|ERROR: libFuzzer|SUMMARY' "$log" | head -n 5 | sed 's/^/  /' || true
    fi
done
exit "$failed"
