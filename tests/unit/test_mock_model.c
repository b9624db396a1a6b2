/*
 * Unit tests for sb/mock_model.h: the prefill/decode cost formulas and the continuous-batching
 * engine (admission order, the bounded queue, cancellation, the token budget and chunked prefill)
 * driven by a virtual clock, so every expected time below is exact and worked out by hand in the
 * comments; and the variation draws, measured over many draws with a fixed seed.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sb/mock_model.h"
#include "sb/util.h"

#define MS(x) ((uint64_t)((x)*1000000.0 + 0.5))

static void test_prefill_ns(void **state)
{
    (void)state;
    static const struct {
        struct sb_mock_timing t;
        long long tokens;
        uint64_t want;
    } cases[] = {
        {{.prefill_base_ms = 0, .prefill_per_token_us = 0}, 1000, 0},
        {{.prefill_base_ms = 10, .prefill_per_token_us = 0}, 1000, 10000000},
        /* 10 ms + 50 us x 1000 = 60 ms */
        {{.prefill_base_ms = 10, .prefill_per_token_us = 50}, 1000, 60000000},
        /* 2 ms + 10 us x 100 = 3 ms */
        {{.prefill_base_ms = 2, .prefill_per_token_us = 10}, 100, 3000000},
        /* 0.25 us x 3 = 0.75 us */
        {{.prefill_base_ms = 0, .prefill_per_token_us = 0.25}, 3, 750},
        /* 0.6 ns rounds to 1 ns */
        {{.prefill_base_ms = 0, .prefill_per_token_us = 0.0006}, 1, 1},
        /* no uncached tokens: the base cost alone */
        {{.prefill_base_ms = 1.5, .prefill_per_token_us = 40}, 0, 1500000},
        /* negative token counts are clamped to 0 */
        {{.prefill_base_ms = 1.5, .prefill_per_token_us = 40}, -7, 1500000},
        /* a negative total is clamped to 0 */
        {{.prefill_base_ms = -5, .prefill_per_token_us = 1}, 10, 0},
        /* 131072 tokens x 20 us = 2621.44 ms, plus 5 ms */
        {{.prefill_base_ms = 5, .prefill_per_token_us = 20}, 131072, 2626440000ull},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++)
        assert_int_equal(sb_mock_prefill_ns(&cases[i].t, cases[i].tokens), cases[i].want);
}

static void test_decode_step_ns(void **state)
{
    (void)state;
    static const struct {
        struct sb_mock_timing t;
        size_t running;
        uint64_t want;
    } cases[] = {
        /* an empty batch costs nothing, whatever the base */
        {{.decode_base_ms = 5, .decode_per_seq_us = 20}, 0, 0},
        /* 5 ms + 20 us */
        {{.decode_base_ms = 5, .decode_per_seq_us = 20}, 1, 5020000},
        /* 5 ms + 4 x 20 us = 5.08 ms */
        {{.decode_base_ms = 5, .decode_per_seq_us = 20}, 4, 5080000},
        /* 4 ms + 256 x 500 us = 132 ms */
        {{.decode_base_ms = 4, .decode_per_seq_us = 500}, 256, 132000000},
        {{.decode_base_ms = 0, .decode_per_seq_us = 0}, 8, 0},
        {{.decode_base_ms = 0, .decode_per_seq_us = 0.001}, 3, 3},
        {{.decode_base_ms = -1, .decode_per_seq_us = 0}, 3, 0},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++)
        assert_int_equal(sb_mock_decode_step_ns(&cases[i].t, cases[i].running), cases[i].want);
}

/* ---- the engine, step by step ---- */

/* What the callbacks saw, in call order. */
struct trace {
    struct sb_mock_seq *tokens[16];
    uint64_t token_ns[16];
    size_t ntokens;
    struct sb_mock_seq *dropped[16];
    size_t ndropped;
    struct sb_mock_seq *finish; /* on_token returns true for this one */
};

static bool trace_token(struct sb_mock_seq *seq, uint64_t now_ns, void *arg)
{
    struct trace *t = arg;
    assert_true(t->ntokens < SB_ARRAY_SIZE(t->tokens));
    assert_int_equal(seq->state, SB_SEQ_RUNNING);
    assert_false(seq->prefilling);
    t->token_ns[t->ntokens] = now_ns;
    t->tokens[t->ntokens++] = seq;
    return seq == t->finish;
}

static void trace_drop(struct sb_mock_seq *seq, void *arg)
{
    struct trace *t = arg;
    assert_true(t->ndropped < SB_ARRAY_SIZE(t->dropped));
    assert_int_equal(seq->state, SB_SEQ_DONE);
    t->dropped[t->ndropped++] = seq;
}

static const struct sb_mock_timing step_timing = {
    .prefill_base_ms = 1,
    .prefill_per_token_us = 10,
    .decode_base_ms = 2,
    .decode_per_seq_us = 100,
};

