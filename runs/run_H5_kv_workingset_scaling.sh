#!/usr/bin/env bash
# H5 — KV working-set scaling (Test Plan §2, §8): larger KV working sets should worsen p95/p99 at
# fixed compute. Workload sessioned_chat (README, "Workload sessioned_chat"): a sweep of --sessions
# (the sessions that exist at once: the working set) at U_work users, then a sweep of the session
# length --turns at one session count. Each point primes its sessions first (--prime), so the
# working set exists when measuring starts; run.json's working_set (bytes with
# --kv-bytes-per-token) is analyze's x axis (figure H5_p99_vs_session_working_set).
# A closed loop needs sessions >= users: a point with fewer sessions than U_work runs that many
# users (said on its line).
#   runs/run_H5_kv_workingset_scaling.sh --stack B --model L8B
#   runs/run_H5_kv_workingset_scaling.sh --mock --quick
set -euo pipefail
SB_SESSIONED=1
SB_USAGE="H5 options:
  --sessions-list L      sessions per point [default: 8,16,32,64,128,256,512; --quick: 4,16,64]
  --turns-list L         session lengths (turns) for the second sweep [default: 2,4,8,16;
                         --quick: none]; 'none' skips it
  --turns-sessions N     sessions of the turns sweep [default: 64]
  --turns N              turns per session in the sessions sweep [default: run's 8]
  --kv-bytes-per-token B KV bytes per token for the working set in bytes
                         [default: 131072, Llama-3.1-8B fp16: 32 layers x 8 KV heads x 128 x 2 x 2]
  --session-order ORDER  [default: zipf:1.0]
  --session-context-tokens N  a session's own context [default: run's 2048; --quick: 256, so that
                         priming 64 sessions takes seconds, not a minute, on the mock]
  --max-tokens N         output tokens per turn [default: run's]"
# shellcheck source=_lib.sh
source "$(dirname "$0")/_lib.sh"

sb_init H5 "$@"
sessions="" turns_list="" turns_sessions=64 turns="" kvb=131072 order="zipf:1.0" max_tokens="" sctx=""
set -- ${ARGS[@]+"${ARGS[@]}"}
while [[ $# -gt 0 ]]; do
    case "$(sb_flag "$1")" in
        --sessions-list | --sessions) sessions=${2:?$1 needs a value} && shift 2 ;;
        --turns-list) turns_list=${2:?$1 needs a value} && shift 2 ;;
        --turns-sessions) turns_sessions=${2:?$1 needs a value} && shift 2 ;;
        --turns) turns=${2:?$1 needs a value} && shift 2 ;;
        --kv-bytes-per-token) kvb=${2:?$1 needs a value} && shift 2 ;;
        --session-order) order=${2:?$1 needs a value} && shift 2 ;;
        --max-tokens) max_tokens=${2:?$1 needs a value} && shift 2 ;;
        --session-context-tokens) sctx=${2:?$1 needs a value} && shift 2 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done
if [[ -z $sessions ]]; then
    if [[ $QUICK == 1 ]]; then sessions="4,16,64"; else sessions="8,16,32,64,128,256,512"; fi
fi
if [[ -z $turns_list ]]; then
    if [[ $QUICK == 1 ]]; then turns_list=none; else turns_list="2,4,8,16"; fi
fi
[[ -z $sctx && $QUICK == 1 ]] && sctx=256
[[ $kvb =~ ^[0-9]+$ ]] || die "--kv-bytes-per-token must be a number of bytes, not '$kvb'"
[[ $turns_sessions =~ ^[0-9]+$ && $turns_sessions -ge 1 ]] ||
    die "--turns-sessions must be a positive integer, not '$turns_sessions'"
uwork=$(sb_uwork)

common=(--workload sessioned_chat --prime --session-order "$order" --kv-bytes-per-token "$kvb"
    ${max_tokens:+--max-tokens "$max_tokens"} ${sctx:+--session-context-tokens "$sctx"})

# One point: N sessions, T turns ("" = the run's default), users min(U_work, N).
h5_point() {
    local point=$1 n=$2 t=$3 users=$uwork
    [[ $n =~ ^[0-9]+$ && $n -ge 1 ]] || die "sessions '$n' is not a positive integer"
    if [[ $n -lt $users ]]; then
        users=$n
        note "$point: $n sessions < U_work $uwork: $users users (a session has one turn in flight)"
    fi
    sb_point "$point" "${common[@]}" --sessions "$n" --concurrency "$users" ${t:+--turns "$t"}
}

sb_begin
for n in $(split_list "$sessions"); do
    h5_point "sess$n" "$n" "$turns"
done
if [[ $turns_list != none ]]; then
    for t in $(split_list "$turns_list"); do
        [[ $t =~ ^[0-9]+$ && $t -ge 1 ]] || die "turns '$t' is not a positive integer"
        h5_point "sess${turns_sessions}_turns$t" "$turns_sessions" "$t"
    done
fi
sb_end H5_p99_vs_session_working_set
