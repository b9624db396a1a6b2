/*
 * `sparkbench analyze`: run directories -> per-run statistics -> the Test Plan's tables, figures,
 * gates and report. Two halves meet at struct sb_run:
 *
 *   load.c / runstats.c / summary.c   find run directories, read config.yaml, run.json,
 *                                     metrics.jsonl, sysmon.jsonl, dynkv.jsonl (ours and the
 *                                     Python harness's), fill one struct sb_run per directory,
 *                                     write summary_v3.csv and each run's summary.json;
 *   hypo.c / plot.c / gates.c /       group runs by hypothesis and sweep variable, find the H0
 *   report.c                          knee (U_work), write the per-hypothesis CSVs, gnuplot
 *                                     scripts and figures, verdicts.json, report.md/.html.
 *
 * Everything measured is a double with NAN meaning "not available" (written as JSON null and as
 * an empty CSV cell), never 0.
 */
#ifndef SB_ANALYZE_H
#define SB_ANALYZE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sb/err.h"
#include "sb/record.h"
#include "sb/stats.h"

/* The latencies analyze summarizes, in this order everywhere (CSV columns, JSON keys). */
enum sb_lat { SB_LAT_TTFT, SB_LAT_E2E, SB_LAT_TTFB, SB_LAT_ITL, SB_LAT_TPOT, SB_LAT_N };
/* "ttft", "e2e", "ttfb", "itl", "tpot" */
extern const char *const sb_lat_names[SB_LAT_N];

/* A telemetry field over the run's measurement window: one value per tick inside it. */
struct sb_tstat {
    size_t n;
    double mean, p95, min, max; /* NAN when n == 0 */
};

/* One (tick) point for H7: KV telemetry's predicted NVMe read rate vs the one the disk saw. */
struct sb_h7_point {
    double ts;           /* the dynkv tick's ts */
    double pred_rmbs;    /* tier-2 bytes_out (disk -> GPU) over the tick, MB/s (1e6 bytes) */
    double obs_rmbs;     /* the sysmon tick at the same grid time: nvme.rMBs */
    double obs_rps;      /* nvme.rps */
    double fetch_p95_ms; /* dynkv tier2.fetch_p95_ms (NAN when the server exports none) */
};

/* A file's reading: how many lines, and the first few problems by line number. */
struct sb_file_report {
    bool present;
    size_t lines;     /* non-blank lines read */
    size_t bad_lines; /* unparseable or torn (a torn last line counts here) */
    size_t blank_lines;
    char first_problem[256]; /* "metrics.jsonl line 17: ..." or "" */
};

struct sb_run {
    /* ---- identity (strings owned; "" when unknown, never NULL after loading) ---- */
    char *dir;    /* the run directory as found */
    char *run_id; /* run.json / metrics run_id / the directory's base name */
    char *stack;  /* "A", "B", ... */
    char *model;
    char *workload;
    char *hypothesis;  /* config run.hypothesis, else the _H0_/_H2A_/... part of run_id */
    char *phase;       /* --phase label (the sweep step, "U8", "ctx2048", "moderate") */
    char *fio_profile; /* H4: config run.fio_profile, else a baseline/moderate/heavy phase */
    char *eviction_policy;
    long long context_tokens, concurrency, repetition; /* -1 when unknown */
    double rate;                                       /* open-loop req/s; NAN closed loop */
    bool old_format;                                   /* written by the Python harness */

    /* ---- config facts (0 when unknown) ---- */
    uint64_t kv_block_size_bytes;
    uint64_t tier0_bytes, tier1_bytes, tier2_bytes;
    double kv_working_set_bytes; /* H5: concurrency x context_tokens x KV bytes per token */

    /* ---- measurement window, unix seconds ---- */
    double t0, t1; /* run.json measure_start_ts..end_ts, else first..last measured send */

    /* ---- metrics.jsonl ---- */
    struct sb_file_report metrics_file;
    size_t warmup;   /* phase warmup records (counted, not in percentiles) */
    size_t measured; /* records outside warm-up */
    size_t ok, errors;
    size_t errors_by_kind[SB_ERRK_COUNT];
    size_t admitted;  /* measured requests the server accepted (a 2xx response began) */
    size_t completed; /* measured requests that finished ok */
    size_t rejected;  /* measured requests refused with 429/503 */
    double achieved_rps, output_tok_s; /* over the window */
    struct sb_summary lat[SB_LAT_N];   /* ok measured records only; ITL from itl_mean_ms */

