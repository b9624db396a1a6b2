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
#include <stdio.h>

#include "sb/analyze_fio.h"
#include "sb/analyze_sess.h"
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

/* One adapter's first uses (cold) and later uses (warm) in a run: the LoRA suite's H1 split. */
struct sb_lora_split {
    char adapter[128];         /* "*" for all adapters together */
    size_t n[2];               /* [0] cold, [1] warm: ok records with a TTFT */
    size_t errors[2];          /* failed records */
    struct sb_summary ttft[2]; /* TTFT (ms) of those ok records */
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
    /* Every other setting that changes what is measured, "key=value" lines in a fixed order
       (config.yaml's resolved options: API, stream, connection reuse, nonce mode, max_tokens,
       sampling, think time or arrival process, prompt, extra body, endpoint, server facts; and
       run.json's prompt size): runs are repetitions of one point only when these are equal. */
    char *settings;
    bool old_format; /* written by the Python harness */

    /* ---- config facts (0 when unknown) ---- */
    uint64_t kv_block_size_bytes;
    uint64_t tier0_bytes, tier1_bytes, tier2_bytes;
    double kv_working_set_bytes; /* H5: concurrency x context_tokens x KV bytes per token */

    /* ---- measurement window, unix seconds ---- */
    double t0, t1;       /* run.json measure_start_ts..measure_end_ts (the sending period after
                            ramp-up and warm-up, without the drain), else first..last measured send */
    struct sb_tput tput; /* throughput (sb/stats.h): ok completions in the window, counted on
                            run.json's CLOCK_MONOTONIC window when it gives one, else on [t0, t1)
                            with ts + lat_e2e_ms as the completion */

    /* ---- metrics.jsonl ---- */
    struct sb_file_report metrics_file;
    size_t warmup;   /* phase warmup records (counted, not in percentiles) */
    size_t measured; /* records outside warm-up */
    size_t ok, errors;
    size_t errors_by_kind[SB_ERRK_COUNT]; /* [SB_ERRK_NONE]: failures without a kind (the old
                                             harness's rc "error"); a kind-less rc >= 400 is http */
    size_t admitted;  /* measured requests the server accepted (a 2xx response began) */
    size_t completed; /* measured requests that finished ok */
    size_t rejected;  /* measured requests refused with 429/503 */
    double achieved_rps, output_tok_s; /* sb_tput_req_s / sb_tput_tok_s of tput */
    struct sb_summary lat[SB_LAT_N];   /* ok measured records only; ITL from itl_mean_ms */

    /* ---- telemetry over [t0, t1] ---- */
    struct sb_file_report sysmon_file, dynkv_file;
    size_t sysmon_samples, dynkv_samples; /* ticks inside the window */
    size_t sysmon_ticks; /* every sysmon tick taken (not missed), in the window or not: the old
                            harness's sysmon_samples */
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

    /* ---- added by the loader (load.c) ---- */
    bool window_from_run_json;          /* t0/t1 came from run.json, not from the records */
    double win_mono0_ns, win_mono1_ns;  /* run.json's throughput window, NAN when absent */
    uint64_t output_tokens;             /* sum over the completed measured records */
    double cadence_dynkv_s;             /* dynkv ticks' spacing (median), NAN when unknown */
    size_t sysmon_missed, dynkv_missed; /* {"missed":true} ticks inside the window */
    /* run.json: how the run ended (absent in the old harness's runs) */
    char *exit_reason;    /* "completed", "duration", "sigint", "sigterm", "fatal"; "" unknown */
    long long late_sends; /* client_lag.late_sends (sent > 1 ms after intended); -1 unknown */
    double max_sched_delay_ms; /* client_lag.max_sched_delay_ms; NAN unknown */
    bool fell_behind;   /* client_lag.fell_behind, else sb_client_fell_behind() of the counts */
    size_t sysmon_late; /* live ticks inside the window read more than half a cadence after their
                           grid time (late_ms, or ts_actual - ts when larger): not aligned */

    /* ---- the load carried and the server's own view (issue 11) ---- */
    long long max_inflight;       /* open loop: the in-flight cap (records' max_inflight, or the old
                                     records' concurrency of an open-loop run); -1 closed loop/unknown */
    double inflight_mean;         /* run.json inflight_mean: requests in flight on average over the
                                     window, measured from the records; NAN when absent */
    double prompt_est_tokens;     /* run.json prompt.exact_tokens (--tokenizer), else
                                     estimated_tokens (bytes / 4): what was sent; NAN */
    double context_tokens_server; /* median prompt_tokens the server reported over the ok
                                     measured records; NAN when none reported */
    bool server_truncated;        /* run.json prompt.server_truncated, else sb_prompt_truncated() of
                                     context_tokens_server against prompt_est_tokens */
    /* client TTFT - the server's prefill time (llama.cpp timings.prompt_ms) over the ok measured
       records having both: the client-side overhead */
    struct sb_summary client_overhead;