static void test_engine_init(void **state)
{
    (void)state;
    struct sb_mock_engine e;
    assert_int_equal(sb_mock_engine_init(&e, &step_timing, 0, 4), -1);
    sb_mock_engine_release(&e);
    assert_int_equal(sb_mock_engine_init(&e, &step_timing, 3, 0), 0);
    assert_int_equal(e.max_seqs, 3);
    assert_int_equal(e.max_queue, 0);
    assert_false(sb_mock_engine_has_work(&e));
    /* An idle iteration admits nothing and costs nothing. */
    assert_int_equal(sb_mock_engine_begin(&e, 0), 0);
    sb_mock_engine_end(&e, 0, trace_token, trace_drop, NULL);
    assert_false(sb_mock_engine_has_work(&e));
    sb_mock_engine_release(&e);
    assert_null(e.batch);
}

static void test_engine_submit_limit(void **state)
{
    (void)state;
    struct sb_mock_engine e;
    struct sb_mock_seq s[5];
    memset(s, 0, sizeof(s));
    assert_int_equal(sb_mock_engine_init(&e, &step_timing, 2, 1), 0);
    /* Room = free slots (2) + max_queue (1): three wait, the fourth is turned away. */
    assert_int_equal(sb_mock_engine_submit(&e, &s[0], 10), SB_SUBMIT_QUEUED);
    assert_true(sb_mock_engine_has_work(&e));
    assert_int_equal(sb_mock_engine_submit(&e, &s[1], 11), SB_SUBMIT_QUEUED);
    assert_int_equal(sb_mock_engine_submit(&e, &s[2], 12), SB_SUBMIT_QUEUED);
    assert_int_equal(sb_mock_engine_submit(&e, &s[3], 13), SB_SUBMIT_REJECTED);
    assert_int_equal(e.nwaiting, 3);
    assert_int_equal(s[3].state, SB_SEQ_NEW);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(s[i].state, SB_SEQ_WAITING);
        assert_int_equal(s[i].enqueue_ns, 10 + i);
    }
    /* Two admitted: no free slot left, so only max_queue (1) may wait and one already does. */
    sb_mock_engine_begin(&e, 20);
    assert_int_equal(e.nbatch, 2);
    assert_int_equal(e.nwaiting, 1);
    assert_int_equal(sb_mock_engine_submit(&e, &s[3], 21), SB_SUBMIT_REJECTED);
    sb_mock_engine_release(&e);

    /* max_queue 0 still takes a request when a slot is free, and only then. */
    memset(s, 0, sizeof(s));
    assert_int_equal(sb_mock_engine_init(&e, &step_timing, 1, 0), 0);
    assert_int_equal(sb_mock_engine_submit(&e, &s[0], 0), SB_SUBMIT_QUEUED);
    assert_int_equal(sb_mock_engine_submit(&e, &s[1], 0), SB_SUBMIT_REJECTED);
    sb_mock_engine_begin(&e, 0);
    assert_int_equal(sb_mock_engine_submit(&e, &s[1], 0), SB_SUBMIT_REJECTED);
    sb_mock_engine_release(&e);
}

static void test_engine_iterations(void **state)
{
    (void)state;
    struct sb_mock_engine e;
    struct sb_mock_seq s[3];
    struct trace tr;
    memset(s, 0, sizeof(s));
    memset(&tr, 0, sizeof(tr));
    s[0].uncached_tokens = 100; /* prefill 1 ms + 1 ms = 2 ms */
    s[1].uncached_tokens = 300; /* 1 ms + 3 ms = 4 ms */
    s[2].uncached_tokens = 0;   /* 1 ms */
    assert_int_equal(sb_mock_engine_init(&e, &step_timing, 2, 1), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(sb_mock_engine_submit(&e, &s[i], 0), SB_SUBMIT_QUEUED);

    /* Iteration 1 at 1000 ns admits s0 and s1 in FIFO order: 2 + 4 + decode(2) 2.2 = 8.2 ms. */
    uint64_t d = sb_mock_engine_begin(&e, 1000);
    assert_int_equal(d, 8200000);
    assert_int_equal(d, sb_mock_prefill_ns(&step_timing, 100) +
                            sb_mock_prefill_ns(&step_timing, 300) +
                            sb_mock_decode_step_ns(&step_timing, 2));
    assert_true(e.in_iteration);
    assert_int_equal(e.iterations, 1);
    assert_int_equal(e.nbatch, 2);
    assert_ptr_equal(e.batch[0], &s[0]);
    assert_ptr_equal(e.batch[1], &s[1]);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(s[i].state, SB_SEQ_RUNNING);
        assert_true(s[i].prefilling);
        assert_int_equal(s[i].admit_ns, 1000);
    }
    assert_int_equal(s[2].state, SB_SEQ_WAITING);
    assert_ptr_equal(e.wait_head, &s[2]);

    /* End: both produce a token; s0 finishes and gives its slot back. */
    tr.finish = &s[0];
    sb_mock_engine_end(&e, 1000 + d, trace_token, trace_drop, &tr);
    assert_false(e.in_iteration);
    assert_int_equal(tr.ntokens, 2);
    assert_ptr_equal(tr.tokens[0], &s[0]);
    assert_ptr_equal(tr.tokens[1], &s[1]);
    assert_int_equal(tr.token_ns[0], 1000 + d);
    assert_int_equal(tr.ndropped, 0);
    assert_int_equal(e.nbatch, 1);
    assert_ptr_equal(e.batch[0], &s[1]);
    assert_false(s[1].prefilling);

    /* Iteration 2 admits s2 into the freed slot: prefill 1 ms + decode(2) 2.2 ms. */
    d = sb_mock_engine_begin(&e, 9000000);
    assert_int_equal(d, 3200000);
    assert_int_equal(e.nbatch, 2);
    assert_ptr_equal(e.batch[1], &s[2]);
    assert_false(s[1].prefilling);
    assert_true(s[2].prefilling);
    assert_int_equal(s[2].admit_ns, 9000000);
    assert_int_equal(e.nwaiting, 0);
    assert_null(e.wait_head);
    assert_null(e.wait_tail);
    tr.ntokens = 0;
    tr.finish = &s[2];
    sb_mock_engine_end(&e, 9000000 + d, trace_token, trace_drop, &tr);
    assert_int_equal(tr.ntokens, 2);
    assert_ptr_equal(tr.tokens[0], &s[1]);
    assert_ptr_equal(tr.tokens[1], &s[2]);
    assert_int_equal(e.nbatch, 1);

    /* Iteration 3: nothing to admit, decode(1) alone = 2.1 ms; s1 finishes, the engine idles. */
    d = sb_mock_engine_begin(&e, 20000000);
    assert_int_equal(d, 2100000);
    tr.ntokens = 0;
    tr.finish = &s[1];
    assert_true(sb_mock_engine_has_work(&e));
    sb_mock_engine_end(&e, 20000000 + d, trace_token, trace_drop, &tr);
    assert_int_equal(tr.ntokens, 1);
    assert_int_equal(e.nbatch, 0);
    assert_false(sb_mock_engine_has_work(&e));
    assert_int_equal(e.iterations, 3);
    sb_mock_engine_release(&e);
}

