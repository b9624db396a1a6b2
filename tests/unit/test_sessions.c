/* Unit tests for sb/sessions.h: the distribution syntax and draws, the session order, the picker,
 * the reply text of a chat chunk, and the oracle fields of a record. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>

#include "sb/buf.h"
#include "sb/err.h"
#include "sb/record.h"
#include "sb/sessions.h"

static void test_dist_parse(void **state)
{
    (void)state;
    struct sb_dist d;
    struct sb_err err;
    assert_int_equal(sb_dist_parse("--turns", "8", &d, &err), 0);
    assert_int_equal(d.kind, SB_DIST_CONST);
    assert_true(d.a == 8);
    assert_int_equal(sb_dist_parse("--turns", "uniform:2:6", &d, &err), 0);
    assert_int_equal(d.kind, SB_DIST_UNIFORM);
    assert_true(d.a == 2 && d.b == 6);
    assert_int_equal(sb_dist_parse("--think-ms", "lognormal:500:250", &d, &err), 0);
    assert_int_equal(d.kind, SB_DIST_LOGNORMAL);
    assert_true(d.a == 500 && d.b == 250);
    static const char *const bad[] = {"",
                                      "x",
                                      "-1",
                                      "uniform:5",
                                      "uniform:6:2",
                                      "uniform:a:b",
                                      "lognormal:0:1",
                                      "lognormal:1:-1",
                                      "gamma:1:2",
                                      "1:2:3",
                                      "nan"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(sb_dist_parse("--turns", bad[i], &d, &err), -1);
        char want[64];
        snprintf(want, sizeof(want), "--turns '%s'", bad[i]);
        if (!strstr(err.msg, want))
            fail_msg("case '%s': message '%s' does not name the option and value", bad[i], err.msg);
    }
}

static void test_dist_draw(void **state)
{
    (void)state;
    uint64_t rng = 1;
    struct sb_dist c = {SB_DIST_CONST, 7, 0}, u = {SB_DIST_UNIFORM, 2, 6},
                   ln = {SB_DIST_LOGNORMAL, 100, 50};
    double sum_u = 0, sum_ln = 0;
    const int n = 20000;
    for (int i = 0; i < n; i++) {
        assert_true(sb_dist_draw(&c, &rng) == 7);
        double x = sb_dist_draw(&u, &rng);
        assert_true(x >= 2 && x <= 6);
        sum_u += x;
        double y = sb_dist_draw(&ln, &rng);
        assert_true(y > 0);
        sum_ln += y;
    }
    /* The mean is the one asked for (not the log's): within 3 % over 20,000 draws. */
    assert_true(fabs(sum_u / n - 4) < 0.1);
    assert_true(fabs(sum_ln / n - 100) < 3);
}

static void test_order_parse(void **state)
{
    (void)state;
    enum sb_order_kind k;
    double s;
    struct sb_err err;
    assert_int_equal(sb_order_parse("round_robin", &k, &s, &err), 0);
    assert_int_equal(k, SB_ORDER_ROUND_ROBIN);
    assert_int_equal(sb_order_parse("uniform", &k, &s, &err), 0);
    assert_int_equal(k, SB_ORDER_UNIFORM);
    assert_int_equal(sb_order_parse("zipf:1.2", &k, &s, &err), 0);
    assert_int_equal(k, SB_ORDER_ZIPF);
    assert_true(s == 1.2);
    static const char *const bad[] = {"zipf", "zipf:", "zipf:0", "zipf:-1", "zipf:x", "rr", ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(sb_order_parse(bad[i], &k, &s, &err), -1);
        assert_non_null(strstr(err.msg, "--session-order"));
    }
}

struct okset {
    bool ok[16];
};

static bool ok_of(size_t i, void *arg)
{
    return ((struct okset *)arg)->ok[i];
}

static void test_picker_round_robin(void **state)
{
    (void)state;
    struct sb_picker p;
    struct sb_err err;
    assert_int_equal(sb_picker_init(&p, SB_ORDER_ROUND_ROBIN, 0, 4, 1, &err), 0);
    struct okset all = {{true, true, true, true}};
    for (int i = 0; i < 8; i++)
        assert_int_equal(sb_picker_pick(&p, ok_of, &all), i % 4);
    /* Busy sessions are skipped; the order goes on after the one picked. */
    struct okset some = {{true, false, true, false}};
    assert_int_equal(sb_picker_pick(&p, ok_of, &some), 0);
    assert_int_equal(sb_picker_pick(&p, ok_of, &some), 2);
    assert_int_equal(sb_picker_pick(&p, ok_of, &some), 0);
    struct okset none = {{false}};
    assert_int_equal(sb_picker_pick(&p, ok_of, &none), SIZE_MAX);
    sb_picker_release(&p);
}

