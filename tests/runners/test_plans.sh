#!/usr/bin/env bash
# ctest runners/plans: the runners' flags and plans (H4A, H4B, H5, H6, H7; every runner's nonce
# default), sending nothing:
# --help, --dry-run plans (points and their run flags), both flag spellings (--fio_profile heavy),
# unknown options and bad values refused with exit 2, H6 on a real stack without SERVER_CONFIG_CMD
# refused before anything starts.
# Usage: test_plans.sh SPARKBENCH_BINARY
set -euo pipefail
export SPARKBENCH=${1:?usage: test_plans.sh SPARKBENCH}
src=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/sbtest-plans.XXXXXX")
trap 'rm -rf -- "$work"' EXIT
fails=0
fail() {
    echo "FAIL: $*" >&2
    fails=$((fails + 1))
}
# expect RC PATTERN CMD...: runs CMD, checks its exit code and that its output matches PATTERN.
expect() {
    local want=$1 pat=$2 rc=0
    shift 2
    "$@" >"$work/out" 2>&1 || rc=$?
    [[ $rc == "$want" ]] || fail "$(basename "$1") ${*:2}: exit $rc, want $want: $(tail -n 3 "$work/out")"
    grep -Eq -- "$pat" "$work/out" || fail "$(basename "$1") ${*:2}: no /$pat/ in: $(tail -n 5 "$work/out")"
}
r="$src/runs"
common=(--results-dir "$work/res" --analysis-dir "$work/an")
for s in run_H4A_storage_qos run_H4B_dynamo_storage_qos run_H5_kv_workingset_scaling \
    run_H6_tier_sizing_policy run_H7_kv_telemetry_sweep; do
    expect 0 "common options" "$r/$s.sh" --help
    expect 0 "dry run: nothing was sent" "$r/$s.sh" --mock --quick --concurrency 4 --dry-run "${common[@]}"
    expect 2 "unknown option '--bogus'" "$r/$s.sh" --mock --quick --concurrency 4 --dry-run --bogus "${common[@]}"
done
# H4: three points by default, one with the Test Plan's spelling; fio dir from the config
expect 0 "plan: 3 points x 1 repetitions" "$r/run_H4B_dynamo_storage_qos.sh" --mock --quick --concurrency 4 --dry-run "${common[@]}"
expect 0 "point heavy: 3 x 300 s: .*--fio-profile heavy --tier2-path /nvme/kvbm/l8b" \
    "$r/run_H4B_dynamo_storage_qos.sh" --fio_profile heavy --concurrency 4 --dry-run \
    --config "$src/configs/stackB_h2b.yaml" "${common[@]}"
expect 0 "--tier2-path '/var/tmp/sb_kv.<new>'" "$r/run_H4B_dynamo_storage_qos.sh" --mock --quick --concurrency 4 --dry-run \
    --config "$src/configs/stackB_h2b.yaml" "${common[@]}"
expect 2 "no fio profile 'loud'" "$r/run_H4A_storage_qos.sh" --fio-profiles baseline,loud --concurrency 4 --dry-run --fio-dir /var/tmp "${common[@]}"
expect 0 "fio runs in /var/tmp: no --fio-dir" "$r/run_H4A_storage_qos.sh" --concurrency 4 --dry-run "${common[@]}"
expect 0 "--context-tokens 2048 --concurrency 4 --fio-profile moderate" "$r/run_H4A_storage_qos.sh" --concurrency 4 --dry-run --fio_dir /var/tmp "${common[@]}"
# H5: sessions capped users, the turns sweep in a full plan
expect 0 "point sess4: .*--sessions 4 --concurrency 4" "$r/run_H5_kv_workingset_scaling.sh" --mock --quick --concurrency 8 --dry-run "${common[@]}"
expect 0 "point sess64_turns16: .*--sessions 64 --concurrency 8 --turns 16" "$r/run_H5_kv_workingset_scaling.sh" --mock --concurrency 8 --dry-run "${common[@]}"
# H6: labels on every run; the mock's blocks from the capacities; the hook on a real stack
expect 0 "point t0t1-80MiB_lfu: .*--tier0-capacity-bytes 16777216 --tier1-capacity-bytes 67108864 --eviction-policy lfu" \
    "$r/run_H6_tier_sizing_policy.sh" --mock --quick --concurrency 4 --dry-run "${common[@]}"
expect 0 "t0t1-8MiB_lru: mock --tier0-blocks 64 --tier1-blocks 64" \
    "$r/run_H6_tier_sizing_policy.sh" --mock --quick --concurrency 4 --dry-run "${common[@]}"
