#!/usr/bin/env bash
# make check-valgrind: the unit tests, and every sparkbench process the integration tests start
# (mock, run, analyze, ...), under valgrind memcheck (scripts/valgrind-wrap.sh), in their own build
# directory. Passes when every test passes and no valgrind report holds an error or a definite or
# indirect leak; prints the counts, the reports with findings and the wall time.
# Every test labelled unit or integration runs, the shell-script ones included
# (integration/runners wraps the `sparkbench` its runners start through SB_TEST_VALGRIND;
# integration/test_archive_results starts no sparkbench). Left out: the label replay (every
# runner --quick --mock, then the Test Plan's measured outcomes: p99s under fio, reads per tick;
# timings that a 20-50x slower binary cannot meet, and its processes are the runners' own, which
# integration/runners already covers). unit/test_analyze_load runs; its two bit-for-bit long
# double tests skip themselves where long double lacks its 64-bit mantissa, as under valgrind
# (valgrind's manual, "Limitations": x87 arithmetic at 64-bit double precision).
# A log with no ERROR SUMMARY is a process that never finished under valgrind: a fork that
# exec'd another program (analyze's gnuplot), or a process a test killed with SIGKILL on purpose;
# they are counted apart, not as clean.
# Four tests check cadences and rates in wall-clock time: a 100 ms sysmon grid, an open-loop rate
# within 2 %, the first tick within 0.15 s of the first request (integration/test_run,
# test_sysmon_kv, test_sysmon_prom_raw, test_sysmon_slow). Under valgrind's 20-50x slowdown they
# cannot keep them, and widening their tolerances would blunt them natively. They run here all
# the same, after the others, for their processes' memory reports, which count like any other;
# their own verdict is printed, not judged (`make check` judges it).
# Usage: check-valgrind.sh [BUILD_DIR] [JOBS] [extra ctest args...]
set -euo pipefail
src=$(realpath "$(dirname "$0")/..")
build=$(realpath -m "${1:-$src/build-valgrind}")
jobs=${2:-2}
shift $(($# < 2 ? $# : 2))
scale=${SB_TEST_TIME_SCALE:-20}
command -v valgrind >/dev/null || {
    echo "check-valgrind: valgrind is not installed (Debian package valgrind)" >&2
    exit 1
}
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSB_WERROR=ON \
    -DSB_TEST_LAUNCHER="$src/scripts/valgrind-wrap.sh" -DSB_TEST_TIMEOUT_SCALE="$scale" >/dev/null
cmake --build "$build" -j "$jobs"
logs="$build/valgrind"
rm -rf "$logs"
mkdir -p "$logs"
start=$(date +%s)
rc=0
timed='^integration/(test_run|test_sysmon_kv|test_sysmon_prom_raw|test_sysmon_slow)$'
export SB_VALGRIND_LOGS=$logs SB_TEST_VALGRIND="$src/scripts/valgrind-wrap.sh" \
    SB_TEST_TIME_SCALE=$scale
ctest --test-dir "$build" --output-on-failure -j "$jobs" -L '^(unit|integration)$' -E "$timed" \
    "$@" || rc=$?
timed_rc=0
ctest --test-dir "$build" -j "$jobs" -L '^(unit|integration)$' -R "$timed" "$@" || timed_rc=$?
end=$(date +%s)
nlogs=0 unfinished=0 errlogs=0 errors=0 definite=0 indirect=0
declare -A kinds=()
for f in "$logs"/vg.*.log; do
    [[ -e $f ]] || continue
    if ! grep -q 'ERROR SUMMARY:' "$f"; then
        unfinished=$((unfinished + 1))
        continue
    fi
    nlogs=$((nlogs + 1))
    # What ran: `sparkbench <command>`, or the unit test's name.
    cmd=$(sed -n -E '0,/Command: /s/.*Command: ([^ ]+)( ([^ ]+))?.*/\1 \3/p' "$f")
    prog=${cmd%% *}
    prog=${prog##*/}
    [[ $prog == sparkbench ]] && kind="sparkbench ${cmd#* }" || kind="unit tests"
    kinds[$kind]=$((${kinds[$kind]:-0} + 1))
    e=$(sed -n -E 's/.*ERROR SUMMARY: ([0-9,]+) errors.*/\1/p' "$f" | tail -n1 | tr -d ,)
    d=$(sed -n -E 's/.*definitely lost: ([0-9,]+) bytes.*/\1/p' "$f" | tail -n1 | tr -d ,)
    i=$(sed -n -E 's/.*indirectly lost: ([0-9,]+) bytes.*/\1/p' "$f" | tail -n1 | tr -d ,)
    errors=$((errors + ${e:-0}))
    definite=$((definite + ${d:-0}))
    indirect=$((indirect + ${i:-0}))
    if ((${e:-0} > 0)); then
        errlogs=$((errlogs + 1))
        echo "== $f"
        head -n 60 "$f"
    fi
done
for k in "${!kinds[@]}"; do echo "  ${kinds[$k]} $k"; done | sort -k2
echo "check-valgrind: $nlogs processes checked, $errors errors (leaks included) in $errlogs of" \
    "them, $definite bytes definitely and $indirect indirectly lost; $unfinished logs without a" \
    "summary (forks that exec'd another program, or processes killed on purpose); ctest exit $rc;" \
    "the wall-clock tests' ctest exit $timed_rc (not judged here); $((end - start)) s"
((rc == 0 && errors == 0)) || exit 1
