/*
 * The load generator's engine: libcurl's multi-socket API on epoll + timerfd (curl's
 * docs/examples/ephiperfifo.c), one event loop per thread, each owning a share of the users
 * (closed loop) or of the arrival rate (open loop). Every request becomes one struct sb_record
 * written to the JSONL sink; nothing is shared between loops on the hot path.
 */
#ifndef SB_ENGINE_H
#define SB_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sb/err.h"
#include "sb/jsonl.h"
#include "sb/lora_select.h"
#include "sb/openai.h"
#include "sb/record.h"
#include "sb/hist.h"
#include "sb/recstats.h"
#include "sb/run.h"
#include "sb/stats.h"
#include "sb/workload.h"

struct sb_engine_params {
    const struct sb_run_config *cfg;
    const struct sb_workload *workload;
    const char *url; /* full URL of the completions endpoint */
    enum sb_api api;
    const char *run_id;
    const char *model_sent; /* "model" of each request, NULL to omit */
    const char *api_key;    /* Bearer token, NULL for none (never written anywhere) */
    struct sb_jsonl_sink *sink;
    bool progress; /* a live progress line on stderr */
    /* LoRA suite: with lora set, each request names the adapter lora picks for its seq, as
       lora_mode says (sb/lora_select.h); both borrowed. NULL: no adapters. */
    const struct sb_lora_list *lora_list;
    struct sb_lora_selector *lora;
    int lora_mode;
};

enum sb_exit_reason {
    SB_EXIT_COMPLETED, /* --requests reached or every user done */
    SB_EXIT_DURATION,  /* --duration-s elapsed */
    SB_EXIT_SIGINT,
    SB_EXIT_SIGTERM,
    SB_EXIT_FATAL,       /* e.g. the metrics file could not be written */
    SB_EXIT_UNREACHABLE, /* no request ever connected within --connect-timeout-s of the start:
                            stopped, fatal_msg says why ("cannot connect to URL: ...") */
    SB_EXIT_REFUSED,     /* the first SB_REFUSED_STOP answers were all refusals (4xx but 408 and
                            429: a wrong model, path or key) and none succeeded: fatal_msg */
};

/* How many answers, all refused and none ok, stop a run (sb_exit_reason SB_EXIT_REFUSED). */
#define SB_REFUSED_STOP 50

const char *sb_exit_reason_name(enum sb_exit_reason r);

struct sb_engine_result {
    enum sb_exit_reason reason;
    char fatal_msg[SB_ERR_MSG_MAX];
    uint64_t anchor_mono_ns, anchor_real_ns; /* one instant read on both clocks */
    uint64_t t_start_ns, t_end_ns;           /* first intended send, last completion */
    uint64_t t_measure_start_ns;             /* end of ramp-up and warm-up */
    uint64_t t_measure_end_ns; /* when sending stopped: the duration's end, the signal or fatal
                                  error, or the last send of --requests; the drain comes after */
    struct sb_tput tput;       /* throughput over [t_measure_start, t_measure_end), in seconds of
                                  CLOCK_MONOTONIC (see sb/stats.h) */
    long long sent, ok, warmup, not_sent;
    long long retried; /* requests sent again on a fresh connection after a reused one died
                          before any response byte (each is one record, counted once) */
    long long errors[SB_ERRK_COUNT];
    long long output_tokens;   /* measured phase, ok requests */
    long long late_sends;      /* measured (not warm-up/ramp) requests sent over 1 ms after their
                                  intended time */
    double max_sched_delay_ms; /* the largest such delay among the measured requests */
    /* measured-phase TTFT and E2E of ok requests, ms (sb/hist.h: fixed size, so a run of hours
       holds no per-request sample; freed by sb_engine_result_release) */
    struct sb_hist ttft_ms, e2e_ms;
    /* in-flight intervals, ok completions and the server's prompt counts (sb/recstats.h) */
    struct sb_recstats rs;
};

/*
 * Runs the whole load: blocks SIGINT/SIGTERM in every thread and handles them here (stop sending,
 * drain in-flight requests up to --drain-s, record the rest as cancelled). Returns 0 when the run
 * took place (see res->reason), -1 with err when it could not start.
 */
int sb_engine_run(const struct sb_engine_params *p, struct sb_engine_result *res,
                  struct sb_err *err);
void sb_engine_result_release(struct sb_engine_result *res);

/*
 * Recounts res from the records in metrics_path, the file the run wrote: ok, warmup, errors by
 * kind, output tokens and the measured-phase TTFT/E2E samples are replaced by those of the lines
 * that are there (sent, client lag, clock stamps and exit reason are kept). For a run that lost
 * records (a full disk), so its summary is over exactly what was written. *records (may be NULL)
 * gets the number of records read. Returns 0, or -1 with err (res unchanged).
 */
int sb_engine_result_recount(struct sb_engine_result *res, const char *metrics_path,
                             long long *records, struct sb_err *err);

#endif
