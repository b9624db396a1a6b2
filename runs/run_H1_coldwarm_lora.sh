#!/usr/bin/env bash
# H1 — LoRA cold vs warm (Test Plan §2, §8.2): LoRA loads are a weight-storage story, not a KV one.
# Cold pass: before each repetition the server is restarted (SERVER_RESTART_CMD on a real stack, the
# mock restarted under --mock) and the page cache dropped when permitted; then the warm pass on the
# same server. Both passes send the LoRA suite (--lora-list, default inputs/lora_list.txt).
# Run directories: results/H1/<stamp>_H1_stackA_<model>_cold_r<rep>/ and ..._warm_r<rep>/;
# analyze -> analysis/H1 (H1_adapter_cold_warm: cold and warm TTFT per adapter).
#   SERVER_RESTART_CMD='systemctl restart trtllm-serve' runs/run_H1_coldwarm_lora.sh --model L70B
#   runs/run_H1_coldwarm_lora.sh --mock --quick
set -euo pipefail
SB_USAGE="H1 options:
  --lora-list FILE       adapters, NAME [ID [PATH]] a line [default: inputs/lora_list.txt]
  --lora-select HOW      round_robin, uniform or zipf:S [default: zipf:1.2]
  --lora-mode MODE       trtllm (lora_request) or model (the adapter as the model)
                         [default: trtllm on Stack A, model on Stack B (Dynamo)]
  --no-lora              cold and warm passes of the base model alone
  --context-tokens N     prompt size [default: 512]
  --restart-timeout-s S  how long a restarted server may take to pass the health check [default: 900]
  --no-drop-caches       leave the page cache alone before a cold repetition
  --drop-caches          drop it even with --quick --mock (which leaves it alone by default)
users: --concurrency N, else U_work when results/H0/uwork.txt (or --uwork) has it, else 4.
SERVER_RESTART_CMD (environment): a shell command that restarts the server (real stacks); without
it the cold pass runs on the running server (said in one line)."
# shellcheck source=_lib.sh
source "$(dirname "$0")/_lib.sh"
sb_init H1 "$@"

lora_list="$runs_root/inputs/lora_list.txt" lora_select=zipf:1.2 lora_mode="" use_lora=1
ctx=512 restart_timeout=900 drop_caches=""
set -- ${ARGS[@]+"${ARGS[@]}"}
while [[ $# -gt 0 ]]; do
    case "$(sb_flag "$1")" in
        --lora-list) lora_list=${2:?--lora-list needs a file} && shift 2 ;;
        --lora-select) lora_select=${2:?--lora-select needs a value} && shift 2 ;;
        --lora-mode) lora_mode=${2:?--lora-mode needs a value} && shift 2 ;;
        --no-lora) use_lora=0 && shift ;;
        --context-tokens) ctx=${2:?--context-tokens needs a value} && shift 2 ;;
        --restart-timeout-s) restart_timeout=${2:?--restart-timeout-s needs a value} && shift 2 ;;
        --no-drop-caches) drop_caches=0 && shift ;;
        --drop-caches) drop_caches=1 && shift ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done
[[ $ctx =~ ^[0-9]+$ ]] || die "--context-tokens must be a number of tokens, not '$ctx'"
[[ $restart_timeout =~ ^[0-9]+$ ]] || die "--restart-timeout-s must be a number of seconds"
# CI and demos (--quick --mock) leave the machine's page cache alone unless asked.
if [[ -z $drop_caches ]]; then
    if [[ $QUICK == 1 && $MOCK == 1 ]]; then
        drop_caches=0
        [[ $DRY_RUN == 1 ]] || note "--quick --mock: the page cache is left alone (--drop-caches drops it)"
    else
        drop_caches=1
    fi
fi
if [[ -z $lora_mode ]]; then
    if [[ $STACK == A ]]; then lora_mode=trtllm; else lora_mode=model; fi
fi
if [[ -n $CONCURRENCY || $UWORK =~ ^[0-9]+$ || -r $UWORK ]]; then
    users=$(sb_uwork)
else
    users=4
    note "no U_work ($UWORK): $users users (pass --concurrency N to choose)"
fi

lora=()
mock_flags=()
if [[ $use_lora == 1 ]]; then
    [[ -r $lora_list ]] || die "cannot read the LoRA list '$lora_list'"
    lora=(--lora-list "$lora_list" --lora-select "$lora_select" --lora-mode "$lora_mode")
    if [[ $MOCK == 1 ]]; then
        sb_traps # SB_TMP, where the mock's adapter files live
        mapfile -t names < <(sed -e 's/#.*//' "$lora_list" | awk 'NF { print $1 }')
        [[ ${#names[@]} -gt 0 ]] || die "'$lora_list' lists no adapter"
        modules=""
        for n in "${names[@]}"; do modules+="${modules:+,}$n=$SB_TMP/lora_${n//[^A-Za-z0-9_.-]/_}.bin"; done
        # Every adapter stays resident, so the warm pass is warm; the restart makes them cold.
        mock_flags=(--lora-modules "$modules" --max-loras "${#names[@]}")
        [[ $QUICK == 1 ]] && mock_flags+=(--lora-bytes 4MiB)
    fi
fi

restart_noted=0
h1_cold() {
    if [[ $MOCK == 1 ]]; then
        sb_mock_restart
    elif [[ -n ${SERVER_RESTART_CMD:-} ]]; then
        echo "== restarting the server: $SERVER_RESTART_CMD"
        local rc=0
        bash -c "$SERVER_RESTART_CMD" || rc=$?
        [[ $rc == 0 ]] || die "SERVER_RESTART_CMD failed (exit $rc): $SERVER_RESTART_CMD"
        sb_wait_healthy "$restart_timeout"
    elif [[ $restart_noted == 0 ]]; then
        note "no SERVER_RESTART_CMD: the cold pass runs on the running server (adapters it already loaded are warm)"
        restart_noted=1
    fi
    if [[ $drop_caches == 1 ]]; then
        if { sync && echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
            echo "== page cache dropped"
        else
            note "cannot drop the page cache (needs root: sync; echo 3 > /proc/sys/vm/drop_caches): adapter files may be read from memory"
        fi
    fi
}

sb_begin "" ${mock_flags[@]+"${mock_flags[@]}"}
if [[ $DRY_RUN == 1 ]]; then
    if [[ $MOCK == 1 ]]; then what="the mock is restarted"
    elif [[ -n ${SERVER_RESTART_CMD:-} ]]; then what="SERVER_RESTART_CMD ($SERVER_RESTART_CMD) restarts the server"
    else what="(no SERVER_RESTART_CMD: no restart)"; fi
    # (An if, not `[[ ]] && echo` in $(...): a false test would fail the assignment under set -e.)
    if [[ $drop_caches == 1 ]]; then what+=", then the page cache is dropped when permitted"; fi
    SB_PLAN+=("before each cold repetition: $what")
fi
SB_BEFORE_REP=h1_cold
sb_point cold --context-tokens "$ctx" --concurrency "$users" ${lora[@]+"${lora[@]}"}
SB_BEFORE_REP=""
sb_point warm --context-tokens "$ctx" --concurrency "$users" ${lora[@]+"${lora[@]}"}
if [[ $use_lora == 1 ]]; then sb_end H1_adapter_cold_warm H1_cold_vs_warm
else sb_end H1_cold_vs_warm; fi
