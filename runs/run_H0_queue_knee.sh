#!/usr/bin/env bash
# H0 — queue knee / U_work: a closed-loop concurrency sweep at fixed context, one run directory per
# step: results/<UTC stamp>_H0_<stack>_<model>_U<N>/ (config.yaml, metrics.jsonl, run.json).
# Usage: runs/run_H0_queue_knee.sh ENDPOINT [--stack A] [--model NAME] [--context_tokens 256]
#          [--concurrency "1,2,4,8,16,32,64,128,256"] [--duration_s 300] [--seed 42]
#          [--results-dir results] [-- extra sparkbench run flags]
set -euo pipefail
source "$(dirname "$0")/_lib.sh"
[[ $# -ge 1 && "$1" != -* ]] || die "usage: $0 ENDPOINT [options] (see the header of this script)"
endpoint=$1; shift
stack=A; model=L8B; ctx=256; conc="1,2,4,8,16,32,64,128,256"; duration=300; seed=42
results=results; extra=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --stack) stack=$2; shift 2 ;;
        --model) model=$2; shift 2 ;;
        --context_tokens|--context-tokens) ctx=$2; shift 2 ;;
        --concurrency) conc=$2; shift 2 ;;
        --duration_s|--duration-s) duration=$2; shift 2 ;;
        --seed) seed=$2; shift 2 ;;
        --results-dir) results=$2; shift 2 ;;
        --) shift; extra=("$@"); break ;;
        *) die "unknown option '$1'" ;;
    esac
done
stamp=$(utc_stamp)
for n in $(split_list "$conc"); do
    id="${stamp}_H0_stack${stack}_${model//\//-}_U${n}"
    echo "== H0 step: concurrency $n -> $results/$id"
    "$SPARKBENCH" run --endpoint "$endpoint" --stack "$stack" --model "$model" \
        --context-tokens "$ctx" --concurrency "$n" --duration-s "$duration" --seed "$seed" \
        --hypothesis H0 --phase "U$n" --run-id "$id" --results-dir "$results" \
        --prompts-dir "$runs_root/inputs/prompts" ${extra[@]+"${extra[@]}"}
done
