#!/usr/bin/env bash
# Benchmark: how fast `sparkbench analyze` reads metrics.jsonl (target >= 2,000,000 lines/s on a
# 2-core machine) and its peak RSS. Writes a run directory with a metrics.jsonl of N lines in the
# shape `sparkbench run` writes (1 KB lines: 2 % warm-up, ~1 % failures of two kinds, numbers
# varied), a run.json and a config.yaml, then times `sparkbench analyze DIR --no-figures --quiet`
# with /usr/bin/time -v: once as our runs are (the window from run.json), once without run.json
# (the window from the records' own times, as for the old harness's runs), each several times
# (the median and the best are printed: a shared VM's timings scatter). With python3, also
# times the old process_results.py's way on the same file (json.loads per line, TTFT and E2E of
# the ok lines, linear percentiles) and prints the ratio. Not a test: numbers vary with the machine.
# Usage: bench/analyze.sh [path/to/sparkbench] [lines] [runs]
set -euo pipefail
bin=${1:-build/sparkbench}
lines=${2:-1000000}
runs=${3:-5}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
run="$work/20261201_120000_H0_stackA_L8B_U64"
mkdir -p "$run"

awk -v n="$lines" '
BEGIN {
    srand(42);
    id = "20261201_120000_H0_stackA_L8B_U64"; t0 = 1796081270.5; mono = 20463399472667;
    for (i = 0; i < n; i++) {
        ts = t0 + i * 0.0005; s = mono + i * 500000;
        phase = (i < n / 50) ? "warmup" : "measure";
        ttfb = 0.1 + rand() * 2; ttft = 50 + rand() * 400; e2e = ttft + 300 + rand() * 600;
        itl = (e2e - ttft) / 15; tpot = itl + rand() * 0.01;
        head = sprintf("{\"run_id\":\"%s\",\"ts\":%.8f,\"stack\":\"A\",\"model\":\"L8B\",\"workload\":\"fixed_context\",\"hypothesis\":\"H0\",\"phase\":\"%s\",\"phase_label\":\"U64\",\"repetition\":1,\"context_tokens\":2048,\"concurrency\":64,\"rate\":null,\"user\":%d,\"req_idx\":%d,\"seq\":%d,\"request_id\":\"%s-%d\",\"nonce\":null,\"prompt_hash\":\"b619f1f26de685c3\",",
            id, ts, phase, i % 64, int(i / 64), i, id, i);
        r = rand();
        if (r < 0.005)
            printf "%s\"rc\":429,\"ok\":false,\"error\":\"http\",\"error_msg\":\"queue full (code 429)\",\"t_sched_ns\":%.0f,\"t_send_ns\":%.0f,\"t_first_byte_ns\":%.0f,\"t_first_event_ns\":null,\"t_first_token_ns\":null,\"t_last_byte_ns\":%.0f,\"server_recv_ns\":null,\"server_first_token_ns\":null,\"lat_ttft_ms\":null,\"lat_ttfb_ms\":%.6f,\"lat_first_chunk_ms\":null,\"lat_e2e_ms\":%.6f,\"lat_sched_delay_ms\":0.008946,\"itl_mean_ms\":null,\"itl_p50_ms\":null,\"itl_p99_ms\":null,\"itl_max_ms\":null,\"tpot_ms\":null,\"output_tokens\":0,\"tokens_src\":\"counted\",\"content_chunks\":0,\"prompt_tokens\":null,\"cached_tokens\":null,\"finish_reason\":null}\n",
                head, s, s + 9000, s + 150000, s + 160000, ttfb, ttfb + 0.01;
        else if (r < 0.01)
            printf "%s\"rc\":0,\"ok\":false,\"error\":\"timeout\",\"error_msg\":\"Operation timed out after 600000 milliseconds\",\"t_sched_ns\":%.0f,\"t_send_ns\":%.0f,\"t_first_byte_ns\":null,\"t_first_event_ns\":null,\"t_first_token_ns\":null,\"t_last_byte_ns\":null,\"server_recv_ns\":null,\"server_first_token_ns\":null,\"lat_ttft_ms\":null,\"lat_ttfb_ms\":null,\"lat_first_chunk_ms\":null,\"lat_e2e_ms\":600000.100000,\"lat_sched_delay_ms\":0.008946,\"itl_mean_ms\":null,\"itl_p50_ms\":null,\"itl_p99_ms\":null,\"itl_max_ms\":null,\"tpot_ms\":null,\"output_tokens\":0,\"tokens_src\":\"counted\",\"content_chunks\":0,\"prompt_tokens\":null,\"cached_tokens\":null,\"finish_reason\":null}\n",
                head, s, s + 9000;
        else
            printf "%s\"rc\":200,\"ok\":true,\"error\":null,\"error_msg\":null,\"t_sched_ns\":%.0f,\"t_send_ns\":%.0f,\"t_first_byte_ns\":%.0f,\"t_first_event_ns\":%.0f,\"t_first_token_ns\":%.0f,\"t_last_byte_ns\":%.0f,\"server_recv_ns\":%.0f,\"server_first_token_ns\":%.0f,\"lat_ttft_ms\":%.6f,\"lat_ttfb_ms\":%.6f,\"lat_first_chunk_ms\":%.6f,\"lat_e2e_ms\":%.6f,\"lat_sched_delay_ms\":%.6f,\"itl_mean_ms\":%.6f,\"itl_p50_ms\":%.6f,\"itl_p99_ms\":%.6f,\"itl_max_ms\":%.6f,\"tpot_ms\":%.6f,\"output_tokens\":16,\"tokens_src\":\"usage\",\"content_chunks\":16,\"prompt_tokens\":2050,\"cached_tokens\":0,\"finish_reason\":\"length\"}\n",
                head, s, s + 9000, s + ttfb * 1e6, s + ttfb * 1e6 + 4400, s + ttft * 1e6,
                s + e2e * 1e6, s + 100000, s + ttft * 1e6 - 200000, ttft, ttfb, ttfb + 0.0044,
                e2e, rand() * 0.05, itl, itl * 0.98, itl * 1.3, itl * 1.4, tpot;
    }
}' >"$run/metrics.jsonl"
end=$(awk -v n="$lines" 'BEGIN { printf "%.6f", 1796081270.5 + n * 0.0005 + 1 }')
printf '{"run_id": "20261201_120000_H0_stackA_L8B_U64", "start_ts": 1796081270.5, "measure_start_ts": %s, "end_ts": %s}\n' \
    "$(awk -v n="$lines" 'BEGIN { printf "%.6f", 1796081270.5 + n / 50 * 0.0005 }')" "$end" >"$run/run.json"
