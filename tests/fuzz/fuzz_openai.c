/*
 * Differential fuzzer for the chunk / response decoding of sb/openai.h: the hand-written scanner
 * (SB_OPENAI_DECODER_SCAN) against cJSON (SB_OPENAI_DECODER_CJSON) on every input. Whenever the
 * scanner accepts a payload, cJSON must accept it too and every field must agree (the scanner may
 * decline anything it does not handle; that is not a disagreement). The one documented difference,
 * x_mock stamps above 2^53 that cJSON rounds through a double, is left out of the comparison.
 * Also runs the error-body summariser, which must never fail and always NUL-terminate.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "sb/openai.h"

static bool same_double(double a, double b)
{
    return (isnan(a) && isnan(b)) || a == b;
}

static const char *chunk_diff(const struct sb_chunk *a, const struct sb_chunk *b)
{
#define SAME(f)                                                                                    \
    do {                                                                                           \
        if (a->f != b->f)                                                                          \
            return #f;                                                                             \
    } while (0)
    SAME(is_error);
    SAME(error_code);
    SAME(role_only);
    SAME(content_len);
    SAME(reasoning_len);
    SAME(has_choices);
    SAME(has_usage);
    SAME(prompt_tokens);
    SAME(completion_tokens);
    SAME(cached_tokens);
    SAME(has_timings);
    SAME(timings_prompt_n);
    SAME(timings_cache_n);
    SAME(timings_predicted_n);
    SAME(has_nvext_timing);
#undef SAME
    const uint64_t exact = (uint64_t)1 << 53;
    if (a->server_recv_ns != b->server_recv_ns &&
        (a->server_recv_ns <= exact && b->server_recv_ns <= exact))
        return "server_recv_ns";
    if (a->server_first_token_ns != b->server_first_token_ns &&
        (a->server_first_token_ns <= exact && b->server_first_token_ns <= exact))
        return "server_first_token_ns";
    if (strcmp(a->error_msg, b->error_msg) != 0)
        return "error_msg";
    if (strcmp(a->error_type, b->error_type) != 0)
        return "error_type";
    if (strcmp(a->finish_reason, b->finish_reason) != 0)
        return "finish_reason";
    if (strcmp(a->response_id, b->response_id) != 0)
        return "response_id";
    if (!same_double(a->timings_prompt_ms, b->timings_prompt_ms))
        return "timings_prompt_ms";
    if (!same_double(a->timings_predicted_ms, b->timings_predicted_ms))
        return "timings_predicted_ms";
    if (!same_double(a->nv_prefill_wait_ms, b->nv_prefill_wait_ms))
        return "nv_prefill_wait_ms";
    if (!same_double(a->nv_prefill_ms, b->nv_prefill_ms))
        return "nv_prefill_ms";
    if (!same_double(a->nv_ttft_ms, b->nv_ttft_ms))
        return "nv_ttft_ms";
    if (!same_double(a->nv_total_ms, b->nv_total_ms))
        return "nv_total_ms";
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy: ASan then catches a read one past the payload. */
    char *p = malloc(size ? size : 1);
    if (!p)
        abort();
    memcpy(p, data, size);
    struct sb_chunk scan, cj, pub;
    struct sb_err serr = {0}, cerr = {0}, perr = {0};
    int src = sb_openai_decode_chunk_with(SB_OPENAI_DECODER_SCAN, p, size, &scan, &serr);
    int crc = sb_openai_decode_chunk_with(SB_OPENAI_DECODER_CJSON, p, size, &cj, &cerr);
    int prc = sb_openai_decode_response(p, size, &pub, &perr);
    if (src != 0 && src != SB_OPENAI_DECLINED)
        sb_fuzz_fail("scanner returned %d", src);
    if (crc != 0 && crc != -1)
        sb_fuzz_fail("cJSON decoder returned %d", crc);
    if (prc != crc)
        sb_fuzz_fail("public decoder rc %d, cJSON %d", prc, crc);
    if (src == 0) {
        if (crc != 0)
            sb_fuzz_fail("the scanner accepted what cJSON rejects (%s)", cerr.msg);
        const char *d = chunk_diff(&scan, &cj);
        if (d)
            sb_fuzz_fail("the decoders disagree on %s", d);
    }
    char msg[300];
    sb_openai_error_message(p, size, msg, sizeof(msg));
    if (!memchr(msg, '\0', sizeof(msg)))
        sb_fuzz_fail("error message not NUL-terminated");
    free(p);
    return 0;
}
