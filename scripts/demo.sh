#!/usr/bin/env bash
# The demo: a real (short) H0 experiment against the built-in mock. Starts `sparkbench mock` with
# the H0 Stack A profile (configs/mock/H0_stackA.yaml: TensorRT-LLM's token budget, early EOS and
# prefill/decode spread, so closed-loop users come back in bursts and the TTFT tail leaves the
# median well before the 64 batch slots fill), checks it with `sparkbench smoke`, then sweeps
# closed-loop concurrency 1..32 with runs/run_H0_queue_knee.sh (telemetry sampled alongside each
# step) and ends with `sparkbench analyze` on that sweep: the knee, U_work, the summary table, the
# H0 figure and the HTML report. The sweep's run directories land in results/demo_<UTC stamp>/,
# U_work in results/H0/uwork.txt (where the other runners read it), the figures and report in
# analysis/.
# DEMO_SECONDS: seconds per step (3, the quick H0 sweep's); DEMO_SEED: the mock's --seed (42).
set -euo pipefail
bin=$(readlink -f "${1:-build/sparkbench}")
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${DEMO_SECONDS:-3}
seed=${DEMO_SEED:-42}
profile="$root/configs/mock/H0_stackA.yaml"
work=$(mktemp -d)
mock_pid=
cleanup() {
    if [[ -n "$mock_pid" ]]; then kill -TERM "$mock_pid" 2>/dev/null; wait "$mock_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

"$bin" mock --profile "$profile" --port 0 --seed "$seed" >"$work/port" 2>"$work/mock.err" &
mock_pid=$!
for _ in $(seq 1 100); do [[ -s "$work/port" ]] && break; sleep 0.05; done
port=$(head -n1 "$work/port")
[[ -n "$port" ]] || { cat "$work/mock.err" >&2; exit 1; }
endpoint="http://127.0.0.1:$port/v1/chat/completions"
echo "== sparkbench mock (configs/mock/H0_stackA.yaml, seed $seed) on 127.0.0.1:$port"
echo "== sparkbench smoke"
"$bin" smoke --endpoint "$endpoint" --model meta-llama/Llama-3.1-8B-Instruct
echo
# A directory of its own: an earlier demo's runs in the same place would be averaged into this
# sweep's steps.
results="results/demo_$(date -u +%Y%m%d_%H%M%S)"
echo "== H0 sweep: concurrency 1,2,4,8,16,32 x ${secs}s, 256-token prompts, 32 output tokens -> $results"
cd "$root"
SPARKBENCH="$bin" runs/run_H0_queue_knee.sh "$endpoint" --stack A \
    --model meta-llama/Llama-3.1-8B-Instruct --concurrency 1,2,4,8,16,32 --duration_s "$secs" \
    --results-dir "$results" -- --max-tokens 32 --warmup-s 0.5 --sysmon
echo
echo "== sparkbench analyze $results --out analysis"
"$bin" analyze "$results" --out analysis