static void test_engine_cancel(void **state)
{
    (void)state;
    struct sb_mock_engine e;
    struct sb_mock_seq s[5];
    struct trace tr;
    memset(s, 0, sizeof(s));
    memset(&tr, 0, sizeof(tr));
    assert_int_equal(sb_mock_engine_init(&e, &step_timing, 1, 3), 0);

    /* Never submitted: nothing to let go of. */
    assert_true(sb_mock_engine_cancel(&e, &s[4]));

    for (int i = 0; i < 4; i++)
        assert_int_equal(sb_mock_engine_submit(&e, &s[i], 0), SB_SUBMIT_QUEUED);
    sb_mock_engine_begin(&e, 0); /* s0 runs; s1 s2 s3 wait */
    assert_ptr_equal(e.batch[0], &s[0]);

    /* A waiting one leaves at once; the others keep their order. */
    assert_true(sb_mock_engine_cancel(&e, &s[1]));
    assert_int_equal(s[1].state, SB_SEQ_DONE);
    assert_true(s[1].cancelled);
    assert_int_equal(e.nwaiting, 2);
    assert_ptr_equal(e.wait_head, &s[2]);
    assert_ptr_equal(s[2].next, &s[3]);
    assert_null(s[2].prev);
    assert_ptr_equal(e.wait_tail, &s[3]);
    assert_ptr_equal(s[3].prev, &s[2]);
    /* Cancelling it again is harmless. */
    assert_true(sb_mock_engine_cancel(&e, &s[1]));
    assert_int_equal(e.nwaiting, 2);

    /* The tail too. */
    assert_true(sb_mock_engine_cancel(&e, &s[3]));
    assert_ptr_equal(e.wait_head, &s[2]);
    assert_ptr_equal(e.wait_tail, &s[2]);
    assert_null(s[2].next);
    assert_int_equal(e.nwaiting, 1);

    /* A running one stays until the iteration ends, then goes to drop, not on_token. */
    assert_false(sb_mock_engine_cancel(&e, &s[0]));
    assert_true(s[0].cancelled);
    assert_int_equal(s[0].state, SB_SEQ_RUNNING);
    assert_int_equal(e.nbatch, 1);
    sb_mock_engine_end(&e, 5, trace_token, trace_drop, &tr);
    assert_int_equal(tr.ntokens, 0);
    assert_int_equal(tr.ndropped, 1);
    assert_ptr_equal(tr.dropped[0], &s[0]);
    assert_int_equal(s[0].state, SB_SEQ_DONE);
    assert_int_equal(e.nbatch, 0);
    assert_true(sb_mock_engine_has_work(&e));

    /* The freed slot goes to the next in line, s2 (s1 and s3 are gone). */
    sb_mock_engine_begin(&e, 10);
    assert_ptr_equal(e.batch[0], &s[2]);
    assert_int_equal(e.nwaiting, 0);
    assert_false(sb_mock_engine_cancel(&e, &s[2]));
    /* drop may be NULL: the cancelled sequence is still let go of. */
    sb_mock_engine_end(&e, 20, trace_token, NULL, &tr);
    assert_int_equal(tr.ntokens, 0);
    assert_int_equal(s[2].state, SB_SEQ_DONE);
    assert_false(sb_mock_engine_has_work(&e));
    /* Done sequences: cancel reports that the engine does not hold them. */
    assert_true(sb_mock_engine_cancel(&e, &s[2]));
    sb_mock_engine_release(&e);
}

