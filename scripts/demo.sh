#!/usr/bin/env bash
# The demo: a real (short) H0 experiment against the built-in mock, with the same runner a user
# points at a real stack: runs/run_H0_queue_knee.sh --mock --quick starts `sparkbench mock` with
# the H0 Stack A profile (configs/mock/H0_stackA.yaml: TensorRT-LLM's token budget, early EOS and
# prefill/decode spread, so closed-loop users come back in bursts and the TTFT tail leaves the
# median well before the 64 batch slots fill) on a free port, checks /health and /v1/models,
# sweeps closed-loop concurrency 1..32 (3 s a step, telemetry sampled alongside each) and ends
# with `sparkbench analyze`: the knee, U_work, the summary table, the H0 figure and the report.
# Run directories land in results/demo_<UTC stamp>/H0/, U_work in results/H0/uwork.txt (where the
# other runners read it), figures and report in analysis/H0/.
# DEMO_SECONDS: seconds per step (default: the quick sweep's 3).
set -euo pipefail
bin=$(readlink -f "${1:-build/sparkbench}")
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# A directory of its own: an earlier demo's runs in the same place would be averaged into this
# sweep's steps.
results="results/demo_$(date -u +%Y%m%d_%H%M%S)"
args=(--mock --quick --stack A --results-dir "$results" --analysis-dir analysis
      --uwork results/H0/uwork.txt)
if [[ -n "${DEMO_SECONDS:-}" ]]; then args+=(--duration-s "$DEMO_SECONDS"); fi
SPARKBENCH="$bin" exec runs/run_H0_queue_knee.sh "${args[@]}"
