#!/usr/bin/env bash
# Benchmark: the mock's zero-delay non-streaming throughput under wrk, server and client pinned to
# different cores. Prints req/s and the mock's CPU time per request. Not a test: numbers vary.
# Usage: bench/mock.sh [path/to/sparkbench] [seconds] [connections]
set -euo pipefail
bin=${1:-build/sparkbench}
secs=${2:-10}
conns=${3:-64}
here=$(cd "$(dirname "$0")" && pwd)
command -v wrk >/dev/null || { echo "bench: wrk is missing (apt-get install wrk)" >&2; exit 1; }
ncpu=$(nproc)
srv_cpu=0; cli_cpu=$(( ncpu > 1 ? 1 : 0 ))
work=$(mktemp -d)
pid=
trap '[[ -n "$pid" ]] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT

taskset -c "$srv_cpu" "$bin" mock --port 0 --prefill-base-ms 0 --prefill-per-token-us 0 \
    --decode-base-ms 0 --decode-per-seq-us 0 --max-num-seqs 1024 >"$work/port" 2>/dev/null &
pid=$!
for _ in $(seq 1 100); do [[ -s "$work/port" ]] && break; sleep 0.05; done
port=$(head -n1 "$work/port")
ticks() { awk '{print $14+$15}' "/proc/$pid/stat"; }
t0=$(ticks)
taskset -c "$cli_cpu" wrk -t1 -c"$conns" -d"${secs}s" -s "$here/wrk_post.lua" \
    "http://127.0.0.1:$port/v1/completions" | tee "$work/wrk.txt"
t1=$(ticks)
rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.txt")
total=$(awk '/requests in/ {print $1}' "$work/wrk.txt")
hz=$(getconf CLK_TCK)
awk -v r="$rps" -v n="$total" -v dt="$((t1 - t0))" -v hz="$hz" 'BEGIN {
    printf "mock zero-delay non-stream: %.0f req/s, server CPU %.1f us/request (%d requests, max_tokens 16)\n",
        r, dt / hz * 1e6 / n, n }'
