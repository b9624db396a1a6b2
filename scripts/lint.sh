#!/usr/bin/env bash
# make lint: clang-tidy over every C file of src/ with the checks of .clang-tidy (why each is on or
# off is written there), from the build's compile_commands.json. Exit 1 with the findings.
# Usage: lint.sh [BUILD_DIR] [JOBS]
set -euo pipefail
src=$(realpath "$(dirname "$0")/..")
build=${1:-$src/build}
jobs=${2:-$(nproc 2>/dev/null || echo 2)}
command -v clang-tidy >/dev/null || {
    echo "lint: clang-tidy is not installed (Debian package clang-tidy)" >&2
    exit 1
}
cmake -S "$src" -B "$build" -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >/dev/null
cd "$src"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
rc=0
git ls-files 'src/*.c' | xargs -r -n 4 -P "$jobs" clang-tidy -p "$build" --quiet >"$out" 2>&1 || rc=$?
grep -E 'warning:|error:' "$out" | sort -u || true
n=$(grep -cE '(warning|error): .*\[' "$out" || true)
if ((rc != 0 || n > 0)); then
    echo "lint: $n findings (clang-tidy exit $rc)" >&2
    exit 1
fi
echo "lint: $(git ls-files 'src/*.c' | wc -l) files clean"
