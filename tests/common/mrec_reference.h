/*
 * The reference side of the differential checks of analyze's fast metrics.jsonl scanner
 * (tests/unit/test_analyze_load.c, tests/fuzz/fuzz_mscan.c): what sb_record_from_json, the full
 * cJSON-based parser, says of a line, in sb_mrec terms.
 */
#ifndef SB_TEST_MREC_REFERENCE_H
#define SB_TEST_MREC_REFERENCE_H

#include <stddef.h>
#include <string.h>

#include "sb/analyze.h"
#include "sb/record.h"

static inline int mrec_reference(const char *line, size_t len, struct sb_mrec *m,
                                 struct sb_err *err)
{
    struct sb_record r;
    if (sb_record_from_json(line, len, &r, err) != 0)
        return -1;
    m->ts = r.ts;
    m->lat[SB_LAT_TTFT] = r.lat_ttft_ms;
    m->lat[SB_LAT_E2E] = r.lat_e2e_ms;
    m->lat[SB_LAT_TTFB] = r.lat_ttfb_ms;
    m->lat[SB_LAT_ITL] = r.itl_mean_ms;
    m->lat[SB_LAT_TPOT] = r.tpot_ms;
    m->output_tokens = r.output_tokens;
    m->rc = r.rc;
    m->warmup = r.warmup;
    m->error = r.error;
    /* Where the line says "ok", that is the answer; otherwise a 2xx without an error kind. */
    m->ok = strstr(line, "\"ok\":")
                ? r.ok
                : r.ok || (r.error == SB_ERRK_NONE && r.rc >= 200 && r.rc <= 299);
    return 0;
}

#endif
