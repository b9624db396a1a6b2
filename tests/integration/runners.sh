#!/usr/bin/env bash
# The runner library (runs/_lib.sh) with the real binary and real mocks on ephemeral ports: the
# dry-run plan sends nothing, both flag spellings, the health check's refusals, the missing-U_work
# message, one --quick --mock runner end to end, and the traps (the mock is gone after success, a
# failing `sparkbench run`, and a SIGINT to the runner alone or to its process group).
# Usage: runners.sh SPARKBENCH SOURCE_DIR
set -euo pipefail
SPARKBENCH=$(realpath "$1")
SRC=$(realpath "$2")
export SPARKBENCH
T=$(mktemp -d "${TMPDIR:-/tmp}/sb_runners_test.XXXXXX")
# make check-valgrind (SB_TEST_VALGRIND, as in proc.c): the runners start $SPARKBENCH, so it
# becomes a `sparkbench` that runs the real one under the valgrind wrapper.
if [[ -n ${SB_TEST_VALGRIND:-} ]]; then
    mkdir "$T/vgbin"
    printf '#!/usr/bin/env bash\nexec %q %q "$@"\n' "$SB_TEST_VALGRIND" "$SPARKBENCH" >"$T/vgbin/sparkbench"
    chmod +x "$T/vgbin/sparkbench"
    SPARKBENCH=$T/vgbin/sparkbench
fi
H0="$SRC/runs/run_H0_queue_knee.sh"
MODEL=meta-llama/Llama-3.1-8B-Instruct
mock_pid=""
bg_pid=""
fails=0

