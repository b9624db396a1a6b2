/*
 * The mock's continuous-batching scheduler and its cost model (see sb/mock_model.h). Kept free of
 * sockets and timers so scripted arrivals can be replayed in unit tests.
 */
#include "sb/mock_model.h"

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
    return 0;
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

uint64_t sb_mock_engine_begin_with(struct sb_mock_engine *e, uint64_t now_ns,
                                   sb_mock_admit_fn admit, void *arg)
{
    uint64_t extra = 0;
    while (e->nbatch < e->max_seqs && e->wait_head) {
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
        s->prefilling = true;
        s->admit_ns = now_ns;
        e->batch[e->nbatch++] = s;
        extra += sb_mock_prefill_ns(&e->timing, s->uncached_tokens);
    }
    e->in_iteration = true;
    e->iterations++;
    return extra + sb_mock_decode_step_ns(&e->timing, e->nbatch);
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
