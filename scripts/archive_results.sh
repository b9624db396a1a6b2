#!/usr/bin/env bash
# Packs result directories into one compressed tar under archives/, checks the archive against
# the disk, and only then removes what it packed.
#
# Usage: scripts/archive_results.sh [options] [FILTER] [NAME]
#   FILTER   a substring, or a glob (* ? [..]), of a run id or of a hypothesis directory under the
#            results directory: `H2B` (all of results/H2B/ and every run id holding H2B),
#            `20261205_*` (run ids starting so). Default: every result directory.
#   NAME     the archive's name without extension. Default: results_<FILTER>_<UTC stamp>.
#   --results-dir DIR   where result directories live (default: results)
#   --archive-dir DIR   where the archive goes (default: archives)
#   --compress zstd|gzip  default zstd when the `zstd` command exists, else gzip
#   --keep      archive and verify, remove nothing
#   --dry-run   list what would be archived (and its size); write and remove nothing
#
# A result directory is one holding metrics.jsonl, run.json or config.yaml (what `sparkbench run`
# writes), at any depth: results/<H>/<run id>/ from the runners, results/<run id>/ from a bare
# `sparkbench run`. When a hypothesis directory matches as a whole, its loose files (H0's
# uwork.txt and uwork.json) go into the archive too but stay on disk: the runners read them.
#
# Nothing is removed unless every step succeeded: the archive is written to a temporary file
# (a failed tar, a failed compressor or a full disk leaves no archive and touches no result),
# then read back in full; every regular file must be listed in it with the size it has on
# disk, and the disk must not have changed while tar read it (a run still writing). Only then
# are the packed run directories removed (not with --keep). Every member is also compared with the
# disk byte for byte (tar --compare), so a file rewritten with the same size is caught.
# Exit status: 0 done; 1 an error (nothing removed, unless the message says which were);
# 2 bad usage.
# TAR, ZSTD and GZIP name the programs used (default tar, zstd, gzip; GNU tar's listing is parsed).
set -euo pipefail

prog=$(basename "$0")
die() { echo "$prog: $*" >&2; exit 1; }
usage() { echo "$prog: $*" >&2; echo "usage: $prog [--results-dir DIR] [--archive-dir DIR] [--compress zstd|gzip] [--keep] [--dry-run] [FILTER] [NAME]" >&2; exit 2; }

TAR=${TAR:-tar}
ZSTD=${ZSTD:-zstd}
GZIP_PROG=${GZIP:-gzip}
# gzip reads options from $GZIP; ours names the program, so keep it from gzip itself.
unset GZIP

results=results
archives=archives
compress=
keep=0
dry_run=0
positional=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --results-dir|--results_dir) [[ $# -ge 2 ]] || usage "$1 needs a value"; results=$2; shift 2 ;;
        --archive-dir|--archive_dir) [[ $# -ge 2 ]] || usage "$1 needs a value"; archives=$2; shift 2 ;;
        --compress) [[ $# -ge 2 ]] || usage "$1 needs a value"; compress=$2; shift 2 ;;
        --keep) keep=1; shift ;;
        --dry-run|--dry_run) dry_run=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        --) shift; positional+=("$@"); break ;;
        -*) usage "unknown option '$1'" ;;
        *) positional+=("$1"); shift ;;
    esac
done
[[ ${#positional[@]} -le 2 ]] || usage "too many arguments: ${positional[*]}"
filter=${positional[0]:-}
name=${positional[1]:-}

case "$compress" in
    "") if command -v "$ZSTD" >/dev/null 2>&1; then compress=zstd; else compress=gzip; fi ;;
    zstd) command -v "$ZSTD" >/dev/null 2>&1 || die "--compress zstd: '$ZSTD' is not installed" ;;
    gzip) ;;
    *) usage "--compress takes zstd or gzip, not '$compress'" ;;
esac
command -v "$GZIP_PROG" >/dev/null 2>&1 || [[ $compress != gzip ]] || die "'$GZIP_PROG' is not installed"
if [[ $compress == zstd ]]; then ext=tar.zst; else ext=tar.gz; fi

