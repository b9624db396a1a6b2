#!/usr/bin/env bash
# Runs shellcheck on every shell script of the repository (the tracked *.sh files and .ci/run), with
# sourced files followed (-x): runners source runs/_lib.sh. Exit 0 when clean, 1 with the findings,
# 77 (ctest's skip) when shellcheck is not installed (scripts/install-deps.sh installs it).
# Usage: check-shell.sh [SOURCE_DIR]
set -euo pipefail
cd "${1:-$(dirname "$0")/..}"
if ! command -v shellcheck >/dev/null; then
    echo "check-shell: shellcheck is not installed (Debian package shellcheck)" >&2
    exit 77
fi
files=()
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    mapfile -t files < <(git ls-files '*.sh')
else # an unpacked tarball: the same set by name
    mapfile -t files < <(find . -name '*.sh' -not -path './build*' -not -path './.git/*' | sort)
fi
[[ -f .ci/run ]] && files+=(.ci/run)
if ((${#files[@]} == 0)); then
    echo "check-shell: no shell script found in $PWD" >&2
    exit 1
fi
shellcheck -x "${files[@]}"
echo "check-shell: ${#files[@]} scripts clean"
