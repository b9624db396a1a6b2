#!/usr/bin/env bash
# make check-valgrind: the unit tests, and every sparkbench process the integration tests start
# (mock, run, analyze, ...), under valgrind memcheck (scripts/valgrind-wrap.sh), in their own build
# directory. Passes when every test passes and no valgrind report holds an error or a definite or
# indirect leak; prints the counts, the reports with findings and the wall time.
# Tests that run sparkbench from a shell script (label replay, integration/runners,
# integration/test_archive_results) are left out: their children are not wrapped. So is
# unit/test_analyze_load: its scanner tests compare long double arithmetic bit for bit with strtod,
# and valgrind emulates x87 long double at 64-bit precision (its manual, "Limitations"), so they
# fail there (and leak what the failing test held) for a reason outside the code.
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
SB_VALGRIND_LOGS=$logs SB_TEST_VALGRIND="$src/scripts/valgrind-wrap.sh" SB_TEST_TIME_SCALE=$scale \
    ctest --test-dir "$build" --output-on-failure -j "$jobs" -L '^(unit|integration)$' \
    -E '^(integration/(runners|test_archive_results|replay.*)|unit/test_analyze_load)$' "$@" || rc=$?
end=$(date +%s)
nlogs=0 errlogs=0 errors=0 definite=0 indirect=0
for f in "$logs"/vg.*.log; do
    [[ -e $f ]] || continue
    nlogs=$((nlogs + 1))
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
echo "check-valgrind: $nlogs processes checked, $errors errors (leaks included) in $errlogs of" \
    "them, $definite bytes definitely and $indirect indirectly lost; ctest exit $rc;" \
    "$((end - start)) s"
((rc == 0 && errors == 0)) || exit 1
