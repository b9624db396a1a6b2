#!/usr/bin/env bash
# ctest: scripts/archive_results.sh archives, verifies and prunes result directories, keeps them
# with --keep, and removes nothing when anything goes wrong (a file that changes while it is
# archived, an archive missing a file, a failing tar, a full disk under the compressor).
# Usage: tests/integration/test_archive_results.sh SOURCE_DIR
set -euo pipefail
# (grep -q reads its input from a here-string below, never a pipe: with pipefail, its early exit
# would fail the pipeline whenever the writer is still writing.)

src=$(cd "${1:?usage: $0 SOURCE_DIR}" && pwd)
script="$src/scripts/archive_results.sh"
work=$(mktemp -d /tmp/sb-archive-test.XXXXXX)
trap 'rm -rf "$work"' EXIT

fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
pass() { echo "ok: $*"; }

# results/H2B/<2 runs>, results/H0/<1 run> + uwork.txt, results/<flat run> (a bare `sparkbench run`)
make_results() {
    rm -rf "$work/results" "$work/archives"
    local r="$work/results" d
    for d in H2B/20261205_101010_H2B_stackB_m_ctx256_r1 H2B/20261205_101020_H2B_stackB_m_ctx1024_r1 \
             H0/20261204_090000_H0_stackA_m_U8_r1 20261203_080000_A_m; do
        mkdir -p "$r/$d"
        printf '{"seq":0,"ok":true}\n{"seq":1,"ok":true}\n' >"$r/$d/metrics.jsonl"
        printf '{"exit_reason":"completed","id":"%s"}\n' "${d##*/}" >"$r/$d/run.json"
        printf 'run:\n  stack: B\n' >"$r/$d/config.yaml"
        head -c 3000 /dev/urandom >"$r/$d/sysmon.jsonl"
    done
    mkdir -p "$r/H2B/20261205_101010_H2B_stackB_m_ctx256_r1/extra dir"
    echo "a file with a space in its path" >"$r/H2B/20261205_101010_H2B_stackB_m_ctx256_r1/extra dir/note 1.txt"
    echo 8 >"$r/H0/uwork.txt"
}

# Runs the script in $work; sets rc, out (stdout+stderr).
run_archive() {
    set +e
    out=$(cd "$work" && "$script" "$@" 2>&1)
    rc=$?
    set -e
}

# sha256 of every file under results/, to prove nothing changed.
snapshot() { (cd "$work/results" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum); }

no_archive_left() {
    local left
    left=$(find "$work/archives" -mindepth 1 2>/dev/null | head -5 || true)
    [[ -z "$left" ]] || { fail "$1: left in archives/: $left"; return 1; }
}

if command -v zstd >/dev/null 2>&1; then ext=tar.zst; dec=(zstd -q -d -c); comp=zstd
else ext=tar.gz; dec=(gzip -d -c); comp=gzip; fi

# 1. archive + verify + prune, with a substring filter naming a hypothesis directory
make_results
cp -a "$work/results" "$work/orig"
run_archive H2B h2b_test
if [[ $rc -ne 0 ]]; then fail "archive H2B: exit $rc: $out"
elif [[ ! -f "$work/archives/h2b_test.$ext" ]]; then fail "archive H2B: no archives/h2b_test.$ext: $out"
elif [[ -e "$work/results/H2B" ]]; then fail "archive H2B: results/H2B still there after pruning"
elif [[ ! -f "$work/results/H0/uwork.txt" || ! -d "$work/results/H0/20261204_090000_H0_stackA_m_U8_r1" ]]; then
    fail "archive H2B: removed something outside the filter"
elif [[ "$out" != *"($comp)"* ]]; then fail "archive H2B: does not say which compressor ($comp): $out"
else
    mkdir -p "$work/x"
    "${dec[@]}" "$work/archives/h2b_test.$ext" | tar -C "$work/x" -xf -
    if diff -r "$work/orig/H2B" "$work/x/H2B" >/dev/null; then pass "archive + verify + prune (H2B, $comp)"
    else fail "archive H2B: extracted files differ from the originals"; fi
fi

# 2. --keep (and a hypothesis directory's loose files go in, and stay)
make_results
before=$(snapshot)
run_archive --keep H0 h0_keep
if [[ $rc -ne 0 ]]; then fail "--keep: exit $rc: $out"
elif [[ "$(snapshot)" != "$before" ]]; then fail "--keep: results changed"
elif ! grep -qx 'H0/uwork.txt' <<<"$("${dec[@]}" "$work/archives/h0_keep.$ext" | tar -tf -)"; then
    fail "--keep: H0/uwork.txt not in the archive"
else pass "--keep"; fi

# 3. a glob filter on run ids, --dry-run writes nothing
make_results
before=$(snapshot)
run_archive --dry-run '20261205_*'
if [[ $rc -ne 0 || "$out" != *"would archive 2 result directories"* || "$(snapshot)" != "$before" ]]; then
    fail "--dry-run with a glob: exit $rc: $out"
elif ! no_archive_left "--dry-run"; then :
else pass "--dry-run with a glob"; fi

# 4. a filter matching nothing: non-zero and a message naming the filter
make_results
run_archive H9Z
if [[ $rc -eq 0 || "$out" != *"no result directory"*"H9Z"* ]]; then fail "no match: exit $rc: $out"
else pass "a filter matching nothing"; fi

