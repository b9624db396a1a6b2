/*
 * Unit tests for analyze's LoRA split (sb_run_read_lora): a first use is cold whatever its phase,
 * a later use is warm only in the measured phase, failures are counted and kept out of the TTFT,
 * records without an adapter and lines that do not parse are left out, adapters come sorted by
 * name with "*" (all) last, and a run without adapters has no split.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <unistd.h>

#include "sb/analyze.h"

static void write_lines(const char *path, const char *const *lines)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (size_t i = 0; lines[i]; i++)
        fprintf(f, "%s\n", lines[i]);
    fclose(f);
}

static void test_split(void **state)
{
    (void)state;
    char path[] = "/tmp/sbtest-lora-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    static const char *const lines[] = {
        /* b: cold in warm-up counts; its next use in warm-up does not */
        "{\"phase\":\"warmup\",\"ok\":true,\"lat_ttft_ms\":300,\"adapter\":\"b\",\"adapter_use\":"
        "1}",
        "{\"phase\":\"warmup\",\"ok\":true,\"lat_ttft_ms\":999,\"adapter\":\"b\",\"adapter_use\":"
        "2}",
        "{\"phase\":\"measure\",\"ok\":true,\"lat_ttft_ms\":10,\"adapter\":\"b\",\"adapter_use\":"
        "3}",
        "{\"phase\":\"measure\",\"ok\":true,\"lat_ttft_ms\":20,\"adapter\":\"b\",\"adapter_use\":"
        "4}",
        "{\"phase\":\"measure\",\"ok\":false,\"error\":\"http\",\"lat_ttft_ms\":null,"
        "\"adapter\":\"b\",\"adapter_use\":5}",
        /* a: cold failed, one warm */
        "{\"phase\":\"measure\",\"ok\":false,\"error\":\"timeout\",\"adapter\":\"a\","
        "\"adapter_use\":1}",
        "{\"phase\":\"measure\",\"ok\":true,\"lat_ttft_ms\":30,\"adapter\":\"a\",\"adapter_use\":"
        "2}",
        /* no adapter, a torn line, a null adapter */
        "{\"phase\":\"measure\",\"ok\":true,\"lat_ttft_ms\":5}", "{\"phase\":\"measure\",\"ok\":tr",
        "{\"phase\":\"measure\",\"ok\":true,\"lat_ttft_ms\":5,\"adapter\":null,\"adapter_use\":"
        "null}",
        NULL};
    write_lines(path, lines);
    struct sb_run r;
    memset(&r, 0, sizeof(r));
    struct sb_err err;
    assert_int_equal(sb_run_read_lora(&r, path, &err), 0);
    assert_int_equal(r.nlora, 3);
    const struct sb_lora_split *a = &r.lora[0], *b = &r.lora[1], *all = &r.lora[2];
    assert_string_equal(a->adapter, "a");
    assert_string_equal(b->adapter, "b");
    assert_string_equal(all->adapter, "*");
    /* a */
    assert_int_equal(a->n[0], 0);
    assert_int_equal(a->errors[0], 1);
    assert_true(isnan(a->ttft[0].p50));
    assert_int_equal(a->n[1], 1);
    assert_true(a->ttft[1].p50 == 30);
    /* b */
    assert_int_equal(b->n[0], 1);
    assert_true(b->ttft[0].p50 == 300);
    assert_int_equal(b->n[1], 2);
    assert_int_equal(b->errors[1], 1);
    assert_true(b->ttft[1].p50 == 15);
    assert_true(b->ttft[1].max == 20);
    /* all */
    assert_int_equal(all->n[0], 1);
    assert_int_equal(all->errors[0], 1);
    assert_int_equal(all->n[1], 3);
    assert_int_equal(all->errors[1], 1);
    assert_true(all->ttft[1].p50 == 20);
    free(r.lora);

    /* No adapters: no split. */
    static const char *const none[] = {"{\"phase\":\"measure\",\"ok\":true,\"lat_ttft_ms\":5}",
                                       NULL};
    write_lines(path, none);
    memset(&r, 0, sizeof(r));
    assert_int_equal(sb_run_read_lora(&r, path, &err), 0);
    assert_int_equal(r.nlora, 0);
    assert_null(r.lora);
    unlink(path);
    /* A file that cannot be read names itself. */
    assert_int_equal(sb_run_read_lora(&r, path, &err), -1);
    assert_non_null(strstr(err.msg, path));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