[[ -d "$results" ]] || die "results directory '$results' does not exist"
results=$(cd "$results" && pwd)

if [[ -z "$name" ]]; then
    label=${filter:-all}
    label=${label//[^A-Za-z0-9._-]/_}
    name="results_${label}_$(date -u +%Y%m%d_%H%M%S)"
fi
[[ "$name" != */* && "$name" != .* ]] || usage "NAME '$name' must be a plain file name"

# A glob is matched as is; anything else as a substring.
if [[ -z "$filter" ]]; then
    pattern='*'
elif [[ "$filter" == *[*?[]* ]]; then
    pattern=$filter
else
    pattern="*${filter}*"
fi

# Result directories under $results, relative to it, sorted; a result directory's own
# subdirectories are part of it, not results of their own.
runs=()
while IFS= read -r -d '' f; do
    d=${f%/*}
    runs+=("${d#./}")
done < <(cd "$results" && find . -mindepth 2 \( -name metrics.jsonl -o -name run.json -o -name config.yaml \) \
             -type f -print0 | LC_ALL=C sort -z)
selected=()
loose=()
declare -A seen=()
for d in ${runs[@]+"${runs[@]}"}; do
    [[ -n "${seen[$d]:-}" ]] && continue
    seen[$d]=1
    # inside a result directory already taken: part of it
    parent=$d inside=0
    while [[ "$parent" == */* ]]; do
        parent=${parent%/*}
        if [[ -n "${seen[$parent]:-}" ]]; then inside=1; break; fi
    done
    [[ $inside -eq 1 ]] && continue
    run_id=${d##*/}
    top=${d%%/*}
    # shellcheck disable=SC2053  # $pattern is a glob on purpose
    if [[ "$run_id" == $pattern || "$d" == $pattern || ( "$d" == */* && "$top" == $pattern ) ]]; then
        selected+=("$d")
    fi
