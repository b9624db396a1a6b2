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

sb_context_sweep 256,1024,2048,4096 256,512,1024,2048,4096
sb_end H2_p99_vs_context H2B_tier_hits_vs_context
