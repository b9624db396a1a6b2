#!/usr/bin/env bash
# Benchmark of the load generator against wrk, side by side in one run (not a test: it prints
# measurements and ratios). Server and client are pinned to different cores.
#   1. zero-delay non-streaming mock: req/s and client CPU per request, sparkbench / wrk
#   2. TTFT error at 1,000 concurrent streams: client first-token stamp minus the mock's own
#      first-token stamp (same CLOCK_MONOTONIC), p50/p99
#   3. peak RSS of `sparkbench run` holding 10,000 concurrent streams
# Usage: bench/engine.sh [path/to/sparkbench] [seconds]
set -euo pipefail
bin=$(readlink -f "${1:-build/sparkbench}")
secs=${2:-10}
root=$(cd "$(dirname "$0")/.." && pwd)
for t in wrk taskset /usr/bin/time awk; do
    command -v "$t" >/dev/null || { echo "bench: $t is missing (scripts/install-deps.sh --bench)" >&2; exit 1; }
done
ncpu=$(nproc); srv_cpu=0; cli_cpu=$(( ncpu > 1 ? 1 : 0 ))
work=$(mktemp -d)
mock_pid=
stop_mock() { [[ -n "$mock_pid" ]] && kill -TERM "$mock_pid" 2>/dev/null && wait "$mock_pid" 2>/dev/null; mock_pid=; }
trap 'stop_mock; rm -rf "$work"' EXIT
start_mock() { # args...
    taskset -c "$srv_cpu" "$bin" mock --port 0 "$@" >"$work/port" 2>/dev/null &
    mock_pid=$!
    for _ in $(seq 1 200); do [[ -s "$work/port" ]] && break; sleep 0.05; done
    port=$(head -n1 "$work/port")
}
cpu_of() { awk '{print $1 + $2}' "$1"; } # user + sys seconds from /usr/bin/time -f "%U %S"

echo "== 1. zero-delay non-streaming throughput (${secs}s each, 64 connections)"
start_mock --prefill-base-ms 0 --prefill-per-token-us 0 --decode-base-ms 0 --decode-per-seq-us 0 \
    --max-num-seqs 1024
/usr/bin/time -f "%U %S" -o "$work/wrk.cpu" taskset -c "$cli_cpu" \
    wrk -t1 -c64 -d"${secs}s" -s "$root/bench/wrk_post.lua" "http://127.0.0.1:$port/v1/completions" \
    >"$work/wrk.txt"
wrk_rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.txt")
wrk_n=$(awk '/requests in/ {print $1}' "$work/wrk.txt")
wrk_cpu=$(cpu_of "$work/wrk.cpu")
/usr/bin/time -f "%U %S" -o "$work/sb.cpu" taskset -c "$cli_cpu" \
    "$bin" run --endpoint "http://127.0.0.1:$port/v1/completions" --no-stream --concurrency 64 \
    --duration-s "$secs" --max-tokens 16 --model sparkbench-mock --output-dir "$work/r1" \
    --prompts-dir "$root/inputs/prompts" --context-tokens 128 --quiet
stop_mock
sb_n=$(jq '.counts.ok' "$work/r1/run.json")
sb_secs=$(jq '.end_ts - .start_ts' "$work/r1/run.json")
sb_cpu=$(cpu_of "$work/sb.cpu")
awk -v wr="$wrk_rps" -v wn="$wrk_n" -v wc="$wrk_cpu" -v sn="$sb_n" -v ss="$sb_secs" -v sc="$sb_cpu" 'BEGIN {
    sr = sn / ss; wcpu = wc / wn * 1e6; scpu = sc / sn * 1e6;
    printf "wrk:        %9.0f req/s   %6.1f us CPU/request\n", wr, wcpu;
    printf "sparkbench: %9.0f req/s   %6.1f us CPU/request\n", sr, scpu;
    printf "ratio sparkbench/wrk: req/s %.2f (target >= 0.5), CPU/request %.2f (target <= 2)\n", sr / wr, scpu / wcpu }'

echo "== 2. TTFT error at 1,000 concurrent streams"
# Reference: the mock's own stamp of when the first content chunk left its output buffer
# (first_token_sent_ns in its --log), joined to the client's record through X-Request-Id.
start_mock --prefill-base-ms 0 --prefill-per-token-us 0 --decode-base-ms 50 --decode-per-seq-us 0 \
    --max-num-seqs 1024 --log "$work/mock2.jsonl"
