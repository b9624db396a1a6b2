/*
 * `sparkbench analyze [PATH...]`: finds the run directories under PATHs (default results/ and
 * runs/), loads each (sb_run_load), writes every run's summary.json and
 * <out>/figures/summary_v3.csv, then hands the runs to sb_analyze_outputs for the per-hypothesis
 * tables, figures, gates and report. A run whose metrics.jsonl cannot be read or is not JSON lines
 * at all is named on stderr and left out, the others are still analyzed, and the exit status is 1;
 * bad lines inside a file are warnings only. Exit 2 for usage errors, a PATH that does not exist
 * included.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sb/analyze.h"
#include "sb/cmd.h"
#include "sb/util.h"
#include "sb/opt.h"

static const char *const knee_metrics[] = {"ttft", "e2e", NULL};

#define O(f) offsetof(struct sb_analyze_opts, f)
static const struct sb_opt analyze_options[] = {
    {.flag = "out",
     .type = SB_OPT_STR,
     .offset = O(out_dir),
     .def = "analysis",
     .argname = "DIR",
     .help = "output directory; summary_v3.csv and the figures go to DIR/figures"},
    {.flag = "uwork",
     .type = SB_OPT_STR,
     .offset = O(uwork_path),
     .def = "results/H0/uwork.txt",
     .argname = "PATH",
     .help = "where the H0 knee's U_work is written"},
    {.flag = "knee-metric",
     .type = SB_OPT_ENUM,
     .offset = O(knee_metric),
     .def = "ttft",
     .argname = "M",
     .help = "latency the H0 knee rule looks at",
     .choices = knee_metrics},
    {.flag = "knee-ratio",
     .type = SB_OPT_DOUBLE,
     .offset = O(knee_ratio),
     .def = "2.0",
     .argname = "R",
     .help = "the knee: the first of two steps in a row with p99 > R x p50",
     .min = 1,
     .max = 1000},
    {.flag = "knee-max-error-rate",
     .type = SB_OPT_DOUBLE,
     .offset = O(knee_max_error_rate),
     .def = "0.01",
     .argname = "E",
     .help = "a step whose failed share of measured requests exceeds E (429s included) is past "
             "the knee (1: errors ignored)",
     .min = 1e-9,
     .max = 1},
    {.flag = "kv-bytes-per-token",
     .type = SB_OPT_DOUBLE,
     .offset = O(kv_bytes_per_token),
     .def = "131072",
     .argname = "B",
     .help = "KV cache bytes per token, for H5's working set (131072: Llama-3.1-8B, fp16)",
     .min = 1,
     .max = 1e12},
    {.flag = "gnuplot",
     .type = SB_OPT_STR,
     .offset = O(gnuplot),
     .def = "gnuplot",
     .argname = "PATH",
     .help = "gnuplot to render the figures with (missing: the .gp scripts are still written)"},
    {.flag = "no-figures",
     .type = SB_OPT_BOOL,
     .offset = O(no_figures),
     .help = "write the CSVs and .gp scripts, render nothing"},
    {.flag = "quiet",
     .type = SB_OPT_BOOL,
     .offset = O(quiet),
     .help = "print nothing on stdout (warnings and errors still go to stderr)"},
};
#define NOPTS (sizeof(analyze_options) / sizeof(analyze_options[0]))

static void usage(FILE *f)
{
    fputs("usage: sparkbench analyze [PATH...] [--out DIR] [options]\n\n"
          "Reads every run directory (one holding metrics.jsonl) under the PATHs, default\n"
          "results/ and runs/: percentiles of TTFT, E2E, TTFB, ITL and TPOT over the measured\n"
          "requests (warm-up and failed ones counted, left out), rates over the measurement\n"
          "window, and the telemetry (sysmon.jsonl, dynkv.jsonl) joined with that window. Writes\n"
          "each run's summary.json, DIR/figures/summary_v3.csv (the old process_results.py's\n"
          "columns first), the per-hypothesis tables, figures, gates and report. Bad lines are\n"
          "warnings (file and line on stderr and in summary.json). Exit status: 0; 1 when a run\n"
          "cannot be read (its metrics.jsonl is missing, unreadable or not JSON lines at all: it\n"
          "is named and left out, the other runs are still analyzed) or an output cannot be\n"
          "written; 2 for a usage error, a PATH that does not exist included.\n\noptions:\n",
          f);
    sb_opt_print_help(analyze_options, NOPTS, f);
}

int cmd_analyze(int argc, char **argv)
{
    struct sb_analyze_opts opts = {0};
    struct sb_opt_result res = {0};
    struct sb_err err;
    char **dirs = NULL;
    size_t ndirs = 0, nruns = 0, nwarn = 0, failed = 0;
    struct sb_run *runs = NULL;
    bool write_failed = false;
    int rc = 1;
    sb_err_clear(&err);
    if (sb_opt_parse(analyze_options, NOPTS, &opts, argc, argv, &res, &err) != 0) {
        rc = sb_usage_error("analyze", err.msg);
        goto out;
    }
    if (res.help) {
        usage(stdout);
        rc = 0;
        goto out;
    }
    opts.paths = res.positional;
    opts.npaths = (size_t)res.npositional;
    opts.argv = argv;
    opts.argc = argc;
    for (size_t i = 0; i < opts.npaths; i++) {
        struct stat st;
        if (stat(opts.paths[i], &st) != 0) {
            char msg[600];
            snprintf(msg, sizeof(msg), "cannot find '%.500s': %s", opts.paths[i], strerror(errno));
            rc = sb_usage_error("analyze", msg);
            goto out;
        }
    }
    if (sb_runs_find(opts.paths, opts.npaths, &dirs, &ndirs, &err) != 0) {
        fprintf(stderr, "sparkbench analyze: %s\n", err.msg);
        goto out;
    }
    if (ndirs == 0)
        fprintf(stderr,
                "sparkbench analyze: no run directory (one holding metrics.jsonl) under %s\n",
                opts.npaths ? "the paths given" : "results/ or runs/");
    runs = calloc(ndirs ? ndirs : 1, sizeof(*runs));
    if (!runs) {
        fputs("sparkbench analyze: out of memory\n", stderr);
        goto out;
    }
    for (size_t i = 0; i < ndirs; i++) {
        struct sb_run *r = &runs[nruns];
        if (sb_run_load(dirs[i], &opts, r, &err) != 0) {
            fprintf(stderr, "sparkbench analyze: %s (run left out)\n", err.msg);
            sb_run_release(r);
            failed++;
            continue;
        }
        for (size_t w = 0; w < r->nwarnings; w++)
            fprintf(stderr, "sparkbench analyze: warning: %s\n", r->warnings[w]);
        nwarn += r->nwarnings;
        nruns++;
        if (sb_run_summary_json_write(r, &err) != 0) {
            fprintf(stderr, "sparkbench analyze: %s\n", err.msg);
            write_failed = true;
        }
    }
    char figures[4096], csv[4200];
    snprintf(figures, sizeof(figures), "%s/figures", opts.out_dir);
    snprintf(csv, sizeof(csv), "%s/summary_v3.csv", figures);
    if (sb_mkdir_p(figures, &err) != 0 || sb_summary_csv_write(csv, runs, nruns, &err) != 0) {
        fprintf(stderr, "sparkbench analyze: %s\n", err.msg);
        write_failed = true;
    } else if (!opts.quiet) {
        printf("analyze: %zu run%s loaded", nruns, nruns == 1 ? "" : "s");
        if (failed)
            printf(", %zu left out", failed);
        printf(" (%zu warning%s) -> %s\n", nwarn, nwarn == 1 ? "" : "s", csv);
        fflush(stdout);
    }
    if (sb_analyze_outputs(runs, nruns, &opts, &err) != 0) {
        fprintf(stderr, "sparkbench analyze: %s\n", err.msg);
        write_failed = true;
    }
    rc = failed || write_failed ? 1 : 0;
out:
    for (size_t i = 0; i < nruns; i++)
        sb_run_release(&runs[i]);
    free(runs);
    sb_runs_free(dirs, ndirs);
    free(res.positional);
    sb_opt_release(analyze_options, NOPTS, &opts);
    return rc;
}
