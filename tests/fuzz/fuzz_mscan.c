/*
 * Differential fuzzer for analyze's metrics.jsonl loading: the fast scanner (sb_mscan_line)
 * against the full parser (sb_record_from_json, cJSON underneath) on every line. The input is
 * JSON Lines; all its lines go through one scanner per mode (with and without "ts"), so the
 * learned key order and the reference line are exercised as in a real file. Whenever the scanner
 * accepts a line, the full parser must accept it too and agree on every field analyze reads.
 * The one allowed difference, as in tests/unit/test_analyze_load.c: the full parser also checks
 * the types of fields analyze never reads, which the scanner only checks to be valid JSON.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "sb/analyze.h"
#include "sb/record.h"
#include "sb/util.h"
#include "../common/mrec_reference.h"

static bool same_double(double a, double b)
{
    return (isnan(a) && isnan(b)) || a == b;
}

static void check_line(struct sb_mscan *s, bool with_ts, const char *line, size_t len)
{
    struct sb_mrec got, want;
    memset(&got, 0, sizeof(got));
    memset(&want, 0, sizeof(want));
    struct sb_err werr = {0};
    int g = sb_mscan_line(s, line, len, &got);
    if (g != 0 && g != 1)
        sb_fuzz_fail("scanner returned %d", g);
    if (g != 0)
        return; /* declined: the full parser decides alone */
    if (mrec_reference(line, len, &want, &werr) != 0) {
        if (mrec_ignored_field_error(line, len, werr.msg))
            return;
        sb_fuzz_fail("the scanner accepted a line the full parser rejects (%s): %s", werr.msg,
                     line);
    }
    for (int i = 0; i < SB_LAT_N; i++)
        if (!same_double(got.lat[i], want.lat[i]))
            sb_fuzz_fail("latency %d: scanner %.17g, full parser %.17g: %s", i, got.lat[i],
                         want.lat[i], line);
    if (with_ts ? !same_double(got.ts, want.ts) : !isnan(got.ts))
        sb_fuzz_fail("ts: scanner %.17g, full parser %.17g: %s", got.ts, want.ts, line);
    if (got.rc != want.rc || got.ok != want.ok || got.warmup != want.warmup ||
        got.error != want.error || got.output_tokens != want.output_tokens)
        sb_fuzz_fail("rc %d/%d ok %d/%d warmup %d/%d kind %d/%d tokens %lld/%lld: %s", got.rc,
                     want.rc, got.ok, want.ok, got.warmup, want.warmup, got.error, want.error,
                     got.output_tokens, want.output_tokens, line);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sb_mscan *s[2] = {sb_mscan_new(true), sb_mscan_new(false)};
    if (!s[0] || !s[1])
        abort();
    size_t off = 0;
    while (off < size) {
        const uint8_t *nl = memchr(data + off, '\n', size - off);
        size_t len = nl ? (size_t)(nl - (data + off)) : size - off;
        /* The loaders hand each line over NUL-terminated in an exact-size buffer. */
        char *line = malloc(len + 1);
        if (!line)
            abort();
        memcpy(line, data + off, len);
        line[len] = '\0';
        check_line(s[0], true, line, len);
        check_line(s[1], false, line, len);
        struct sb_mrec m;
        struct sb_err err = {0};
        if (sb_metrics_parse_line(s[0], line, len, &m, &err) != 0 && err.msg[0] == '\0')
            sb_fuzz_fail("a rejected line without a message");
        free(line);
        off += len + 1;
    }
    sb_mscan_free(s[0]);
    sb_mscan_free(s[1]);
    return 0;
}