static void test_picker_zipf_and_uniform(void **state)
{
    (void)state;
    struct sb_picker p;
    struct sb_err err;
    struct okset all;
    for (int i = 0; i < 16; i++)
        all.ok[i] = true;
    const int n = 40000;
    long count[16] = {0};
    assert_int_equal(sb_picker_init(&p, SB_ORDER_ZIPF, 1.0, 16, 5, &err), 0);
    for (int i = 0; i < n; i++)
        count[sb_picker_pick(&p, ok_of, &all)]++;
    /* p(rank r) = 1/(r+1) / H(16); H(16) = 3.3807 */
    for (int r = 0; r < 16; r++) {
        double want = n / ((r + 1) * 3.3807);
        if (fabs(count[r] - want) > 0.1 * want + 30)
            fail_msg("zipf rank %d: %ld picks, expected about %.0f", r, count[r], want);
    }
    /* A slot that is not ok is never picked; the others share its draws. */
    all.ok[0] = false;
    for (int i = 0; i < 1000; i++)
        assert_int_not_equal(sb_picker_pick(&p, ok_of, &all), 0);
    all.ok[0] = true;
    sb_picker_release(&p);

    memset(count, 0, sizeof(count));
    assert_int_equal(sb_picker_init(&p, SB_ORDER_UNIFORM, 0, 16, 5, &err), 0);
    for (int i = 0; i < n; i++)
        count[sb_picker_pick(&p, ok_of, &all)]++;
    for (int r = 0; r < 16; r++)
        if (labs(count[r] - n / 16) > n / 16 / 10)
            fail_msg("uniform slot %d: %ld picks, expected about %d", r, count[r], n / 16);
    struct okset one = {{false}};
    one.ok[11] = true;
    assert_int_equal(sb_picker_pick(&p, ok_of, &one), 11); /* found by the scan after misses */
    sb_picker_release(&p);
}

static void test_reply_text(void **state)
{
    (void)state;
    struct sb_buf b;
    sb_buf_init(&b, 64);
    const char *c1 = "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\\\"lo\\n\"}}]}";
    const char *c2 = "{\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}]}";
    const char *c3 =
        "{\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":\" there\"}}]}";
    assert_int_equal(sb_chat_reply_text(c1, strlen(c1), &b), 0);
    assert_int_equal(sb_chat_reply_text(c2, strlen(c2), &b), 0);
    assert_int_equal(sb_chat_reply_text(c3, strlen(c3), &b), 0);
    assert_string_equal(b.data, "Hel\"lo\n there");
    /* Past the buffer's limit: -1 and nothing appended. */
    char big[200];
    snprintf(big, sizeof(big), "{\"choices\":[{\"delta\":{\"content\":\"%060d\"}}]}", 0);
    assert_int_equal(sb_chat_reply_text(big, strlen(big), &b), -1);
    assert_string_equal(b.data, "Hel\"lo\n there");
    sb_buf_release(&b);
}

static void test_record_fields(void **state)
{
    (void)state;
    struct sb_record r, back;
    struct sb_buf line;
    struct sb_err err;
    sb_buf_init(&line, 1u << 20);
    sb_record_init(&r);
    r.session = 12;
    r.turn = 3;
    r.history_tokens = 900;
    r.new_tokens = 100;
    r.reusable_tokens = 896;
    r.reuse_distance_tokens = 4000;
    r.idle_ms = 1500.25;
    r.parked = 1;
    r.prime = r.warmup = true;
    assert_int_equal(sb_record_to_json(&r, &line), 0);
    assert_non_null(strstr(line.data, "\"phase\":\"prime\""));
    assert_non_null(strstr(line.data, "\"session\":12,\"turn\":3,\"history_tokens\":900,"
                                      "\"new_tokens\":100,\"reusable_tokens\":896,"
                                      "\"reuse_distance_tokens\":4000,\"idle_ms\":1500.250000,"
                                      "\"parked\":true"));
    assert_int_equal(sb_record_from_json(line.data, line.len, &back, &err), 0);
    assert_true(back.session == 12 && back.turn == 3 && back.reusable_tokens == 896);
    assert_true(back.reuse_distance_tokens == 4000 && back.parked == 1 && back.prime &&
                back.warmup);
    sb_buf_reset(&line);
    r.parked = 0;
    assert_int_equal(sb_record_to_json(&r, &line), 0);
    assert_non_null(strstr(line.data, "\"parked\":false"));
    sb_buf_release(&line);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dist_parse),
        cmocka_unit_test(test_dist_draw),
        cmocka_unit_test(test_order_parse),
        cmocka_unit_test(test_picker_round_robin),
        cmocka_unit_test(test_picker_zipf_and_uniform),
        cmocka_unit_test(test_reply_text),
        cmocka_unit_test(test_record_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
