#!/usr/bin/env bash
# H5 end to end on the mock (not a test: it prints measurements): a --sessions sweep (8, 64, 256;
# --prime, zipf:1.0, --history server, 8 s each) against a mock with three small KV tiers
# (tier 0: 400 blocks of 32 tokens = 12,800 tokens; tier 1: 800 blocks; tier 2: 20,000 blocks,
# 500 us a block), then `sparkbench analyze`: the H5 points (working set, TTFT p50/p99), TTFT and
# realized/oracle hit ratio per reuse-distance bin, and the reproducible gate.
# Usage: bench/sessions_sweep.sh [path/to/sparkbench] [work dir] [sessions...]
set -euo pipefail
bin=$(readlink -f "${1:-build/sparkbench}")
work=${2:-$(mktemp -d)}
shift $(($# > 2 ? 2 : $#))
sweep=("$@")
[[ ${#sweep[@]} -gt 0 ]] || sweep=(8 64 256)
command -v jq >/dev/null || { echo "bench: jq is missing" >&2; exit 1; }
mkdir -p "$work/results"
mock_pid=
stop_mock() { [[ -n "$mock_pid" ]] && kill -TERM "$mock_pid" 2>/dev/null && wait "$mock_pid" 2>/dev/null; mock_pid=; }
trap stop_mock EXIT
"$bin" mock --port 0 --tier0-blocks 400 --tier1-blocks 800 --tier2-blocks 20000 \
    --tier2-fetch-us 500 --tier2-path "$work" >"$work/port" 2>/dev/null &
mock_pid=$!
for _ in $(seq 1 200); do [[ -s "$work/port" ]] && break; sleep 0.05; done
port=$(head -n1 "$work/port")
for n in "${sweep[@]}"; do
    "$bin" run --endpoint "http://127.0.0.1:$port/v1/chat/completions" --model sparkbench-mock \
        --workload sessioned_chat --sessions "$n" --concurrency 4 --prime \
        --session-order zipf:1.0 --history server --duration-s 8 --hypothesis H5 --phase "S$n" \
        --quiet --output-dir "$work/results/H5_sessions_$n"
    jq -r --arg n "$n" '"sessions \($n): prime \(.measure_start_ts - .start_ts | . * 100 | round / 100) s, measured window \((.throughput.window_end_mono_ns - .throughput.window_start_mono_ns) / 1e9) s, \(.counts.ok - .counts.warmup) measured turns"' \
        "$work/results/H5_sessions_$n/run.json"
done
stop_mock
"$bin" analyze "$work/results" --out "$work/analysis" >/dev/null
echo "== H5 (figures/H5_p99_vs_session_working_set.csv)"
cut -d, -f2,4,5,6,7,9 "$work/analysis/figures/H5_p99_vs_session_working_set.csv" | column -t -s,
echo "== TTFT by reuse distance (figures/SESS_ttft_vs_reuse_distance.csv)"
cut -d, -f1,3,4,6,7,8,15 "$work/analysis/figures/SESS_ttft_vs_reuse_distance.csv" | column -t -s,
echo "== gates"
grep -E '^\| (reproducible|run_clean) ' "$work/analysis/report.md" | cut -d'|' -f2-6
echo "(work dir: $work)"
