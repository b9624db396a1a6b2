#!/usr/bin/env bash
# The demo: start the built-in mock (Stack A profile, ephemeral port), stream one chat completion
# through curl and print its timings next to the mock's own server-side stamps.
set -euo pipefail
bin=${1:-build/sparkbench}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
mock_pid=
cleanup() {
    [[ -n "$mock_pid" ]] && kill -TERM "$mock_pid" 2>/dev/null && wait "$mock_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

"$bin" mock --profile "$root/configs/mock/stackA.yaml" --port 0 --log "$work/mock.jsonl" \
    >"$work/port" 2>"$work/mock.err" &
mock_pid=$!
for _ in $(seq 1 100); do [[ -s "$work/port" ]] && break; sleep 0.05; done
port=$(head -n1 "$work/port")
[[ -n "$port" ]] || { cat "$work/mock.err" >&2; exit 1; }
echo "mock (Stack A profile) on 127.0.0.1:$port"

body='{"model":"meta-llama/Llama-3.1-8B-Instruct","messages":[{"role":"user","content":"Summarise the storage incident in one line."}],"max_tokens":32,"stream":true,"stream_options":{"include_usage":true,"continuous_usage_stats":false}}'
curl -sN -o "$work/stream.txt" -H 'Content-Type: application/json' -d "$body" \
    -w 'connect %{time_connect}s  first byte %{time_starttransfer}s  total %{time_total}s  (%{size_download} bytes, HTTP %{http_code})\n' \
    "http://127.0.0.1:$port/v1/chat/completions"
chunks=$(grep -c '^data: {' "$work/stream.txt" || true)
echo "SSE events: $chunks JSON chunks (role + content + usage), done marker: $(grep -c '^data: \[DONE\]' "$work/stream.txt")"
grep -o '"usage":{[^}]*}' "$work/stream.txt" | tail -n1
kill -TERM "$mock_pid"; wait "$mock_pid" || true; mock_pid=
# Server-side view of the same request (monotonic ns stamps from the mock's --log).
ms_between() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", (b-a)/1e6}'; }
line=$(cat "$work/mock.jsonl")
get() { echo "$line" | grep -o "\"$1\":[0-9]*" | cut -d: -f2; }
recv=$(get recv_ns); first=$(get first_token_ns); last=$(get last_token_ns)
echo "server: first token $(ms_between "$recv" "$first") ms after receive, last token $(ms_between "$recv" "$last") ms, $(get completion_tokens) tokens"
