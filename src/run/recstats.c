/*
 * Record statistics that `run` reports beside its latencies (see sb/recstats.h). Each engine loop
 * keeps its own struct sb_recstats, so nothing is shared on the hot path; the intervals are kept
 * whole because the measurement window's end is known only once sending has stopped.
 */
#include "sb/recstats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sb/stats.h"

void sb_recstats_init(struct sb_recstats *s)
{
    memset(s, 0, sizeof(*s));
}

void sb_recstats_release(struct sb_recstats *s)
{
    free(s->busy);
    free(s->prompt_tokens);
    sb_recstats_init(s);
}

static bool grow(void **v, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap)
        return true;
    size_t nc = *cap ? *cap * 2 : 1024;
    void *nv = realloc(*v, nc * elem);
    if (!nv)
        return false;
    *v = nv;
    *cap = nc;
    return true;
}

void sb_recstats_add(struct sb_recstats *s, const struct sb_record *r)
{
    if (r->t_send_ns && r->t_last_byte_ns >= r->t_send_ns) {
        if (grow((void **)&s->busy, &s->cap_busy, s->n_busy, sizeof(*s->busy))) {
            s->busy[s->n_busy][0] = r->t_send_ns;
            s->busy[s->n_busy][1] = r->t_last_byte_ns;
            s->n_busy++;
        } else {
            s->oom = true;
        }
    }
    if (r->ok && r->prompt_tokens >= 0 && r->prompt_tokens_client >= 0 &&
        (s->first_seq == 0 || r->seq + 1 < s->first_seq)) {
        s->first_seq = r->seq + 1;
        s->first_diff = r->prompt_tokens - r->prompt_tokens_client;
    }
    if (!r->ok || r->warmup || r->prompt_tokens < 0)
        return;
    if (r->server_truncated)
        s->truncated++;
    if (grow((void **)&s->prompt_tokens, &s->cap_prompt, s->n_prompt, sizeof(double)))
        s->prompt_tokens[s->n_prompt++] = (double)r->prompt_tokens;
    else
        s->oom = true;
}

static bool append(void **dst, size_t *n, size_t *cap, const void *src, size_t m, size_t elem)
{
    if (m == 0)
        return true;
    if (*n + m > *cap) {
        void *nv = realloc(*dst, (*n + m) * elem);
        if (!nv)
            return false;
        *dst = nv;
        *cap = *n + m;
    }
    memcpy((char *)*dst + *n * elem, src, m * elem);
    *n += m;
    return true;
}

void sb_recstats_merge(struct sb_recstats *dst, struct sb_recstats *src)
{
    if (!append((void **)&dst->busy, &dst->n_busy, &dst->cap_busy, src->busy, src->n_busy,
                sizeof(*src->busy)) ||
        !append((void **)&dst->prompt_tokens, &dst->n_prompt, &dst->cap_prompt, src->prompt_tokens,
                src->n_prompt, sizeof(double)))
        dst->oom = true;
    dst->truncated += src->truncated;
    if (src->first_seq > 0 && (dst->first_seq == 0 || src->first_seq < dst->first_seq)) {
        dst->first_seq = src->first_seq;
        dst->first_diff = src->first_diff;
    }
    dst->oom |= src->oom;
    sb_recstats_release(src);
}

double sb_recstats_inflight_mean(const struct sb_recstats *s, uint64_t w0_ns, uint64_t w1_ns)
{
    if (w1_ns <= w0_ns)
        return NAN;
    double busy_ns = 0;
    for (size_t i = 0; i < s->n_busy; i++) {
        uint64_t a = s->busy[i][0] > w0_ns ? s->busy[i][0] : w0_ns;
        uint64_t b = s->busy[i][1] < w1_ns ? s->busy[i][1] : w1_ns;
        if (b > a)
            busy_ns += (double)(b - a);
    }
    return busy_ns / (double)(w1_ns - w0_ns);
}

double sb_recstats_prompt_tokens_median(struct sb_recstats *s)
{
    if (s->n_prompt == 0)
        return NAN;
    sb_stats_sort(s->prompt_tokens, s->n_prompt);
    return sb_stats_percentile_sorted(s->prompt_tokens, s->n_prompt, 50);
}
