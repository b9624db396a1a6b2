/*
 * The trace loader (sb_trace_parse: Mooncake-style JSON Lines) on arbitrary text, with a block
 * size picked by the first byte, then the schedule of what loaded. Checks: a loaded trace is
 * non-empty, its timestamps never go backwards, every request's hash ids lie inside the id array,
 * and the oracle's reusable tokens never exceed a request's input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "sb/trace.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const long long blocks[] = {SB_TRACE_BLOCK_TOKENS, 1, 16, 3};
    long long bt = blocks[data[0] % 4];
    size_t n = size - 1;
    char *p = malloc(n ? n : 1);
    if (!p)
        abort();
    memcpy(p, data + 1, n);
    struct sb_trace t;
    struct sb_err err = {0};
    if (sb_trace_parse(p, n, "fuzz.jsonl", bt, &t, &err) == 0) {
        if (t.n == 0)
            sb_fuzz_fail("an empty trace loaded");
        for (size_t i = 0; i < t.n; i++) {
            const struct sb_trace_req *r = &t.req[i];
            if (i > 0 && r->ts_ms < t.req[i - 1].ts_ms)
                sb_fuzz_fail("timestamps go backwards at request %zu", i);
            if (r->first_id > t.nids || r->nids > t.nids - r->first_id)
                sb_fuzz_fail("request %zu's ids lie outside the id array", i);
            if (r->reusable_tokens < 0 || r->reusable_tokens > r->input_len)
                sb_fuzz_fail("request %zu reuses %lld of %lld tokens", i, r->reusable_tokens,
                             r->input_len);
        }
        uint64_t *when = malloc(t.n * sizeof(*when));
        if (!when)
            abort();
        (void)sb_trace_schedule(&t, 1.0, 5.0, when);
        (void)sb_trace_schedule(&t, 1000.0, 0, when);
        free(when);
        sb_trace_release(&t);
    } else if (err.msg[0] == '\0') {
        sb_fuzz_fail("rejected without a message");
    }
    free(p);
    return 0;
}
