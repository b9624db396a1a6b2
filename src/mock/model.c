/*
 * The mock's continuous-batching scheduler and its cost model (see sb/mock_model.h). Kept free of
 * sockets and timers so scripted arrivals can be replayed in unit tests.
 *
 * The token budget follows vLLM's V1 scheduler (vllm/v1/core/sched/scheduler.py, schedule()):
 * "First, schedule the RUNNING requests" while token_budget > 0, each taking its remaining tokens
 * (1 for a decode, the rest of a prompt being chunked) capped by the budget; "Next, schedule the
 * WAITING requests" while token_budget > 0 and fewer than max_num_running_reqs run, each taking
 * min(num_new_tokens, token_budget) with chunked prefill. TensorRT-LLM's MicroBatchScheduler
 * (cpp/tensorrt_llm/batch_manager/microBatchScheduler.cpp) does the same under max_num_tokens:
 * generation requests first (one token each), then context requests chunked into the capacity
 * left (its FIRST_COME_FIRST_SERVED policy; it rounds a cut chunk down to the KV block size,
 * which the mock does not).
 */
#include "sb/mock_model.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>

static uint64_t ms_to_ns(double ms)
{
    return ms <= 0 ? 0 : (uint64_t)llround(ms * 1e6);
}

uint64_t sb_mock_prefill_ns(const struct sb_mock_timing *t, long long uncached_tokens)
{
    if (uncached_tokens < 0)
        uncached_tokens = 0;
    return ms_to_ns(t->prefill_base_ms + t->prefill_per_token_us * (double)uncached_tokens / 1e3);
}

uint64_t sb_mock_decode_step_ns(const struct sb_mock_timing *t, size_t running)
{
    if (running == 0)
        return 0;
    return ms_to_ns(t->decode_base_ms + t->decode_per_seq_us * (double)running / 1e3);
}

double sb_mock_draw_scale(struct sb_rng *r, double sd_frac)
{
    if (!(sd_frac > 0))
        return 1.0;
    /* Box-Muller; 1 - u keeps the logarithm's argument in (0, 1]. */
    double u1 = sb_rng_uniform(r), u2 = sb_rng_uniform(r);
    double z = sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * M_PI * u2);
    double v = 1.0 + sd_frac * z;
    /* llm-d-inference-sim pkg/common/utils.go RandomNormTruncated: a draw more than 70 % away
       from the mean is clamped to 0.3 or 1.7 x the mean, not drawn again. */
    return v < 0.3 ? 0.3 : v > 1.7 ? 1.7 : v;
}

/* The prefill time of n prompt tokens of s, the base cost with the first chunk: a prompt whole in
   one chunk costs exactly sb_mock_prefill_ns() x its scale. */
static uint64_t chunk_ns(const struct sb_mock_timing *t, const struct sb_mock_seq *s, bool first,
                         long long n)
{
    double ms = (first ? t->prefill_base_ms : 0) + t->prefill_per_token_us * (double)n / 1e3;
    return ms_to_ns(ms * s->prefill_scale);
}

int sb_mock_engine_init(struct sb_mock_engine *e, const struct sb_mock_timing *t, size_t max_seqs,
                        size_t max_queue)
{
    *e = (struct sb_mock_engine){0};
    if (max_seqs == 0)
        return -1;
    e->batch = calloc(max_seqs, sizeof(*e->batch));
    if (!e->batch)
        return -1;
    e->timing = *t;
    e->max_seqs = max_seqs;
    e->max_queue = max_queue;
    sb_rng_seed(&e->rng, 0);
    return 0;
}

void sb_mock_engine_set_budget(struct sb_mock_engine *e, long long max_batched_tokens)
{
    e->max_batched_tokens = max_batched_tokens > 0 ? max_batched_tokens : 0;
}

void sb_mock_engine_seed(struct sb_mock_engine *e, uint64_t seed)
{
    sb_rng_seed(&e->rng, seed);
}

void sb_mock_engine_release(struct sb_mock_engine *e)
{
    free(e->batch);
    e->batch = NULL;
}

static void unlink_waiting(struct sb_mock_engine *e, struct sb_mock_seq *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        e->wait_head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    else
        e->wait_tail = s->prev;
    s->next = s->prev = NULL;
    e->nwaiting--;
}

enum sb_mock_submit sb_mock_engine_submit(struct sb_mock_engine *e, struct sb_mock_seq *seq,
                                          uint64_t now_ns)
{
    /* A free slot with nobody ahead counts as room even when max_queue is 0. */
    size_t free_slots = e->max_seqs - e->nbatch;
    if (e->nwaiting >= free_slots + e->max_queue)
        return SB_SUBMIT_REJECTED;
    seq->state = SB_SEQ_WAITING;
    seq->enqueue_ns = now_ns;
    seq->next = NULL;
    seq->prev = e->wait_tail;
    if (e->wait_tail)
        e->wait_tail->next = seq;
    else
        e->wait_head = seq;
    e->wait_tail = seq;
    e->nwaiting++;
    return SB_SUBMIT_QUEUED;
}