/* ---- a scripted simulation with a virtual clock ---- */

#define SIM_MAX 8

struct sim_req {
    struct sb_mock_seq seq;
    long long want;   /* tokens to produce */
    uint64_t arrival; /* submitted when the clock reaches it */
    long long got;
    uint64_t first_ns, last_ns;
};

static bool sim_token(struct sb_mock_seq *seq, uint64_t now_ns, void *arg)
{
    (void)arg;
    struct sim_req *r = seq->owner;
    if (r->got++ == 0)
        r->first_ns = now_ns;
    r->last_ns = now_ns;
    return r->got == r->want;
}

/*
 * Runs n requests to completion: before each iteration every request that has arrived is
 * submitted; the clock jumps to the next arrival when the engine idles, else moves by the
 * iteration's duration.
 */
static void simulate(const struct sb_mock_timing *t, size_t max_seqs, struct sim_req *r, size_t n)
{
    struct sb_mock_engine e;
    assert_int_equal(sb_mock_engine_init(&e, t, max_seqs, SIM_MAX), 0);
    uint64_t now = 0;
    size_t next = 0;
    for (int guard = 0; guard < 1000; guard++) {
        while (next < n && r[next].arrival <= now) {
            r[next].seq.owner = &r[next];
            assert_int_equal(sb_mock_engine_submit(&e, &r[next].seq, r[next].arrival),
                             SB_SUBMIT_QUEUED);
            next++;
        }
        if (!sb_mock_engine_has_work(&e)) {
            if (next == n)
                break;
            now = r[next].arrival;
            continue;
        }
        now += sb_mock_engine_begin(&e, now);
        sb_mock_engine_end(&e, now, sim_token, NULL, NULL);
    }
    assert_false(sb_mock_engine_has_work(&e));
    sb_mock_engine_release(&e);
}

static void test_engine_simulation(void **state)
{
    (void)state;
    /* prefill(100 tokens) = 2 ms + 100 x 10 us = 3 ms; decode(1) = 4.5 ms, decode(2) = 5 ms. */
    static const struct sb_mock_timing t = {
        .prefill_base_ms = 2,
        .prefill_per_token_us = 10,
        .decode_base_ms = 4,
        .decode_per_seq_us = 500,
    };
    static const struct {
        const char *name;
        size_t n;
        long long want[SIM_MAX];
        double arrival_ms[SIM_MAX];
        double admit_ms[SIM_MAX], first_ms[SIM_MAX], last_ms[SIM_MAX];
    } cases[] = {
        /* alone: 3 + 4.5 = 7.5 to the first token, then 4.5 per token: 12, 16.5 */
        {"one", 1, {3}, {0}, {0}, {7.5}, {16.5}},
        /* two fit the batch: 3 + 3 + 5 = 11, then 16, 21 */
        {"two", 2, {3, 3}, {0, 0}, {0, 0}, {11, 11}, {21, 21}},
        /*
         * Three, two slots: r0 r1 as above and done at 21; r2 waits 21 ms, then alone:
         * 21 + 3 + 4.5 = 28.5, 33, 37.5.
         */
        {"three", 3, {3, 3, 3}, {0, 0, 0}, {0, 0, 21}, {11, 11, 28.5}, {21, 21, 37.5}},
        /* Four, two slots: r2 r3 wait 21 ms, then 21 + 3 + 3 + 5 = 32, 37, 42. */
        {"four", 4, {3, 3, 3, 3}, {0, 0, 0, 0}, {0, 0, 21, 21}, {11, 11, 32, 32}, {21, 21, 42, 42}},
        /*
         * Continuous batching: r0 wants one token and leaves at 11, so r2 joins r1 at once:
         * 11 + 3 + 5 = 19 (r1's second token, r2's first); 19 + 5 = 24 both done.
         */
        {"join", 3, {1, 3, 2}, {0, 0, 0}, {0, 0, 11}, {11, 11, 19}, {11, 24, 24}},
        /*
         * r1 arrives at 5 ms during r0's first iteration (3 + 4.5 = 7.5) and is admitted at its
         * end: 7.5 + 3 + 5 = 15.5 (r0 done, r1's first), 15.5 + 4.5 = 20 r1 done.
         */
        {"arrival", 2, {2, 2}, {0, 5}, {0, 7.5}, {7.5, 15.5}, {15.5, 20}},
        /*
         * Spread arrivals never queue: r0 alone 0..16.5; r1 arrives at 30 on an idle engine:
         * 30 + 7.5 = 37.5, then 42.
         */
        {"idle", 2, {3, 2}, {0, 30}, {0, 30}, {7.5, 37.5}, {16.5, 42}},
    };
    for (size_t c = 0; c < SB_ARRAY_SIZE(cases); c++) {
        struct sim_req r[SIM_MAX];
        memset(r, 0, sizeof(r));
        for (size_t i = 0; i < cases[c].n; i++) {
            r[i].want = cases[c].want[i];
            r[i].arrival = MS(cases[c].arrival_ms[i]);
            r[i].seq.uncached_tokens = 100;
        }
        simulate(&t, 2, r, cases[c].n);
        for (size_t i = 0; i < cases[c].n; i++) {
            print_message("case %s request %zu\n", cases[c].name, i);
            assert_int_equal(r[i].got, cases[c].want[i]);
            assert_int_equal(r[i].seq.enqueue_ns, MS(cases[c].arrival_ms[i]));
            assert_int_equal(r[i].seq.admit_ns, MS(cases[c].admit_ms[i]));
            assert_int_equal(r[i].first_ns, MS(cases[c].first_ms[i]));
            assert_int_equal(r[i].last_ns, MS(cases[c].last_ms[i]));
        }
    }
}