    /* ---- the LoRA suite (lora.c): by adapter, sorted by name, then "*" (all); NULL/0 when the
       run named no adapters ---- */
    struct sb_lora_split *lora;
    size_t nlora;
    /* ---- the KV-reuse workloads (issue 13): sb/analyze_sess.h; empty for other runs ---- */
    struct sb_sess sess;
    /* ---- H4's fio noisy neighbour: <run dir>/fio.json (sb/analyze_fio.h); NAN without one ---- */
    struct sb_fio_stats fio;
};

struct sb_analyze_opts {
    char **paths; /* run directories or folders holding them; NULL/0: results/ and runs/ */
    size_t npaths;
    char *out_dir;              /* analysis/ (figures go to <out_dir>/figures) */
    char *uwork_path;           /* results/H0/uwork.txt */
    int knee_metric;            /* SB_LAT_TTFT or SB_LAT_E2E */
    double knee_ratio;          /* 2.0 */
    double knee_max_error_rate; /* a step failing more of its requests is past the knee; 0.01
                                   (0 or NAN: the default) */
    double kv_bytes_per_token;  /* for H5's working set; 131072 (Llama-3.1-8B, fp16) */
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

/*
 * Why r's figures need a second look, from run.json, into buf: "" when it ended as planned
 * (completed or its duration) without client lag, or is unknown; else e.g. "sigint",
 * "fatal; client lag (3 late sends; max 12.5 ms)" (no comma, for naive CSV
 * splitters). Returns buf.
 */
const char *sb_run_flags(const struct sb_run *r, char *buf, size_t cap);
void sb_runs_free(char **dirs, size_t n);

/* ---- per-run outputs (summary.c) ---- */

/* Writes <out_dir>/figures/summary_v3.csv (old columns first) for runs[0..n). */
int sb_summary_csv_write(const char *path, const struct sb_run *runs, size_t n, struct sb_err *err);
/* Writes <run dir>/summary.json for r. */
int sb_run_summary_json_write(const struct sb_run *r, struct sb_err *err);

/* ---- helpers for both halves (summary.c) ---- */

/*
 * Formats v as the shortest decimal that reads back as exactly v (%.15g, else %.16g, else %.17g);
 * "" for NAN and infinities. Returns buf.
 */
const char *sb_analyze_fmt_double(char *buf, size_t cap, double v);
/* Writes s as one CSV cell: as is, or quoted ("" doubling quotes) when it holds , " CR or LF. */
void sb_csv_put_str(FILE *f, const char *s);
/* Writes v as one CSV cell (sb_analyze_fmt_double; empty for NAN). */
void sb_csv_put_double(FILE *f, double v);

/* The summary_v3.csv columns in order, NULL-terminated (old harness's columns first). */
extern const char *const sb_summary_columns[];

/* ---- loading internals, shared by load.c / metrics.c / telemetry.c and the unit tests ---- */

/* One metrics.jsonl line as analyze needs it. */
struct sb_mrec {
    double ts;               /* unix seconds; NAN when absent or not asked for */
    double lat[SB_LAT_N];    /* lat_ttft_ms, lat_e2e_ms, lat_ttfb_ms, itl_mean_ms, tpot_ms; NAN */
    long long output_tokens; /* 0 when absent or null (as sb_record_from_json reads it) */
    long long prompt_tokens; /* the server's count; -1 when absent or null */
    double server_prompt_ms; /* the server's prefill time; NAN when absent or null */
    double t_done_ns;        /* t_last_byte_ns (CLOCK_MONOTONIC); NAN when absent or null */
    int rc;                  /* HTTP status; 200/0 for the old harness's "ok"/"error"; 0 absent */
    bool ok;                 /* "ok", else rc "ok"/"error", else a 2xx rc without an error kind */
    bool warmup;             /* "phase": "warmup" */
    bool has_phase;          /* the line has a phase (ours); the old harness's lines have none */
    enum sb_error_kind error;
};

/*
 * A fast scanner for metrics.jsonl lines: walks one flat JSON object, decodes the fields above
 * and checks and skips the rest without building anything. It learns the key order of the first
 * line, so that later keys are matched with a few word compares, and keeps a recent line as a
 * reference, so that runs of keys whose bytes repeat it are taken without a second parse. It
 * handles objects whose values are numbers, literals and strings without escapes; anything else
 * (escapes, nested values, an ISO-8601 ts, broken JSON) is left to sb_record_from_json by
 * sb_metrics_parse_line, and lines it accepts are exactly the valid JSON objects among those. One
 * scanner per thread; it holds state from line to line.
 */
struct sb_mscan;
/* need_ts: decode "ts" (otherwise it is only checked, and m->ts is NAN). NULL when out of memory.
 */
struct sb_mscan *sb_mscan_new(bool need_ts);
void sb_mscan_free(struct sb_mscan *s);
/* line[0..len) with line[len] == '\0'. 0: *m filled; 1: not handled here (see above). */
int sb_mscan_line(struct sb_mscan *s, const char *line, size_t len, struct sb_mrec *m);
/*
 * sb_mscan_line, else sb_record_from_json (the whole JSON grammar, ISO-8601 ts, "16.0" counts).
 * line[len] must be '\0'. Returns 0, or -1 with err saying why the line is not a record.
 */
int sb_metrics_parse_line(struct sb_mscan *s, const char *line, size_t len, struct sb_mrec *m,
                          struct sb_err *err);

/*
 * Reads <dir>/metrics.jsonl into r: counts, latency summaries, the labels of the first record
 * (only into fields still ""/-1), and t0/t1 from the measured records unless
 * r->window_from_run_json. Splits a large file across threads at line boundaries. Bad, blank and
 * torn lines go to r->metrics_file and r->warnings. Returns 0, or -1 with err when the file cannot
 * be read or no line of it parses.
 */
int sb_run_read_metrics(struct sb_run *r, const char *path, struct sb_err *err);

/*
 * How sb_run_read_metrics splits a file: at most max_parts parts (threads) of at least
 * min_part_bytes each; 0 for either restores the default (one part per CPU, up to 8, parts of at
 * least 4 MiB). For tests and benchmarks; call it before loading, not while.
 */
void sb_analyze_set_split(int max_parts, size_t min_part_bytes);

/*
 * Reads sysmon.jsonl and dynkv.jsonl (either may be missing: r->*_file.present false) and fills
 * the telemetry part of r over [r->t0, r->t1]. default_cadence_s (config telemetry.cadence_ms,
 * else 0.2) is used for a file with fewer than two ticks. Never fails: problems become warnings.
 */
/*
 * The LoRA suite's split of metrics.jsonl at path (a run made with --lora-list): per adapter, its
 * first use (adapter_use 1: cold, whatever the phase, since a first use happens once and usually
 * early) and its later uses (warm, measured phase only), ok records' TTFT summarized and failures
 * counted, into r->lora. Records without an adapter are left out; lines that do not parse are the
 * metrics reader's to report. 0, or -1 with err (the file cannot be read, out of memory).
 */
int sb_run_read_lora(struct sb_run *r, const char *path, struct sb_err *err);

void sb_run_read_telemetry(struct sb_run *r, const char *sysmon_path, const char *dynkv_path,
                           double default_cadence_s);

/* Appends a printf-style warning to r->warnings (dropped silently when out of memory). */
void sb_run_warn(struct sb_run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/*
 * Reads path (a run's fio.json) into r->fio (fio.c). A torn or unreadable file is a warning naming
 * it, never a failure; a missing one is a warning only for a run that names a fio profile.
 */
void sb_run_read_fio(struct sb_run *r, const char *path);

/* ---- statistics on arrays (runstats.c) ---- */

/*
 * What sb_stats_summarize gives for v[0..n) (no NaNs), without sorting all of it: the ranks the
 * percentiles interpolate between are put in place by selection (quickselect, falling back to
 * sb_stats_sort), then read with sb_stats_percentile_sorted, so p50..p99.9, min and max are
 * the full sort's bit for bit (signed zeros aside). The mean is numpy's pairwise sum over v as
 * given (np.mean's order, not the sorted order). Reorders v. About 2.5x faster than sorting a
 * million latencies, and needs no scratch memory.
 */
void sb_lat_summarize(double *v, size_t n, struct sb_summary *out);
/* Drops NaNs from v[0..n) (reordering it) and fills out from the rest (sb_stats_summarize). */
void sb_tstat_of(double *v, size_t n, struct sb_tstat *out);
/* The median of the positive gaps between consecutive ts[0..n) (ascending); NAN when none. */
double sb_cadence_of(const double *ts, size_t n);
/*
 * The share of [t0, t1) covered by ticks: the window is cut into cadence-long slots
 * [t0 + k*c, t0 + (k+1)*c) (the last one shorter; edges a millionth of c earlier, so that a tick
 * on the grid counts for the slot it opens despite rounding), a slot counts as covered when one
 * of the ascending ticks ts[0..n) lies inside it (the last slot is looked at over a full cadence),
 * and the result is covered length / (t1 - t0). A missed tick leaves its slot uncovered. NAN when
 * the window or the cadence is not a positive number.
 */
double sb_aligned_share(const double *ts, size_t n, double t0, double t1, double cadence);
/*
 * Fills what follows from the loaded parts: achieved_rps, output_tok_s (NAN without a window),
 * tier hit ratios and tier2_share, kv_working_set_bytes (kv_bytes_per_token from opts).
 */
void sb_run_derive(struct sb_run *r, const struct sb_analyze_opts *opts);

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
