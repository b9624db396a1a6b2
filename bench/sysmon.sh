#!/usr/bin/env bash
# Benchmark: sparkbench sysmon's own cost and timing at its default 200 ms cadence.
# Prints its CPU use as a share of one core (target <= 0.5 %) and the tick lateness p50/p99
# (target p99 <= 2 ms), from the late_ms field of every tick. Not a test: numbers vary.
# Usage: bench/sysmon.sh [path/to/sparkbench] [seconds]
set -euo pipefail
bin=${1:-build/sparkbench}
secs=${2:-30}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
/usr/bin/time -f "%U %S" -o "$work/cpu" "$bin" sysmon --out "$work" --duration-s "$secs" \
    --interval-ms 200
ticks=$(wc -l <"$work/sysmon.jsonl")
missed=$(grep -c '"missed":true' "$work/sysmon.jsonl" || true)
grep -o '"late_ms":[0-9.]*' "$work/sysmon.jsonl" | cut -d: -f2 | sort -n >"$work/late"
awk -v secs="$secs" -v ticks="$ticks" -v missed="$missed" -v cpu="$(awk '{print $1 + $2}' "$work/cpu")" '
    { v[NR] = $1 } END {
    p50 = v[int(0.5 * (NR - 1)) + 1]; p99 = v[int(0.99 * (NR - 1)) + 1];
    printf "sysmon at 200 ms for %d s: %d ticks (%d missed), CPU %.3f %% of a core (target <= 0.5 %%), tick lateness p50 %.3f ms, p99 %.3f ms (target <= 2 ms)\n",
        secs, ticks, missed, 100 * cpu / secs, p50, p99 }' "$work/late"
