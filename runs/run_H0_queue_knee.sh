#!/usr/bin/env bash
# H0 — queue knee / U_work (Test Plan §2, §8.1): a closed-loop concurrency sweep at a fixed context,
# one run directory per step and repetition: results/H0/<stamp>_H0_stack<S>_<model>_U<N>_r<rep>/.
# analyze then finds the knee (p99 > 2 x p50 two steps in a row) and writes U_work, one step below
# it, to results/H0/uwork.txt, which every later runner reads.
#   runs/run_H0_queue_knee.sh --stack A --model L8B --context_tokens 256
#   runs/run_H0_queue_knee.sh --mock --quick
# The old form `run_H0_queue_knee.sh ENDPOINT [options]` still works (deprecated: use --endpoint).
set -euo pipefail
SB_USAGE="H0 options:
  --context-tokens N     prompt size [default: 256]
  --concurrency-list L   users per step [default: 1,2,4,...,256; --quick: 1,2,4,8,16,32]
                         (--concurrency L with a list, as the old runner took it, works too)
  --max-tokens N         output tokens per request [default: run's 16; --quick: 32]
  --uwork FILE           where analyze writes U_work [default: results/H0/uwork.txt]"
SB_QUICK_DURATION_S=3
# shellcheck source=_lib.sh
source "$(dirname "$0")/_lib.sh"

# The old runner's first argument was the endpoint.
old_endpoint=""
if [[ $# -ge 1 && $1 != -* ]]; then
    old_endpoint=$1
    shift
fi
# The old runner's --concurrency took the sweep list; the common --concurrency takes one number.
args=()
conc=""
while [[ $# -gt 0 ]]; do
    if [[ $(sb_flag "$1") == --concurrency && $# -ge 2 && $2 == *[,\ ]* ]]; then
        conc=$2
        shift 2
        continue
    fi
    [[ $1 == -- ]] && {
        args+=("$@")
        break
    }
    args+=("$1")
    shift
done
sb_init H0 ${args[@]+"${args[@]}"}
if [[ -n $old_endpoint ]]; then
    note "a positional ENDPOINT is deprecated: use --endpoint $old_endpoint"
    ENDPOINT=$old_endpoint
fi

ctx=256 max_tokens=""
set -- ${ARGS[@]+"${ARGS[@]}"}
while [[ $# -gt 0 ]]; do
    case "$(sb_flag "$1")" in
        --context-tokens) ctx=${2:?--context-tokens needs a value} && shift 2 ;;
        --concurrency-list) conc=${2:?--concurrency-list needs a value} && shift 2 ;;
        --max-tokens) max_tokens=${2:?--max-tokens needs a value} && shift 2 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done
# One --concurrency N is a one-step sweep.
[[ -z $conc && -n $CONCURRENCY ]] && conc=$CONCURRENCY
if [[ -z $conc ]]; then
    if [[ $QUICK == 1 ]]; then conc="1,2,4,8,16,32"
    else conc="1,2,4,8,16,32,64,128,256"; fi
fi
[[ -z $max_tokens && $QUICK == 1 ]] && max_tokens=32
[[ $ctx =~ ^[0-9]+$ ]] || die "--context-tokens must be a number of tokens, not '$ctx'"

sb_begin
for n in $(split_list "$conc"); do
    [[ $n =~ ^[0-9]+$ && $n -ge 1 ]] || die "concurrency '$n' is not a positive integer"
    sb_point "U$n" --context-tokens "$ctx" --concurrency "$n" ${max_tokens:+--max-tokens "$max_tokens"}
done
sb_end H0_latency_vs_concurrency
uwork_file=$(sb_uwork_file)
if [[ -s $uwork_file ]]; then
    echo "U_work: $(cat "$uwork_file") ($uwork_file)"
else
    echo "U_work: none found (no knee in this sweep; see $ANALYSIS_DIR/H0/report.html)"
fi
