#!/usr/bin/env bash
# Side-by-side check of the sysmon gpu source on a machine with NVIDIA's driver: runs
# `sparkbench sysmon` for 3 s at 200 ms, prints the "gpu" object of every line (one row per GPU,
# memory in MiB like nvidia-smi), and, when nvidia-smi is there, its own readings of the same
# fields taken every 500 ms over the same seconds. Builds nothing: SPARKBENCH names the binary
# (default build/sparkbench). Extra arguments go to sysmon (e.g. --nvml-lib PATH).
set -euo pipefail
bin=${SPARKBENCH:-build/sparkbench}
[[ -x "$bin" ]] || { echo "gpu-check: no sparkbench binary at '$bin' (set SPARKBENCH)" >&2; exit 1; }
dir=$(mktemp -d)
smi_pid=
cleanup() {
    if [[ -n "$smi_pid" ]]; then kill "$smi_pid" 2>/dev/null || true; wait "$smi_pid" 2>/dev/null || true; fi
    rm -rf "$dir"
}
trap cleanup EXIT

query=utilization.gpu,memory.used,memory.total,power.draw,temperature.gpu,clocks.sm
if command -v nvidia-smi >/dev/null; then
    # memory.reserved (drivers since R510) is what sysmon's v2 used leaves out
    if nvidia-smi --query-gpu=memory.reserved --format=csv,noheader >/dev/null 2>&1; then
        query=$query,memory.reserved
    fi
    nvidia-smi --query-gpu=timestamp,index,$query --format=csv -lms 500 >"$dir/smi.csv" 2>&1 &
    smi_pid=$!
fi
echo "== sparkbench sysmon --duration-s 3 --interval-ms 200 (stderr below, if any)"
"$bin" sysmon --out "$dir" --duration-s 3 --interval-ms 200 --no-disk "$@"
if [[ -n "$smi_pid" ]]; then kill "$smi_pid" 2>/dev/null || true; wait "$smi_pid" 2>/dev/null || true; smi_pid=; fi

echo
echo "== sysmon gpu objects"
if command -v python3 >/dev/null; then
    python3 - "$dir/sysmon.jsonl" <<'EOF'
import json, sys
def show(v, scale=1, fmt="{:.0f}"):
    return "null" if v is None else fmt.format(v / scale)
print("ts                 gpu util% mem_util% mem_used_MiB mem_total_MiB power_W temp_C sm_MHz reserved_MiB (mem_src)")
for line in open(sys.argv[1]):
    rec = json.loads(line)
    g = rec.get("gpu")
    if g is None:
        print(f"{rec['ts']:.3f}  (no gpu object: {'missed tick' if rec.get('missed') else 'absent this tick'})")
        continue
    for d in g["gpus"]:
        print(f"{rec['ts']:.3f} {d['index']:>4} {show(d['util']):>5} {show(d['mem_util']):>9} "
              f"{show(d['mem_used_bytes'], 2**20):>12} {show(d['mem_total_bytes'], 2**20):>13} "
              f"{show(d['power_w'], 1, '{:.2f}'):>7} {show(d['temp_c']):>6} {show(d['sm_clock_mhz']):>6} "
              f"{show(d.get('mem_reserved_bytes'), 2**20):>12} ({g['mem_src']})")
print()
print("last gpu object as written:")
last = [json.loads(l).get("gpu") for l in open(sys.argv[1])]
last = [g for g in last if g is not None]
print(json.dumps(last[-1]) if last else "(none)")
EOF
elif command -v jq >/dev/null; then
    jq -c '{ts, gpu}' "$dir/sysmon.jsonl"
else
    grep -o '"gpu":{.*}\]}' "$dir/sysmon.jsonl" || echo "(no gpu objects)"
fi

if [[ -s "$dir/smi.csv" ]]; then
    echo
    echo "== nvidia-smi --query-gpu=$query --format=csv (every 500 ms, same seconds)"
    cat "$dir/smi.csv"
else
    echo
    echo "== nvidia-smi not found: no side-by-side"
fi
