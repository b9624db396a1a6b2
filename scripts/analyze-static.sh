#!/usr/bin/env bash
# make analyze-static (also run by make lint): GCC's static analyzer (-fanalyzer, GCC 12 of Debian
# 12) over every C file of the sbcore library and main.c, in its own build folder, with warnings
# as errors. A false positive is silenced where it is reported with a
# `#pragma GCC diagnostic ignored "-Wanalyzer-..."` and a comment saying why. Exit 1 with the
# findings. Usage: analyze-static.sh [BUILD_DIR] [JOBS]
set -euo pipefail
src=$(realpath "$(dirname "$0")/..")
build=${1:-$src/build-analyze}
jobs=${2:-$(nproc 2>/dev/null || echo 2)}
cc=${SB_ANALYZE_CC:-gcc}
if ! "$cc" -fanalyzer -x c -c /dev/null -o /dev/null 2>/dev/null; then
    echo "analyze-static: '$cc' has no -fanalyzer (GCC 10 or newer; Debian package gcc)" >&2
    exit 1
fi
# Debug (-O0): the analyzer sees the code as written, and asserts stay in as facts it can use.
cmake -S "$src" -B "$build" -DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE=Debug \
    -DCMAKE_C_FLAGS=-fanalyzer -DSB_WERROR=ON >/dev/null
out=$(mktemp)
trap 'rm -f "$out"' EXIT
# Objects are rebuilt every time: an object that built earlier would hide its findings now.
rc=0
cmake --build "$build" --target sparkbench --clean-first -j "$jobs" -- -k >"$out" 2>&1 || rc=$?
grep -E '(warning|error): ' "$out" | sed "s|^$src/||" | sort -u || true
n=$(grep -cE '(warning|error): ' "$out" || true)
if ((rc != 0 || n > 0)); then
    echo "analyze-static: $n findings (build exit $rc)" >&2
    exit 1
fi
echo "analyze-static: $(git -C "$src" ls-files 'src/*.c' | wc -l) files clean"