/* The knee: up to max_seqs concurrent users nobody queues; past it, time-to-first-token jumps. */
static void test_engine_queue_knee(void **state)
{
    (void)state;
    static const struct sb_mock_timing t = {
        .prefill_base_ms = 2,
        .prefill_per_token_us = 10,
        .decode_base_ms = 4,
        .decode_per_seq_us = 500,
    };
    const size_t max_seqs = 4;
    uint64_t worst_ttft[SIM_MAX + 1] = {0};
    for (size_t n = 1; n <= SIM_MAX; n++) {
        struct sim_req r[SIM_MAX];
        memset(r, 0, sizeof(r));
        for (size_t i = 0; i < n; i++) {
            r[i].want = 4;
            r[i].seq.uncached_tokens = 100;
        }
        simulate(&t, max_seqs, r, n);
        uint64_t worst_queue = 0;
        for (size_t i = 0; i < n; i++) {
            uint64_t q = r[i].seq.admit_ns - r[i].seq.enqueue_ns;
            worst_queue = q > worst_queue ? q : worst_queue;
            worst_ttft[n] = r[i].first_ns > worst_ttft[n] ? r[i].first_ns : worst_ttft[n];
        }
        /*
         * n <= 4: all admitted at 0; first token after n prefills and one decode step:
         * 3n + 4 + 0.5n ms. n > 4: the first four run 4 iterations, 12 + 6 = 18 ms, then
         * 3 x 6 = 18 more: the rest wait 36 ms, and their first token comes
         * 36 + 3(n-4) + 4 + 0.5(n-4) ms.
         */
        if (n <= max_seqs) {
            assert_int_equal(worst_queue, 0);
            assert_int_equal(worst_ttft[n], MS(3.5 * (double)n + 4));
        } else {
            assert_int_equal(worst_queue, MS(36));
            assert_int_equal(worst_ttft[n], MS(36 + 3.5 * (double)(n - 4) + 4));
        }
    }
    /*
     * Below the knee TTFT grows by 3.5 ms a user; across it, it jumps from 18 ms to 43.5 ms
     * because the fifth user waits for a whole generation of the first four.
     */
    assert_int_equal(worst_ttft[4] - worst_ttft[3], MS(3.5));
    assert_int_equal(worst_ttft[5] - worst_ttft[4], MS(25.5));
}

/* ---- the token budget and chunked prefill ---- */

