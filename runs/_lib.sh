# shellcheck shell=bash
# Shared part of the hypothesis runners (sourced, not run): the common flags, the mock, the health
# check, one sweep point's repetitions, the dry-run plan, the final analyze, and the traps that stop
# whatever a runner started. API (issue 14 contract):
#   sb_init H "$@"        common flags -> STACK ENDPOINT MODEL CONFIG DURATION_S WARMUP_S REPETITIONS SEED
#                         UWORK CONCURRENCY RESULTS_DIR ANALYSIS_DIR MOCK QUICK DRY_RUN SB_NONCE[] EXTRA[]; the rest
#                         in ARGS[] for the runner (normalize a spelling with sb_flag).
#   sb_begin [PROFILE] [mock flags]   traps; with --mock starts the mock; then sb_health.
#   sb_uwork              U_work (--concurrency, else the number in UWORK, else dies).
#   sb_point POINT [run flags]        REPETITIONS runs of one sweep point (SB_BEFORE_REP/SB_AFTER_REP
#                                     hooks, RUN_DIR); in a dry run only adds it to the plan.
#   sb_end [FIGURE_STEM...]           the plan (dry run), else analyze and the answering figure(s).
#   sb_spawn CMD...       a helper process (fio) in its own process group (pid in SB_BG_PID),
#                         stopped by sb_cleanup; sb_stop PID stops one earlier (SIGTERM, 10 s, SIGKILL).
# Runner knobs, set before sb_init: SB_USAGE (the runner's own options, for --help),
# SB_QUICK_DURATION_S (default 2), SB_PROFILE_H (the <H> of the mock profile's name, H8 for H8A/H8B),
# SB_SESSIONED=1 (a sessioned_chat runner: no nonce flags, since run refuses nonces there).
# Before sb_end: SB_ANALYZE_PATHS[], SB_ANALYZE_OUT.
# Environment: SPARKBENCH (the binary; default build/sparkbench of this checkout, else `sparkbench`),
# KVBM_METRICS_URL (Stack B's KVBM page; default http://<endpoint host>:6880/metrics).

runs_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -z "${SPARKBENCH:-}" ]]; then
    if [[ -x "$runs_root/build/sparkbench" ]]; then SPARKBENCH="$runs_root/build/sparkbench"
    else SPARKBENCH=sparkbench; fi
fi
utc_stamp() { date -u +%Y%m%d_%H%M%S; }
die() {
    echo "$(basename "$0"): $*" >&2
    exit 2
}
note() { echo "$(basename "$0"): $*" >&2; }
# Splits "1,2,4" or "1 2 4" into words.
split_list() { echo "$1" | tr ',' ' '; }