    /* ---- telemetry over [t0, t1] ---- */
    struct sb_file_report sysmon_file, dynkv_file;
    size_t sysmon_samples, dynkv_samples; /* ticks inside the window */
    double sysmon_aligned, dynkv_aligned; /* share of the window within one cadence of a
                                             tick, 0..1; NAN when the file is absent */
    double cadence_s;                     /* ticks' spacing (median), NAN when unknown */
    struct sb_tstat cpu_iowait, nvme_rps, nvme_rmbs, nvme_r_await, nvme_util, nvme_aqu;
    struct sb_tstat psi_io_some, gpu_util, mem_available;
    double tier_hits[3], tier_misses[3]; /* dynkv sums over the window, NAN when absent */
    double tier_hit_ratio[3];            /* hits / (hits + misses) per tier, NAN when absent */
    double tier2_share; /* tier-2 hits / all tiers' hits: the H2B gate's "tier-2 hits" */
    struct sb_tstat tier2_fetch_p95_ms;
    struct sb_h7_point *h7; /* owned, nh7 points */
    size_t nh7;

    char **warnings; /* owned, "file line N: ..." notes for the report */
    size_t nwarnings;
};

struct sb_analyze_opts {
    char **paths; /* run directories or folders holding them; NULL/0: results/ and runs/ */
    size_t npaths;
    char *out_dir;             /* analysis/ (figures go to <out_dir>/figures) */
    char *uwork_path;          /* results/H0/uwork.txt */
    int knee_metric;           /* SB_LAT_TTFT or SB_LAT_E2E */
    double knee_ratio;         /* 2.0 */
    double kv_bytes_per_token; /* for H5's working set; 131072 (Llama-3.1-8B, fp16) */
    char *gnuplot;   /* "gnuplot"; a missing one is a warning, CSV and .gp still written */
    bool no_figures; /* write CSV and .gp, skip rendering */
    char **argv;     /* the command line, for the report */
    int argc;
    bool quiet;
};

/* ---- loading (load.c, runstats.c) ---- */

/*
 * Finds the run directories under the given paths (a directory holding metrics.jsonl is a run;
 * others are searched to depth 3), sorted by path. Returns 0 with *out (free with
 * sb_runs_free), or -1 with err when a path given explicitly does not exist.
 */
int sb_runs_find(char *const *paths, size_t npaths, char ***out, size_t *n, struct sb_err *err);

/*
 * Loads one run directory into r (zeroed first): config.yaml, run.json, metrics.jsonl,
 * sysmon.jsonl, dynkv.jsonl, and computes every statistic. Bad lines become warnings, never
 * failures. Returns 0, or -1 with err when metrics.jsonl is not JSONL at all (no line parses)
 * or cannot be read.
 */
int sb_run_load(const char *dir, const struct sb_analyze_opts *opts, struct sb_run *r,
                struct sb_err *err);
void sb_run_release(struct sb_run *r);
void sb_runs_free(char **dirs, size_t n);

/* ---- per-run outputs (summary.c) ---- */

/* Writes <out_dir>/figures/summary_v3.csv (old columns first) for runs[0..n). */
int sb_summary_csv_write(const char *path, const struct sb_run *runs, size_t n, struct sb_err *err);
/* Writes <run dir>/summary.json for r. */
int sb_run_summary_json_write(const struct sb_run *r, struct sb_err *err);

/* ---- hypotheses, figures, gates, report (hypo.c, plot.c, gates.c, report.c) ---- */

/*
 * Everything after loading: per-hypothesis CSVs, .gp scripts and figures in <out_dir>/figures,
 * U_work into opts->uwork_path when there are H0 runs (the rule's inputs printed), verdicts.json,
 * report.md and report.html in out_dir. Prints a short summary on stdout unless quiet.
 * Returns 0, or -1 with err when an output cannot be written.
 */
int sb_analyze_outputs(struct sb_run *runs, size_t n, const struct sb_analyze_opts *opts,
                       struct sb_err *err);

#endif
