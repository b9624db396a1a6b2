/*
 * The mock's own Prometheus series: request outcomes, batch and queue gauges, token counters and
 * latency histograms measured inside the server. Rendered in the text exposition format 0.0.4.
 */
#ifndef SB_MOCK_METRICS_H
#define SB_MOCK_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "sb/buf.h"

#define SB_HISTO_MAX_BUCKETS 24

struct sb_histo {
    const double *bounds; /* upper bounds in seconds, ascending; +Inf implied */
    size_t nbounds;
    uint64_t counts[SB_HISTO_MAX_BUCKETS + 1]; /* per bucket, not cumulative */
    double sum;
    uint64_t count;
};

void sb_histo_init(struct sb_histo *h, const double *bounds, size_t nbounds);
void sb_histo_observe(struct sb_histo *h, double value);
/* Appends the _bucket/_sum/_count lines with HELP and TYPE. */
int sb_histo_render(const struct sb_histo *h, const char *name, const char *help,
                    struct sb_buf *out);

enum sb_mock_outcome {
    SB_OUT_OK,          /* finished normally */
    SB_OUT_REJECTED,    /* queue full */
    SB_OUT_INVALID,     /* 4xx: bad JSON, unknown model, too long */
    SB_OUT_FAULT,       /* an injected fault */
    SB_OUT_CANCELLED,   /* the client went away */
    SB_OUT_SHUTDOWN,    /* ended by SIGINT/SIGTERM */
    SB_OUT_UNAVAILABLE, /* 503 during start-up */
    SB_OUT_COUNT,
};

const char *sb_mock_outcome_name(enum sb_mock_outcome o);

struct sb_mock_metrics {
    uint64_t requests[SB_OUT_COUNT];
    uint64_t prompt_tokens;
    uint64_t generation_tokens;
    struct sb_histo ttft;
    struct sb_histo itl;
    struct sb_histo e2e;
    struct sb_histo queue;
};

void sb_mock_metrics_init(struct sb_mock_metrics *m);

/* Appends every series; running/waiting are the engine's gauges right now. */
int sb_mock_metrics_render(const struct sb_mock_metrics *m, size_t running, size_t waiting,
                           struct sb_buf *out);

#endif
