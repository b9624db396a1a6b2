#!/usr/bin/env bash
# The demo: a real (short) H0 experiment against the built-in mock. Starts `sparkbench mock` with
# the Stack A profile (batch slots cut to 8 so the queue knee shows quickly), checks it with
# `sparkbench smoke`, then sweeps closed-loop concurrency 1..32 with runs/run_H0_queue_knee.sh
# (telemetry sampled alongside each step), prints each step's summary, and ends with
# `sparkbench analyze`: U_work, the summary table, the H0 figure and the HTML report. Results land
# in results/ and analysis/ like any other run's.
set -euo pipefail
bin=$(readlink -f "${1:-build/sparkbench}")
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${DEMO_SECONDS:-4}
work=$(mktemp -d)
mock_pid=
cleanup() {
    if [[ -n "$mock_pid" ]]; then kill -TERM "$mock_pid" 2>/dev/null; wait "$mock_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

"$bin" mock --profile "$root/configs/mock/stackA.yaml" --port 0 --max-num-seqs 8 \
    >"$work/port" 2>"$work/mock.err" &
mock_pid=$!
for _ in $(seq 1 100); do [[ -s "$work/port" ]] && break; sleep 0.05; done
port=$(head -n1 "$work/port")
[[ -n "$port" ]] || { cat "$work/mock.err" >&2; exit 1; }
endpoint="http://127.0.0.1:$port/v1/chat/completions"
echo "== sparkbench mock (Stack A profile, 8 batch slots) on 127.0.0.1:$port"
echo "== sparkbench smoke"
"$bin" smoke --endpoint "$endpoint" --model meta-llama/Llama-3.1-8B-Instruct
echo
echo "== H0 sweep: concurrency 1,2,4,8,16,32 x ${secs}s, 256-token prompts, 32 output tokens"
cd "$root"
SPARKBENCH="$bin" runs/run_H0_queue_knee.sh "$endpoint" --stack A \
    --model meta-llama/Llama-3.1-8B-Instruct --concurrency 1,2,4,8,16,32 --duration_s "$secs" \
    -- --max-tokens 32 --warmup-s 0.5 --sysmon
echo
echo "== sparkbench analyze results --out analysis"
"$bin" analyze results --out analysis
