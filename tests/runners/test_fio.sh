#!/usr/bin/env bash
# ctest runners/fio: runs/_fio.sh and the H4 runner against the mock with the real fio.
#  - dynamo.tier2.path from a config, block and flow YAML;
#  - a missing fio: one clear line (apt-get install fio), exit 2, nothing left behind;
#  - H4B --mock --quick, profiles baseline and heavy: fio.json (plain JSON) in each run dir, fio's
#    file gone, and analyze's summary_v3.csv carrying fio_read_mbs (heavy's above baseline's);
#  - a run that fails while fio runs: the runner stops, fio is gone, its file removed;
#  - SIGINT while fio runs: exit 130, fio gone, its file removed, fio.json still written.
# Usage: test_fio.sh SPARKBENCH_BINARY. Skips (77) without fio. No timing assertions: waits are
# bounded only so that a hang fails instead of stalling the suite.
set -euo pipefail
export SPARKBENCH=${1:?usage: test_fio.sh SPARKBENCH}
src=$(cd "$(dirname "$0")/../.." && pwd)
command -v fio >/dev/null || {
    echo "SKIP: fio is not installed"
    exit 77
}
work=$(mktemp -d /var/tmp/sbtest-fio.XXXXXX)
fails=0
cleanup() {
    local p
    # Anything of this test still running (matched by its unique directory) is a failure too.
    for p in $(pgrep -f -- "$work" || true); do
        [[ $p == "$$" ]] || kill -KILL "$p" 2>/dev/null || true
    done
    rm -rf -- "$work"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*" >&2
    fails=$((fails + 1))
}
check_nothing_left() { # what
    local left
    left=$(pgrep -af -- "$work" | grep -v "^$$ " || true)
    [[ -z $left ]] || fail "$1: processes left: $left"
    [[ -z $(find "$work" -name 'sb_fio_noisy_neighbour.dat*' 2>/dev/null) ]] ||
        fail "$1: fio's file was not removed"
}
h4b=("$src/runs/run_H4B_dynamo_storage_qos.sh" --mock --quick --concurrency 2)

# -- dynamo.tier2.path, both YAML styles
(
    # shellcheck source=runs/_lib.sh
    source "$src/runs/_lib.sh"
    # shellcheck source=runs/_fio.sh
    source "$src/runs/_fio.sh"
    printf 'dynamo:\n  tier0: {capacity_bytes: 4GiB}\n  tier2: {path: /nvme/kvbm/l8b, allocate_bytes: 256GiB}\n' >"$work/flow.yaml"
    printf 'runtime:\n  dynamo:\n    tier2:\n      allocate_bytes: 1GiB\n      path: "/mnt/kv"  # the NVMe\n    tier1:\n      path: /no\n' >"$work/block.yaml"
    printf 'dynamo:\n  tier2:\n    allocate_bytes: 1GiB\n  path: /not/tier2\n' >"$work/none.yaml"
    [[ $(sb_fio_tier2_path "$work/flow.yaml") == /nvme/kvbm/l8b ]] || echo "FAIL: flow style: '$(sb_fio_tier2_path "$work/flow.yaml")'"
    [[ $(sb_fio_tier2_path "$work/block.yaml") == /mnt/kv ]] || echo "FAIL: block style: '$(sb_fio_tier2_path "$work/block.yaml")'"
    [[ -z $(sb_fio_tier2_path "$work/none.yaml") ]] || echo "FAIL: no tier2 path: '$(sb_fio_tier2_path "$work/none.yaml")'"
) >"$work/yaml.out" 2>&1
if grep -q FAIL "$work/yaml.out"; then fail "$(cat "$work/yaml.out")"; fi

# -- fio missing
rc=0
FIO_BIN=/nonexistent/fio "${h4b[@]}" --results-dir "$work/r0" --analysis-dir "$work/a0" \
    >"$work/nofio.out" 2>&1 || rc=$?
