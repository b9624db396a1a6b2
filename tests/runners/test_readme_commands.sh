#!/usr/bin/env bash
# ctest runners/readme: every runner command the README shows (a line of a ```sh block that starts
# runs/run_H*.sh, or an environment assignment and then one, continuation lines joined; a trailing
# comment dropped) parses: run with --dry-run added, into a scratch results dir holding a U_work,
# it prints its plan and exits 0. A README whose flags drift from the scripts fails here, naming
# the command and the runner's complaint.
# Usage: test_readme_commands.sh SPARKBENCH_BINARY
set -euo pipefail
export SPARKBENCH=${1:?usage: test_readme_commands.sh SPARKBENCH}
src=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/sbtest-readme.XXXXXX")
trap 'rm -rf -- "$work"' EXIT
mkdir -p "$work/res/H0"
echo 8 >"$work/res/H0/uwork.txt"

# The commands, one a line.
awk '
    /^```sh/ { insh = 1; next }
    /^```/ { insh = 0; next }
    !insh { next }
    cont { line = line " " $0 }
    !cont { line = $0 }
    { cont = sub(/[[:space:]]*\\$/, "", line) }
    !cont && line ~ /^([A-Z_]+=(\047[^\047]*\047|[^ \047]+)[[:space:]]+)*runs\/run_H[^ ]*\.sh/ { print line }
' "$src/README.md" >"$work/cmds"
n=$(wc -l <"$work/cmds")
[[ $n -ge 31 ]] || {
    echo "FAIL: only $n runner commands found in README.md" >&2
    exit 1
}
fails=0
cd "$src"
while IFS= read -r cmd; do
    cmd=${cmd%%#*}
    rc=0
    (eval "$cmd --dry-run --results-dir '$work/res' --analysis-dir '$work/an'") >"$work/out" 2>&1 || rc=$?
    if [[ $rc != 0 ]] || ! grep -q "dry run: nothing was sent" "$work/out"; then
        echo "FAIL: README command '$cmd' --dry-run: exit $rc: $(tail -n 3 "$work/out")" >&2
        fails=$((fails + 1))
    fi
done <"$work/cmds"
[[ $fails == 0 ]] || exit 1
echo "ok: $n README runner commands parse"
