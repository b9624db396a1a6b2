/*
 * `sparkbench sysmon`: samples host telemetry on an absolute grid into <out>/sysmon.jsonl until
 * --duration-s or SIGINT/SIGTERM (final flush, exit 0).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sb/cmd.h"
#include "sb/opt.h"
#include "sb/sysmon.h"
#include "sb/tls.h"
#include "sb/util.h"

#define O(f) offsetof(struct sb_sysmon_config, f)
static const struct sb_opt sysmon_options[] = {
    {.flag = "out",
     .type = SB_OPT_STR,
     .offset = O(out_dir),
     .argname = "DIR",
     .help = "directory for sysmon.jsonl (created)"},
    {.flag = "duration-s",
     .type = SB_OPT_DOUBLE,
     .offset = O(duration_s),
     .def = "0",
     .argname = "S",
     .help = "stop after S seconds (0: at SIGINT/SIGTERM)",
     .min = 0,
     .max = 1e8},
    {.flag = "interval-ms",
     .type = SB_OPT_INT,
     .offset = O(interval_ms),
     .def = "200",
     .argname = "MS",
     .help = "tick interval; ticks fall on wall-clock multiples of it",
     .min = 10,
     .max = 3600000},
    {.flag = "disk",
     .type = SB_OPT_LIST,
     .offset = O(disks),
     .argname = "DEV[,DEV]",
     .help = "block devices (default: the one holding --out)"},
    {.flag = "no-disk", .type = SB_OPT_BOOL, .offset = O(no_disk), .help = "skip the disk source"},
    {.flag = "per-cpu", .type = SB_OPT_BOOL, .offset = O(per_cpu), .help = "also each CPU"},
    {.flag = "no-gpu",
     .type = SB_OPT_BOOL,
     .offset = O(no_gpu),
     .help = "skip the NVML GPU source"},
    {.flag = "nvml-lib",
     .type = SB_OPT_STR,
     .offset = O(nvml_lib),
     .argname = "PATH",
     .help = "NVML library to dlopen [default: libnvidia-ml.so.1]"},
    {.flag = "pid",
     .type = SB_OPT_LIST,
     .offset = O(pids),
     .argname = "PID[,PID]",
     .help = "attribute CPU and I/O to these processes (/proc/PID/io, stat); repeatable"},
    {.flag = "pid-of",
     .type = SB_OPT_LIST,
     .offset = O(pid_of),
     .argname = "NAME[,NAME]",
     .help = "like --pid, for the processes with this name (e.g. trtllm-serve); repeatable"},
    {.flag = "prom",
     .type = SB_OPT_LIST,
     .offset = O(prom_urls),
     .check = sb_url_check_no_credentials,
     .argname = "URL",
     .help = "scrape this Prometheus /metrics every tick (KVBM, Dynamo, vLLM); repeatable"},
    {.flag = "dynkv",
     .type = SB_OPT_BOOL,
     .offset = O(dynkv),
     .help = "write dynkv.jsonl from the --prom scrapes even before KV series appear"},
    {.flag = "kv-block-size-bytes",
     .type = SB_OPT_SIZE,
     .offset = O(kv_block_size_bytes),
     .def = "65536",
     .argname = "B",
     .help = "bytes of one KV block (dynkv bytes = blocks x this)"},
    {.flag = "trtllm",
     .type = SB_OPT_STR,
     .offset = O(trtllm_url),
     .check = sb_url_check_no_credentials,
     .argname = "URL",
     .help = "poll TensorRT-LLM's JSON /metrics into trtllm.jsonl"},
    {.flag = "proc-root",
     .type = SB_OPT_STR,
     .offset = O(proc_root),
     .def = "/proc",
     .argname = "DIR",
     .help = "where /proc is (for tests and containers)"},
    {.flag = "sys-root",
     .type = SB_OPT_STR,
     .offset = O(sys_root),
     .def = "/sys",
     .argname = "DIR",
     .help = "where /sys is"},
    {.flag = "insecure",
     .type = SB_OPT_BOOL,
     .offset = O(insecure),
     .help = "https scrapes: do not verify the server's certificate (verified by default)"},
};
#define NOPTS (sizeof(sysmon_options) / sizeof(sysmon_options[0]))

static volatile bool stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = true;
}

static void usage(FILE *f)
{
    fputs(
        "usage: sparkbench sysmon --out DIR [--duration-s S] [--interval-ms 200] [--disk DEV]\n"
        "                         [--prom URL]... [--trtllm URL] [--pid PID | --pid-of NAME]\n\n"
        "Samples CPU (/proc/stat), memory (/proc/meminfo), pressure (/proc/pressure), disks\n"
        "(/proc/diskstats, iostat -x arithmetic), GPUs (NVML, when libnvidia-ml.so.1 loads),\n"
        "processes (/proc/PID/io and stat) and Prometheus endpoints on an absolute grid aligned\n"
        "to wall-clock multiples of the interval, one JSON line per tick in DIR/sysmon.jsonl.\n"
        "KV series (KVBM, the mock's ground truth) also go to DIR/dynkv.jsonl, and TensorRT-LLM's\n"
        "per-iteration stats to DIR/trtllm.jsonl. Runs until --duration-s or SIGINT/SIGTERM.\n"
        "\noptions:\n",
        f);
    sb_opt_print_help(sysmon_options, NOPTS, f);
}

int cmd_sysmon(int argc, char **argv)
{
    struct sb_sysmon_config cfg = {0};
    struct sb_opt_result res;
    struct sb_err err;
    int rc = 1;
    if (sb_cmd_parse("sysmon", sysmon_options, NOPTS, &cfg, argc, argv, usage, &res, &rc) != 0)
        goto out;
    sb_tls_set_insecure(cfg.insecure);
    if (cfg.insecure)
        fprintf(stderr, "sparkbench sysmon: --insecure: the certificates of https scrapes are not "
                        "verified (each such scrape says \"insecure\":true)\n");
    if (!cfg.out_dir) {
        rc = sb_usage_error("sysmon", "missing --out DIR");
        goto out;
    }
    if (mkdir(cfg.out_dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "sparkbench sysmon: cannot create '%s': %s\n", cfg.out_dir,
                strerror(errno));
        goto out;
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_signal; /* no SA_RESTART: the tick's sleep wakes at once */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (sb_sysmon_run(&cfg, &stop_flag, &err) != 0) {
        fprintf(stderr, "sparkbench sysmon: %s\n", err.msg);
        goto out;
    }
    rc = 0;
out:
    free(res.positional);
    sb_opt_release(sysmon_options, NOPTS, &cfg);
    return rc;
}
