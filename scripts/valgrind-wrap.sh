#!/usr/bin/env bash
# Runs a command under valgrind memcheck with the options of `make check-valgrind`, its report in
# $SB_VALGRIND_LOGS/vg.<pid>.log (read by scripts/check-valgrind.sh). The exit code is the
# program's own, or 99 when valgrind found an error or a definite/indirect leak: a distinct code,
# since tests assert on the program's 1, 2 and 3 (valgrind's usual --error-exitcode=1 would pass
# for a test that expects 1). Used as the unit tests' launcher and, through SB_TEST_VALGRIND, by
# tests/integration/proc.c for every sparkbench child of an integration test and by
# tests/integration/runners.sh for the sparkbench its runners start.
# The binary's allocator is jemalloc (a shared library): --soname-synonyms points memcheck's
# malloc/free replacement at it, without which memcheck would see no heap and report no leak.
# Usage: valgrind-wrap.sh PROGRAM [ARGS...]
set -euo pipefail
here=$(dirname "$(realpath "$0")")
logs=${SB_VALGRIND_LOGS:-${TMPDIR:-/tmp}/sb-valgrind}
mkdir -p "$logs"
exec valgrind --tool=memcheck --error-exitcode=99 --leak-check=full \
    --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect \
    --track-origins=yes --num-callers=30 --soname-synonyms='somalloc=libjemalloc.so*' \
    --suppressions="$here/../tests/valgrind.supp" \
    --log-file="$logs/vg.%p.log" "$@"
