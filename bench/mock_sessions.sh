#!/usr/bin/env bash
# Benchmark: the mock's TTFT against reuse distance for multi-turn chats (issue 13). Starts
# `sparkbench mock` with small tiers (tier 0 holds about 2 sessions, tier 1 about 4, tier 2 all),
# sends the first turn of N sessions, then each session's second turn (carrying its real reply)
# from the most recent session to the oldest, so the reuse distance grows by one session each
# time. Prints per second turn: sessions since its first turn, the x-mock-tier-hits header,
# cached tokens, the modelled fetch time and the server's TTFT (x_mock stamps). Not a test:
# the tier-2 reads are real preads and vary with the disk.
# Usage: bench/mock_sessions.sh [path/to/sparkbench] [sessions] [tier2-fetch-us]
set -euo pipefail
bin=${1:-build/sparkbench}
n=${2:-12}
t2us=${3:-0}
work=$(mktemp -d)
mock_pid=
cleanup() { [ -n "$mock_pid" ] && kill "$mock_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
"$bin" mock --port 0 --tier0-blocks 24 --tier1-blocks 48 --tier2-blocks 4096 --tier2-path "$work" \
    --kv-block-tokens 4 --kv-block-bytes 65536 --no-disk-offload-filter --tier2-fetch-us "$t2us" \
    --decode-base-ms 1 >"$work/port" 2>"$work/mock.err" &
mock_pid=$!
for _ in $(seq 50); do [ -s "$work/port" ] && break; sleep 0.1; done
port=$(head -n1 "$work/port")
url="http://127.0.0.1:$port/v1/chat/completions"
ctx() { printf 'session %02d context: the quick brown fox jumps over the lazy dog, then the dog wakes up and chases the fox around the yard until both are tired %02d' "$1" "$1"; }
for s in $(seq 0 $((n - 1))); do
    curl -s "$url" -d "{\"messages\":[{\"role\":\"user\",\"content\":\"$(ctx "$s")\"}],\"max_tokens\":4}" \
        | sed -n 's/.*"content":"\([^"]*\)".*/\1/p' >"$work/reply.$s"
done
printf '%-8s %-10s %-44s %8s %10s %10s\n' session distance x-mock-tier-hits cached fetch_ms ttft_ms
for s in $(seq $((n - 1)) -1 0); do
    reply=$(cat "$work/reply.$s")
    body="{\"messages\":[{\"role\":\"user\",\"content\":\"$(ctx "$s")\"},{\"role\":\"assistant\",\"content\":\"$reply\"},{\"role\":\"user\",\"content\":\"and then?\"}],\"max_tokens\":4}"
    curl -s -D "$work/h" -o "$work/b" "$url" -d "$body"
    hits=$(sed -n 's/^x-mock-tier-hits: \([^\r]*\).*/\1/p' "$work/h")
    awk -v s="$s" -v d="$((n - 1 - s))" -v h="$hits" '{
        match($0, /"cached_tokens":[0-9]+/); c = substr($0, RSTART + 16, RLENGTH - 16);
        match($0, /"fetch_ns":[0-9]+/); f = substr($0, RSTART + 11, RLENGTH - 11);
        match($0, /"recv_ns":[0-9]+/); r = substr($0, RSTART + 10, RLENGTH - 10);
        match($0, /"first_token_ns":[0-9]+/); t = substr($0, RSTART + 17, RLENGTH - 17);
        printf "%-8s %-10s %-44s %8s %10.3f %10.3f\n", s, d, h, c, f / 1e6, (t - r) / 1e6 }' "$work/b"
done
