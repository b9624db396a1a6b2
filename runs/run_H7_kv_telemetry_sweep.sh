#!/usr/bin/env bash
# H7 — KV telemetry predicts storage traffic (Test Plan §2, §8): a Stack B context sweep at U_work
# with the KV telemetry scraped every tick (KVBM's :6880/metrics, or the mock's metrics port, via
# --prom: dynkv.jsonl) beside the host's NVMe counters (sysmon.jsonl). analyze fits the tier-2
# bytes the KV telemetry says left the disk against the reads the disk saw (figure H7_pred_vs_obs,
# Pearson r; H7_p99_vs_fetch_p95).
#   runs/run_H7_kv_telemetry_sweep.sh --config configs/stackB_h2b.yaml --model L8B
#   runs/run_H7_kv_telemetry_sweep.sh --mock --quick
set -euo pipefail
SB_USAGE="H7 options:
  --contexts L           context tokens per point (also --context-tokens L) [default: the
                         --config's run.context_tokens list, else 256,512,1024,2048,4096;
                         --quick: 512,1024,2048,4096]
  --max-tokens N         output tokens per request [default: run's]
environment: KVBM_METRICS_URL (default http://<endpoint host>:6880/metrics)"
# shellcheck source=_lib.sh
source "$(dirname "$0")/_lib.sh"
# shellcheck source=_fio.sh
source "$(dirname "$0")/_fio.sh"

sb_init H7 "$@"
contexts="" max_tokens=""
set -- ${ARGS[@]+"${ARGS[@]}"}
while [[ $# -gt 0 ]]; do
    case "$(sb_flag "$1")" in
        --contexts | --context-tokens) contexts=${2:?$1 needs a value} && shift 2 ;;
        --max-tokens) max_tokens=${2:?$1 needs a value} && shift 2 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done
[[ $STACK == B ]] || note "H7 needs KV telemetry (Stack B's KVBM); stack $STACK has none to fit"
sb_contexts "$contexts" 512,1024,2048,4096 256,512,1024,2048,4096
uwork=$(sb_uwork)

tier2=()
if [[ $MOCK == 1 ]]; then
    # The mock's tier 2 in a directory of its own, so sysmon watches the device it reads from.
    sb_mock_kv_dir
    tier2=(--tier2-path "$SB_KV_DIR")
    sb_begin "" "${tier2[@]}"
else
    sb_begin
fi
for c in "${SB_CONTEXTS[@]}"; do
    sb_point "ctx$c" --context-tokens "$c" --concurrency "$uwork" ${tier2[@]+"${tier2[@]}"} \
        ${max_tokens:+--max-tokens "$max_tokens"}
done
sb_end H7_pred_vs_obs H7_p99_vs_fetch_p95
if [[ -s ${SB_ANALYZE_OUT:-$ANALYSIS_DIR/$SB_H}/figures/H7_fit.csv ]]; then
    echo "H7 fit ($ANALYSIS_DIR/$SB_H/figures/H7_fit.csv):"
    column -t -s, "${SB_ANALYZE_OUT:-$ANALYSIS_DIR/$SB_H}/figures/H7_fit.csv"
fi
