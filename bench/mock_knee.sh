#!/usr/bin/env bash
# Benchmark: how reproducible the H0 knee of a mock profile is. For each seed, starts `sparkbench
# mock --profile PROFILE --seed S`, runs the quick H0 sweep against it (closed loop, concurrency
# 1,2,4,8,16,32, 3 s a step, 256-token prompts, --max-tokens 32, 0.5 s warm-up, --sysmon) and
# analyzes it; prints each step's TTFT p99/p50 and the U_work the §2 rule found, one line a seed.
# Not a test: the knee of a short closed-loop sweep moves with the machine's load.
# Usage: bench/mock_knee.sh [path/to/sparkbench] [profile] [seeds (comma list)] [extra mock flags...]
set -euo pipefail
bin=$(readlink -f "${1:-build/sparkbench}")
root=$(cd "$(dirname "$0")/.." && pwd)
profile=${2:-$root/configs/mock/H0_stackA.yaml}
seeds=${3:-1,2,3}
shift $(( $# < 3 ? $# : 3 ))
work=$(mktemp -d)
pid=
cleanup() {
    if [[ -n "$pid" ]]; then kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
cd "$root"
for seed in ${seeds//,/ }; do
    out="$work/s$seed"
    mkdir -p "$out"
    "$bin" mock --profile "$profile" --port 0 --seed "$seed" "$@" >"$out/port" 2>"$out/mock.err" &
    pid=$!
    for _ in $(seq 1 100); do [[ -s "$out/port" ]] && break; sleep 0.05; done
    port=$(head -n1 "$out/port")
    [[ -n "$port" ]] || { cat "$out/mock.err" >&2; exit 1; }
    SPARKBENCH="$bin" runs/run_H0_queue_knee.sh "http://127.0.0.1:$port/v1/chat/completions" \
        --stack A --model meta-llama/Llama-3.1-8B-Instruct --concurrency 1,2,4,8,16,32 \
        --duration_s 3 --results-dir "$out/results" -- --max-tokens 32 --warmup-s 0.5 --sysmon \
        >"$out/run.log" 2>&1
    kill -TERM "$pid"
    wait "$pid" || true
    pid=
    "$bin" analyze "$out/results" --out "$out/analysis" --uwork "$out/uwork.txt" \
        >"$out/analyze.log" 2>&1 || true
    ratios=$(awk '/concurrency +p50_ms/ {on = 1; next} on && $1 ~ /^[0-9]+$/ {printf "U%s %s  ", $1, $4; next} {on = 0}' "$out/analyze.log")
    verdict=$(grep -m1 -E "knee at|no knee" "$out/analyze.log" | sed 's/^ *//')
    echo "seed $seed: ${ratios}| $verdict"
done
