#!/usr/bin/env bash
# Client memory of sessioned_chat (not a test: it prints measurements): peak RSS of
# `sparkbench run` holding 10,000 sessions of about 8k tokens each against the mock. --prime sends
# every session's first turn (8,064 tokens: 256 system + 7,680 context + 128 user), then every
# session gets one more turn, with --history server so the real replies are kept. Target: a few
# hundred MiB (the state is lengths plus reply texts; prompts are built per send).
# Usage: bench/sessions.sh [path/to/sparkbench] [sessions]
set -euo pipefail
bin=$(readlink -f "${1:-build/sparkbench}")
sessions=${2:-10000}
for t in /usr/bin/time jq; do
    command -v "$t" >/dev/null || { echo "bench: $t is missing" >&2; exit 1; }
done
work=$(mktemp -d)
mock_pid=
stop_mock() { [[ -n "$mock_pid" ]] && kill -TERM "$mock_pid" 2>/dev/null && wait "$mock_pid" 2>/dev/null; mock_pid=; }
trap 'stop_mock; rm -rf "$work"' EXIT
"$bin" mock --port 0 --prefill-base-ms 0 --prefill-per-token-us 0 --decode-base-ms 1 \
    --decode-per-seq-us 0 --max-num-seqs 1024 >"$work/port" 2>/dev/null &
mock_pid=$!
for _ in $(seq 1 200); do [[ -s "$work/port" ]] && break; sleep 0.05; done
port=$(head -n1 "$work/port")

requests=$sessions # measured turns: --requests counts from the end of --prime
echo "== sessioned_chat: $sessions sessions of ~8k tokens, $((sessions + requests)) turns, --history server"
/usr/bin/time -v -o "$work/time.txt" "$bin" run --endpoint "http://127.0.0.1:$port" \
    --workload sessioned_chat --sessions "$sessions" --concurrency 64 --requests "$requests" \
    --prime --turns 8 --system-tokens 256 --session-context-tokens 7680 --turn-tokens 128 \
    --max-tokens 32 --history server --kv-bytes-per-token 131072 --output-dir "$work/r" --quiet
stop_mock
rss_kb=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$work/time.txt")
wall=$(awk '/Elapsed \(wall clock\)/ {print $NF}' "$work/time.txt")
ok=$(jq '.counts.ok' "$work/r/run.json")
ws=$(jq '.workload_state.working_set | max_by(.tokens)' "$work/r/run.json")
awk -v kb="$rss_kb" -v s="$sessions" 'BEGIN {
    printf "peak RSS of sparkbench run: %.1f MiB (%.1f KiB a session; target: a few hundred MiB)\n",
        kb / 1024, kb / s }'
echo "ok turns: $ok, wall $wall"
echo "largest working set sampled: $(jq -c . <<<"$ws")"