expect 0 "plan: 9 points x 3 repetitions" "$r/run_H6_tier_sizing_policy.sh" --concurrency 4 --dry-run "${common[@]}"
expect 2 "needs SERVER_CONFIG_CMD" env -u SERVER_CONFIG_CMD "$r/run_H6_tier_sizing_policy.sh" --concurrency 4 \
    --endpoint http://127.0.0.1:9/v1/chat/completions "${common[@]}"
expect 2 "bad size 'lots'" "$r/run_H6_tier_sizing_policy.sh" --capacities small:lots:1GiB --concurrency 4 --dry-run "${common[@]}"
# H7: the KV telemetry scraped on every point
expect 0 "point ctx4096: .*--prom http://127.0.0.1:6880/metrics .*--context-tokens 4096 --concurrency 4" \
    "$r/run_H7_kv_telemetry_sweep.sh" --quick --concurrency 4 --dry-run "${common[@]}"
# Every fixed-context runner sends per-user prompts by default (Test Plan §16: --nonce_per_user),
# --no-nonce-per-user opts out (and overrides a config's server.nonce_per_user); the
# sessioned_chat runners (H5, H6) send no nonce, which run refuses there.
for s in run_H0_queue_knee run_H1_coldwarm_lora run_H2A_uma_pressure run_H2B_dynamo_kv_pressure \
    run_H4A_storage_qos run_H4B_dynamo_storage_qos run_H7_kv_telemetry_sweep run_H8_iowait; do
    expect 0 "--no-nonce-per-user" "$r/$s.sh" --help
    expect 0 "dry run: nothing was sent" "$r/$s.sh" --mock --quick --concurrency 4 --dry-run "${common[@]}"
    n=$(grep -c "^  point .* --nonce-per-user" "$work/out" || true)
    p=$(grep -c "^  point " "$work/out" || true)
    [[ $p -ge 1 && $n == "$p" ]] || fail "$s: $n of $p points send --nonce-per-user by default"
    expect 0 "dry run: nothing was sent" "$r/$s.sh" --mock --quick --concurrency 4 --dry-run --no_nonce_per_user "${common[@]}"
    grep -q -- " --nonce-per-user" "$work/out" && fail "$s --no-nonce-per-user: a point still sends --nonce-per-user"
    n=$(grep -c "^  point .* --no-nonce-per-user" "$work/out" || true)
    [[ $n == "$p" ]] || fail "$s --no-nonce-per-user: $n of $p points send --no-nonce-per-user"
done
# H3 hands the choice on to the H2A and H2B sweeps it runs.
expect 0 "point ctx256: .* --nonce-per-user" \
    "$r/run_H3_uma_vs_tiered.sh" --mock --quick --concurrency 4 --dry-run --rerun "${common[@]}"
expect 0 "point ctx256: .* --no-nonce-per-user" \
    "$r/run_H3_uma_vs_tiered.sh" --mock --quick --concurrency 4 --dry-run --rerun --no-nonce-per-user "${common[@]}"
for s in run_H5_kv_workingset_scaling run_H6_tier_sizing_policy; do
    expect 0 "dry run: nothing was sent" "$r/$s.sh" --mock --quick --concurrency 4 --dry-run "${common[@]}"
    grep -q -- "nonce" "$work/out" && fail "$s: a sessioned_chat point sends a nonce flag"
    expect 2 "sessioned_chat" "$r/$s.sh" --mock --quick --concurrency 4 --dry-run --nonce-per-user "${common[@]}"
done
# Every option a runner's own parser takes is in its --help.
for s in "$r"/run_H*.sh; do
    "$s" --help >"$work/help" 2>&1 || fail "$(basename "$s") --help: exit $?"
    code=$(cat "$s")
    [[ $s == *_H4* ]] && code+=$(cat "$r/_h4.sh" "$r/_fio.sh")
    while read -r f; do
        grep -q -- "$f" "$work/help" || fail "$(basename "$s"): option $f is not in its --help"
    done < <(grep -Eo '^[[:space:]]+--[a-z0-9-]+( \| --[a-z0-9-]+)*\)' <<<"$code" | grep -Eo -- '--[a-z0-9-]+' | sort -u)
done
# The Test Plan §13 shape: the config's run.context_tokens list is the context sweep.
for s in run_H2A_uma_pressure run_H2B_dynamo_kv_pressure run_H7_kv_telemetry_sweep; do
    expect 0 "plan: 5 points x 3 repetitions" "$r/$s.sh" --config "$src/tests/data/configs/testplan13_h2b.yaml" \
        --concurrency 4 --dry-run "${common[@]}"
done
[[ ! -e $work/res ]] || fail "a dry run wrote $work/res"
[[ $fails == 0 ]] || exit 1
echo "ok"
