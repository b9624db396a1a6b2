/*
 * Unit tests for sb_engine_result_recount (sb/engine.h): a run that lost records to a full disk
 * has its counts and latency samples taken again from the lines metrics.jsonl holds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sb/buf.h"
#include "sb/engine.h"
#include "sb/record.h"

static void add_record(struct sb_buf *b, long long seq, bool warmup, enum sb_error_kind error,
                       double ttft, double e2e, long long tokens)
{
    struct sb_record r;
    sb_record_init(&r);
    r.seq = seq;
    r.warmup = warmup;
    r.error = error;
    r.ok = error == SB_ERRK_NONE;
    r.rc = r.ok ? 200 : 500;
    r.lat_ttft_ms = ttft;
    r.lat_e2e_ms = e2e;
    r.output_tokens = tokens;
    assert_int_equal(sb_record_to_json(&r, b), 0);
}

static void test_recount_from_file(void **state)
{
    (void)state;
    char path[] = "/tmp/sbtest-recount-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    struct sb_buf b;
    sb_buf_init(&b, 1 << 20);
    add_record(&b, 0, true, SB_ERRK_NONE, 5, 6, 16);       /* warm-up ok: counted, no sample */
    add_record(&b, 1, true, SB_ERRK_TIMEOUT, NAN, NAN, 0); /* warm-up error */
    add_record(&b, 2, false, SB_ERRK_NONE, 10, 20, 16);
    add_record(&b, 3, false, SB_ERRK_NONE, 11, 21, 16);
    add_record(&b, 4, false, SB_ERRK_NONE, NAN, 22, 1); /* non-streamed: no TTFT */
    add_record(&b, 5, false, SB_ERRK_HTTP, NAN, 3, 0);
    add_record(&b, 6, false, SB_ERRK_CANCELLED, NAN, NAN, 0);
    assert_int_equal(write(fd, b.data, b.len), (ssize_t)b.len);
    close(fd);
    sb_buf_release(&b);

    /* What the engine counted: 10 records, of which 3 never reached the file. */
    struct sb_engine_result res = {0};
    res.sent = 10;
    res.ok = 7;
    res.warmup = 2;
    res.errors[SB_ERRK_HTTP] = 3;
    res.output_tokens = 999;
    res.late_sends = 4;
    res.t_end_ns = 123;
    sb_hist_init(&res.ttft_ms, 1e-3); /* five samples the file does not hold */
    sb_hist_init(&res.e2e_ms, 1e-3);
    for (int i = 0; i < 5; i++) {
        sb_hist_add(&res.ttft_ms, 1000);
        sb_hist_add(&res.e2e_ms, 1000);
    }
    long long records = -1;
    struct sb_err err = {0};
    assert_int_equal(sb_engine_result_recount(&res, path, &records, &err), 0);
    assert_int_equal(records, 7);
    assert_int_equal(res.ok, 4);
    assert_int_equal(res.warmup, 2);
    assert_int_equal(res.errors[SB_ERRK_TIMEOUT], 1);
    assert_int_equal(res.errors[SB_ERRK_HTTP], 1);
    assert_int_equal(res.errors[SB_ERRK_CANCELLED], 1);
    assert_int_equal(res.output_tokens, 33);
    /* the samples are the file's: min and max are exact in the histogram (sb/hist.h) */
    assert_int_equal(res.ttft_ms.n, 2);
    assert_int_equal(res.e2e_ms.n, 3);
    assert_true(res.ttft_ms.min == 10 && res.ttft_ms.max == 11);
    assert_true(res.e2e_ms.min == 20 && res.e2e_ms.max == 22 && res.e2e_ms.sum == 63);
    /* What is about sending, not about the records, is kept. */
    assert_int_equal(res.sent, 10);
    assert_int_equal(res.late_sends, 4);
    assert_int_equal(res.t_end_ns, 123);
    sb_engine_result_release(&res);

    /* A file that cannot be read: -1 naming it, the result left as it was. */
    unlink(path);
    struct sb_engine_result keep = {0};
    keep.ok = 5;
    assert_int_equal(sb_engine_result_recount(&keep, path, &records, &err), -1);
    assert_non_null(strstr(err.msg, path));
    assert_int_equal(keep.ok, 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_recount_from_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
