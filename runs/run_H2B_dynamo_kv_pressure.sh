#!/usr/bin/env bash
# H2B — Dynamo KV tiering knee (Test Plan §2, §8.4), Stack B: a context sweep at U_work. Expected: the
# RAM tier overflows, tier-2 (NVMe) fetches start and p99 shows the first storage-dependent knee,
# with tier hits and NVMe r_await. One run directory per context and repetition:
# results/H2B/<stamp>_H2B_stackB_<model>_ctx<N>_r<rep>/; analyze -> analysis/H2B.
#   runs/run_H2B_dynamo_kv_pressure.sh --model L70B --concurrency "$(cat results/H0/uwork.txt)" \
#       --contexts 256,512,1024,2048,4096 \
#       --config configs/stackB_llama70b_dynamo_tiered.yaml
#   runs/run_H2B_dynamo_kv_pressure.sh --mock --quick
set -euo pipefail
SB_USAGE="H2B options:
  --contexts LIST        prompt sizes in tokens (also --context-tokens LIST) [default: the --config's run.context_tokens, else 256,512,1024,2048,4096; --quick: 256,1024,2048,4096]"
# shellcheck source=_lib.sh
source "$(dirname "$0")/_lib.sh"
sb_init H2B "$@"

contexts=""
set -- ${ARGS[@]+"${ARGS[@]}"}
while [[ $# -gt 0 ]]; do
    case "$(sb_flag "$1")" in
        --contexts | --context-tokens) contexts=${2:?$1 needs a list} && shift 2 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done
# The config's run.context_tokens list (Test Plan §13) is the sweep when --contexts is not given.
[[ -n $contexts ]] || contexts=$(sb_cfg_list context_tokens)
if [[ -z $contexts ]]; then
    if [[ $QUICK == 1 ]]; then contexts="256,1024,2048,4096"
    else contexts="256,512,1024,2048,4096"; fi
fi
uwork=$(sb_uwork)

sb_begin
for c in $(split_list "$contexts"); do
    [[ $c =~ ^[0-9]+$ && $c -ge 1 ]] || die "context '$c' is not a positive number of tokens"
    sb_point "ctx$c" --context-tokens "$c" --concurrency "$uwork"
done
sb_end H2_p99_vs_context H2B_tier_hits_vs_context