static void test_engine_budget_chunks(void **state)
{
    (void)state;
    struct sb_mock_engine e;
    struct sb_mock_seq s[3];
    struct trace tr;
    memset(s, 0, sizeof(s));
    memset(&tr, 0, sizeof(tr));
    /* step_timing: prefill 1 ms + 10 us a token, decode 2 ms + 100 us a sequence. */
    assert_int_equal(sb_mock_engine_init(&e, &step_timing, 4, 4), 0);
    sb_mock_engine_set_budget(&e, 300);
    s[0].uncached_tokens = 500;
    s[1].uncached_tokens = 100;
    s[2].uncached_tokens = 250;
    for (int i = 0; i < 3; i++)
        assert_int_equal(sb_mock_engine_submit(&e, &s[i], 0), SB_SUBMIT_QUEUED);

    /*
     * Iteration 1: s0 takes the whole budget, 300 of its 500 tokens: 1 ms + 3 ms = 4 ms, no
     * token yet, so no decode step. s1 finds no budget left and waits, slots or not.
     */
    uint64_t d = sb_mock_engine_begin(&e, 0);
    assert_int_equal(d, MS(4));
    assert_int_equal(e.nbatch, 1);
    assert_int_equal(e.nwaiting, 2);
    assert_true(s[0].prefilling);
    assert_false(s[0].emits);
    assert_int_equal(s[0].chunk_tokens, 300);
    assert_int_equal(s[0].prefill_left, 200);
    assert_int_equal(e.batched_tokens, 300);
    assert_int_equal(e.chunked_prefills, 1);
    sb_mock_engine_end(&e, d, trace_token, trace_drop, &tr);
    assert_int_equal(tr.ntokens, 0); /* a prompt still being prefilled has no token */
    assert_int_equal(e.nbatch, 1);
    assert_false(s[0].prefilling);

    /*
     * Iteration 2 at 4 ms: s0's last 200 tokens first (2 ms, no base cost again), then s1 whole in
     * the 100 left (1 + 1 = 2 ms); s2 gets nothing. Both produce their first token: decode(2)
     * 2.2 ms. 6.2 ms in all; s0's prefill cost 4 + 2 = 6 ms = prefill(500), as unchunked.
     */
    d = sb_mock_engine_begin(&e, MS(4));
    assert_int_equal(d, MS(6.2));
    assert_int_equal(MS(4) + MS(2), sb_mock_prefill_ns(&step_timing, 500));
    assert_int_equal(e.nbatch, 2);
    assert_ptr_equal(e.wait_head, &s[2]);
    assert_int_equal(s[1].admit_ns, MS(4));
    assert_int_equal(s[0].chunk_tokens, 200);
    assert_int_equal(s[1].chunk_tokens, 100);
    assert_int_equal(e.batched_tokens, 300);
    sb_mock_engine_end(&e, MS(10.2), trace_token, trace_drop, &tr);
    assert_int_equal(tr.ntokens, 2);
    assert_ptr_equal(tr.tokens[0], &s[0]);
    assert_ptr_equal(tr.tokens[1], &s[1]);
    assert_int_equal(tr.token_ns[0], MS(10.2));

    /*
     * Iteration 3: two decode tokens first (298 left), then s2 whole: 250 tokens, 1 + 2.5 =
     * 3.5 ms, plus decode(3) 2.3 ms = 5.8 ms.
     */
    d = sb_mock_engine_begin(&e, MS(10.2));
    assert_int_equal(d, MS(5.8));
    assert_int_equal(e.batched_tokens, 252);
    assert_int_equal(e.nbatch, 3);
    assert_int_equal(e.nwaiting, 0);
    tr.ntokens = 0;
    sb_mock_engine_end(&e, MS(16), trace_token, trace_drop, &tr);
    assert_int_equal(tr.ntokens, 3);
    assert_int_equal(e.chunked_prefills, 1);

    /* Decode only: three tokens, decode(3) = 2.3 ms. */
    assert_int_equal(sb_mock_engine_begin(&e, MS(16)), MS(2.3));
    assert_int_equal(e.batched_tokens, 3);
    sb_mock_engine_end(&e, MS(18.3), trace_token, trace_drop, &tr);

    /*
     * A budget smaller than the batch: the running sequences past it sit the iteration out (no
     * token, not in the decode step), as vLLM's running loop stops at token_budget 0.
     */
    sb_mock_engine_set_budget(&e, 2);
    tr.ntokens = 0;
    assert_int_equal(sb_mock_engine_begin(&e, MS(20)), MS(2.2));
    assert_true(s[0].emits);
    assert_true(s[1].emits);
    assert_false(s[2].emits);
    sb_mock_engine_end(&e, MS(22.2), trace_token, trace_drop, &tr);
    assert_int_equal(tr.ntokens, 2);
    assert_ptr_equal(tr.tokens[1], &s[1]);
    assert_int_equal(e.nbatch, 3);

    /* Budget 0 is no budget: everyone decodes. */
    sb_mock_engine_set_budget(&e, 0);
    tr.ntokens = 0;
    assert_int_equal(sb_mock_engine_begin(&e, MS(30)), MS(2.3));
    sb_mock_engine_end(&e, MS(32.3), trace_token, trace_drop, &tr);
    assert_int_equal(tr.ntokens, 3);
    sb_mock_engine_release(&e);
}

static void test_engine_budget_cached_prompt(void **state)
{
    (void)state;
    struct sb_mock_engine e;
    struct sb_mock_seq s[3];
    struct trace tr;
    memset(s, 0, sizeof(s));
    memset(&tr, 0, sizeof(tr));
    /* A fully cached prompt costs the base alone but still takes one token of the budget (vLLM
       recomputes the last prompt token), so a budget of 2 admits two of them, not three. */
    assert_int_equal(sb_mock_engine_init(&e, &step_timing, 3, 3), 0);
    sb_mock_engine_set_budget(&e, 2);
    for (int i = 0; i < 3; i++)
        assert_int_equal(sb_mock_engine_submit(&e, &s[i], 0), SB_SUBMIT_QUEUED);
    /* 1 ms + 1 ms + decode(2) 2.2 ms */
    assert_int_equal(sb_mock_engine_begin(&e, 0), MS(4.2));
    assert_int_equal(e.nbatch, 2);
    assert_int_equal(e.nwaiting, 1);
    sb_mock_engine_end(&e, MS(4.2), trace_token, trace_drop, &tr);
    assert_int_equal(tr.ntokens, 2);
    /* Next: two decode tokens spend the budget; s2 still waits although a slot is free. */
    assert_int_equal(sb_mock_engine_begin(&e, MS(4.2)), MS(2.2));
    assert_int_equal(e.nwaiting, 1);
    tr.finish = &s[0];
    sb_mock_engine_end(&e, MS(6.4), trace_token, trace_drop, &tr);
    /* s0 left: one decode token, and s2 in the token left. */
    assert_int_equal(sb_mock_engine_begin(&e, MS(6.4)), MS(1 + 2.2));
    assert_int_equal(e.nwaiting, 0);
    sb_mock_engine_release(&e);
}

