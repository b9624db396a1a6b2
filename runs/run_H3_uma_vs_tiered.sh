#!/usr/bin/env bash
# H3 — UMA vs tiered KV interpretation (Test Plan §2, §8.5): the OS counters (iowait, NVMe r/s,
# r_await, PSI io, MemAvailable) of H2A (Stack A) beside H2B's (Stack B): informative for A,
# insufficient for B. Reuses the newest H2A and H2B sweeps under results/ (one runner invocation's
# runs, by their stamp) when there are any, else runs them (--rerun always does); then analyzes
# both into analysis/H3 and prints the H3 figure.
#   runs/run_H3_uma_vs_tiered.sh --model L70B
#   runs/run_H3_uma_vs_tiered.sh --mock --quick
set -euo pipefail
SB_USAGE="H3 options:
  --rerun                run H2A and H2B even when results exist
  --endpoint-a URL, --endpoint-b URL, --config-a FILE, --config-b FILE
                         each stack's endpoint and config (--endpoint/--config go to the stack
                         named by --stack)
  --contexts LIST        the H2A/H2B sweeps' contexts [default: theirs]
The common options (--nonce-per-user too) and the extra run flags after -- go on to
run_H2A_uma_pressure.sh and run_H2B_dynamo_kv_pressure.sh."
# shellcheck source=_lib.sh
source "$(dirname "$0")/_lib.sh"
sb_init H3 "$@"

rerun=0 contexts="" ep_a="" ep_b="" cfg_a="" cfg_b=""
set -- ${ARGS[@]+"${ARGS[@]}"}
while [[ $# -gt 0 ]]; do
    case "$(sb_flag "$1")" in
        --rerun) rerun=1 && shift ;;
        --contexts) contexts=${2:?--contexts needs a list} && shift 2 ;;
        --endpoint-a) ep_a=${2:?--endpoint-a needs a URL} && shift 2 ;;
        --endpoint-b) ep_b=${2:?--endpoint-b needs a URL} && shift 2 ;;
        --config-a) cfg_a=${2:?--config-a needs a file} && shift 2 ;;
        --config-b) cfg_b=${2:?--config-b needs a file} && shift 2 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done
# An --endpoint or --config belongs to the stack --stack names.
user_endpoint=0
sb_given --endpoint && user_endpoint=1
if [[ $user_endpoint == 1 ]] || sb_given --config; then
    sb_given --stack || die "H3 covers both stacks: use --endpoint-a/--endpoint-b and --config-a/--config-b (or name one with --stack)"
    if [[ $STACK == A ]]; then
        [[ $user_endpoint == 1 ]] && ep_a=${ep_a:-$ENDPOINT}
        cfg_a=${cfg_a:-$CONFIG}
    else
        [[ $user_endpoint == 1 ]] && ep_b=${ep_b:-$ENDPOINT}
        cfg_b=${cfg_b:-$CONFIG}
    fi
fi

# The run directories of the newest sweep of H (same stamp), one a line; nothing when none.
newest_sweep() {
    local dir="$RESULTS_DIR/$1" stamp
    [[ -d $dir ]] || return 0
    stamp=$(find "$dir" -mindepth 2 -maxdepth 2 -name metrics.jsonl -printf '%h\n' | sed -E 's|.*/||' |
        grep -Eo "^[0-9]{8}_[0-9]{6}_$1_" | sort | tail -n1 || true)
    [[ -n $stamp ]] || return 0
    find "$dir" -mindepth 2 -maxdepth 2 -name metrics.jsonl -path "*/${stamp}*" -printf '%h\n' | sort
}

common=(--model "$MODEL" --duration-s "$DURATION_S" --warmup-s "$WARMUP_S" --repetitions "$REPETITIONS"
    --seed "$SEED" --uwork "$UWORK" --results-dir "$RESULTS_DIR" --analysis-dir "$ANALYSIS_DIR"
    ${SB_NONCE[@]+"${SB_NONCE[@]}"})
[[ -n $CONCURRENCY ]] && common+=(--concurrency "$CONCURRENCY")
[[ $MOCK == 1 ]] && common+=(--mock)
[[ $QUICK == 1 ]] && common+=(--quick)
[[ $DRY_RUN == 1 ]] && common+=(--dry-run)
[[ -n $contexts ]] && common+=(--contexts "$contexts")

sb_traps
SB_ANALYZE_PATHS=()
for h in H2A H2B; do
    mapfile -t dirs < <(newest_sweep "$h")
    if [[ $rerun == 0 && ${#dirs[@]} -gt 0 ]]; then
        s=$(basename "${dirs[0]}")
        echo "== H3 reuses the newest $h sweep: ${s:0:15}, ${#dirs[@]} runs in $RESULTS_DIR/$h"
    else
        args=("${common[@]}")
        if [[ $h == H2A ]]; then
            runner=run_H2A_uma_pressure.sh
            [[ -n $ep_a ]] && args+=(--endpoint "$ep_a")
            [[ -n $cfg_a ]] && args+=(--config "$cfg_a")
            [[ $TRTLLM_METRICS == 1 ]] && args+=(--trtllm-metrics)
        else
            runner=run_H2B_dynamo_kv_pressure.sh
            [[ -n $ep_b ]] && args+=(--endpoint "$ep_b")
            [[ -n $cfg_b ]] && args+=(--config "$cfg_b")
        fi
        echo "== H3 runs $h: $runner"
        sb_spawn "$runs_root/runs/$runner" "${args[@]}" ${EXTRA[@]+-- "${EXTRA[@]}"}
        rc=0
        wait "$SB_BG_PID" || rc=$?
        [[ $rc == 0 ]] || die "$runner failed (exit $rc)"
        [[ $DRY_RUN == 1 ]] && continue
        mapfile -t dirs < <(newest_sweep "$h")
        [[ ${#dirs[@]} -gt 0 ]] || die "$runner left no run under $RESULTS_DIR/$h"
    fi
    SB_ANALYZE_PATHS+=("${dirs[@]}")
done
SB_ANALYZE_OUT="$ANALYSIS_DIR/H3"
if [[ $DRY_RUN == 1 ]]; then
    echo "plan: H3 then analyzes those H2A and H2B runs into $SB_ANALYZE_OUT"
    echo "dry run: nothing was sent"
    exit 0
fi
sb_end H3_os_counters
