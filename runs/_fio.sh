# shellcheck shell=bash
# fio as a noisy neighbour on the KV/NVMe device (H4A/H4B), sourced after runs/_lib.sh. One fio per
# repetition, started by SB_BEFORE_REP before `sparkbench run` and stopped by SB_AFTER_REP after it,
# with its JSON results in <run dir>/fio.json (analyze puts its MB/s, IOPS and p99 in the summary).
#   sb_fio_setup                 after sb_init: FIO_DIR (--fio-dir, else under --mock a fresh directory
#                                under /var/tmp that the mock's tier 2 also uses, removed at the end,
#                                else the config's dynamo.tier2.path, else /var/tmp), checks fio.
#   SB_FIO_PROFILE=NAME          the profile (configs/fio/NAME.fio) of the next sb_point.
#   SB_BEFORE_REP=sb_fio_start SB_AFTER_REP=sb_fio_stop
# Knobs: FIO_DIR, FIO_SIZE (fio's size= of the shared file, e.g. 256m; default 4g, --quick 256m),
# FIO_BIN (default fio). fio's job files take FIO_DIR, FIO_SIZE and FIO_RUNTIME from the environment
# (fio expands ${VAR} in option values: fio HOWTO, "Environment variables").
# A stopped fio (SIGTERM) still writes its JSON, behind a "fio: terminating on signal 15" line that
# the wrapper moves to fio.log so that fio.json is plain JSON (fio-3.33, checked here).

: "${runs_root:?source runs/_lib.sh before runs/_fio.sh}"
SB_FIO_FILE=sb_fio_noisy_neighbour.dat # filename= of every configs/fio profile
SB_FIO_PID=""