[[ $rc == 2 ]] || fail "fio missing: exit $rc, want 2"
grep -q "apt-get install fio" "$work/nofio.out" || fail "fio missing: no 'apt-get install fio' in: $(cat "$work/nofio.out")"
[[ ! -d $work/r0/H4B ]] || [[ -z $(ls -A "$work/r0/H4B") ]] || fail "fio missing: runs were made"
check_nothing_left "fio missing"

# -- the sweep: baseline and heavy
mkdir -p "$work/kv"
rc=0
"${h4b[@]}" --duration-s 1 --fio-profiles baseline,heavy --fio-dir "$work/kv" --fio-size 16m \
    --results-dir "$work/r1" --analysis-dir "$work/a1" >"$work/sweep.out" 2>&1 || rc=$?
[[ $rc == 0 ]] || fail "sweep: exit $rc: $(tail -n 5 "$work/sweep.out")"
n=0
for d in "$work"/r1/H4B/*/; do
    n=$((n + 1))
    [[ -s $d/fio.json && $(head -c 1 "$d/fio.json") == "{" ]] || fail "sweep: $d/fio.json missing or not plain JSON"
    grep -q '"jobs"' "$d/fio.json" || fail "sweep: $d/fio.json has no jobs"
    grep -q 'fio_profile: "\(baseline\|heavy\)"' "$d/config.yaml" || fail "sweep: $d/config.yaml lacks run.fio_profile"
done
[[ $n == 2 ]] || fail "sweep: $n run directories, want 2"
csv="$work/a1/H4B/figures/summary_v3.csv"
if [[ -r $csv ]]; then
    read -r base heavy < <(awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
        { v[$c["fio_profile"]] = $c["fio_read_mbs"] } END { print v["baseline"], v["heavy"] }' "$csv")
    [[ -n ${base:-} && -n ${heavy:-} ]] || fail "sweep: fio_read_mbs empty in $csv"
    awk -v b="${base:-0}" -v h="${heavy:-0}" 'BEGIN { exit !(h > b) }' ||
        fail "sweep: heavy read MB/s ${heavy:-?} not above baseline's ${base:-?}"
else
    fail "sweep: no $csv"
fi
check_nothing_left "sweep"

# -- a run that fails while fio runs (an option sparkbench run refuses, after the fio hook)
rc=0
"${h4b[@]}" --fio-profiles heavy --fio-dir "$work/kv" --fio-size 16m --results-dir "$work/r2" \
    --analysis-dir "$work/a2" -- --no-such-flag >"$work/fail.out" 2>&1 || rc=$?
[[ $rc != 0 ]] || fail "failing run: exit 0"
grep -q "== fio heavy" "$work/fail.out" || fail "failing run: fio never started: $(tail -n 3 "$work/fail.out")"
check_nothing_left "failing run"

# -- SIGINT while fio runs
set -m
"${h4b[@]}" --duration-s 60 --fio-profiles heavy --fio-dir "$work/kv" --fio-size 16m \
    --results-dir "$work/r3" --analysis-dir "$work/a3" >"$work/int.out" 2>&1 &
runner=$!
set +m
for ((i = 0; i < 600; i++)); do # until fio runs beside the run (at most 60 s)
    grep -q "== fio heavy" "$work/int.out" && pgrep -f -- "$work/r3" | grep -qv "^$runner$" && break
    sleep 0.1
done
sleep 0.5
kill -INT "$runner"
rc=0
wait "$runner" || rc=$?
[[ $rc == 130 ]] || fail "SIGINT: exit $rc, want 130: $(tail -n 3 "$work/int.out")"
check_nothing_left "SIGINT"
f=$(find "$work/r3" -name fio.json | head -n1)
{ [[ -n $f ]] && grep -q '"jobs"' "$f"; } || fail "SIGINT: no fio.json with results"

[[ $fails == 0 ]] || exit 1
echo "ok: tier2 path, missing fio, sweep (baseline ${base:-?} MB/s, heavy ${heavy:-?} MB/s), failing run, SIGINT"
