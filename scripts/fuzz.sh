#!/usr/bin/env bash
# Runs the libFuzzer harnesses of tests/fuzz, each for SECONDS on its committed seed corpus
# (tests/fuzz/corpus/<name>/, only read), new inputs going to a scratch corpus under OUT.
# Usage: scripts/fuzz.sh BUILD_DIR SECONDS JOBS [NAME...]   (no NAME: every harness)
# Exit 0 when every harness ran clean; 1 with the crash / disagreement files named otherwise.
# Each harness's log is OUT/<name>.log (OUT: $SB_FUZZ_OUT, else BUILD_DIR/fuzz-out).
# SB_FUZZ_SEED: libFuzzer's -seed (0, the default, draws one); CI fixes it so that the same code
# explores the same inputs first and a red CI is reproducible, not a roll of the dice.
set -euo pipefail
build=${1:?usage: scripts/fuzz.sh BUILD_DIR SECONDS JOBS [NAME...]}
seconds=${2:?seconds}
jobs=${3:-1}
shift 3 || shift $#
src=$(cd "$(dirname "$0")/.." && pwd)
out=${SB_FUZZ_OUT:-$build/fuzz-out}
mkdir -p "$out"

names=("$@")
if [[ ${#names[@]} -eq 0 ]]; then
    for f in "$src"/tests/fuzz/fuzz_*.c; do
        n=$(basename "$f" .c)
        names+=("${n#fuzz_}")
    done
fi

run_one() {
    local name=$1 bin="$build/tests/fuzz/fuzz_$1"
    local scratch="$out/corpus-$name" art="$out/crash-$name"
    mkdir -p "$scratch" "$art"
    # -rss_limit_mb: the shared CI machine; -timeout: one input may take 10 s (the mock's
    # loopback exchange) before it counts as a hang.
    if "$bin" -seed="$seed" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$art/" "$scratch" "$src/tests/fuzz/corpus/$name" \
        >"$out/$name.log" 2>&1; then
        echo "fuzz $name: ok, $(grep -o 'stat::number_of_executed_units: *[0-9]*' "$out/$name.log" |
            grep -o '[0-9]*$') runs in ${seconds}s, $(grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE)' \
            "$out/$name.log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+')"
    else
        echo "fuzz $name: FAILED (log $out/$name.log); input:" \
            "$(find "$art" -type f | head -1)"
        return 1
    fi
}
export -f run_one
seed=${SB_FUZZ_SEED:-0}
export build seconds src out seed

# xargs exits non-zero when any harness failed; every harness still runs. ($1 is the inner
# bash's argument, hence the single quotes.)
# shellcheck disable=SC2016
printf '%s\n' "${names[@]}" | xargs -P "$jobs" -I{} bash -c 'run_one "$1"' _ {}
