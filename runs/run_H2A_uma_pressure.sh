#!/usr/bin/env bash
# H2A — UMA-only KV behaviour (Test Plan §2, §8.3), Stack A: a context sweep at U_work. Expected:
# NVMe reads stay flat whatever the context; p99 comes from the queue and the GPU; failures are
# OOM/rejections. One run directory per context and repetition:
# results/H2A/<stamp>_H2A_stackA_<model>_ctx<N>_r<rep>/; analyze -> analysis/H2A.
#   runs/run_H2A_uma_pressure.sh --model L70B --concurrency "$(cat results/H0/uwork.txt)" \
#       --contexts 256,512,1024,2048 --nonce_per_user
#   runs/run_H2A_uma_pressure.sh --mock --quick
set -euo pipefail
SB_USAGE="H2A options:
  --contexts LIST        prompt sizes in tokens (also --context-tokens LIST) [default: the --config's run.context_tokens, else 256,512,1024,2048; --quick: 256,1024,2048,4096]"
# shellcheck source=_lib.sh
source "$(dirname "$0")/_lib.sh"
sb_init H2A "$@"

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
    else contexts="256,512,1024,2048"; fi
fi
uwork=$(sb_uwork)

sb_begin
for c in $(split_list "$contexts"); do
    [[ $c =~ ^[0-9]+$ && $c -ge 1 ]] || die "context '$c' is not a positive number of tokens"
    sb_point "ctx$c" --context-tokens "$c" --concurrency "$uwork"
done
sb_end H2_p99_vs_context