cleanup() {
    [[ -n $bg_pid ]] && kill -TERM "$bg_pid" 2>/dev/null && wait "$bg_pid" 2>/dev/null
    [[ -n $mock_pid ]] && kill -TERM "$mock_pid" 2>/dev/null && wait "$mock_pid" 2>/dev/null
    rm -rf "$T"
    return 0
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    fails=$((fails + 1))
}
ok() { echo "ok: $*"; }
# check DESCRIPTION COMMAND...: the command must succeed.
check() {
    local what=$1
    shift
    if "$@"; then ok "$what"; else fail "$what"; fi
}
# The port the runner's mock listened on, from its "== mock (...) on http://127.0.0.1:PORT" line.
mock_port_of() { sed -n -E 's|^== mock \(.*\) on http://127\.0\.0\.1:([0-9]+).*|\1|p' "$1" | head -n1; }
port_closed() { ! curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$1/health"; }
# No `sparkbench run` of this test is left (their command lines name $T; the mocks' are checked
# by their ports).
none_left() { ! pgrep -f -- "sparkbench run .*$T/" >/dev/null; }

# A mock of our own that logs every request it gets.
"$SPARKBENCH" mock --port 0 --served-model-name "$MODEL" --log "$T/mock.log" >"$T/mock.port" 2>"$T/mock.err" &
mock_pid=$!
for ((i = 0; i < 100; i++)); do
    [[ -s $T/mock.port ]] && break
    sleep 0.05
done
port=$(head -n1 "$T/mock.port")
[[ $port =~ ^[0-9]+$ ]] || {
    echo "FAIL: the mock printed no port: $(cat "$T/mock.err")" >&2
    exit 1
}
EP="http://127.0.0.1:$port/v1/chat/completions"

# 1. --dry-run prints the plan and sends nothing; the old --flag_name spellings and --flag=value.
rc=0
"$H0" --endpoint "$EP" --dry-run --concurrency-list 1,2,4 --repetitions 2 --duration-s 5 \
    --results-dir "$T/dry" >"$T/dry.out" 2>&1 || rc=$?
check "dry run exits 0" test "$rc" = 0
check "dry run: 3 points x 2 repetitions, total time" \
    grep -q 'plan: 3 points x 2 repetitions = 6 runs x 5 s = 30 s' "$T/dry.out"
check "dry run: each point's run command" grep -q -- "--phase U4 .*--concurrency 4" "$T/dry.out"
check "dry run: says nothing was sent" grep -q 'dry run: nothing was sent' "$T/dry.out"
check "dry run: no run directory" test ! -e "$T/dry"
rc=0
"$H0" --endpoint="$EP" --dry-run --concurrency_list 8 --duration_s 7 --warmup_s 1 --repetitions=1 \
    --context_tokens 512 --results_dir "$T/dry" >"$T/dry2.out" 2>&1 || rc=$?
check "old spellings: exit 0" test "$rc" = 0
check "old spellings: --duration_s 7 --repetitions=1" grep -q 'plan: 1 points x 1 repetitions = 1 runs x 7 s = 7 s' "$T/dry2.out"
check "old spellings: --context_tokens 512 --warmup_s 1" \
    grep -q -- '--warmup-s 1 .*--context-tokens 512 --concurrency 8' "$T/dry2.out"
rc=0
"$H0" --endpoint "$EP" --dry-run --no-such-flag >"$T/bad.out" 2>&1 || rc=$?
check "an unknown flag is an error naming it" grep -q "unknown option '--no-such-flag'" "$T/bad.out"
check "an unknown flag exits non-zero" test "$rc" != 0

# 2. The health check: an unreachable endpoint and a model the server does not list are refused
# with one line and a non-zero exit, before any run.
t0=$SECONDS
rc=0
"$H0" --endpoint http://127.0.0.1:1/v1/chat/completions --quick --results-dir "$T/unreach" \
    >"$T/unreach.out" 2>"$T/unreach.err" || rc=$?
echo "(unreachable endpoint refused in $((SECONDS - t0)) s)"
check "unreachable: non-zero exit" test "$rc" != 0
check "unreachable: says so" grep -q 'cannot reach http://127.0.0.1:1/health' "$T/unreach.err"
check "unreachable: one line" test "$(wc -l <"$T/unreach.err")" = 1
check "unreachable: no run directory" test ! -e "$T/unreach/H0"
rc=0
"$H0" --endpoint "$EP" --model no-such-model --quick --results-dir "$T/unknown" \
    >"$T/unknown.out" 2>"$T/unknown.err" || rc=$?
check "unknown model: non-zero exit" test "$rc" != 0
check "unknown model: names it and what is served" \
    grep -q "model 'no-such-model' is not served by http://127.0.0.1:$port (it serves: $MODEL)" "$T/unknown.err"
check "unknown model: one line" test "$(wc -l <"$T/unknown.err")" = 1
check "unknown model: no run directory" test ! -e "$T/unknown/H0"
check "dry runs and refusals sent no request to the mock" test ! -s "$T/mock.log"
# A server still loading: /health 503 (trtllm-serve's unhealthy engine, Dynamo's not_ready).
"$SPARKBENCH" mock --port 0 --served-model-name "$MODEL" --startup-ms 600000 >"$T/slow.port" 2>/dev/null &
slow_pid=$!
for ((i = 0; i < 100; i++)); do
    [[ -s $T/slow.port ]] && break
    sleep 0.05
done
rc=0
"$H0" --endpoint "http://127.0.0.1:$(head -n1 "$T/slow.port")/v1/chat/completions" --quick \
    --results-dir "$T/slow" >"$T/slow.out" 2>"$T/slow.err" || rc=$?
kill -TERM "$slow_pid"
wait "$slow_pid" || true
check "server not ready: non-zero exit" test "$rc" != 0
check "server not ready: one line quoting the 503" grep -q 'is not ready: GET /health answered HTTP 503' "$T/slow.err"
check "server not ready: one line" test "$(wc -l <"$T/slow.err")" = 1

# 3. No U_work: the contract's message.
rc=0
"$SRC/runs/run_H2A_uma_pressure.sh" --endpoint "$EP" --results-dir "$T/nouwork" --dry-run \
    >"$T/nouwork.out" 2>&1 || rc=$?
check "missing U_work: non-zero exit" test "$rc" != 0
check "missing U_work: the message" \
    grep -q 'no U_work: run runs/run_H0_queue_knee.sh first (or pass --concurrency N)' "$T/nouwork.out"

# 4. One --quick --mock runner end to end: run directories named as the contract says, the
# analysis, U_work, and the mock gone afterwards.
rc=0
"$H0" --mock --quick --concurrency-list 1,2 --duration-s 1 --results-dir "$T/res" \
    --analysis-dir "$T/ana" >"$T/e2e.out" 2>&1 || rc=$?
check "--quick --mock H0 exits 0" test "$rc" = 0
[[ $rc == 0 ]] || tail -n 20 "$T/e2e.out" >&2
for p in U1 U2; do
    d=$(find "$T/res/H0" -mindepth 1 -maxdepth 1 -type d -regextype posix-extended \
        -regex ".*/[0-9]{8}_[0-9]{6}_H0_stackA_meta-llama-Llama-3\.1-8B-Instruct_${p}_r1" | head -n1)
    check "run directory <stamp>_H0_stackA_<model>_${p}_r1" test -n "$d"
    check "$p: metrics.jsonl, run.json and sysmon.jsonl" test -s "$d/metrics.jsonl" -a -s "$d/run.json" -a -s "$d/sysmon.jsonl"
    check "$p: labelled hypothesis H0, phase $p, repetition 1" \
        grep -Eq "hypothesis: \"?H0\"?" "$d/config.yaml"
    check "$p: phase label" grep -Eq "phase: \"?$p\"?" "$d/config.yaml"
done
check "analysis dir with summary_v3.csv" test -s "$T/ana/H0/figures/summary_v3.csv"
check "the H0 figure's table" test -s "$T/ana/H0/figures/H0_latency_vs_concurrency.csv"
check "prints U_work or why not" grep -q '^U_work: ' "$T/e2e.out"
mp=$(mock_port_of "$T/e2e.out")
check "the runner said where its mock listened" test -n "$mp"
check "the mock is gone after success" port_closed "${mp:-1}"
check "nothing left after success" none_left

# 5. A failing `sparkbench run` (a bad extra flag) stops the sweep and the mock.
rc=0
"$H0" --mock --quick --concurrency-list 1,2 --results-dir "$T/bad" -- --bogus-flag \
    >"$T/badrun.out" 2>&1 || rc=$?
check "failing run: non-zero exit" test "$rc" != 0
check "failing run: says so" grep -q 'sparkbench run failed (exit 2); stopping the sweep' "$T/badrun.out"
check "failing run: the sweep stopped at its first point" test ! -e "$T/bad/H0/"*_U2_r1
mp=$(mock_port_of "$T/badrun.out")
check "the mock is gone after a failing run" port_closed "${mp:-1}"
check "nothing left after a failing run" none_left

# 6. SIGINT mid-run, to the runner alone and to its process group (a Ctrl-C): the run drains and
# writes run.json, the runner exits 130, the mock is gone. `env --default-signal` undoes the
# SIGINT-ignore that bash gives background jobs, as a terminal's foreground job has none.
for target in runner group; do
    out="$T/int_$target"
    setsid env --default-signal=INT "$H0" --mock --quick --concurrency-list 1 --duration-s 60 \
        --results-dir "$out" >"$out.out" 2>&1 &
    bg_pid=$!
    # Once the run has written records it is past its start-up and handles signals.
    for ((i = 0; i < 400; i++)); do
        compgen -G "$out/H0/*/metrics.jsonl" >/dev/null && [[ -s $(compgen -G "$out/H0/*/metrics.jsonl" | head -n1) ]] && break
        kill -0 "$bg_pid" 2>/dev/null || break
        sleep 0.05
    done
    if [[ $target == runner ]]; then kill -INT "$bg_pid"; else kill -INT -- "-$bg_pid"; fi
    rc=0
    wait "$bg_pid" || rc=$?
    bg_pid=""
    check "SIGINT to the $target: exit 130" test "$rc" = 130
    [[ $rc == 130 ]] || tail -n 20 "$out.out" >&2
    check "SIGINT to the $target: the run drained and wrote run.json" \
        test -n "$(compgen -G "$out/H0/*_U1_r1/run.json")"
    mp=$(mock_port_of "$out.out")
    check "SIGINT to the $target: the mock is gone" port_closed "${mp:-1}"
    check "SIGINT to the $target: nothing left" none_left
done

if [[ $fails -gt 0 ]]; then
    echo "$fails check(s) failed" >&2
    exit 1
fi
echo "all runner checks passed"
