#!/usr/bin/env bash
# H6 — KV tier sizing and eviction policy (Test Plan §2, §8): larger RAM tiers or another eviction
# policy should move the knee. One point per (tier-0 + tier-1 capacity, policy) at U_work, with a
# sessioned_chat working set that the small setting cannot hold. Each run records its capacities
# and policy (run --tier0-capacity-bytes, --tier1-capacity-bytes, --eviction-policy: config.yaml's
# dynamo.* keys), analyze's H6 x axis (tier0 + tier1 bytes) and policy series
# (figure H6_knee_vs_tier_capacity).
# Real stack: before each setting the runner calls the SERVER_CONFIG_CMD hook (a shell command) with
#   SB_TIER0_BYTES, SB_TIER1_BYTES, SB_EVICTION_POLICY, SB_CAPACITY_LABEL in its environment
# (it reconfigures and restarts the server: KVBM's DYN_KVBM_CPU_CACHE_GB etc.), then waits until
# /health and /v1/models answer (SB_HEALTH_WAIT_S, default 900). --mock restarts the mock with
# --tier0-blocks / --tier1-blocks (capacity / the profile's kv_block_bytes) and the policy on
# every tier.
#   SERVER_CONFIG_CMD=./restart_dynamo.sh runs/run_H6_tier_sizing_policy.sh --stack B --model L8B
#   runs/run_H6_tier_sizing_policy.sh --mock --quick
set -euo pipefail
SB_SESSIONED=1
SB_USAGE="H6 options:
  --capacities L         LABEL:TIER0:TIER1 settings, sizes in bytes with KiB/MiB/GiB
                         [default: small:2GiB:4GiB,medium:4GiB:12GiB,large:8GiB:32GiB;
                         --mock: small:4MiB:4MiB,medium:8MiB:16MiB,large:16MiB:64MiB;
                         --quick: the small and large of those]
  --policies L           eviction policies (also --policy) [default: lru,lfu,fifo; --quick: lru,lfu]
  --sessions N           sessioned_chat sessions (the working set) [default: 64; --quick: 32]
  --session-context-tokens N  [default: run's 2048; --quick: 256]
  --kv-bytes-per-token B [default: 131072]
  --max-tokens N         output tokens per turn [default: run's]
environment: SERVER_CONFIG_CMD (real stacks), SB_HEALTH_WAIT_S"
# shellcheck source=_lib.sh
source "$(dirname "$0")/_lib.sh"

sb_init H6 "$@"
caps="" policies="" sessions="" sctx="" kvb=131072 max_tokens=""
set -- ${ARGS[@]+"${ARGS[@]}"}
while [[ $# -gt 0 ]]; do
    case "$(sb_flag "$1")" in
        --capacities) caps=${2:?$1 needs a value} && shift 2 ;;
        --policies | --policy) policies=${2:?$1 needs a value} && shift 2 ;;
        --sessions) sessions=${2:?$1 needs a value} && shift 2 ;;
        --session-context-tokens) sctx=${2:?$1 needs a value} && shift 2 ;;
        --kv-bytes-per-token) kvb=${2:?$1 needs a value} && shift 2 ;;
        --max-tokens) max_tokens=${2:?$1 needs a value} && shift 2 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done
if [[ -z $caps ]]; then
    if [[ $MOCK == 1 ]]; then caps="small:4MiB:4MiB,medium:8MiB:16MiB,large:16MiB:64MiB"
    else caps="small:2GiB:4GiB,medium:4GiB:12GiB,large:8GiB:32GiB"; fi
    # --quick: the ends of the range
    [[ $QUICK == 1 ]] && caps=$(echo "$caps" | tr ',' '\n' | sed -n '1p;$p' | paste -sd, -)
fi
if [[ -z $policies ]]; then
    if [[ $QUICK == 1 ]]; then policies="lru,lfu"; else policies="lru,lfu,fifo"; fi
fi
[[ -z $sctx && $QUICK == 1 ]] && sctx=256
if [[ -z $sessions ]]; then
    if [[ $QUICK == 1 ]]; then sessions=32; else sessions=64; fi
fi
[[ $sessions =~ ^[0-9]+$ && $sessions -ge 1 ]] || die "--sessions must be a positive integer, not '$sessions'"

