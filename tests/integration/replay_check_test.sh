#!/usr/bin/env bash
# Tests of the CI replay's checker (tests/integration/replay_check.sh) on analyze-shaped CSVs
# written here: the outcomes the replay measured pass; each broken outcome (no knee, H2A reads
# that climb, H2B reads that stay flat, an H4A that moves with fio, an H4B that does not, a weak
# H7 fit, an H7_p99_vs_fetch_p95 with fewer than 3 points, a missing figure) fails with a line naming the hypothesis, the number and the file.
#   tests/integration/replay_check_test.sh SOURCE_DIR
set -euo pipefail
src=$(cd "${1:?usage: $0 SOURCE_DIR}" && pwd)
check=$src/tests/integration/replay_check.sh
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sb_replay_check.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
failures=0

# A results + analysis tree holding what the replay measured (numbers from a real replay).
make_tree() {
    local r=$1/results a=$1/analysis h
    mkdir -p "$r/H0"
    for h in H0 H1 H2A H2B H3 H4A H4B H5 H6 H7 H8A H8B; do mkdir -p "$a/$h/figures"; done
    printf '{\n\t"groups":\t[{\n\t\t\t"series":\t"H0 / A",\n\t\t\t"picked":\ttrue,\n\t\t\t"status":\t"knee",\n\t\t\t"knee":\t16,\n\t\t\t"uwork":\t8\n\t\t}]\n}\n' >"$r/H0/uwork.json"
    printf 'max_num_seqs: 64\n' >"$1/H0_stackA.yaml"
    fig() { # fig DIR STEM CSV-TEXT [table]
        printf '%s\n' "$3" >"$a/$1/figures/$2.csv"
        [[ ${4:-} == table ]] || { echo '<svg/>' >"$a/$1/figures/$2.svg"; echo 'plot 1' >"$a/$1/figures/$2.gp"; }
    }
    fig H0 H0_latency_vs_concurrency $'series,hypothesis,concurrency\nH0 / A,H0,8'
    fig H1 H1_cold_vs_warm $'series,hypothesis,phase\nH1 / A,H1,cold' table
    fig H1 H1_adapter_cold_warm $'series,hypothesis,adapter\nH1 / A,H1,a1'
    fig H2A H2_p99_vs_context $'series,hypothesis,context_tokens,nvme_rps_mean\nH2A / A,H2A,256,0\nH2A / A,H2A,1024,0\nH2A / A,H2A,2048,0.5\nH2A / A,H2A,4096,0'
    fig H2B H2_p99_vs_context $'series,hypothesis,context_tokens,nvme_rps_mean\nH2B / B,H2B,256,0\nH2B / B,H2B,1024,2640.2\nH2B / B,H2B,2048,3158.4\nH2B / B,H2B,4096,1827.2'
    fig H2B H2B_tier_hits_vs_context $'series,context_tokens,tier2_share\nH2B / B,256,0\nH2B / B,1024,0.74\nH2B / B,2048,0.89\nH2B / B,4096,0.96'
    fig H3 H3_os_counters $'series,hypothesis,context_tokens\nH2A / A,H2A,256\nH2B / B,H2B,256'
    fig H4A H4_p99_vs_r_await $'series,hypothesis,fio_profile,ttft_p99_ms,nvme_r_await_ms_mean\nH4A / A,H4A,baseline,385.2,0.17\nH4A / A,H4A,moderate,388.3,0.25\nH4A / A,H4A,heavy,386.8,8.5'
    fig H4B H4_p99_vs_r_await $'series,hypothesis,fio_profile,ttft_p99_ms,nvme_r_await_ms_mean\nH4B / B,H4B,baseline,401.5,0.07\nH4B / B,H4B,moderate,381.9,0.21\nH4B / B,H4B,heavy,9002.0,7.75'
    fig H5 H5_p99_vs_session_working_set $'series,sessions\nH5 / B,4'
    fig H6 H6_knee_vs_tier_capacity $'series,eviction_policy\nH6 / B,lru'
    fig H7 H7_pred_vs_obs $'run_id,hypothesis,pred_rmbs,obs_rmbs\nx,H7,1,1'
    fig H7 H7_p99_vs_fetch_p95 $'run_id,hypothesis,stack,context_tokens,concurrency,fio_profile,fetch_p95_ms,ttft_p99_ms,e2e_p99_ms\nx1,H7,B,1024,8,,0.54,168.5,237.6\nx2,H7,B,2048,8,,0.40,361.6,430.5\nx3,H7,B,4096,8,,0.31,877.1,970.2\nx4,H7,B,512,8,,,28.1,85.3'
    fig H7 H7_fit $'relation,x,y,n,pearson_r,a,b\nobserved_vs_predicted_nvme_read,pred_rmbs,obs_rmbs,28,0.9857,1,1\np99_vs_tier2_fetch_p95,fetch_p95_ms,ttft_p99_ms,4,0.9,1,1' table
    fig H8A H8_iowait_vs_p99 $'series,hypothesis,concurrency\nH8A / A,H8A,1'
    fig H8B H8_iowait_vs_p99 $'series,hypothesis,concurrency\nH8B / B,H8B,1'
}