done
if [[ ${#selected[@]} -eq 0 ]]; then
    die "no result directory under '$results' matches '${filter:-*}' (a run id or hypothesis directory; a result directory holds metrics.jsonl, run.json or config.yaml)"
fi
# Loose files of hypothesis directories that match as a whole (uwork.txt ...): archived, kept.
if [[ -n "$filter" ]]; then
    for top in $(printf '%s\n' "${selected[@]}" | grep / | cut -d/ -f1 | LC_ALL=C sort -u); do
        # shellcheck disable=SC2053
        [[ "$top" == $pattern ]] || continue
        while IFS= read -r -d '' f; do loose+=("${f#./}"); done < <(cd "$results" && find "./$top" -maxdepth 1 -type f -print0 | LC_ALL=C sort -z)
    done
fi

# "<size> <path>" of every regular file of what is archived, sorted by path.
disk_list() {
    (cd "$results" && find "${selected[@]}" ${loose[@]+"${loose[@]}"} -type f -printf '%s %p\n') | LC_ALL=C sort -k2
}

files_before=$(disk_list)
nfiles=$(printf '%s\n' "$files_before" | grep -c . || true)
nbytes=$(printf '%s\n' "$files_before" | awk '{s += $1} END {printf "%d", s}')

if [[ $dry_run -eq 1 ]]; then
    echo "$prog: dry run: would archive ${#selected[@]} result directories ($nfiles files, $nbytes bytes) from '$results' into '$archives/$name.$ext' ($compress)$([[ $keep -eq 1 ]] && echo ", keeping them" || echo ", then remove them")"
    printf '  %s\n' "${selected[@]}"
    for f in ${loose[@]+"${loose[@]}"}; do echo "  $f (archived, kept)"; done
    exit 0
fi

mkdir -p "$archives" || die "cannot create archive directory '$archives'"
archives=$(cd "$archives" && pwd)
out="$archives/$name.$ext"
[[ ! -e "$out" ]] || die "archive '$out' exists already: pick another NAME or move it away"
tmp=$(mktemp "$archives/.$name.$ext.XXXXXX") || die "cannot create a temporary file in '$archives'"
listing=$(mktemp) || die "cannot create a temporary file"
cleanup() { rm -f "$tmp" "$listing"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

compressor() {
    if [[ $compress == zstd ]]; then "$ZSTD" -q -T0 -c; else "$GZIP_PROG" -c; fi
}
decompressor() {
    if [[ $compress == zstd ]]; then "$ZSTD" -q -d -c -- "$1"; else "$GZIP_PROG" -d -c -- "$1"; fi
}

echo "$prog: archiving ${#selected[@]} result directories ($nfiles files, $nbytes bytes) into '$out' ($compress)"
# pipefail makes a failure of either side (tar cannot read a file; a full disk under the
# compressor) the pipeline's status.
if ! "$TAR" -C "$results" -cf - -- "${selected[@]}" ${loose[@]+"${loose[@]}"} | compressor >"$tmp"; then
    die "writing '$out' failed (see the message above); nothing was removed"
fi
sync -f "$tmp" 2>/dev/null || true

# Verify: read the whole archive back (a corrupt stream fails here) and list its regular files
# with their sizes (GNU tar: "perms uid/gid size date time name").
if ! decompressor "$tmp" | "$TAR" -tvf - --numeric-owner >"$listing"; then
    die "cannot read back '$out' (see the message above); nothing was removed"
fi
in_archive=$(awk '/^[-]/ { if (match($0, /^[^ ]+ +[^ ]+ +[0-9]+ +[^ ]+ +[^ ]+ /)) {
                  split($0, f, / +/); print f[3] " " substr($0, RLENGTH + 1) } }' "$listing" |
             LC_ALL=C sort -k2)
files_after=$(disk_list)
if [[ "$files_before" != "$files_after" ]]; then
    echo "$prog: result files changed while they were archived (a run still writing?); nothing was removed:" >&2
    diff <(printf '%s\n' "$files_before") <(printf '%s\n' "$files_after") | grep '^[<>]' |
        sed 's/^</  before:/; s/^>/  after: /' | head -20 >&2 || true # head may cut the pipe
    die "verify failed for '$out'"
fi
if [[ "$files_before" != "$in_archive" ]]; then
    echo "$prog: the archive does not hold every file with its size on disk; nothing was removed:" >&2
    diff <(printf '%s\n' "$files_before") <(printf '%s\n' "$in_archive") | grep '^[<>]' |
        sed 's/^</  on disk:   /; s/^>/  in archive:/' | head -20 >&2 || true
    die "verify failed for '$out'"
fi
# Names and sizes miss a file rewritten in place with as many bytes (run.json rewritten by a run
# still finishing): GNU tar's --compare reads every member back against the disk, contents,
# mode and mtime included.
if ! diffs=$(decompressor "$tmp" | "$TAR" -C "$results" --compare --numeric-owner -f - 2>&1); then
    echo "$prog: the archive and the disk differ; nothing was removed:" >&2
    printf '%s\n' "$diffs" | head -20 >&2
    die "verify failed for '$out'"
fi
mv -- "$tmp" "$out" || die "cannot rename the verified archive to '$out'; nothing was removed"
size=$(stat -c %s "$out")
echo "$prog: verified '$out': $nfiles files, $nbytes bytes, each listed with its size and compared with the disk ($size bytes $compress)"

if [[ $keep -eq 1 ]]; then
    echo "$prog: --keep: the result directories stay in '$results'"
    exit 0
fi
failed=()
for d in "${selected[@]}"; do
    rm -rf -- "${results:?}/$d" || failed+=("$d")
    # a hypothesis directory left empty goes too
    parent=${d%/*}
    while [[ "$d" == */* && "$parent" != "$d" ]]; do
        rmdir -- "$results/$parent" 2>/dev/null || break
        [[ "$parent" == */* ]] || break
        parent=${parent%/*}
    done
done
if [[ ${#failed[@]} -gt 0 ]]; then
    die "archived and verified '$out', but could not remove: ${failed[*]}"
fi
echo "$prog: removed ${#selected[@]} archived result directories from '$results'"
