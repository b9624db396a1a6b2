#!/usr/bin/env bash
# H8A/H8B — the CPU iowait narrative (Test Plan §2, §8.11): a concurrency sweep at a fixed context
# on one stack. H8A (--stack A): iowait stays flat while p99 grows from queueing; H8B (--stack B):
# iowait and NVMe r_await track p95/p99 once tier 2 is engaged. One run directory per step and
# repetition: results/H8A|H8B/<stamp>_H8A_stackA_<model>_U<N>_r<rep>/; analyze -> analysis/H8A|H8B.
#   runs/run_H8_iowait.sh --stack B --model L70B          # 1, 2, 4, ... U_work, 2 x U_work
#   runs/run_H8_iowait.sh --stack A --mock --quick         # 1, 4, 16 at context 2048
set -euo pipefail
SB_USAGE="H8 options:
  --context-tokens N     prompt size [default: 2048]
  --concurrency-list L   users per step [default: 1,2,4,... up to U_work, then 2 x U_work;
                         --quick: 1,4,16]"
SB_PROFILE_H=H8
# shellcheck source=_lib.sh
source "$(dirname "$0")/_lib.sh"
stack=A
for ((i = 1; i <= $#; i++)); do
    a=$(sb_flag "${!i}")
    [[ $a == -- ]] && break
    if [[ $a == --stack ]]; then
        j=$((i + 1))
        stack=${!j:-A}
    elif [[ $a == --stack=* ]]; then
        stack=${a#--stack=}
    fi
done
stack=${stack#stack}
[[ $stack == A || $stack == B ]] || die "--stack must be A or B, not '$stack'"
sb_init "H8$stack" "$@"

ctx=2048 conc=""
set -- ${ARGS[@]+"${ARGS[@]}"}
while [[ $# -gt 0 ]]; do
    case "$(sb_flag "$1")" in
        --context-tokens) ctx=${2:?--context-tokens needs a value} && shift 2 ;;
        --concurrency-list) conc=${2:?--concurrency-list needs a list} && shift 2 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done
[[ $ctx =~ ^[0-9]+$ ]] || die "--context-tokens must be a number of tokens, not '$ctx'"
if [[ -z $conc ]]; then
    if [[ $QUICK == 1 ]]; then
        conc="1,4,16"
    else
        uwork=$(sb_uwork)
        conc=""
        for ((n = 1; n < uwork; n *= 2)); do conc+="$n,"; done
        conc+="$uwork,$((2 * uwork))"
    fi
fi

sb_begin
for n in $(split_list "$conc"); do
    [[ $n =~ ^[0-9]+$ && $n -ge 1 ]] || die "concurrency '$n' is not a positive integer"
    sb_point "U$n" --context-tokens "$ctx" --concurrency "$n"
done
sb_end H8_iowait_vs_p99