# expect NAME RC PATTERN... [-- EDIT]: a fresh tree, EDIT applied (sed -i SCRIPT FILE), the
# checker's exit status RC and each PATTERN in its stderr.
expect() {
    local name=$1 rc_want=$2 t=$tmp/$1 rc=0 out
    shift 2
    local pats=()
    while [[ $# -gt 0 && $1 != -- ]]; do pats+=("$1") && shift; done
    make_tree "$t"
    if [[ ${1:-} == -- ]]; then
        shift
        # rm STEM removes that figure's CSV, or with .fig its rendered figure and script
        if [[ $1 == rm && $2 == *.fig ]]; then rm -f "$t/analysis/${2%.fig}".{svg,png,gp}
        elif [[ $1 == rm ]]; then rm -f "$t/analysis/$2"
        else sed -i "$1" "$t/analysis/$2"; fi
    fi
    out=$("$check" "$t/results" "$t/analysis" "$t/H0_stackA.yaml" 2>&1 >/dev/null) || rc=$?
    if [[ $rc != "$rc_want" ]]; then
        echo "FAIL $name: exit $rc, expected $rc_want; stderr: $out" >&2
        failures=$((failures + 1))
        return 0
    fi
    local p
    for p in ${pats[@]+"${pats[@]}"}; do
        if ! grep -qF -- "$p" <<<"$out"; then
            echo "FAIL $name: stderr lacks '$p': $out" >&2
            failures=$((failures + 1))
        fi
    done
    echo "ok $name"
}

expect measured 0
sed_status() { sed -i 's/"knee",/"no_knee",/' "$tmp/h0_status/results/H0/uwork.json"; }
make_tree "$tmp/h0_status" && sed_status
# The checker's stderr in a variable first: grep -q would close the pipe under pipefail.
err=$("$check" "$tmp/h0_status/results" "$tmp/h0_status/analysis" "$tmp/h0_status/H0_stackA.yaml" \
    2>&1 >/dev/null || true)
if grep -qF "H0: no knee within the sweep (status 'no_knee', U_work 8)" <<<"$err"; then
    echo "ok h0_no_knee"
else
    echo "FAIL h0_no_knee: no H0 failure line" >&2
    failures=$((failures + 1))
fi
make_tree "$tmp/h0_slots" && printf 'max_num_seqs: 8\n' >"$tmp/h0_slots/H0_stackA.yaml"
err=$("$check" "$tmp/h0_slots/results" "$tmp/h0_slots/analysis" "$tmp/h0_slots/H0_stackA.yaml" \
    2>&1 >/dev/null || true)
if grep -qF "H0: U_work 8 is not below the mock's 8 slots" <<<"$err"; then
    echo "ok h0_slots"
else
    echo "FAIL h0_slots: no H0 slot failure line" >&2
    failures=$((failures + 1))
fi
expect h2a_climbs 1 "H2A: NVMe reads not flat" "context 4096: 900.00 r/s" "H2_p99_vs_context.csv" \
    -- 's/^H2A \/ A,H2A,4096,0$/H2A \/ A,H2A,4096,900/' H2A/figures/H2_p99_vs_context.csv
expect h2b_flat 1 "H2B: disk reads do not rise" "3.00 r/s at context 4096" \
    -- 's/,4096,1827.2$/,4096,3/' H2B/figures/H2_p99_vs_context.csv
expect h2b_share_falls 1 "H2B: tier-2 share does not rise" "falls from 0.890 to 0.100 at context 4096" \
    -- 's/,4096,0.96$/,4096,0.1/' H2B/figures/H2B_tier_hits_vs_context.csv
expect h4a_moves 1 "H4A: heavy/baseline TTFT p99 = 800.00 / 385.20 ms = 2.08, not <= 1.25" \
    -- 's/,heavy,386.8,/,heavy,800,/' H4A/figures/H4_p99_vs_r_await.csv
expect h4b_still 1 "H4B: heavy/baseline TTFT p99 = 410.00 / 401.50 ms = 1.02, not >= 1.50" \
    -- 's/,heavy,9002.0,/,heavy,410,/' H4B/figures/H4_p99_vs_r_await.csv
expect h4_no_fio 1 "H4B: fio heavy did not load the disk" \
    -- 's/,heavy,9002.0,7.75$/,heavy,9002.0,0.01/' H4B/figures/H4_p99_vs_r_await.csv
expect h7_weak 1 "H7: Pearson r = 0.5 over 28 ticks, not > 0.8" "H7_fit.csv" \
    -- 's/,28,0.9857,/,28,0.5,/' H7/figures/H7_fit.csv
expect h7_nan 1 "H7: Pearson r = nan over 28 ticks" \
    -- 's/,28,0.9857,/,28,,/' H7/figures/H7_fit.csv
expect h7_fetch_points 1 "H7: 1 runs with a tier-2 fetch p95, not >= 2" "H7_p99_vs_fetch_p95.csv" \
    -- 's/,0.40,361.6,/,,361.6,/; s/,0.31,877.1,/,,877.1,/' H7/figures/H7_p99_vs_fetch_p95.csv
expect h7_fetch_figure 1 "H7: no figure" "H7_p99_vs_fetch_p95." -- rm H7/figures/H7_p99_vs_fetch_p95.fig
expect no_figure 1 "H8B: no figure" "H8_iowait_vs_p99." -- rm H8B/figures/H8_iowait_vs_p99.fig
expect no_csv 1 "H6: no CSV" -- rm H6/figures/H6_knee_vs_tier_capacity.csv

[[ $failures == 0 ]] || {
    echo "replay_check_test: $failures failure(s)" >&2
    exit 1
}
echo "replay_check_test: all passed"
