#!/usr/bin/env bash
# Soak: SOAK_MINUTES (default 60) of SOAK_STREAMS (default 1000) concurrent streams of a
# sessioned_chat workload against the mock with SOAK_FAULT_RATE (default 0.01) injected faults of
# every kind, with --sysmon. Samples the run's RSS and open fds every SOAK_SAMPLE_S (default 10) s
# and prints: the RSS slope after the first minute (KiB/min, least squares), fd growth (last -
# first after the first minute), whether every request is accounted for (run.json sent = ok +
# errors = lines of metrics.jsonl) and sysmon's grid (ticks one interval apart; gaps counted).
# Exits 1 when the run failed (exit code not 0: e.g. nothing succeeded), a request is unaccounted
# for or the grid has a gap; the slope is printed, not judged.
#   bench/soak.sh                  # one hour
#   SOAK_MINUTES=2 bench/soak.sh   # the short version
set -euo pipefail
cd "$(dirname "$0")/.."
SB=${SB:-build/sparkbench}
MINUTES=${SOAK_MINUTES:-60}
STREAMS=${SOAK_STREAMS:-1000}
FAULT_RATE=${SOAK_FAULT_RATE:-0.01}
SAMPLE_S=${SOAK_SAMPLE_S:-10}
INTERVAL_MS=${SOAK_SYSMON_MS:-1000}
[[ -x "$SB" ]] || { echo "soak: $SB not built" >&2; exit 1; }

work=$(mktemp -d /tmp/sb-soak-XXXXXX)
mock_pid=""
run_pid=""
cleanup() {
    [[ -n "$run_pid" ]] && kill "$run_pid" 2>/dev/null && wait "$run_pid" 2>/dev/null
    [[ -n "$mock_pid" ]] && kill "$mock_pid" 2>/dev/null && wait "$mock_pid" 2>/dev/null
    [[ -n "${SOAK_KEEP:-}" ]] || rm -rf "$work"
    return 0
}
trap cleanup EXIT

# Faults: stalls and slow headers of 15 s against a 10 s request timeout (timeouts), the rest as
# the mock makes them. No fixed prefill cost: at 2 ms a request (the default) 1,000 streams queue
# 2 s of prefill, and with a short timeout every request timed out and was sent again at once.
"$SB" mock --port 0 --seed 1 --fault-rate "$FAULT_RATE" --fault-kinds all \
    --fault-stall-ms 15000 --fault-slow-headers-ms 15000 --prefill-base-ms 0 \
    --prefill-per-token-us 1 --decode-base-ms 20 --decode-per-seq-us 5 --max-num-seqs 1024 \
    >"$work/mock.out" 2>"$work/mock.err" &
mock_pid=$!
for _ in $(seq 100); do
    [[ -s "$work/mock.out" ]] && break
    sleep 0.1
done
port=$(head -1 "$work/mock.out")
[[ "$port" =~ ^[0-9]+$ ]] || { echo "soak: the mock printed no port" >&2; exit 1; }

out="$work/run"
"$SB" run --endpoint "http://127.0.0.1:$port/v1/chat/completions" --workload sessioned_chat \
    --concurrency "$STREAMS" --sessions "$STREAMS" --system-tokens 64 \
    --session-context-tokens 256 --turn-tokens 32 --max-tokens 16 --turns 8 \
    --history synthetic --think-ms uniform:0:500 --duration-s "$(awk "BEGIN { print $MINUTES * 60 }")" \
    --timeout-s 10 --warmup-s 0 --sysmon --sysmon-interval-ms "$INTERVAL_MS" \
    --prompts-dir inputs/prompts --output-dir "$out" --quiet >"$work/run.out" 2>"$work/run.err" &
run_pid=$!

echo "soak: $MINUTES min, $STREAMS streams, fault rate $FAULT_RATE, sample every $SAMPLE_S s"
t0=$(date +%s)
: >"$work/samples"
while kill -0 "$run_pid" 2>/dev/null; do
    now=$(($(date +%s) - t0))
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$run_pid/status" 2>/dev/null || true)
    fds=$(find "/proc/$run_pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    [[ -n "$rss" ]] && echo "$now $rss $fds" >>"$work/samples"
    sleep "$SAMPLE_S"
done
set +e
wait "$run_pid"
rc=$?
set -e
run_pid=""
echo "soak: run exited $rc after $(($(date +%s) - t0)) s"
[[ -s "$work/run.err" ]] && sed 's/^/  run: /' "$work/run.err" | head -5

# RSS slope (KiB/min) by least squares over the samples after the first minute; fd growth.
awk 'NR == 1 { f0 = $3 } $1 >= 60 { n++; x = $1 / 60; sx += x; sy += $2; sxx += x * x;
     sxy += x * $2; if (!seen) { fa = $3; ra = $2; seen = 1 } fz = $3; rz = $2 }
     END { if (n >= 2) printf "soak: RSS %d -> %d KiB after the first minute, slope %.1f KiB/min " \
             "over %d samples\n", ra, rz, (n * sxy - sx * sy) / (n * sxx - sx * sx), n;
           else print "soak: too few samples after the first minute for a slope";
           printf "soak: fds %d at the start, %d -> %d after the first minute (growth %d)\n", \
             f0, fa, fz, fz - fa }' "$work/samples"

python3 - "$out" "$INTERVAL_MS" <<'EOF'
import json, sys
out, interval = sys.argv[1], int(sys.argv[2]) / 1000
rj = json.load(open(f"{out}/run.json"))
c = rj["counts"]
lines = ok = 0
kinds = {}
with open(f"{out}/metrics.jsonl") as f:
    for line in f:
        r = json.loads(line)
        lines += 1
        if r.get("ok"):
            ok += 1
        else:
            kinds[r.get("error")] = kinds.get(r.get("error"), 0) + 1
errors = lines - ok
acc = c["sent"] == c["ok"] + c["errors"] == lines and c["ok"] == ok
print(f"soak: sent {c['sent']}, ok {c['ok']}, errors {c['errors']} "
      f"({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))}); metrics.jsonl {lines} lines: "
      f"{'every request accounted for' if acc else 'MISMATCH'}; exit_reason {rj['exit_reason']}")
ts = [json.loads(l)["ts"] for l in open(f"{out}/sysmon.jsonl")]
gaps = sum(1 for a, b in zip(ts, ts[1:]) if abs(b - a - interval) > 1e-4)
missed = sum(1 for l in open(f"{out}/sysmon.jsonl") if '"missed":true' in l)
print(f"soak: sysmon {len(ts)} ticks at {interval:g} s, {gaps} gaps in the grid, {missed} missed")
sys.exit(0 if acc and gaps == 0 else 1)
EOF
[[ "$rc" -eq 0 ]] || { echo "soak: FAILED: the run exited $rc" >&2; exit 1; }
