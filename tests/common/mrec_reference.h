/*
 * The reference side of the differential checks of analyze's fast metrics.jsonl scanner
 * (tests/unit/test_analyze_load.c, tests/fuzz/fuzz_mscan.c): what sb_record_from_json, the full
 * cJSON-based parser, says of a line, in sb_mrec terms, and which of its complaints the scanner
 * rightly does not share.
 */
#ifndef SB_TEST_MREC_REFERENCE_H
#define SB_TEST_MREC_REFERENCE_H

#include <cjson/cJSON.h>
#include <stdbool.h>
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

/*
 * sb_record_from_json also checks the types of fields analyze never reads ("context_tokens":
 * 2E048 is valid JSON but not a count); the scanner skips those values as JSON only. True when
 * that is the whole difference: the line is valid JSON and the complaint names such a field.
 */
static inline bool mrec_ignored_field_error(const char *line, size_t len, const char *msg)
{
    static const char *const read[] = {"'ts'",         "'ok'",           "'rc'",
                                       "'phase'",      "'error'",        "'lat_ttft_ms'",
                                       "'lat_e2e_ms'", "'lat_ttfb_ms'",  "'itl_mean_ms'",
                                       "'tpot_ms'",    "'output_tokens'"};
    if (strncmp(msg, "field '", 7) != 0)
        return false;
    for (size_t i = 0; i < sizeof(read) / sizeof(read[0]); i++)
        if (strncmp(msg + 6, read[i], strlen(read[i])) == 0)
            return false;
    cJSON *j = cJSON_ParseWithLength(line, len);
    bool valid = cJSON_IsObject(j);
    cJSON_Delete(j);
    return valid;
}

#endif
