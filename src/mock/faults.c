/* Deterministic fault selection for the mock (see sb/mock_faults.h). */
#include "sb/mock_faults.h"

#include <stdbool.h>
#include <string.h>

#include "sb/util.h"

static const char *const names[SB_FAULT_COUNT] = {
    [SB_FAULT_NONE] = "none",
    [SB_FAULT_429] = "429",
    [SB_FAULT_500] = "500",
    [SB_FAULT_503] = "503",
    [SB_FAULT_CLOSE] = "close",
    [SB_FAULT_STALL] = "stall",
    [SB_FAULT_MALFORMED] = "malformed",
    [SB_FAULT_SLOW_HEADERS] = "slow_headers",
    [SB_FAULT_DYNAMO_ERROR] = "dynamo_error",
    [SB_FAULT_TRTLLM_ERROR] = "trtllm_error",
};

const char *sb_fault_name(enum sb_fault_kind k)
{
    return (k >= 0 && k < SB_FAULT_COUNT) ? names[k] : "unknown";
}

int sb_fault_plan_init(struct sb_fault_plan *p, double rate, const char *kinds, uint64_t seed,
                       struct sb_err *err)
{
    memset(p, 0, sizeof(*p));
    p->rate = rate;
    p->seed = seed;
    if (!kinds || !*kinds || strcmp(kinds, "all") == 0) {
        for (int k = SB_FAULT_NONE + 1; k < SB_FAULT_COUNT; k++)
            p->kinds[p->nkinds++] = k;
        return 0;
    }
    const char *s = kinds;
    while (*s) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        int found = -1;
        for (int k = SB_FAULT_NONE + 1; k < SB_FAULT_COUNT; k++)
            if (strlen(names[k]) == len && strncmp(names[k], s, len) == 0)
                found = k;
        if (found < 0)
            return sb_err_set(err,
                              "unknown fault kind '%.*s' (known: 429, 500, 503, close, stall, "
                              "malformed, slow_headers, dynamo_error, trtllm_error, all)",
                              (int)len, s);
        bool dup = false;
        for (int i = 0; i < p->nkinds; i++)
            dup |= p->kinds[i] == found;
        if (!dup)
            p->kinds[p->nkinds++] = found;
        if (!comma)
            break;
        s = comma + 1;
    }
    if (p->nkinds == 0)
        return sb_err_set(err, "empty fault kind list");
    return 0;
}

struct sb_fault sb_fault_pick(const struct sb_fault_plan *p, uint64_t req_no, long long max_tokens)
{
    struct sb_fault f = {SB_FAULT_NONE, 0};
    if (p->rate <= 0 || p->nkinds == 0)
        return f;
    struct sb_rng r;
    sb_rng_seed(&r, p->seed ^ sb_mix64(req_no + 0x5eed));
    if (sb_rng_uniform(&r) >= p->rate)
        return f;
    f.kind = (enum sb_fault_kind)p->kinds[sb_rng_below(&r, (uint64_t)p->nkinds)];
    /* Mid-stream faults strike after at least one token when there is more than one. */
    if (max_tokens >= 2)
        f.at_token = 1 + (long long)sb_rng_below(&r, (uint64_t)(max_tokens - 1));
    return f;
}