# --flag_name -> --flag-name (the old harness's spellings); the value of --x=y stays as it is.
sb_flag() {
    local f=$1
    [[ $f == --* ]] || {
        printf '%s\n' "$f"
        return
    }
    local name=${f%%=*} rest=""
    [[ $f == *=* ]] && rest="=${f#*=}"
    name="--${name#--}"
    name=${name//_/-}
    printf '%s\n' "$name$rest"
}

sb__is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
sb__is_num() { [[ $1 =~ ^[0-9]+([.][0-9]+)?$ ]]; }

# First scalar `KEY: value` of a YAML file (quotes and trailing comments dropped), empty if none:
# enough to honour the run/server keys of the Test Plan §13 template and the old harness's shape.
sb__cfg_get() {
    local file=$1 key=$2
    sed -n -E "s/^[[:space:]]*${key}:[[:space:]]*([^#{[]*[^#{[:space:]])[[:space:]]*(#.*)?$/\1/p" \
        "$file" | head -n1 | sed -E 's/^"(.*)"$/\1/; s/^'"'"'(.*)'"'"'$/\1/'
}

# A YAML flow list `KEY: [a, b, c]` (the Test Plan template's run.context_tokens) as "a,b,c".
sb_cfg_list() {
    [[ -n $CONFIG ]] || return 0
    sed -n -E "s/^[[:space:]]*$1:[[:space:]]*\[([^]#]*)\].*/\1/p" "$CONFIG" | head -n1 | tr -d ' "'"'"
}

# The context sweep of H2A, H2B and H7 into SB_CONTEXTS: LIST (their --contexts) when given, else
# the --config's run.context_tokens list (Test Plan §13), else QUICK under --quick, else FULL.
# Sets an array rather than printing, so a bad entry stops the runner itself.
sb_contexts() {
    local list=$1 c
    [[ -n $list ]] || list=$(sb_cfg_list context_tokens)
    if [[ -z $list ]]; then
        if [[ $QUICK == 1 ]]; then list=$2; else list=$3; fi
    fi
    SB_CONTEXTS=()
    for c in $(split_list "$list"); do
        [[ $c =~ ^[0-9]+$ && $c -ge 1 ]] || die "context '$c' is not a positive number of tokens"
        SB_CONTEXTS+=("$c")
    done
}

# H2A and H2B: a context sweep at U_work whose only own option is --contexts (--context-tokens).
sb_context_sweep() {
    local quick=$1 full=$2 contexts="" c uwork
    shift 2
    set -- ${ARGS[@]+"${ARGS[@]}"}
    while [[ $# -gt 0 ]]; do
        case "$(sb_flag "$1")" in
            --contexts | --context-tokens) contexts=${2:?$1 needs a list} && shift 2 ;;
            *) die "unknown option '$1' (see --help)" ;;
        esac
    done
    sb_contexts "$contexts" "$quick" "$full"
    uwork=$(sb_uwork)
    sb_begin "" # the runner's default mock profile
    for c in "${SB_CONTEXTS[@]}"; do
        sb_point "ctx$c" --context-tokens "$c" --concurrency "$uwork"
    done
}

sb__nonce_usage() {
    [[ ${SB_SESSIONED:-0} == 1 ]] && return 0
    cat <<EOF
  --nonce-per-user       a per-user tag at the prompt's start, so users share no prefix and prefix
                         caching does not hide the KV working set (users x context), as the Test
                         Plan's sweeps run [default: on]
  --no-nonce-per-user    every user sends the same prompt (run gets --no-nonce-per-user, which
                         also overrides a config's server.nonce_per_user)
EOF
}

sb__usage() {
    cat <<EOF
usage: $(basename "$0") [options] [-- extra sparkbench run flags]
${SB_USAGE:-}
common options (--flag_name spellings work too):
  --stack A|B            stack under test [default: ${SB_DEFAULT_STACK}]
  --endpoint URL         [default: http://127.0.0.1:8355/v1/chat/completions (A), :9000 (B)]
  --model NAME           served model name (L8B, L70B are short for the Test Plan's models)
                         [default: meta-llama/Llama-3.1-8B-Instruct]
  --config FILE          sparkbench run --config (its duration_s, repetitions, seed, stack,
                         endpoint, model are the defaults here)
  --duration-s S         seconds per run [default: 300; --quick: ${SB_QUICK_DURATION_S:-2}]
  --warmup-s S           [default: 10, at most a quarter of --duration-s; --quick: 0.5]
  --repetitions N        [default: 3; --quick: 1]
  --seed N               [default: 42]
  --uwork FILE|N         U_work [default: results/H0/uwork.txt]
  --concurrency N        users, instead of U_work
  --results-dir DIR      [default: results]; run dirs go to DIR/<H>/<run id>
  --analysis-dir DIR     [default: analysis]; analyze writes DIR/<H>
  --trtllm-metrics       Stack A: drain TensorRT-LLM's JSON /metrics into each run (a GET drains it)
$(sb__nonce_usage)
  --mock                 start sparkbench mock (configs/mock/<H>_stack<S>.yaml, else stack<S>.yaml)
                         on a free port and run against it
  --quick                short sweep, 1 repetition, ${SB_QUICK_DURATION_S:-2} s a point (CI, demos)
  --dry-run              print the plan (points, repetitions, total time); send nothing
EOF
}

sb_init() {
    SB_H=$1
    shift
    SB_MAIN_PID=$BASHPID
    case "$SB_H" in
        H2B | H4B | H5 | H6 | H7) SB_DEFAULT_STACK=B ;;
        *) SB_DEFAULT_STACK=A ;;
    esac
    STACK="" ENDPOINT="" MODEL="" CONFIG="" DURATION_S="" WARMUP_S="" REPETITIONS="" SEED=""
    UWORK="" CONCURRENCY="" RESULTS_DIR=results ANALYSIS_DIR=analysis
    MOCK=0 QUICK=0 DRY_RUN=0 TRTLLM_METRICS=0
    EXTRA=() ARGS=() SB_GIVEN=" "
    # Per-user prompts by default (Test Plan §7.1, §16: --nonce_per_user), for every fixed-context
    # runner alike; sessioned_chat runners (H5, H6) send none: run refuses nonces there.
    SB_NONCE=(--nonce-per-user)
    [[ ${SB_SESSIONED:-0} == 1 ]] && SB_NONCE=()
    SB_PLAN=() SB_ANALYZE_PATHS=() SB_MOCK_PID="" SB_RUN_PID="" SB_CLEANED=0 SB_PIDS=() SB_TMP=""
    local a v
    while [[ $# -gt 0 ]]; do
        a=$(sb_flag "$1")
        v=""
        if [[ $a == --*=* ]]; then
            v=${a#*=}
            a=${a%%=*}
            set -- "$a" "$v" "${@:2}"
        fi
        case "$a" in
            --stack | --endpoint | --model | --config | --duration-s | --warmup-s | --repetitions | \
                --seed | --uwork | --concurrency | --results-dir | --analysis-dir)
                [[ $# -ge 2 ]] || die "option '$1' needs a value"
                v=$2
                SB_GIVEN+="$a "
                case "$a" in
                    --stack) STACK=$v ;;
                    --endpoint) ENDPOINT=$v ;;
                    --model) MODEL=$v ;;
                    --config) CONFIG=$v ;;
                    --duration-s) DURATION_S=$v ;;
                    --warmup-s) WARMUP_S=$v ;;
                    --repetitions) REPETITIONS=$v ;;
                    --seed) SEED=$v ;;
                    --uwork) UWORK=$v ;;
                    --concurrency) CONCURRENCY=$v ;;
                    --results-dir) RESULTS_DIR=$v ;;
                    --analysis-dir) ANALYSIS_DIR=$v ;;
                esac
                shift 2
                ;;
            --mock) MOCK=1 && shift ;;
            --quick) QUICK=1 && shift ;;
            --dry-run) DRY_RUN=1 && shift ;;
            --trtllm-metrics) TRTLLM_METRICS=1 && shift ;;
            --nonce-per-user | --no-nonce-per-user)
                [[ ${SB_SESSIONED:-0} == 1 ]] &&
                    die "$a: $SB_H runs sessioned_chat, whose sessions share no prompt; run takes no nonce there"
                SB_NONCE=("$a")
                shift
                ;;
            -h | --help)
                sb__usage
                exit 0
                ;;
            --)
                shift
                EXTRA=("$@")
                break
                ;;
            *)
                ARGS+=("$1")
                shift
                ;;
        esac
    done

    if [[ -n $CONFIG ]]; then
        [[ -r $CONFIG ]] || die "cannot read config '$CONFIG'"
        local k
        [[ -n $DURATION_S ]] || DURATION_S=$(sb__cfg_get "$CONFIG" duration_s)
        [[ -n $WARMUP_S ]] || WARMUP_S=$(sb__cfg_get "$CONFIG" warmup_s)
        [[ -n $REPETITIONS || $QUICK == 1 ]] || REPETITIONS=$(sb__cfg_get "$CONFIG" repetitions)
        [[ -n $SEED ]] || SEED=$(sb__cfg_get "$CONFIG" seed)
        [[ -n $STACK ]] || STACK=$(sb__cfg_get "$CONFIG" stack)
        [[ -n $MODEL ]] || MODEL=$(sb__cfg_get "$CONFIG" model)
        [[ -n $MODEL ]] || MODEL=$(sb__cfg_get "$CONFIG" name)
        if [[ -z $ENDPOINT ]]; then
            for k in endpoint url; do
                v=$(sb__cfg_get "$CONFIG" "$k")
                [[ $v == http* ]] && ENDPOINT=$v && break
            done
        fi
    fi
    STACK=${STACK#stack}
    STACK=${STACK:-$SB_DEFAULT_STACK}
    [[ $STACK == A || $STACK == B ]] || die "--stack must be A or B, not '$STACK'"
    if [[ -z $ENDPOINT ]]; then
        if [[ $STACK == A ]]; then ENDPOINT=http://127.0.0.1:8355/v1/chat/completions
        else ENDPOINT=http://127.0.0.1:9000/v1/chat/completions; fi
    fi
    [[ $ENDPOINT =~ ^https?://[^/]+ ]] || die "--endpoint must be an http(s) URL, not '$ENDPOINT'"
    # A bare host:port (the Test Plan template's server.endpoint) gets the chat path.
    [[ $ENDPOINT =~ ^https?://[^/]+/?$ ]] && ENDPOINT="${ENDPOINT%/}/v1/chat/completions"
    MODEL=${MODEL:-meta-llama/Llama-3.1-8B-Instruct}
    # The Test Plan's short names (§5.1, §16): the names trtllm-serve and Dynamo serve them under.
    case "$MODEL" in
        L8B) MODEL=meta-llama/Llama-3.1-8B-Instruct ;;
        L70B) MODEL=nvidia/Llama-3.3-70B-Instruct-FP4 ;;
    esac
    if [[ $QUICK == 1 ]]; then
        DURATION_S=${DURATION_S:-${SB_QUICK_DURATION_S:-2}}
        WARMUP_S=${WARMUP_S:-0.5}
        REPETITIONS=${REPETITIONS:-1}
    fi
    DURATION_S=${DURATION_S:-300}
    # The default warm-up (10 s) never takes more than a quarter of a short run.
    [[ -n $WARMUP_S ]] || WARMUP_S=$(awk -v d="$DURATION_S" 'BEGIN { w = d / 4; print (w < 10 ? w : 10) }')
    REPETITIONS=${REPETITIONS:-3}
    SEED=${SEED:-42}
    UWORK=${UWORK:-$RESULTS_DIR/H0/uwork.txt}
    { sb__is_num "$DURATION_S" && [[ ! $DURATION_S =~ ^0+([.]0*)?$ ]]; } || die "--duration-s must be a positive number of seconds, not '$DURATION_S'"
    sb__is_num "$WARMUP_S" || die "--warmup-s must be a number of seconds, not '$WARMUP_S'"
    awk -v w="$WARMUP_S" -v d="$DURATION_S" 'BEGIN { exit !(w < d) }' ||
        die "--warmup-s ($WARMUP_S) must be shorter than --duration-s ($DURATION_S): nothing would be measured"
    { sb__is_uint "$REPETITIONS" && [[ $REPETITIONS -ge 1 ]]; } || die "--repetitions must be a positive integer, not '$REPETITIONS'"
    sb__is_uint "$SEED" || die "--seed must be a non-negative integer, not '$SEED'"
    [[ -z $CONCURRENCY ]] || { sb__is_uint "$CONCURRENCY" && [[ $CONCURRENCY -ge 1 ]]; } ||
        die "--concurrency must be a positive integer, not '$CONCURRENCY'"
    SB_STAMP=$(utc_stamp)
    SB_MODEL_ID=${MODEL//\//-}
    SB_OUT="$RESULTS_DIR/$SB_H"
}

# sb_given --flag: true when the user gave that common option (any spelling).
sb_given() { [[ $SB_GIVEN == *" $1 "* ]]; }

# Where H0 writes U_work: --uwork FILE, else <results>/H0/uwork.txt.
sb_uwork_file() {
    if sb_given --uwork && ! sb__is_uint "$UWORK"; then echo "$UWORK"
    else echo "$RESULTS_DIR/H0/uwork.txt"; fi
}

# U_work: --concurrency, else --uwork N, else the number in the --uwork file (written by H0's analyze).
sb_uwork() {
    if [[ -n $CONCURRENCY ]]; then
        echo "$CONCURRENCY"
        return
    fi
    if sb__is_uint "$UWORK" && [[ $UWORK -ge 1 ]]; then
        echo "$UWORK"
        return
    fi
    local n=""
    [[ -r $UWORK ]] && n=$(grep -Eo '^[0-9]+' "$UWORK" | head -n1 || true)
    [[ -n $n && $n -ge 1 ]] ||
        die "no U_work: run runs/run_H0_queue_knee.sh first (or pass --concurrency N) ('$UWORK' has none)"
    echo "$n"
}

sb_register_pid() { SB_PIDS+=("$1"); }

# Starts "$@" in the background in its own process group, pid in SB_BG_PID. A Ctrl-C (SIGINT to
# the terminal's process group) then reaches the runner alone, whose trap stops each child once
# and in order: the run first (it drains, writes run.json), then the mock it was talking to.
# (sparkbench run treats a second signal as "stop now" and then writes no run.json.)
sb_bg() {
    set -m
    "$@" &
    SB_BG_PID=$!
    set +m
}

# sb_spawn CMD...: sb_bg, and stopped by sb_cleanup (fio, a sampler, ...).
sb_spawn() {
    sb_bg "$@"
    sb_register_pid "$SB_BG_PID"
}

# Stops one process: SIGTERM, up to TENTHS/10 s (default 10 s), then SIGKILL; always reaps it.
sb__stop_pid() {
    local pid=$1 tenths=${2:-100} i
    kill -0 "$pid" 2>/dev/null || {
        wait "$pid" 2>/dev/null || true
        return 0
    }
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < tenths; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true
}

# sb_stop PID: stops one registered process now (fio after a repetition) and forgets it.
sb_stop() {
    local pid=$1 i
    sb__stop_pid "$pid"
    for i in "${!SB_PIDS[@]}"; do
        [[ ${SB_PIDS[i]} == "$pid" ]] && unset 'SB_PIDS[i]'
    done
    SB_PIDS=(${SB_PIDS[@]+"${SB_PIDS[@]}"})
    return 0
}

# Everything the runner started: the run in progress first (it drains and writes run.json), then
# what sb_register_pid recorded (the mock, fio), newest first. Idempotent; a no-op in subshells.
sb_cleanup() {
    [[ ${SB_MAIN_PID:-} == "$BASHPID" && ${SB_CLEANED:-0} == 0 ]] || return 0
    SB_CLEANED=1
    local i
    # A run drains for up to its --drain-s (10 s) and then writes run.json: give it that.
    [[ -n ${SB_RUN_PID:-} ]] && sb__stop_pid "$SB_RUN_PID" 250
    SB_RUN_PID=""
    for ((i = ${#SB_PIDS[@]} - 1; i >= 0; i--)); do
        sb__stop_pid "${SB_PIDS[i]}"
    done
    SB_PIDS=()
    [[ -n ${SB_TMP:-} && -d $SB_TMP ]] && rm -rf "$SB_TMP"
    return 0
}

sb__on_signal() {
    trap '' INT TERM
    note "$1: stopping what this runner started"
    sb_cleanup
    trap - EXIT
    [[ $1 == INT ]] && exit 130
    exit 143
}

sb__base() { [[ $ENDPOINT =~ ^(https?://[^/]+) ]] && echo "${BASH_REMATCH[1]}"; }

# Starts the mock on a free port (or PORT, METRICS_PORT when given: a restart keeps them so that
# every run of a sweep records the same endpoint) and points ENDPOINT at it.
sb__mock_launch() {
    local port=$1 mport=$2 profile=$3
    shift 3
    [[ -r $profile ]] || die "cannot read mock profile '$profile'"
    local out="$SB_TMP/mock.out" err="$SB_TMP/mock.err" extra=()
    [[ $STACK == A && $TRTLLM_METRICS == 1 ]] && extra+=(--metrics-format trtllm)
    : >"$out"
    sb_spawn "$SPARKBENCH" mock --profile "$profile" --port "$port" --metrics-port "$mport" \
        --served-model-name "$MODEL" ${extra[@]+"${extra[@]}"} "$@" >"$out" 2>"$err"
    SB_MOCK_PID=$SB_BG_PID
    local i p="" mp=""
    for ((i = 0; i < 200; i++)); do
        if ! kill -0 "$SB_MOCK_PID" 2>/dev/null; then
            die "sparkbench mock did not start: $(tail -n 3 "$err" | tr '\n' ' ')"
        fi
        if [[ $port == 0 ]]; then
            p=$(sed -n 1p "$out")
            mp=$(sed -n 2p "$out")
        else
            p=$port mp=$mport
        fi
        if [[ $p =~ ^[0-9]+$ && $mp =~ ^[0-9]+$ ]] &&
            curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$p/health"; then
            break
        fi
        sleep 0.05
    done
    [[ $p =~ ^[0-9]+$ && $mp =~ ^[0-9]+$ ]] || die "sparkbench mock printed no port in 10 s"
    SB_MOCK_PORT=$p SB_MOCK_METRICS_PORT=$mp
    local path
    path=${ENDPOINT#*://*/}
    ENDPOINT="http://127.0.0.1:$p/$path"
    SB_MOCK_METRICS_URL="http://127.0.0.1:$mp/metrics"
    SB_MOCK_PROFILE=$profile
    SB_MOCK_FLAGS=("$@")
}

sb__default_profile() {
    local p="$runs_root/configs/mock/${SB_PROFILE_H:-$SB_H}_stack${STACK}.yaml"
    [[ -r $p ]] || p="$runs_root/configs/mock/stack${STACK}.yaml"
    echo "$p"
}

# sb_mock_start [PROFILE] [mock flags]: PROFILE "" or absent = the default profile.
sb_mock_start() {
    local profile=${1:-}
    [[ $# -gt 0 ]] && shift
    [[ -n $profile ]] || profile=$(sb__default_profile)
    if [[ $DRY_RUN == 1 ]]; then
        SB_MOCK_PROFILE=$profile
        return 0
    fi
    sb__mock_launch 0 0 "$profile" "$@"
    echo "== mock ($(basename "$profile")) on $(sb__base), metrics $SB_MOCK_METRICS_URL"
}

# sb_mock_restart [PROFILE] [mock flags]: a cold server (H1) or another profile (H6), same ports.
sb_mock_restart() {
    local profile=${1:-}
    [[ $# -gt 0 ]] && shift
    if [[ $DRY_RUN == 1 ]]; then
        SB_PLAN+=("restart the mock${profile:+ with $(basename "$profile")}")
        return 0
    fi
    local flags=("$@")
    if [[ -z $profile ]]; then
        profile=$SB_MOCK_PROFILE
        [[ $# -gt 0 ]] || flags=(${SB_MOCK_FLAGS[@]+"${SB_MOCK_FLAGS[@]}"})
    fi
    sb_stop "$SB_MOCK_PID"
    sb__mock_launch "$SB_MOCK_PORT" "$SB_MOCK_METRICS_PORT" "$profile" ${flags[@]+"${flags[@]}"}
    echo "== mock restarted ($(basename "$profile")) on $(sb__base)"
}

# GET <base>/health, then <base>/v1/models: the endpoint must answer and list MODEL. One line and
# exit 2 otherwise, within curl's connect timeout (3 s) plus the read limit (5 s).
# What the real servers answer (checked in their source):
#  - trtllm-serve (tensorrt_llm/serve/openai_server.py): GET /health 200 with an empty body, 503
#    "LLM is unavailable..." when its engine is not healthy; /v1/models
#    {"object":"list","data":[{"id":<model>,...}]} (ModelList(data=[ModelCard(id=self.model)])).
#  - Dynamo frontend (lib/llm/src/http/service/health.rs): /health 503 {"status":"not_ready"} while
#    model discovery runs, then 200 {"status":"healthy", ...}; releases of 2025 answered 200
#    {"status":"unhealthy","message":"No endpoints available"} before a worker registered
#    (docs/observability/health-checks.md). /v1/models lists only models with a registered worker.
#  - the mock: 503 during --startup-ms, then 200.
sb_health() {
    [[ $DRY_RUN == 1 ]] && return 0
    local base code body="$SB_TMP/health.body" auth=()
    base=$(sb__base)
    if [[ -n ${OPENAI_API_KEY:-} ]]; then
        # In a file, not on curl's command line where ps would show it.
        (umask 077 && printf 'Authorization: Bearer %s\n' "$OPENAI_API_KEY" >"$SB_TMP/auth")
        auth=(-H "@$SB_TMP/auth")
    fi
    local curl_opts=(-sS --connect-timeout 3 --max-time 5 -o "$body" -w '%{http_code}')
    if ! code=$(curl "${curl_opts[@]}" ${auth[@]+"${auth[@]}"} "$base/health" 2>"$SB_TMP/curl.err"); then
        die "cannot reach $base/health: $(sed 's/^curl: ([0-9]*) //' "$SB_TMP/curl.err" | head -n1) (start the server, or pass --endpoint URL or --mock)"
    fi
    local excerpt
    excerpt=$(head -c 200 "$body" | tr '\n' ' ')
    if [[ $code == 404 ]]; then
        note "$base/health: 404, this server has no /health; checking /v1/models"
    elif [[ $code != 2?? ]]; then
        die "$base is not ready: GET /health answered HTTP $code${excerpt:+: $excerpt}"
    elif grep -Eq '"status"[[:space:]]*:[[:space:]]*"(unhealthy|not_?ready|shutting_down)"' "$body"; then
        die "$base is not ready: GET /health answered: $excerpt"
    fi
    if ! code=$(curl "${curl_opts[@]}" ${auth[@]+"${auth[@]}"} "$base/v1/models" 2>"$SB_TMP/curl.err"); then
        die "cannot reach $base/v1/models: $(sed 's/^curl: ([0-9]*) //' "$SB_TMP/curl.err" | head -n1)"
    fi
    excerpt=$(head -c 200 "$body" | tr '\n' ' ')
    [[ $code == 2?? ]] || die "$base/v1/models answered HTTP $code${excerpt:+: $excerpt}"
    local ids
    ids=$(grep -Eo '"id"[[:space:]]*:[[:space:]]*"[^"]*"' "$body" | sed -E 's/.*"([^"]*)"$/\1/' || true)
    [[ -n $ids ]] || die "$base serves no model yet (/v1/models: ${excerpt:-empty}); wait for the workers, then rerun"
    grep -Fxq -- "$MODEL" <<<"$ids" ||
        die "model '$MODEL' is not served by $base (it serves: $(echo "$ids" | paste -sd, | sed 's/,/, /g')); pass --model NAME"
    echo "== $base is up and serves $MODEL"
}

# The traps alone (sb_begin sets them; H3, which starts no server, calls this instead).
sb_traps() {
    [[ -n ${SB_TMP:-} ]] || SB_TMP=$(mktemp -d "${TMPDIR:-/tmp}/sb_runner.XXXXXX")
    trap sb_cleanup EXIT
    trap 'sb__on_signal INT' INT
    trap 'sb__on_signal TERM' TERM
}

# After SERVER_RESTART_CMD: polls /health and /v1/models every 2 s until both pass (a real server
# loads its weights for minutes), up to TIMEOUT seconds; then sb_health's own verdict.
sb_wait_healthy() {
    local timeout=${1:-900} t0=$SECONDS
    [[ $DRY_RUN == 1 ]] && return 0
    while ((SECONDS - t0 < timeout)); do
        (sb_health >/dev/null 2>&1) && break
        sleep 2
    done
    sb_health
}

sb_begin() {
    sb_traps
    if [[ $MOCK == 1 ]]; then
        sb_mock_start "$@"
    fi
    sb_health
}

# The telemetry flags of the stack: Stack B scrapes KVBM (:6880, or the mock's metrics port) and the
# frontend's /metrics; Stack A's JSON /metrics only with --trtllm-metrics, since a GET drains it.
sb__telemetry() {
    local base
    base=$(sb__base)
    if [[ $STACK == B ]]; then
        local kvbm=${KVBM_METRICS_URL:-}
        if [[ -z $kvbm ]]; then
            if [[ -n ${SB_MOCK_METRICS_URL:-} ]]; then kvbm=$SB_MOCK_METRICS_URL
            elif [[ $MOCK == 1 ]]; then kvbm="http://127.0.0.1:<mock metrics port>/metrics"
            else
                local host=${base#*://}
                host=${host%:*}
                kvbm="http://$host:6880/metrics"
            fi
        fi
        printf '%s\n' --prom "$kvbm" --prom "$base/metrics"
    elif [[ $TRTLLM_METRICS == 1 ]]; then
        printf '%s\n' --trtllm-metrics "$base/metrics"
    fi
}

sb__plan_cmd() {
    local w out=""
    for w in "$@"; do
        [[ $w =~ [^A-Za-z0-9_./:=,@%+-] ]] && w="'$w'"
        out+="$w "
    done
    echo "${out% }"
}

# sb_point POINT [sparkbench run flags...]: REPETITIONS runs of one sweep point.
sb_point() {
    local point=$1
    shift
    local tele=() cmd r id rc
    mapfile -t tele < <(sb__telemetry)
    local common=(--endpoint "$ENDPOINT" --stack "$STACK" --model "$MODEL")
    [[ -n $CONFIG ]] && common+=(--config "$CONFIG")
    common+=(--duration-s "$DURATION_S" --warmup-s "$WARMUP_S" --seed "$SEED"
        --hypothesis "$SB_H" --phase "$point" --results-dir "$SB_OUT"
        --prompts-dir "$runs_root/inputs/prompts" --sysmon ${SB_NONCE[@]+"${SB_NONCE[@]}"})
    if [[ $DRY_RUN == 1 ]]; then
        id="${SB_STAMP}_${SB_H}_stack${STACK}_${SB_MODEL_ID}_${point}_r<rep>"
        cmd=(sparkbench run "${common[@]}" --repetition "<rep>" --run-id "$id"
            ${tele[@]+"${tele[@]}"} "$@" ${EXTRA[@]+"${EXTRA[@]}"})
        SB_PLAN+=("point $point: $REPETITIONS x $DURATION_S s: $(sb__plan_cmd "${cmd[@]}")")
        SB_NPOINTS=$((${SB_NPOINTS:-0} + 1))
        return 0
    fi
    mkdir -p "$SB_OUT"
    for ((r = 1; r <= REPETITIONS; r++)); do
        id="${SB_STAMP}_${SB_H}_stack${STACK}_${SB_MODEL_ID}_${point}_r${r}"
        RUN_DIR="$SB_OUT/$id"
        SB_POINT=$point SB_REP=$r
        export RUN_DIR SB_POINT SB_REP
        echo "== $SB_H $point r$r -> $RUN_DIR"
        [[ -n ${SB_BEFORE_REP:-} ]] && "$SB_BEFORE_REP" "$point" "$r"
        # In the background so that a signal to this shell alone runs its trap now, not when the
        # run ends (bash defers traps until a foreground child exits).
        sb_bg "$SPARKBENCH" run "${common[@]}" --repetition "$r" --run-id "$id" \
            ${tele[@]+"${tele[@]}"} "$@" ${EXTRA[@]+"${EXTRA[@]}"}
        SB_RUN_PID=$SB_BG_PID
        rc=0
        wait "$SB_RUN_PID" || rc=$?
        SB_RUN_PID=""
        [[ -n ${SB_AFTER_REP:-} ]] && "$SB_AFTER_REP" "$point" "$r"
        sb__run_status "$rc" "$point" "$r"
    done
}

# Exit 3 (measured too little) is an outcome of a sweep (H2A's rejections at long contexts), so
# the sweep goes on, unless the server was unreachable or refused every request.
sb__run_status() {
    local rc=$1 point=$2 r=$3 reason=""
    [[ $rc == 0 ]] && return 0
    if [[ $rc == 3 ]]; then
        [[ -r $RUN_DIR/run.json ]] &&
            reason=$(grep -Eo '"exit_reason"[[:space:]]*:[[:space:]]*"[a-z]+"' "$RUN_DIR/run.json" |
                sed -E 's/.*"([a-z]+)"$/\1/' | head -n1)
        case "$reason" in
            unreachable | refused)
                die "$SB_H $point r$r: the server stopped answering ($reason); stopping the sweep (see $RUN_DIR/run.json)"
                ;;
        esac
        note "$SB_H $point r$r measured too little (exit 3, ${reason:-no run.json}); going on"
        return 0
    fi
    [[ $rc == 130 || $rc == 143 ]] && {
        note "$SB_H $point r$r: sparkbench run stopped by a signal"
        exit "$rc"
    }
    die "$SB_H $point r$r: sparkbench run failed (exit $rc); stopping the sweep"
}

sb__dur() {
    awk -v s="$1" 'BEGIN { s = int(s + 0.5); h = int(s / 3600); m = int((s % 3600) / 60);
        if (h) printf "%d h %02d min", h, m; else if (m) printf "%d min %02d s", m, s % 60;
        else printf "%d s", s }'
}

# sb_end [FIGURE_STEM...]: the plan in a dry run; else analyze and the figure(s) that answer H.
sb_end() {
    if [[ $DRY_RUN == 1 ]]; then
        local n=${SB_NPOINTS:-0} line total runs
        runs=$((n * REPETITIONS))
        total=$(awk -v r="$runs" -v d="$DURATION_S" 'BEGIN { print r * d }')
        echo "plan: $SB_H, stack $STACK, model $MODEL, endpoint $ENDPOINT$([[ $MOCK == 1 ]] && echo " (the mock, $(basename "${SB_MOCK_PROFILE:-$(sb__default_profile)}"), on a free port)")"
        for line in ${SB_PLAN[@]+"${SB_PLAN[@]}"}; do
            echo "  $line"
        done
        echo "plan: $n points x $REPETITIONS repetitions = $runs runs x $DURATION_S s = $total s ($(sb__dur "$total")) of load, plus start-up and drain"
        echo "plan: results in $SB_OUT/, analysis in ${SB_ANALYZE_OUT:-$ANALYSIS_DIR/$SB_H}/"
        echo "dry run: nothing was sent"
        exit 0
    fi
    local out=${SB_ANALYZE_OUT:-$ANALYSIS_DIR/$SB_H} paths=("$SB_OUT") uw
    [[ ${#SB_ANALYZE_PATHS[@]} -gt 0 ]] && paths=("${SB_ANALYZE_PATHS[@]}")
    # Only H0's analyze may write U_work (results/H0/uwork.txt); others get a scratch path.
    # (H0 writes to --uwork FILE when given, so that the later runners' --uwork FILE finds it.)
    if [[ $SB_H == H0 ]]; then uw=$(sb_uwork_file)
    else uw="$out/uwork.txt"; fi
    if [[ ${#paths[@]} -le 2 ]]; then echo "== sparkbench analyze ${paths[*]} --out $out"
    else echo "== sparkbench analyze (${#paths[@]} run directories) --out $out"; fi
    "$SPARKBENCH" analyze "${paths[@]}" --out "$out" --uwork "$uw" --quiet ||
        die "sparkbench analyze ${paths[*]} failed"
    local stem f shown
    for stem in "$@"; do
        shown=0
        for f in "$out/figures/$stem.png" "$out/figures/$stem.svg"; do
            [[ -f $f ]] && echo "figure: $f" && shown=1
        done
        if [[ $shown == 0 ]]; then
            if [[ -f $out/figures/$stem.csv ]]; then echo "table: $out/figures/$stem.csv"
            else note "analyze wrote no $stem figure in $out/figures"; fi
        fi
    done
    [[ -f $out/report.html ]] && echo "report: $out/report.html"
    return 0
}
