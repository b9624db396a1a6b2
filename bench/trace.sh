#!/usr/bin/env bash
# Benchmark: how close trace replay keeps to its schedule (issue 13's target: send times within
# 1 ms of schedule at p99). Replays the 1,000-request Mooncake slice
# (tests/data/trace/conversation_1000.jsonl) against `sparkbench mock` (its default prefill and
# decode costs, an unbounded KV cache), at each --trace-speed given, and prints p50 / p99 / max of
# lat_sched_delay_ms (actual send - intended send: the client's own lag, stamped when libcurl
# writes the request) with run.json's client_lag. Speed 1 replays the slice's 330 s as they are;
# the higher speeds squeeze the same bursts into less time. Not a test: numbers vary with the
# machine and its load.
# Usage: bench/trace.sh [path/to/sparkbench] [speeds, default "1 10 100"] [trace file]
set -euo pipefail
bin=${1:-build/sparkbench}
speeds=${2:-1 10 100}
trace=${3:-$(dirname "$0")/../tests/data/trace/conversation_1000.jsonl}
work=$(mktemp -d)
mock_pid=
cleanup() {
    [ -n "$mock_pid" ] && kill "$mock_pid" 2>/dev/null && wait "$mock_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
# The mock's default costs (2 ms + 20 us a prompt token, 8 ms + 0.1 ms a sequence per decode
# step) stream tokens at a server's pace; a zero-cost mock would flood the client with every
# token of every reply at once, which is the mock's load, not the replay's.
"$bin" mock --port 0 --tier0-blocks 2000000 --max-num-seqs 1024 \
    >"$work/mock.out" 2>"$work/mock.err" &
mock_pid=$!
for _ in $(seq 100); do [ -s "$work/mock.out" ] && break; sleep 0.05; done
port=$(head -1 "$work/mock.out")
echo "trace: $trace ($(wc -l <"$trace") requests); mock on port $port; $(nproc) cpus"
printf '%-8s %8s %10s %10s %10s %10s %8s\n' speed sent p50_ms p99_ms max_ms late_1ms wall_s
for s in $speeds; do
    out="$work/run-$s"
    t0=$(date +%s.%N)
    "$bin" run --endpoint "http://127.0.0.1:$port/v1/completions" --model sparkbench-mock \
        --workload trace --trace "$trace" --trace-speed "$s" --output-dir "$out" --quiet \
        --no-server-state
    t1=$(date +%s.%N)
    # lat_sched_delay_ms of every record, sorted: linear-interpolated percentiles
    grep -o '"lat_sched_delay_ms":[0-9.]*' "$out/metrics.jsonl" | cut -d: -f2 | sort -g >"$work/d"
    late=$(grep -o '"late_sends":[[:space:]]*[0-9]*' "$out/run.json" | grep -o '[0-9]*$')
    awk -v s="$s" -v late="$late" -v wall="$(echo "$t1 - $t0" | bc)" '
        { v[NR] = $1 }
        function pct(p,   pos, lo, hi) { pos = (NR - 1) * p / 100; lo = int(pos) + 1; hi = lo < NR ? lo + 1 : lo;
                                          return v[lo] + (v[hi] - v[lo]) * (pos - int(pos)) }
        END { printf "%-8s %8d %10.3f %10.3f %10.3f %10d %8.1f\n", s, NR, pct(50), pct(99), v[NR], late, wall }' "$work/d"
done
