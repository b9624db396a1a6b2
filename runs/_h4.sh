# shellcheck shell=bash
# The H4 storage-QoS sweep, shared by run_H4A_storage_qos.sh (Stack A) and
# run_H4B_dynamo_storage_qos.sh (Stack B): at U_work and a fixed context, one point per fio profile
# (configs/fio/<profile>.fio) with fio running as a real noisy neighbour on the KV/NVMe device for
# the whole repetition (runs/_fio.sh): fio.json in each run dir, its MB/s in the summary, and the
# figure H4_p99_vs_r_await (p99 against the NVMe read latency fio causes; flat for A, rising for B).
# Sourced after SB_H4 (H4A or H4B) is set; "$@" are the runner's arguments.
: "${SB_H4:?set SB_H4 (H4A or H4B) before sourcing _h4.sh}"
SB_USAGE="$SB_H4 options:
  --fio-profiles LIST    fio profiles, one point each [default: baseline,moderate,heavy]
  --fio-profile NAME     one profile (the Test Plan's --fio_profile heavy)
  --fio-dir DIR          where fio writes [default: the config's dynamo.tier2.path; --mock: a
                         fresh directory under /var/tmp, the mock's tier 2 too]
  --fio-size SIZE        fio's file size [default: 4g; --quick: 256m]
  --context-tokens N     prompt size [default: 2048]
  --max-tokens N         output tokens per request [default: run's]
environment: FIO_BIN (default fio)"
SB_QUICK_DURATION_S=3
# shellcheck source=_lib.sh
source "$(dirname "$0")/_lib.sh"
# shellcheck source=_fio.sh
source "$(dirname "$0")/_fio.sh"

sb_init "$SB_H4" "$@"
sb_fio_flags
profiles="baseline,moderate,heavy" ctx=2048 max_tokens=""
set -- ${SB_FIO_REST[@]+"${SB_FIO_REST[@]}"}
while [[ $# -gt 0 ]]; do
    case "$(sb_flag "$1")" in
        --fio-profiles | --fio-profile) profiles=${2:?$1 needs a value} && shift 2 ;;
        --context-tokens) ctx=${2:?--context-tokens needs a value} && shift 2 ;;
        --max-tokens) max_tokens=${2:?--max-tokens needs a value} && shift 2 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done
[[ $ctx =~ ^[0-9]+$ && $ctx -ge 1 ]] || die "--context-tokens must be a number of tokens, not '$ctx'"
read -r -a plist <<<"$(split_list "$profiles")"
[[ ${#plist[@]} -ge 1 ]] || die "--fio-profiles is empty"
sb_fio_check_profiles "${plist[@]}"
uwork=$(sb_uwork)
sb_fio_setup

SB_BEFORE_REP=sb_fio_start
SB_AFTER_REP=sb_fio_stop
# Under --mock the mock's tier 2 lives where fio runs: the neighbour shares its device.
if [[ $MOCK == 1 ]]; then sb_begin "" --tier2-path "$FIO_DIR"
else sb_begin; fi
for p in "${plist[@]}"; do
    SB_FIO_PROFILE=$p
    sb_point "$p" --context-tokens "$ctx" --concurrency "$uwork" --fio-profile "$p" \
        --tier2-path "$FIO_DIR" ${max_tokens:+--max-tokens "$max_tokens"}
done
sb_end H4_p99_vs_r_await
# The answer in numbers: p99 and fio's bandwidth per profile, from the H4 table.
if [[ -s ${SB_ANALYZE_OUT:-$ANALYSIS_DIR/$SB_H}/figures/H4_p99_vs_r_await.csv ]]; then
    awk -F, -v h="$SB_H" '
        function v(name, fmt) { return $c[name] == "" ? "n/a" : sprintf(fmt, $c[name]) }
        NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
        $c["hypothesis"] == h {
            printf "%s %-9s TTFT p99 %s ms  e2e p99 %s ms  NVMe r_await %s ms  fio read %s MB/s, write %s MB/s\n",
                h, $c["fio_profile"], v("ttft_p99_ms", "%.1f"), v("e2e_p99_ms", "%.1f"),
                v("nvme_r_await_ms_mean", "%.2f"), v("fio_read_mbs", "%.1f"), v("fio_write_mbs", "%.1f") }' \
        "${SB_ANALYZE_OUT:-$ANALYSIS_DIR/$SB_H}/figures/H4_p99_vs_r_await.csv"
fi