taskset -c "$cli_cpu" "$bin" run --endpoint "http://127.0.0.1:$port/v1/chat/completions" \
    --concurrency 1000 --duration-s "$secs" --warmup-s 2 --max-tokens 16 --model sparkbench-mock \
    --output-dir "$work/r2" --prompts-dir "$root/inputs/prompts" --context-tokens 128 --quiet
stop_mock
awk 'function field(line, name,   i, rest) { i = index(line, "\"" name "\":"); if (!i) return "";
         rest = substr(line, i + length(name) + 3); sub(/[,}].*/, "", rest); gsub(/"/, "", rest); return rest }
     FNR == NR { id = field($0, "x_request_id"); t = field($0, "first_token_sent_ns");
                 if (id != "" && t != "null" && t != "") sent[id] = t; next }
     field($0, "phase") != "measure" { next }  # the connection storm of the start is warm-up
     { id = field($0, "request_id"); c = field($0, "t_first_token_ns");
       if ((id in sent) && c != "null") print (c - sent[id]) / 1e6 }' \
    "$work/mock2.jsonl" "$work/r2/metrics.jsonl" | sort -n >"$work/err.txt"
awk '{ v[NR] = $1 } END { if (NR == 0) { print "no samples"; exit }
    p50 = v[int(0.5 * (NR - 1)) + 1]; p99 = v[int(0.99 * (NR - 1)) + 1];
    printf "TTFT error (client first token - mock first chunk sent), %d measured streams: p50 %.3f ms, p99 %.3f ms (target p99 <= 0.3 ms)\n", NR, p50, p99 }' "$work/err.txt"

echo "== 3. peak RSS at 10,000 concurrent streams"
start_mock --prefill-base-ms 0 --prefill-per-token-us 0 --decode-base-ms 50 --decode-per-seq-us 0 \
    --max-num-seqs 10000
/usr/bin/time -f "%M" -o "$work/rss" taskset -c "$cli_cpu" "$bin" run \
    --endpoint "http://127.0.0.1:$port/v1/chat/completions" --concurrency 10000 --requests 10000 \
    --max-tokens 40 --model sparkbench-mock --output-dir "$work/r3" \
    --prompts-dir "$root/inputs/prompts" --context-tokens 128 --quiet --connect-timeout-s 60
stop_mock
ok3=$(jq '.counts.ok' "$work/r3/run.json")
awk -v kb="$(cat "$work/rss")" -v ok="$ok3" 'BEGIN {
    printf "peak RSS with 10,000 concurrent streams: %.1f MiB (%d ok; target <= 64 MiB)\n", kb / 1024, ok }'

echo "== 4. 10,000 users started at once vs ramped over 5 s (--ramp-up-s)"
# Started at once, the connection storm overflows the server's listen backlog and the first
# requests' TTFT includes SYN retransmits; a ramp spreads the connects. First request of each user.
for ramp in 0 5; do
    start_mock --prefill-base-ms 0 --prefill-per-token-us 0 --decode-base-ms 50 \
        --decode-per-seq-us 0 --max-num-seqs 10000
    taskset -c "$cli_cpu" "$bin" run --endpoint "http://127.0.0.1:$port/v1/chat/completions" \
        --concurrency 10000 --duration-s 8 --ramp-up-s "$ramp" --max-tokens 40 \
        --model sparkbench-mock --output-dir "$work/r4_$ramp" --prompts-dir "$root/inputs/prompts" \
        --context-tokens 128 --quiet --connect-timeout-s 60
    stop_mock
    jq -r 'select(.ok and .req_idx == 0) | .lat_ttft_ms' "$work/r4_$ramp/metrics.jsonl" | sort -n |
        awk -v r="$ramp" '{ v[NR] = $1 } END { if (!NR) { print "no samples"; exit }
            printf "ramp %s s: first-request TTFT p50 %.1f ms, p99 %.1f ms (%d users)\n", r,
                   v[int(0.5 * (NR - 1)) + 1], v[int(0.99 * (NR - 1)) + 1], NR }'
done
