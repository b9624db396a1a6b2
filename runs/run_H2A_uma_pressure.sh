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

sb_context_sweep 256,1024,2048,4096 256,512,1024,2048
sb_end H2_p99_vs_context