# "4GiB" -> bytes (B, KiB, MiB, GiB, TiB, and k/m/g/t as powers of 1024; plain numbers are bytes).
h6_bytes() {
    local s=$1
    [[ $s =~ ^([0-9]+)([KkMmGgTt]?)(i?[Bb])?$ ]] || die "bad size '$s' in --capacities (e.g. 4GiB)"
    local n=${BASH_REMATCH[1]} u=${BASH_REMATCH[2],,}
    case "$u" in
        k) n=$((n << 10)) ;;
        m) n=$((n << 20)) ;;
        g) n=$((n << 30)) ;;
        t) n=$((n << 40)) ;;
    esac
    echo "$n"
}
# bytes -> "12MiB" (exact binary units), for point names.
h6_human() {
    local n=$1 u
    for u in B KiB MiB GiB TiB; do
        if ((n < 1024 || n % 1024 != 0)) || [[ $u == TiB ]]; then
            echo "$n$u"
            return
        fi
        n=$((n / 1024))
    done
}

labels=() t0s=() t1s=()
for c in $(split_list "$caps"); do
    IFS=: read -r label t0 t1 extra <<<"$c"
    [[ -n $label && -n $t0 && -n $t1 && -z $extra ]] || die "bad --capacities entry '$c' (LABEL:TIER0:TIER1)"
    labels+=("$label")
    t0s+=("$(h6_bytes "$t0")")
    t1s+=("$(h6_bytes "$t1")")
done
read -r -a plist <<<"$(split_list "$policies")"
for p in "${plist[@]}"; do
    case "$p" in
        lru | lfu | fifo) ;;
        *) [[ $MOCK == 1 ]] && die "the mock knows the policies lru, lfu and fifo, not '$p'" ;;
    esac
done
uwork=$(sb_uwork)
users=$uwork
[[ $sessions -lt $users ]] && users=$sessions

block_bytes=""
if [[ $MOCK == 1 ]]; then
    profile=$(sb__default_profile)
    block_bytes=$(sb__cfg_get "$profile" kv_block_bytes)
    block_bytes=$(h6_bytes "${block_bytes:-64KiB}")
elif [[ $DRY_RUN == 0 && ${#labels[@]} -gt 0 && -z ${SERVER_CONFIG_CMD:-} ]]; then
    die "H6 on a real stack needs SERVER_CONFIG_CMD: a command that sets the server's tier capacities and eviction policy from SB_TIER0_BYTES, SB_TIER1_BYTES, SB_EVICTION_POLICY and restarts it (or use --mock)"
fi

# One tier setting: reconfigure the server (mock restart or the hook), then the point.
h6_setting() {
    local label=$1 t0=$2 t1=$3 pol=$4 point
    point="t0t1-$(h6_human $((t0 + t1)))_$pol"
    if [[ $MOCK == 1 ]]; then
        local b0=$(((t0 + block_bytes - 1) / block_bytes)) b1=$(((t1 + block_bytes - 1) / block_bytes))
        if [[ $DRY_RUN == 1 ]]; then
            SB_PLAN+=("$point: mock --tier0-blocks $b0 --tier1-blocks $b1 --tier{0,1,2}-policy $pol")
        else
            sb_mock_restart "" --tier0-blocks "$b0" --tier1-blocks "$b1" \
                --tier0-policy "$pol" --tier1-policy "$pol" --tier2-policy "$pol"
        fi
    elif [[ $DRY_RUN == 1 ]]; then
        SB_PLAN+=("$point: SB_TIER0_BYTES=$t0 SB_TIER1_BYTES=$t1 SB_EVICTION_POLICY=$pol \$SERVER_CONFIG_CMD (${SERVER_CONFIG_CMD:-unset}), then wait for /health")
    else
        echo "== $label ($point): SERVER_CONFIG_CMD with tier 0 $t0 B, tier 1 $t1 B, policy $pol"
        SB_TIER0_BYTES=$t0 SB_TIER1_BYTES=$t1 SB_EVICTION_POLICY=$pol SB_CAPACITY_LABEL=$label \
            bash -c "$SERVER_CONFIG_CMD" || die "SERVER_CONFIG_CMD failed for $point (exit $?)"
        sb_wait_healthy "${SB_HEALTH_WAIT_S:-900}"
    fi
    sb_point "$point" --workload sessioned_chat --sessions "$sessions" --concurrency "$users" \
        --prime --session-order zipf:1.0 --kv-bytes-per-token "$kvb" \
        --tier0-capacity-bytes "$t0" --tier1-capacity-bytes "$t1" --eviction-policy "$pol" \
        ${sctx:+--session-context-tokens "$sctx"} ${max_tokens:+--max-tokens "$max_tokens"}
}

sb_begin
for i in "${!labels[@]}"; do
    for p in "${plist[@]}"; do
        h6_setting "${labels[i]}" "${t0s[i]}" "${t1s[i]}" "$p"
    done
done
sb_end H6_knee_vs_tier_capacity
