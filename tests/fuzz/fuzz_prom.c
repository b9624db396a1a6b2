/*
 * The Prometheus text parser (sb/prom.h): strict and lenient parses of arbitrary pages, the
 * snapshot built from them with its lookups (sums, histograms, quantiles, the series set and its
 * JSON diff against an empty previous page), and the value reader on the first line. Checks:
 * no crash or sanitizer report, and the lenient parse reports no more bad lines than the page has
 * lines, and as many samples as the snapshot keeps.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "sb/prom.h"

static int count_sample(const struct sb_prom_sample *s, void *arg)
{
    if (s->name_len == 0 || !s->type)
        sb_fuzz_fail("sample without a name or type");
    (*(size_t *)arg)++;
    return 0;
}

static int on_help(const char *name, size_t name_len, const char *help, size_t help_len, void *arg)
{
    (void)name, (void)help, (void)help_len, (void)arg;
    if (name_len == 0)
        sb_fuzz_fail("HELP without a name");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *p = malloc(size ? size : 1);
    if (!p)
        abort();
    memcpy(p, data, size);
    size_t lines = 1;
    for (size_t i = 0; i < size; i++)
        lines += p[i] == '\n';

    struct sb_err err = {0};
    size_t strict_n = 0, lenient_n = 0, bad = 0;
    sb_prom_parse_full(p, size, false, count_sample, on_help, &strict_n, NULL, &err);
    if (sb_prom_parse(p, size, true, count_sample, &lenient_n, &bad, &err) != 0)
        sb_fuzz_fail("lenient parse failed: %s", err.msg);
    if (bad > lines)
        sb_fuzz_fail("%zu bad lines of %zu", bad, lines);

    struct sb_prom_snapshot *snap = NULL;
    if (sb_prom_snapshot_parse(&snap, p, size, &err) != 0)
        sb_fuzz_fail("snapshot failed: %s", err.msg);
    if (sb_prom_snapshot_count(snap) != lenient_n)
        sb_fuzz_fail("snapshot holds %zu samples, the parse gave %zu", sb_prom_snapshot_count(snap),
                     lenient_n);
    if (sb_prom_snapshot_bad_lines(snap) != bad)
        sb_fuzz_fail("snapshot counts %zu bad lines, the parse %zu",
                     sb_prom_snapshot_bad_lines(snap), bad);
    /* Look up the first sample's name (a family that exists) in every way the sources do. */
    if (sb_prom_snapshot_count(snap) > 0) {
        const struct sb_prom_sample *s0 = sb_prom_snapshot_sample(snap, 0);
        char fam[128];
        size_t n = s0->name_len < sizeof(fam) - 1 ? s0->name_len : sizeof(fam) - 1;
        memcpy(fam, s0->name, n);
        fam[n] = '\0';
        char *suf = strstr(fam, "_bucket");
        if (suf)
            *suf = '\0';
        double sum = 0;
        (void)sb_prom_snapshot_sum(snap, fam, NULL, 0, &sum);
        const char *names[] = {fam, NULL};
        (void)sb_prom_snapshot_first(snap, names, 1, &sum);
        struct sb_prom_histogram h;
        if (sb_prom_snapshot_histogram(snap, fam, NULL, 0, &h, &err) == 0) {
            struct sb_prom_histogram d;
            sb_prom_histogram_delta(&d, &h, &h);
            (void)sb_prom_buckets_quantile(h.buckets, h.nbuckets, 0.9);
        }
        (void)sb_prom_histogram_quantile(NULL, snap, fam, 0.99);
        (void)sb_prom_histogram_quantile(snap, snap, fam, 0.5);
    }
    struct sb_prom_series_set set;
    if (sb_prom_series_set_build(&set, snap, &err) == 0) {
        struct sb_buf out;
        sb_buf_init(&out, 64u << 20);
        size_t nchanged = 0;
        if (sb_prom_series_diff_json(NULL, &set, &out, &nchanged) == 0 && nchanged > set.n)
            sb_fuzz_fail("diff has %zu members for %zu series", nchanged, set.n);
        sb_buf_release(&out);
        sb_prom_series_set_release(&set);
    }
    sb_prom_snapshot_free(snap);

    const char *nl = memchr(p, '\n', size);
    double v;
    (void)sb_prom_parse_value(p, nl ? (size_t)(nl - p) : size, &v);
    free(p);
    return 0;
}