/* The scripted simulation again, with a budget and variation: closed-loop users that resubmit at
   once, recording every token time. */
#define LOOP_USERS  6
#define LOOP_TOKENS 4096

struct loop_user {
    struct sb_mock_seq seq;
    long long got;
    bool idle; /* between requests: resubmits before the next iteration */
};

struct loop_trace {
    uint64_t ns[LOOP_TOKENS];
    size_t n;
};

static bool loop_token(struct sb_mock_seq *seq, uint64_t now_ns, void *arg)
{
    struct loop_trace *t = arg;
    struct loop_user *u = seq->owner;
    if (t->n < LOOP_TOKENS)
        t->ns[t->n++] = now_ns;
    u->idle = ++u->got % 5 == 0; /* five tokens a request */
    return u->idle;
}

static void run_loop(uint64_t seed, long long budget, struct loop_trace *t)
{
    static const struct sb_mock_timing vt = {
        .prefill_base_ms = 2,
        .prefill_per_token_us = 20,
        .decode_base_ms = 5,
        .decode_per_seq_us = 200,
        .prefill_sd_frac = 0.3,
        .decode_sd_frac = 0.2,
    };
    struct sb_mock_engine e;
    struct loop_user u[LOOP_USERS];
    memset(u, 0, sizeof(u));
    memset(t, 0, sizeof(*t));
    assert_int_equal(sb_mock_engine_init(&e, &vt, 4, 16), 0);
    sb_mock_engine_set_budget(&e, budget);
    sb_mock_engine_seed(&e, seed);
    for (int i = 0; i < LOOP_USERS; i++)
        u[i].idle = true;
    uint64_t now = 0;
    for (int it = 0; it < 400; it++) {
        for (int i = 0; i < LOOP_USERS; i++) {
            if (!u[i].idle)
                continue;
            u[i].idle = false;
            u[i].seq = (struct sb_mock_seq){.owner = &u[i], .uncached_tokens = 200 + 100 * i};
            assert_int_equal(sb_mock_engine_submit(&e, &u[i].seq, now), SB_SUBMIT_QUEUED);
        }
        now += sb_mock_engine_begin(&e, now);
        sb_mock_engine_end(&e, now, loop_token, NULL, t);
    }
    sb_mock_engine_release(&e);
}

static void test_engine_same_seed_same_schedule(void **state)
{
    (void)state;
    static struct loop_trace a, b, c, d;
    run_loop(7, 512, &a);
    run_loop(7, 512, &b);
    run_loop(8, 512, &c);
    run_loop(7, 0, &d);
    assert_true(a.n > 100);
    assert_int_equal(a.n, b.n);
    assert_memory_equal(a.ns, b.ns, a.n * sizeof(a.ns[0]));
    /* Another seed draws other times. */
    size_t same = 0;
    for (size_t i = 0; i < a.n && i < c.n; i++)
        same += a.ns[i] == c.ns[i];
    assert_true(same < a.n / 2);
    /* So does dropping the budget: 6 users of 200..700-token prompts overflow 512 tokens. */
    assert_true(a.n != d.n || memcmp(a.ns, d.ns, a.n * sizeof(a.ns[0])) != 0);
}

/* ---- the variation draws ---- */

/* Mean and standard deviation of a normal of mean 1 and sd s clamped to [1 - k s, 1 + k s]. */
static void clamped_normal(double s, double k, double *mean, double *sd)
{
    double phi = exp(-k * k / 2) / sqrt(2 * M_PI);
    double tail = 0.5 * erfc(k / sqrt(2)); /* P(z > k) */
    /* E[z^2] over the clamped variable: the inside part plus k^2 on each tail. */
    double inside = (1 - 2 * tail) - 2 * k * phi;
    *mean = 1;
    *sd = s * sqrt(inside + 2 * k * k * tail);
}