printf 'run:\n  stack: "A"\n  model: "L8B"\n  context_tokens: 2048\n  concurrency: 64\n  hypothesis: "H0"\n  phase: "U64"\n' \
    >"$run/config.yaml"
bytes=$(stat -c %s "$run/metrics.jsonl")

# Written back first (writeback would run during the first timings), then one untimed pass so
# that the file is in the page cache: this measures the parsing, not the disk.
sync "$run/metrics.jsonl"
cat "$run/metrics.jsonl" >/dev/null

measure() { # label: analyze under /usr/bin/time -v, $runs times; median and best wall, lines/s, RSS
    local label=$1
    : >"$work/runs"
    for _ in $(seq "$runs"); do
        /usr/bin/time -v -o "$work/time" "$bin" analyze "$run" --out "$work/out" \
            --uwork "$work/uwork.txt" --no-figures --quiet 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
        awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, t, ":"); w = 0; for (i = 1; i <= n; i++) w = w * 60 + t[i] }
            /User time/ { u = $2 } /System time/ { s = $2 } /Maximum resident set size/ { r = $2 }
            END { print w, u + s, r }' "$work/time" >>"$work/runs"
    done
    sort -n "$work/runs" | awk -v l="$lines" -v b="$bytes" -v lab="$label" -v n="$runs" '
        { w[NR] = $1; c[NR] = $2; if ($3 > r) r = $3 } END {
        m = int((NR + 1) / 2);
        printf "sparkbench analyze, %s: %d lines (%.0f MB), %d runs: median %.2f s wall (%.2f s CPU) = %.2f M lines/s, best %.2f s = %.2f M lines/s (target >= 2); peak RSS %.1f MiB\n",
            lab, l, b / 1e6, n, w[m], c[m], l / w[m] / 1e6, w[1], l / w[1] / 1e6, r / 1024
        print w[m] > "'"$work/median"'" }'
}
measure "window from run.json"
cp "$work/median" "$work/median.ours"
mv "$run/run.json" "$work/run.json.kept"
measure "window from the records"
mv "$work/run.json.kept" "$run/run.json"

if command -v python3 >/dev/null; then
    # process_results.py's way: json.loads per line, the ok lines' TTFT and E2E, p50/p95/p99.
    cat >"$work/old.py" <<'EOF'
import json, sys, time
def pct(v, p):
    v = sorted(v)
    pos = (len(v) - 1) * p / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)
t = time.time()
ttft, e2e = [], []
for line in open(sys.argv[1]):
    line = line.strip()
    if not line:
        continue
    try:
        r = json.loads(line)
    except ValueError:
        continue
    if r.get("rc") in ("ok", 200):
        if r.get("lat_ttft_ms") is not None:
            ttft.append(r["lat_ttft_ms"])
        if r.get("lat_e2e_ms") is not None:
            e2e.append(r["lat_e2e_ms"])
row = [pct(ttft, p) for p in (50, 95, 99)] + [pct(e2e, p) for p in (50, 95, 99)]
print("%.3f" % (time.time() - t))
EOF
    py=$(python3 "$work/old.py" "$run/metrics.jsonl")
    awk -v py="$py" -v w="$(cat "$work/median.ours")" -v l="$lines" 'BEGIN {
        printf "python3 json.loads (process_results.py'"'"'s way): %.2f s, %.2f M lines/s; sparkbench is %.1fx faster\n",
            py, l / py / 1e6, py / w }'
fi