# Fake programs standing in for tar and zstd/gzip, to make each failure happen on cue.
mkdir -p "$work/bin"
real_tar=$(command -v tar)
# tar that appends to a file after packing it: a run still writing while it is archived
cat >"$work/bin/tar-grows" <<EOF
#!/usr/bin/env bash
"$real_tar" "\$@"; rc=\$?
if [[ " \$* " == *" -cf "* ]]; then echo more >>"$work/results/H2B/20261205_101010_H2B_stackB_m_ctx256_r1/metrics.jsonl"; fi
exit \$rc
EOF
# tar that rewrites a file in place after packing it, same size, new bytes: a change that no list
# of names and sizes shows
cat >"$work/bin/tar-rewrites" <<EOF
#!/usr/bin/env bash
"$real_tar" "\$@"; rc=\$?
if [[ " \$* " == *" -cf "* ]]; then
    f="$work/results/H2B/20261205_101010_H2B_stackB_m_ctx256_r1/metrics.jsonl"
    printf '{"seq":0,"ok":null}\\n{"seq":1,"ok":true}\\n' >"\$f.new"
    [[ \$(stat -c %s "\$f") == \$(stat -c %s "\$f.new") ]] || exit 99
    cat "\$f.new" >"\$f"; rm -f "\$f.new"
fi
exit \$rc
EOF
# tar that leaves one file out of the archive: a listing short of a file
cat >"$work/bin/tar-drops" <<EOF
#!/usr/bin/env bash
if [[ " \$* " == *" -cf "* ]]; then exec "$real_tar" --exclude=sysmon.jsonl "\$@"; fi
exec "$real_tar" "\$@"
EOF
# tar that cannot read a file (what an unreadable file does to GNU tar; root reads anything)
cat >"$work/bin/tar-fails" <<EOF
#!/usr/bin/env bash
if [[ " \$* " == *" -cf "* ]]; then
    echo "tar: H2B/x/metrics.jsonl: Cannot open: Permission denied" >&2
    head -c 100 /dev/zero; exit 2
fi
exec "$real_tar" "\$@"
EOF
# a compressor on a full disk
cat >"$work/bin/compress-full" <<'EOF'
#!/usr/bin/env bash
if [[ " $* " == *" -d "* ]]; then exec gzip "$@"; fi
head -c 512 >/dev/null; echo "compress: write error: No space left on device" >&2; exit 1
EOF
chmod +x "$work/bin"/*

expect_nothing_removed() { # NAME EXPECTED-TEXT [env...] -- args
    local label=$1 want=$2; shift 2
    local envs=()
    while [[ $1 != -- ]]; do envs+=("$1"); shift; done
    shift
    make_results
    local snap
    snap=$(snapshot)
    set +e
    out=$(cd "$work" && env "${envs[@]}" "$script" "$@" 2>&1)
    rc=$?
    set -e
    if [[ $rc -eq 0 ]]; then fail "$label: exit 0: $out"
    elif [[ "$out" != *"$want"* ]]; then fail "$label: message lacks '$want': $out"
    elif [[ "$out" != *"nothing was removed"* ]]; then fail "$label: does not say nothing was removed: $out"
    elif [[ "$(snapshot | grep -v 'ctx256_r1/metrics.jsonl')" != "$(printf '%s\n' "$snap" | grep -v 'ctx256_r1/metrics.jsonl')" ]] ||
         [[ ! -d "$work/results/H2B/20261205_101010_H2B_stackB_m_ctx256_r1" ]]; then
        fail "$label: results were removed or changed"
    elif ! no_archive_left "$label"; then :
    else pass "$label: nothing removed, no archive left"; fi
}

# 5. verify mismatches and failures: exit non-zero, remove nothing, leave no archive
expect_nothing_removed "a file that grows while archived" "changed while they were archived" \
    TAR="$work/bin/tar-grows" -- H2B grows
expect_nothing_removed "a file rewritten in place (same size) while archived" "differ" \
    TAR="$work/bin/tar-rewrites" -- H2B rewrites
expect_nothing_removed "an archive missing a file" "does not hold every file" \
    TAR="$work/bin/tar-drops" -- H2B drops
expect_nothing_removed "tar cannot read a file" "Permission denied" \
    TAR="$work/bin/tar-fails" -- H2B tarfail
expect_nothing_removed "a full disk under the compressor" "No space left on device" \
    GZIP="$work/bin/compress-full" -- --compress gzip H2B full

# 6. gzip when asked (the fallback without zstd), and an existing archive is never overwritten
make_results
run_archive --compress gzip --keep 20261203 flat
if [[ $rc -ne 0 || ! -f "$work/archives/flat.tar.gz" || "$out" != *"(gzip)"* ]]; then fail "--compress gzip: exit $rc: $out"
elif ! grep -qx '20261203_080000_A_m/run.json' <<<"$(gzip -d -c "$work/archives/flat.tar.gz" | tar -tf -)"; then
    fail "--compress gzip: a flat run directory is not in the archive"
else pass "--compress gzip, a flat results/<run id>/"; fi
run_archive --compress gzip 20261203 flat
if [[ $rc -eq 0 || "$out" != *"exists already"* || ! -d "$work/results/20261203_080000_A_m" ]]; then
    fail "an existing archive: exit $rc: $out"
else pass "an existing archive is not overwritten"; fi

# 7. bad usage
run_archive --compress lz4 H2B
if [[ $rc -ne 2 ]]; then fail "--compress lz4: exit $rc (want 2): $out"; else pass "bad usage exits 2"; fi

if [[ $fails -gt 0 ]]; then
    echo "$fails check(s) failed" >&2
    exit 1
fi
echo "all archive_results checks passed"