static void test_draw_scale(void **state)
{
    (void)state;
    struct sb_rng r, before;
    sb_rng_seed(&r, 1);
    before = r;
    /* No variation: exactly 1, and nothing drawn (the default stays deterministic). */
    assert_true(sb_mock_draw_scale(&r, 0) == 1.0);
    assert_true(sb_mock_draw_scale(&r, -1) == 1.0);
    assert_memory_equal(&r, &before, sizeof(r));

    static const double fracs[] = {0.05, 0.1, 0.2, 0.3};
    for (size_t f = 0; f < SB_ARRAY_SIZE(fracs); f++) {
        const int n = 200000;
        double sum = 0, sum2 = 0, lo = 2, hi = 0;
        int at_lo = 0, at_hi = 0;
        sb_rng_seed(&r, 42 + f);
        for (int i = 0; i < n; i++) {
            double v = sb_mock_draw_scale(&r, fracs[f]);
            sum += v;
            sum2 += v * v;
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
            at_lo += v == 0.3;
            at_hi += v == 1.7;
        }
        double mean = sum / n, sd = sqrt(sum2 / n - mean * mean);
        double want_mean, want_sd;
        clamped_normal(fracs[f], 0.7 / fracs[f], &want_mean, &want_sd);
        print_message("sd_frac %.2f: mean %.5f sd %.5f (want %.5f) range %.3f..%.3f\n", fracs[f],
                      mean, sd, want_sd, lo, hi);
        /* 200,000 draws: the standard error of the mean is sd / 447, of the sd about sd / 632. */
        assert_true(fabs(mean - want_mean) < 4 * fracs[f] / 447);
        assert_true(fabs(sd - want_sd) < 4 * fracs[f] / 632);
        assert_true(lo >= 0.3 && hi <= 1.7);
        /* Clamped draws: a share 2 P(z > 0.7 / sd_frac) of them, within 4 standard errors
           (0.3: 2.33 sd, about 2 %; 0.2: 3.5 sd, 0.05 %; less: none to speak of). */
        double want_clamped = n * erfc(0.7 / fracs[f] / sqrt(2));
        print_message("clamped %d (want %.1f)\n", at_lo + at_hi, want_clamped);
        assert_true(fabs(at_lo + at_hi - want_clamped) < 4 * sqrt(want_clamped) + 2);
        assert_true(abs(at_lo - at_hi) < 4 * sqrt(want_clamped / 2) + 2);
    }
}

/* The engine applies the draws: a sequence's prefill time and each decode step, measured over many
   iterations, have the mean of the formulas and the sd asked for. */
static void test_engine_variation(void **state)
{
    (void)state;
    static const struct sb_mock_timing t = {
        .prefill_base_ms = 1,
        .prefill_per_token_us = 10, /* 1000 tokens: 11 ms */
        .decode_base_ms = 4,
        .decode_per_seq_us = 1000, /* one sequence: 5 ms */
        .prefill_sd_frac = 0.2,
        .decode_sd_frac = 0.1,
    };
    struct sb_mock_engine e;
    struct sb_mock_timing prefill_only = t, decode_only = t;
    prefill_only.decode_sd_frac = 0;
    decode_only.prefill_sd_frac = 0;
    const struct {
        const struct sb_mock_timing *t;
        double mean_ms, sd_ms; /* of the iteration that admits (prefill + first decode step) */
    } cases[] = {
        {&prefill_only, 11 + 5, 0.2 * 11},
        {&decode_only, 11 + 5, 0.1 * 5},
        {&t, 11 + 5, sqrt(0.2 * 11 * 0.2 * 11 + 0.1 * 5 * 0.1 * 5)},
    };
    for (size_t c = 0; c < SB_ARRAY_SIZE(cases); c++) {
        const int n = 50000;
        double sum = 0, sum2 = 0;
        assert_int_equal(sb_mock_engine_init(&e, cases[c].t, 1, 1), 0);
        sb_mock_engine_seed(&e, 99);
        for (int i = 0; i < n; i++) {
            struct sb_mock_seq s = {.uncached_tokens = 1000};
            struct trace tr = {.finish = &s};
            sb_mock_engine_submit(&e, &s, 0);
            double ms = (double)sb_mock_engine_begin(&e, 0) / 1e6;
            sb_mock_engine_end(&e, 0, trace_token, trace_drop, &tr);
            sum += ms;
            sum2 += ms * ms;
        }
        sb_mock_engine_release(&e);
        double mean = sum / n, sd = sqrt(sum2 / n - mean * mean);
        print_message("case %zu: mean %.4f ms sd %.4f ms (want %.4f, %.4f)\n", c, mean, sd,
                      cases[c].mean_ms, cases[c].sd_ms);
        /* 50,000 draws: 4 standard errors of the mean (sd / 224) and of the sd (sd / 316). */
        assert_true(fabs(mean - cases[c].mean_ms) < 4 * cases[c].sd_ms / 224);
        assert_true(fabs(sd - cases[c].sd_ms) < 4 * cases[c].sd_ms / 316);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prefill_ns),
        cmocka_unit_test(test_decode_step_ns),
        cmocka_unit_test(test_engine_init),
        cmocka_unit_test(test_engine_submit_limit),
        cmocka_unit_test(test_engine_iterations),
        cmocka_unit_test(test_engine_cancel),
        cmocka_unit_test(test_engine_simulation),
        cmocka_unit_test(test_engine_queue_knee),
        cmocka_unit_test(test_engine_budget_chunks),
        cmocka_unit_test(test_engine_budget_cached_prompt),
        cmocka_unit_test(test_engine_same_seed_same_schedule),
        cmocka_unit_test(test_draw_scale),
        cmocka_unit_test(test_engine_variation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
