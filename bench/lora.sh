#!/usr/bin/env bash
# Benchmark: the LoRA suite (H1) against the mock. Starts `sparkbench mock` with N adapters
# (files of --lora-bytes, created by the mock; --max-loras N, so only first uses load cold; the
# mock's load cost is a real read of the file plus --lora-load-ms), runs `sparkbench run
# --lora-list` in both modes (model: the adapter as "model"; trtllm: lora_request with the base
# model) with zipf:1.2, then `sparkbench analyze` and prints its H1 split: TTFT p50/p99 of each
# adapter's first use (cold) and later uses (warm). The page cache is not dropped, so the read is
# from memory after the mock wrote the file: the cold-warm gap is about --lora-load-ms plus the
# queueing it causes. Not a test: numbers vary with the machine.
# Usage: bench/lora.sh [path/to/sparkbench] [adapters] [requests] [load_ms]
set -euo pipefail
bin=$(realpath "${1:-build/sparkbench}")
nad=${2:-4}
requests=${3:-200}
load_ms=${4:-100}
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
mock_pid=
cleanup() {
    [ -n "$mock_pid" ] && kill "$mock_pid" 2>/dev/null && wait "$mock_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

modules=
: >"$work/loras.txt"
for i in $(seq 0 $((nad - 1))); do
    modules="${modules:+$modules,}adapter_$i=$work/adapter_$i.bin"
    echo "adapter_$i $((i + 1)) $work/adapter_$i.bin" >>"$work/loras.txt"
done
for mode in model trtllm; do
    # A fresh mock per mode: adapters loaded by one run would be warm for the next.
    : >"$work/mock.out"
    "$bin" mock --port 0 --lora-modules "$modules" --max-loras "$nad" --lora-bytes 16MiB \
        --lora-load-ms "$load_ms" --log "$work/mock_$mode.log" >"$work/mock.out" \
        2>"$work/mock.err" &
    mock_pid=$!
    for _ in $(seq 100); do [ -s "$work/mock.out" ] && break; sleep 0.05; done
    port=$(head -n1 "$work/mock.out")
    echo "$mode: mock on port $port, $nad adapters of 16 MiB, lora_load_ms $load_ms, max_loras $nad"
    "$bin" run --endpoint "http://127.0.0.1:$port/v1/chat/completions" --model sparkbench-mock \
        --prompts-dir "$src/inputs/prompts" --context-tokens 512 --max-tokens 16 \
        --concurrency 4 --requests "$requests" --seed 42 --hypothesis H1 --phase "$mode" \
        --lora-list "$work/loras.txt" --lora-select zipf:1.2 --lora-mode "$mode" \
        --output-dir "$work/results/lora_$mode" --quiet
    kill "$mock_pid"
    wait "$mock_pid" || true
    mock_pid=
    echo "  the mock loaded $(grep -c '"lora_cold":true' "$work/mock_$mode.log") adapters cold" \
        "in $(wc -l <"$work/mock_$mode.log") requests"
done
"$bin" analyze "$work/results" --out "$work/analysis" --no-figures --quiet
echo
echo "H1 split (figures/H1_adapter_cold_warm.csv), TTFT in ms:"
awk -F, 'NR == 1 { next }
    { printf "%-8s %-10s cold n=%-2s p50 %8.1f   warm n=%-4s p50 %7.1f p99 %7.1f   cold-warm p50 %7.1f\n",
      $5, ($6 == "*" ? "all" : $6), $8, $10, $12, $14, $15, $16 }' \
    "$work/analysis/figures/H1_adapter_cold_warm.csv"
