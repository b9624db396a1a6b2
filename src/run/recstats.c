/*
 * Record statistics that `run` reports beside its latencies (see sb/recstats.h). Each engine loop
 * keeps its own struct sb_recstats, so nothing is shared on the hot path. The spans of finished
 * requests are folded into sums once they are known to lie before the window's end: keeping them
 * all (with the latency arrays, 56 bytes a request) grew `run` by 1.4 MiB a minute at 1,000
 * streams (bench/soak.sh).
 */
#include "sb/recstats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void sb_recstats_init(struct sb_recstats *s)
{
    memset(s, 0, sizeof(*s));
    sb_hist_init(&s->prompt_tokens, 1);
}

void sb_recstats_release(struct sb_recstats *s)
{
    free(s->span);
    sb_hist_release(&s->prompt_tokens);
    sb_recstats_init(s);
}

static bool grow(struct sb_recstats *s, size_t need)
{
    if (need <= s->cap_span)
        return true;
    size_t nc = s->cap_span ? s->cap_span : 1024;
    while (nc < need)
        nc *= 2;
    struct sb_recstats_span *ns = realloc(s->span, nc * sizeof(*ns));
    if (!ns)
        return false;
    s->span = ns;
    s->cap_span = nc;
    return true;
}

void sb_recstats_add(struct sb_recstats *s, const struct sb_record *r)
{
    bool busy = r->t_send_ns && r->t_last_byte_ns >= r->t_send_ns;
    if (busy || r->ok) {
        if (grow(s, s->n_span + 1))
            s->span[s->n_span++] = (struct sb_recstats_span){r->t_send_ns, r->t_last_byte_ns,
                                                             r->output_tokens, busy, r->ok};
        else
            s->oom = true;
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
    sb_hist_add(&s->prompt_tokens, (double)r->prompt_tokens);
    if (s->prompt_tokens.oom)
        s->oom = true;
}

/* sb_tput_add's test, on the same doubles, so a folded completion counts exactly as it would. */
static bool after_start(uint64_t t_ns, uint64_t w0_ns)
{
    return (double)t_ns / 1e9 >= (double)w0_ns / 1e9;
}

size_t sb_recstats_fold(struct sb_recstats *s, uint64_t w0_ns, uint64_t horizon_ns)
{
    if (s->fold_w0_ns && s->fold_w0_ns != w0_ns)
        return s->n_span;
    s->fold_w0_ns = w0_ns;
    size_t keep = 0;
    for (size_t i = 0; i < s->n_span; i++) {
        const struct sb_recstats_span *sp = &s->span[i];
        if (sp->last_byte_ns >= horizon_ns) {
            s->span[keep++] = *sp;
            continue;
        }
        if (sp->busy) {
            uint64_t a = sp->send_ns > w0_ns ? sp->send_ns : w0_ns;
            if (sp->last_byte_ns > a)
                s->busy_ns += sp->last_byte_ns - a;
        }
        if (sp->done && after_start(sp->last_byte_ns, w0_ns)) {
            s->done_n++;
            if (sp->output_tokens > 0)
                s->done_output_tokens += sp->output_tokens;
        }
    }
    s->n_span = keep;
    return keep;
}

void sb_recstats_merge(struct sb_recstats *dst, struct sb_recstats *src)
{
    if (src->n_span) {
        if (grow(dst, dst->n_span + src->n_span)) {
            memcpy(dst->span + dst->n_span, src->span, src->n_span * sizeof(*src->span));
            dst->n_span += src->n_span;
        } else {
            dst->oom = true;
        }
    }
    if (src->fold_w0_ns) {
        if (dst->fold_w0_ns && dst->fold_w0_ns != src->fold_w0_ns)
            dst->oom = true; /* cannot happen: every loop folds against the one window start */
        dst->fold_w0_ns = src->fold_w0_ns;
    }
    dst->busy_ns += src->busy_ns;
    dst->done_n += src->done_n;
    dst->done_output_tokens += src->done_output_tokens;
    if (sb_hist_merge(&dst->prompt_tokens, &src->prompt_tokens) != 0)
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
    if (w1_ns <= w0_ns || (s->fold_w0_ns && s->fold_w0_ns != w0_ns))
        return NAN;
    double busy_ns = (double)s->busy_ns;
    for (size_t i = 0; i < s->n_span; i++) {
        if (!s->span[i].busy)
            continue;
        uint64_t a = s->span[i].send_ns > w0_ns ? s->span[i].send_ns : w0_ns;
        uint64_t b = s->span[i].last_byte_ns < w1_ns ? s->span[i].last_byte_ns : w1_ns;
        if (b > a)
            busy_ns += (double)(b - a);
    }
    return busy_ns / (double)(w1_ns - w0_ns);
}

void sb_recstats_tput(const struct sb_recstats *s, struct sb_tput *t)
{
    t->completed += s->done_n;
    t->output_tokens += s->done_output_tokens;
    for (size_t i = 0; i < s->n_span; i++)
        if (s->span[i].done)
            sb_tput_add(t, (double)s->span[i].last_byte_ns / 1e9, s->span[i].output_tokens);
}

double sb_recstats_prompt_tokens_median(const struct sb_recstats *s)
{
    return sb_hist_percentile(&s->prompt_tokens, 50);
}
