/*
 * Unit tests for sb/recstats.h: folding finished requests into running sums as the run goes (which
 * keeps a run of hours in bounded memory) gives the same mean in-flight count and throughput as
 * keeping every span to the end; a fold against another window start folds nothing; merging
 * carries spans and sums; the prompt-token median comes from the histogram.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <math.h>

#include "sb/recstats.h"
#include "sb/record.h"
#include "sb/stats.h"

static uint64_t rng = 88172645463325252ull;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

#define S 1000000000ull

/* Request k of a steady stream: sent k ms after 100 s, in flight 0..2 s; some fail. */
static void make_record(struct sb_record *r, long long k)
{
    sb_record_init(r);
    r->seq = k;
    r->t_send_ns = 100 * S + (uint64_t)k * 1000000ull;
    uint64_t dur = next_rand() % (2 * S);
    int kind = (int)(next_rand() % 10);
    r->ok = kind != 0;
    r->warmup = r->t_send_ns < 101 * S;
    /* a failure before any byte has no last byte; others do */
    r->t_last_byte_ns = kind == 0 && k % 2 ? 0 : r->t_send_ns + dur;
    r->output_tokens = r->ok ? (long long)(next_rand() % 32) - 1 : 0; /* -1: not reported */
    r->prompt_tokens = r->ok ? 100 + k % 7 : -1;
}

static void test_fold_matches_keeping_everything(void **state)
{
    (void)state;
    const uint64_t w0 = 101 * S, w1 = 160 * S; /* sending stopped at 160 s; some finish after */
    struct sb_recstats folded, whole;
    sb_recstats_init(&folded);
    sb_recstats_init(&whole);
    size_t most_held = 0;
    for (long long k = 0; k < 60000; k++) {
        struct sb_record r;
        make_record(&r, k);
        sb_recstats_add(&folded, &r);
        sb_recstats_add(&whole, &r);
        if (folded.n_span > most_held)
            most_held = folded.n_span;
        /* as the engine does: everything older than the latest send (never past w1) */
        if (k % 500 == 0 && r.t_send_ns <= w1)
            sb_recstats_fold(&folded, w0, r.t_send_ns);
    }
    assert_true(folded.done_n > 0 && folded.busy_ns > 0);
    assert_true(most_held < 5000); /* about 2 s of 1,000 requests a second, not all 60,000 */
    assert_true(whole.n_span >= 54000);

    double a = sb_recstats_inflight_mean(&folded, w0, w1);
    double b = sb_recstats_inflight_mean(&whole, w0, w1);
    assert_true(b > 0.5 && fabs(a - b) <= 1e-9 * b);

    struct sb_tput ta, tb;
    sb_tput_init(&ta, (double)w0 / 1e9, (double)w1 / 1e9);
    sb_tput_init(&tb, (double)w0 / 1e9, (double)w1 / 1e9);
    sb_recstats_tput(&folded, &ta);
    sb_recstats_tput(&whole, &tb);
    assert_true(tb.completed > 40000);
    assert_int_equal(ta.completed, tb.completed);
    assert_int_equal(ta.output_tokens, tb.output_tokens);

    assert_true(sb_recstats_prompt_tokens_median(&folded) == 103);
    assert_int_equal(folded.prompt_tokens.n, whole.prompt_tokens.n);

    /* another window start: nothing is folded, and the mean over it is not given */
    size_t held = folded.n_span;
    assert_int_equal(sb_recstats_fold(&folded, w0 + 1, 200 * S), held);
    assert_true(isnan(sb_recstats_inflight_mean(&folded, w0 + 1, w1)));
    sb_recstats_release(&folded);
    sb_recstats_release(&whole);
}

static void test_merge(void **state)
{
    (void)state;
    const uint64_t w0 = 101 * S, w1 = 130 * S;
    struct sb_recstats part[2], whole, sum;
    sb_recstats_init(&part[0]);
    sb_recstats_init(&part[1]);
    sb_recstats_init(&whole);
    sb_recstats_init(&sum);
    for (long long k = 0; k < 20000; k++) {
        struct sb_record r;
        make_record(&r, k);
        sb_recstats_add(&part[k % 2], &r);
        sb_recstats_add(&whole, &r);
        if (k % 1000 == 999 && r.t_send_ns <= w1)
            sb_recstats_fold(&part[k % 2], w0, r.t_send_ns);
    }
    sb_recstats_merge(&sum, &part[0]);
    sb_recstats_merge(&sum, &part[1]);
    assert_int_equal(part[0].n_span, 0); /* moved */
    assert_int_equal(sum.fold_w0_ns, w0);
    double a = sb_recstats_inflight_mean(&sum, w0, w1);
    double b = sb_recstats_inflight_mean(&whole, w0, w1);
    assert_true(b > 0.5 && fabs(a - b) <= 1e-9 * b);
    struct sb_tput ta, tb;
    sb_tput_init(&ta, (double)w0 / 1e9, (double)w1 / 1e9);
    sb_tput_init(&tb, (double)w0 / 1e9, (double)w1 / 1e9);
    sb_recstats_tput(&sum, &ta);
    sb_recstats_tput(&whole, &tb);
    assert_int_equal(ta.completed, tb.completed);
    assert_int_equal(ta.output_tokens, tb.output_tokens);
    assert_int_equal(sum.prompt_tokens.n, whole.prompt_tokens.n);
    sb_recstats_release(&sum);
    sb_recstats_release(&whole);
}

static void test_empty(void **state)
{
    (void)state;
    struct sb_recstats s;
    sb_recstats_init(&s);
    assert_true(isnan(sb_recstats_prompt_tokens_median(&s)));
    assert_true(sb_recstats_inflight_mean(&s, 5, 10) == 0);
    assert_true(isnan(sb_recstats_inflight_mean(&s, 10, 10)));
    assert_int_equal(sb_recstats_fold(&s, 5, 100), 0);
    sb_recstats_release(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fold_matches_keeping_everything),
        cmocka_unit_test(test_merge),
        cmocka_unit_test(test_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
