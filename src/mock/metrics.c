/* The mock's Prometheus series and their text rendering (see sb/mock_metrics.h). */
#include "sb/mock_metrics.h"

#include <math.h>

#include "sb/util.h"

/* vLLM's bucket edges, so dashboards built for it read the mock the same way. */
static const double ttft_bounds[] = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25, 0.5,
                                     0.75,  1.0,   2.5,  5.0,  7.5,  10.0, 20.0, 40.0, 80.0};
static const double itl_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03,
                                    0.04,  0.05,   0.075, 0.1,  0.15,  0.2,  0.3,   0.4,
                                    0.5,   0.75,   1.0,   2.5,  5.0,   7.5,  10.0,  20.0};
static const double e2e_bounds[] = {0.01, 0.025, 0.05,  0.1,   0.3,   0.5,   0.8,  1.0,
                                    2.5,  5.0,   10.0,  15.0,  20.0,  30.0,  40.0, 50.0,
                                    60.0, 120.0, 240.0, 480.0, 960.0, 1920.0};

static const char *const outcome_names[SB_OUT_COUNT] = {
    [SB_OUT_OK] = "ok",
    [SB_OUT_REJECTED] = "rejected",
    [SB_OUT_INVALID] = "invalid",
    [SB_OUT_FAULT] = "fault",
    [SB_OUT_CANCELLED] = "cancelled",
    [SB_OUT_SHUTDOWN] = "shutdown",
    [SB_OUT_UNAVAILABLE] = "unavailable",
};

const char *sb_mock_outcome_name(enum sb_mock_outcome o)
{
    return (o >= 0 && o < SB_OUT_COUNT) ? outcome_names[o] : "unknown";
}

void sb_histo_init(struct sb_histo *h, const double *bounds, size_t nbounds)
{
    *h = (struct sb_histo){0};
    h->bounds = bounds;
    h->nbounds = nbounds > SB_HISTO_MAX_BUCKETS ? SB_HISTO_MAX_BUCKETS : nbounds;
}

void sb_histo_observe(struct sb_histo *h, double v)
{
    size_t i = 0;
    while (i < h->nbounds && v > h->bounds[i])
        i++;
    h->counts[i]++;
    h->sum += v;
    h->count++;
}

int sb_histo_render(const struct sb_histo *h, const char *name, const char *help,
                    struct sb_buf *out)
{
    int rc = 0;
    rc |= sb_buf_addf(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (size_t i = 0; i < h->nbounds; i++) {
        cum += h->counts[i];
        rc |= sb_buf_addf(out, "%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[i],
                          (unsigned long long)cum);
    }
    cum += h->counts[h->nbounds];
    rc |= sb_buf_addf(out, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
    rc |= sb_buf_addf(out, "%s_sum %.9g\n%s_count %llu\n", name, h->sum, name,
                      (unsigned long long)h->count);
    return rc ? -1 : 0;
}

void sb_mock_metrics_init(struct sb_mock_metrics *m)
{
    *m = (struct sb_mock_metrics){0};
    sb_histo_init(&m->ttft, ttft_bounds, SB_ARRAY_SIZE(ttft_bounds));
    sb_histo_init(&m->itl, itl_bounds, SB_ARRAY_SIZE(itl_bounds));
    sb_histo_init(&m->e2e, e2e_bounds, SB_ARRAY_SIZE(e2e_bounds));
    sb_histo_init(&m->queue, e2e_bounds, SB_ARRAY_SIZE(e2e_bounds));
}

int sb_mock_metrics_render(const struct sb_mock_metrics *m, size_t running, size_t waiting,
                           struct sb_buf *out)
{
    int rc = 0;
    rc |= sb_buf_adds(out, "# HELP mock:requests_total Requests finished, by outcome.\n"
                           "# TYPE mock:requests_total counter\n");
    for (int o = 0; o < SB_OUT_COUNT; o++)
        rc |= sb_buf_addf(out, "mock:requests_total{outcome=\"%s\"} %llu\n", outcome_names[o],
                          (unsigned long long)m->requests[o]);
    rc |= sb_buf_addf(out,
                      "# HELP mock:num_requests_running Sequences in the batch.\n"
                      "# TYPE mock:num_requests_running gauge\n"
                      "mock:num_requests_running %zu\n"
                      "# HELP mock:num_requests_waiting Requests in the waiting queue.\n"
                      "# TYPE mock:num_requests_waiting gauge\n"
                      "mock:num_requests_waiting %zu\n"
                      "# HELP mock:prompt_tokens_total Prompt tokens admitted.\n"
                      "# TYPE mock:prompt_tokens_total counter\n"
                      "mock:prompt_tokens_total %llu\n"
                      "# HELP mock:generation_tokens_total Tokens generated.\n"
                      "# TYPE mock:generation_tokens_total counter\n"
                      "mock:generation_tokens_total %llu\n",
                      running, waiting, (unsigned long long)m->prompt_tokens,
                      (unsigned long long)m->generation_tokens);
    rc |= sb_histo_render(&m->ttft, "mock:time_to_first_token_seconds",
                          "Arrival to first token written, seconds.", out);
    rc |= sb_histo_render(&m->itl, "mock:inter_token_latency_seconds",
                          "Time between consecutive tokens of a stream, seconds.", out);
    rc |= sb_histo_render(&m->e2e, "mock:e2e_request_latency_seconds",
                          "Arrival to last token, seconds.", out);
    rc |= sb_histo_render(&m->queue, "mock:request_queue_time_seconds",
                          "Time spent waiting for a batch slot, seconds.", out);
    return rc ? -1 : 0;
}