# dynamo.tier2.path (or runtime.dynamo.tier2.path) of a YAML config, block or flow style:
#   tier2: {path: /nvme/kvbm, allocate_bytes: 256GiB}   or   tier2:\n    path: /nvme/kvbm
sb_fio_tier2_path() {
    awk '
        function val(s) { sub(/[[:space:]]*#.*$/, "", s); gsub(/^[[:space:]"'"'"']+|[[:space:]"'"'"']+$/, "", s); return s }
        /^[[:space:]]*tier2:[[:space:]]*\{/ {
            s = $0; sub(/.*\{/, "", s); sub(/\}.*/, "", s)
            n = split(s, kv, ",")
            for (i = 1; i <= n; i++) if (kv[i] ~ /^[[:space:]]*path:/) { sub(/^[[:space:]]*path:/, "", kv[i]); print val(kv[i]); exit }
            next
        }
        /^[[:space:]]*tier2:[[:space:]]*(#.*)?$/ { match($0, /^[[:space:]]*/); ind = RLENGTH; intier = 1; next }
        intier {
            match($0, /^[[:space:]]*/)
            if ($0 ~ /^[[:space:]]*(#.*)?$/) next
            if (RLENGTH <= ind) { intier = 0; next }
            if ($0 ~ /^[[:space:]]*path:/) { s = $0; sub(/^[[:space:]]*path:/, "", s); print val(s); exit }
        }' "$1"
}

# Parses the runner's fio flags out of ARGS (after sb_init); leaves the others in SB_FIO_REST.
#   --fio-dir DIR, --fio-size SIZE
sb_fio_flags() {
    SB_FIO_REST=()
    local a
    while [[ ${#ARGS[@]} -gt 0 ]]; do
        a=$(sb_flag "${ARGS[0]}")
        case "$a" in
            --fio-dir | --fio-size)
                [[ ${#ARGS[@]} -ge 2 ]] || die "option '${ARGS[0]}' needs a value"
                [[ $a == --fio-dir ]] && FIO_DIR=${ARGS[1]}
                [[ $a == --fio-size ]] && FIO_SIZE=${ARGS[1]}
                ARGS=("${ARGS[@]:2}")
                ;;
            --fio-dir=* | --fio-size=*)
                [[ $a == --fio-dir=* ]] && FIO_DIR=${a#*=}
                [[ $a == --fio-size=* ]] && FIO_SIZE=${a#*=}
                ARGS=("${ARGS[@]:1}")
                ;;
            *)
                SB_FIO_REST+=("${ARGS[0]}")
                ARGS=("${ARGS[@]:1}")
                ;;
        esac
    done
}

# fio's size= in bytes ("256m", "4g", "1GiB", "1048576"), for the layout wait.
sb__fio_bytes() {
    awk -v s="$1" 'BEGIN {
        n = s + 0; u = tolower(s); sub(/^[0-9.]+/, "", u); sub(/i?b$/, "", u)
        m = (u == "k") ? 1024 : (u == "m") ? 1048576 : (u == "g") ? 1073741824 : (u == "t") ? 1099511627776 : 1
        printf "%.0f\n", n * m }'
}

# Keeps a directory made for this runner until the runner is gone (stopped by sb_cleanup after the
# mock, which was registered after it, or when the runner's shell has exited without its traps).
sb__kv_janitor() {
    local dir=$1 main=$2
    trap 'rm -rf -- "$dir"; exit 0' TERM
    while kill -0 "$main" 2>/dev/null; do sleep 1; done
    rm -rf -- "$dir"
}

# A fresh directory under /var/tmp (a disk, not tmpfs: O_DIRECT works there) for the mock's tier 2
# (and fio), removed when the runner ends; into SB_KV_DIR. A placeholder in a dry run.
sb_mock_kv_dir() {
    if [[ $DRY_RUN == 1 ]]; then
        SB_KV_DIR="/var/tmp/sb_kv.<new>"
        return 0
    fi
    SB_KV_DIR=$(mktemp -d /var/tmp/sb_kv.XXXXXX)
    sb_spawn sb__kv_janitor "$SB_KV_DIR" "$SB_MAIN_PID"
}

sb_fio_setup() {
    FIO_BIN=${FIO_BIN:-fio}
    if [[ -z ${FIO_SIZE:-} ]]; then
        if [[ $QUICK == 1 ]]; then FIO_SIZE=256m; else FIO_SIZE=4g; fi
    fi
    [[ $(sb__fio_bytes "$FIO_SIZE") -ge 1048576 ]] ||
        die "--fio-size must be at least 1 MiB (fio's size=, e.g. 256m or 4g), not '$FIO_SIZE'"
    if [[ $DRY_RUN == 1 ]]; then
        command -v "$FIO_BIN" >/dev/null || note "fio is not installed (Debian/Ubuntu: apt-get install fio); a real run needs it"
    else
        command -v "$FIO_BIN" >/dev/null ||
            die "fio not found: the H4 noisy neighbour needs it (Debian/Ubuntu: apt-get install fio; or set FIO_BIN)"
    fi
    # Under --mock the mock's tier 2 is where the KV device is, whatever a --config says.
    if [[ -z ${FIO_DIR:-} && -n $CONFIG && $MOCK == 0 ]]; then
        FIO_DIR=$(sb_fio_tier2_path "$CONFIG")
        [[ -n $FIO_DIR ]] && note "fio runs in the config's dynamo.tier2.path: $FIO_DIR"
    fi
    if [[ -z ${FIO_DIR:-} ]]; then
        if [[ $MOCK == 1 ]]; then
            sb_mock_kv_dir
            FIO_DIR=$SB_KV_DIR
        else
            # Stack A keeps no KV on disk; the device its NVMe counters watch is the system disk
            # (the DGX Spark's one internal NVMe holds /var/tmp).
            FIO_DIR=/var/tmp
            note "fio runs in $FIO_DIR: no --fio-dir and no dynamo.tier2.path in a --config (pass --fio-dir DIR for another device)"
        fi
    fi
    [[ $DRY_RUN == 1 ]] && return 0
    [[ -d $FIO_DIR && -w $FIO_DIR ]] || die "fio directory '$FIO_DIR' is not a writable directory (--fio-dir)"
}

# Checks that configs/fio/NAME.fio exists for every profile given.
sb_fio_check_profiles() {
    local p f have=""
    for f in "$runs_root"/configs/fio/*.fio; do
        f=${f##*/}
        have+="${have:+, }${f%.fio}"
    done
    for p in "$@"; do
        [[ $p =~ ^[A-Za-z0-9_-]+$ ]] || die "bad fio profile name '$p'"
        [[ -r $runs_root/configs/fio/$p.fio ]] ||
            die "no fio profile '$p' (configs/fio/$p.fio; there are: $have)"
    done
}

# fio in the foreground of a process group of its own (sb_spawn). Stopped by sb_fio_stop or
# sb_cleanup (SIGTERM): stops fio the same way, lets it write its JSON, then removes its file
# whatever happened.
sb__fio_run() {
    local bin=$1 job=$2 out=$3 log=$4 dir=$5 size=$6 runtime=$7 file=$8 fpid=""
    trap '[[ -n $fpid ]] && kill -TERM "$fpid" 2>/dev/null' TERM
    FIO_DIR=$dir FIO_SIZE=$size FIO_RUNTIME=$runtime \
        "$bin" --output-format=json --output="$out" "$job" 2>"$log" &
    fpid=$!
    while kill -0 "$fpid" 2>/dev/null; do wait "$fpid" 2>/dev/null || true; done
    wait "$fpid" 2>/dev/null || true
    rm -f -- "$file" "$file".* 2>/dev/null
    sb_fio_tidy_json "$out" "$log"
    exit 0
}

# SB_BEFORE_REP: starts fio with SB_FIO_PROFILE in the background, writing RUN_DIR/fio.json, and
# returns once fio has laid out its file (so the run meets the neighbour from its first request).
sb_fio_start() {
    local profile=${SB_FIO_PROFILE:?SB_FIO_PROFILE is not set}
    local job="$runs_root/configs/fio/$profile.fio" runtime out log
    mkdir -p "$RUN_DIR"
    out="$RUN_DIR/fio.json" log="$RUN_DIR/fio.log"
    # The repetition's whole length: warm-up, measurement, the run's drain (<= 10 s) and start-up;
    # sb_fio_stop ends it when the run is over.
    runtime=$(awk -v d="$DURATION_S" -v w="$WARMUP_S" 'BEGIN { printf "%d\n", d + w + 60.999 }')
    local fio_dir=$FIO_DIR fio_bin=$FIO_BIN size=$FIO_SIZE file="$FIO_DIR/$SB_FIO_FILE"
    sb_spawn sb__fio_run "$fio_bin" "$job" "$out" "$log" "$fio_dir" "$size" "$runtime" "$file"
    SB_FIO_PID=$SB_BG_PID
    local want i
    want=$(sb__fio_bytes "$size")
    for ((i = 0; i < 600; i++)); do
        kill -0 "$SB_FIO_PID" 2>/dev/null || break
        [[ -f $file && $(stat -c %s "$file" 2>/dev/null || echo 0) -ge $want ]] && break
        sleep 0.1
    done
    if ! kill -0 "$SB_FIO_PID" 2>/dev/null; then
        wait "$SB_FIO_PID" 2>/dev/null || true
        die "fio ($profile) stopped at once: $(grep -v '^[[:space:]]*$' "$log" | tail -n 3 | tr '\n' ' ')(see $log)"
    fi
    echo "== fio $profile on $FIO_DIR (size $size)"
}

# SB_AFTER_REP: stops fio (it writes fio.json) and waits until its file is gone and fio.json tidied.
sb_fio_stop() {
    [[ -n $SB_FIO_PID ]] || return 0
    local pid=$SB_FIO_PID
    SB_FIO_PID=""
    sb_stop "$pid"
}

# Moves the lines fio writes ahead of its JSON ("fio: terminating on signal 15") into LOG.
sb_fio_tidy_json() {
    local json=$1 log=$2
    [[ -s $json ]] || {
        note "fio wrote no results into $json (see $log)"
        return 0
    }
    [[ $(head -c 1 "$json") == "{" ]] && return 0
    awk -v lf="$log" 'started || /^\{/ { started = 1; print; next } NF { print >> lf }' \
        "$json" >"$json.tmp" && mv -f -- "$json.tmp" "$json"
}