bool sb_mock_engine_has_work(const struct sb_mock_engine *e)
{
    return e->nbatch > 0 || e->nwaiting > 0;
}

/* Schedules the next chunk of s's prompt (first: at its admission) under *budget; returns its
   prefill time. A prompt with nothing left to prefill (all cached) still takes one token, as vLLM
   always computes the last prompt token. */
static uint64_t schedule_chunk(struct sb_mock_engine *e, struct sb_mock_seq *s, bool first,
                               long long *budget)
{
    long long n = s->prefill_left < *budget ? s->prefill_left : *budget;
    *budget -= n > 0 ? n : 1;
    s->prefill_left -= n;
    s->chunk_tokens = n;
    s->prefilling = true;
    s->emits = s->prefill_left == 0;
    if (!s->emits)
        e->chunked_prefills++;
    return chunk_ns(&e->timing, s, first, n);
}

uint64_t sb_mock_engine_begin_with(struct sb_mock_engine *e, uint64_t now_ns,
                                   sb_mock_admit_fn admit, void *arg)
{
    long long budget = e->max_batched_tokens > 0 ? e->max_batched_tokens : LLONG_MAX;
    long long start = budget;
    uint64_t extra = 0;
    size_t emitting = 0;
    /* Running sequences first, in admission order: a decode token each, or a prompt's next chunk;
       once the budget is spent the rest sit this iteration out. */
    for (size_t i = 0; i < e->nbatch; i++) {
        struct sb_mock_seq *s = e->batch[i];
        s->prefilling = s->emits = false;
        s->chunk_tokens = 0;
        if (budget <= 0)
            continue;
        if (s->prefill_left > 0) {
            extra += schedule_chunk(e, s, false, &budget);
        } else {
            budget--;
            s->emits = true;
        }
        emitting += s->emits;
    }
    /* Then waiting ones into free slots while budget is left. */
    while (e->nbatch < e->max_seqs && e->wait_head && budget > 0) {
        struct sb_mock_seq *s = e->wait_head;
        if (admit) {
            int64_t cost = admit(s, arg);
            if (cost == SB_MOCK_ADMIT_WAIT)
                break;
            if (cost > 0)
                extra += (uint64_t)cost;
        }
        unlink_waiting(e, s);
        s->state = SB_SEQ_RUNNING;
        s->admit_ns = now_ns;
        s->prefill_left = s->uncached_tokens > 0 ? s->uncached_tokens : 0;
        s->prefill_scale = sb_mock_draw_scale(&e->rng, e->timing.prefill_sd_frac);
        e->batch[e->nbatch++] = s;
        extra += schedule_chunk(e, s, true, &budget);
        emitting += s->emits;
    }
    e->in_iteration = true;
    e->iterations++;
    e->batched_tokens = start - budget;
    uint64_t decode = sb_mock_decode_step_ns(&e->timing, emitting);
    if (decode > 0 && e->timing.decode_sd_frac > 0)
        decode = (uint64_t)llround((double)decode *
                                   sb_mock_draw_scale(&e->rng, e->timing.decode_sd_frac));
    return extra + decode;
}

uint64_t sb_mock_engine_begin(struct sb_mock_engine *e, uint64_t now_ns)
{
    return sb_mock_engine_begin_with(e, now_ns, NULL, NULL);
}

void sb_mock_engine_end(struct sb_mock_engine *e, uint64_t now_ns, sb_mock_token_fn on_token,
                        sb_mock_drop_fn drop, void *arg)
{
    size_t kept = 0;
    for (size_t i = 0; i < e->nbatch; i++) {
        struct sb_mock_seq *s = e->batch[i];
        bool finished;
        if (s->cancelled) {
            s->state = SB_SEQ_DONE;
            if (drop)
                drop(s, arg);
            continue;
        }
        s->prefilling = false;
        if (!s->emits) {
            e->batch[kept++] = s; /* mid-prefill, or left out by the budget */
            continue;
        }
        s->emits = false;
        finished = on_token(s, now_ns, arg); /* may free s when it returns true */
        if (finished)
            continue;
        e->batch[kept++] = s;
    }
    e->nbatch = kept;
    e->in_iteration = false;
}

bool sb_mock_engine_cancel(struct sb_mock_engine *e, struct sb_mock_seq *seq)
{
    if (seq->state == SB_SEQ_WAITING) {
        unlink_waiting(e, seq);
        seq->state = SB_SEQ_DONE;
        seq->cancelled = true;
        return true;
    }
    if (seq->state == SB_SEQ_RUNNING) {
        seq->cancelled = true;
        return false;
    }
    return true; /* never submitted, or already done */
}
