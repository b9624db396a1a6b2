#!/usr/bin/env bash
# Benchmark: the native tokenizer's encode speed (target >= 20 MB/s on one core), the time to load
# tokenizer.json and the peak RSS with the Llama 3 vocabulary (target <= 64 MiB). Builds >= 10 MB
# of English prose: words drawn at random, with their natural frequencies, from the license texts
# in /usr/share/common-licenses (so a word's frequency follows real English, and not one paragraph
# repeated), sentences of 5-30 words, a number now and then, a paragraph break every few
# sentences. Then, pinned to one core with taskset, `sparkbench tokenize --count` on /dev/null
# (the load alone) and on the prose, with /usr/bin/time -v, each several times: encode MB/s =
# bytes / (time with the prose - time of the load), both medians. Not a test: numbers vary with
# the machine.
# Usage: bench/tokenizer.sh [path/to/sparkbench] [tokenizer] [MB] [runs]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin=${1:-build/sparkbench}
tok=${2:-$root/tests/.cache/tokenizers/llama3_1/tokenizer.json}
mb=${3:-10}
runs=${4:-5}
[[ -s "$tok" ]] || "$root/scripts/fetch-test-tokenizers.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prose="$work/prose.txt"

cat /usr/share/common-licenses/* | awk -v bytes=$((mb * 1000000)) '
{ for (i = 1; i <= NF; i++) if ($i ~ /^[A-Za-z][A-Za-z,;.:'"'"'()-]*$/) w[n++] = $i }
END {
    srand(7); out = 0; line = ""; sent = 0
    while (out < bytes) {
        len = 5 + int(rand() * 26); s = ""
        for (k = 0; k < len; k++) {
            x = w[int(rand() * n)]
            if (k == 0) x = toupper(substr(x, 1, 1)) substr(x, 2)
            if (rand() < 0.02) x = x " " int(rand() * 10000)
            s = s (k ? " " : "") x
        }
        s = s "."
        line = line (line == "" ? "" : " ") s
        if (++sent % (3 + int(rand() * 5)) == 0) { print line "\n"; out += length(line) + 2; line = "" }
    }
}' > "$prose"
size=$(stat -c %s "$prose")

measure() { # measure FILE: prints "seconds rss_kib" of one tokenize --count
    /usr/bin/time -v taskset -c 0 "$bin" tokenize --tokenizer "$tok" --count "$1" \
        >"$work/count" 2>"$work/time"
    awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0;
                    for (i = 1; i <= n; i++) s = s * 60 + p[i]; t = s }
                /Maximum resident set size/ { r = $2 }
                END { print t, r }' "$work/time"
}
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

: >"$work/load"; : >"$work/full"; : >"$work/rss"; : >"$work/lrss"
for ((i = 0; i < runs; i++)); do
    read -r t r < <(measure /dev/null); echo "$t" >>"$work/load"; echo "$r" >>"$work/lrss"
    read -r t r < <(measure "$prose"); echo "$t" >>"$work/full"; echo "$r" >>"$work/rss"
done
tokens=$(cat "$work/count")
load=$(median <"$work/load")
full=$(median <"$work/full")
rss=$(median <"$work/rss")
lrss=$(median <"$work/lrss")
awk -v lr="$lrss" -v b="$size" -v t="$tokens" -v l="$load" -v f="$full" -v r="$rss" -v tok="$tok" 'BEGIN {
    e = f - l; if (e <= 0) e = 0.001
    printf "tokenizer: %s\n", tok
    printf "prose: %.1f MB, %d tokens (%.2f bytes/token)\n", b / 1e6, t, b / t
    printf "load tokenizer.json: %.2f s (median)\n", l
    printf "encode: %.2f s, %.1f MB/s on one core (median; target >= 20)\n", e, b / 1e6 / e
    printf "peak RSS, load only: %.1f MiB (the parsed JSON tree is freed after load; target <= 64)\n", lr / 1024
    printf "peak RSS, load + encode: %.1f MiB (the whole file and all its ids are held)\n", r / 1024
}'
