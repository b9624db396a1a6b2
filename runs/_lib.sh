# Shared helpers for the hypothesis runners (sourced, not run).
# SPARKBENCH: the binary (default: build/sparkbench next to this checkout, else `sparkbench`).
runs_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -z "${SPARKBENCH:-}" ]]; then
    if [[ -x "$runs_root/build/sparkbench" ]]; then SPARKBENCH="$runs_root/build/sparkbench"
    else SPARKBENCH=sparkbench; fi
fi
utc_stamp() { date -u +%Y%m%d_%H%M%S; }
die() { echo "$(basename "$0"): $*" >&2; exit 2; }
# Splits "1,2,4" or "1 2 4" into words.
split_list() { echo "$1" | tr ',' ' '; }
