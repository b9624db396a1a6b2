/*
 * The `trace` workload: replays a Mooncake-format trace (sb/trace.h) open loop. Arrival k is
 * request k of the file, due at its timestamp scaled by --trace-speed with gaps capped by
 * --trace-max-gap-s; its prompt is the synthesized text of its hash ids (equal ids, equal bytes;
 * each block exactly --trace-block-tokens tokens), its max_tokens the trace's output_length, and
 * with --trace-force-output on (the default) ignore_eos and min_tokens make the server generate
 * exactly that many. Records carry trace_idx and the trace's own oracle (reusable_tokens,
 * reuse_distance_tokens).
 *
 * ignore_eos and min_tokens, per server (read in their sources with the search tool):
 *   vLLM: CompletionRequest has both and to_sampling_params passes them to SamplingParams
 *     (vllm/entrypoints/openai/protocol.py).
 *   SGLang: CompletionRequest's "extra parameters for SRT backend" include min_tokens and
 *     ignore_eos (python/sglang/srt/entrypoints/openai/protocol.py).
 *   TensorRT-LLM: trtllm-serve's CompletionRequest has ignore_eos and min_tokens among its
 *     completion sampling params, passed to SamplingParams (tensorrt_llm/serve/openai_protocol.py).
 *   Dynamo: the frontend's CommonExt takes ignore_eos and min_tokens at the top level of the body
 *     (lib/llm/src/protocols/openai/common_ext.rs; nvext.ignore_eos is deprecated for it).
 *   The sparkbench mock: ends at max_tokens, never earlier with ignore_eos, and draws an early
 *     EOS (--eos-prob) only after min_tokens (src/mock/server.c on_token).
 */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/trace.h"
#include "sb/util.h"
#include "sb/workload.h"

struct trace_state {
    struct sb_trace t;
    uint64_t *sched; /* ns after the run's start, per request */
    size_t n_replay; /* requests the run may send: the file, cut by --requests and --duration-s */
    size_t capped;   /* gaps cut by --trace-max-gap-s */
    struct sb_trace_words words;
    long long bos;       /* tokens the tokenizer's post-processor adds (BOS) */
    char *user_extra;    /* --extra-body's members without the braces ("" when none) */
    bool own_ignore_eos; /* add ignore_eos (the user's --extra-body did not set it) */
    bool own_min_tokens;
};

static int trace_init(struct sb_workload *w, struct sb_err *err)
{
    const struct sb_run_config *cfg = w->cfg;
    if (!cfg->trace || !*cfg->trace)
        return sb_err_set(err, "--workload trace needs --trace FILE");
    if (cfg->rate > 0)
        return sb_err_set(err, "--rate does not apply to --workload trace: the trace's "
                               "timestamps are the schedule (--trace-speed scales them)");
    if (cfg->ramp_up_s > 0)
        return sb_err_set(err, "--ramp-up-s does not apply to --workload trace (use --warmup-s)");
    if (cfg->nonce_per_user || cfg->nonce_per_request)
        return sb_err_set(err, "nonces do not apply to --workload trace: its hash ids decide "
                               "which prompts share a prefix (change --seed for new text)");
    struct trace_state *st = calloc(1, sizeof(*st));
    if (!st)
        return sb_err_set(err, "out of memory");
    w->priv = st;
    w->source = strdup(cfg->trace);
    if (sb_trace_load(cfg->trace, cfg->trace_block_tokens, &st->t, err) != 0)
        return -1;
    if (sb_trace_words_init(&st->words, w->tok, cfg->trace_block_tokens, &st->bos, err) != 0)
        return -1;
    st->sched = malloc(st->t.n * sizeof(uint64_t));
    if (!st->sched)
        return sb_err_set(err, "out of memory");
    st->capped = sb_trace_schedule(&st->t, cfg->trace_speed, cfg->trace_max_gap_s, st->sched);
    size_t n = st->t.n;
    if (cfg->requests > 0 && (unsigned long long)cfg->requests < n)
        n = (size_t)cfg->requests;
    if (cfg->duration_s > 0) {
        uint64_t end = (uint64_t)(cfg->duration_s * 1e9);
        size_t k = 0;
        while (k < n && st->sched[k] < end)
            k++;
        n = k;
    }
    st->n_replay = n;
    /* The oracle's totals over what the run sends (the oracle is causal: the first n requests'
       values do not depend on later ones). */
    if (sb_trace_oracle(&st->t, n, err) != 0)
        return -1;
    st->own_ignore_eos = st->own_min_tokens = cfg->trace_force_output == SB_TRACE_OUTPUT_ON;
    st->user_extra = strdup("");
    if (cfg->extra_body && *cfg->extra_body) {
        cJSON *o = cJSON_Parse(cfg->extra_body);
        if (!o || !cJSON_IsObject(o)) {
            cJSON_Delete(o);
            return sb_err_set(err, "--extra-body is not a JSON object");
        }
        /* The user's own values win. */
        if (cJSON_GetObjectItemCaseSensitive(o, "ignore_eos"))
            st->own_ignore_eos = false;
        if (cJSON_GetObjectItemCaseSensitive(o, "min_tokens"))
            st->own_min_tokens = false;
        char *txt = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (!txt)
            return sb_err_set(err, "out of memory");
        size_t len = strlen(txt);
        free(st->user_extra);
        st->user_extra = len >= 2 ? strndup(txt + 1, len - 2) : strdup("");
        free(txt);
    }
    if (!st->user_extra)
        return sb_err_set(err, "out of memory");
    w->est_tokens = 0; /* per request: the truncation check has no single prompt size */
    return 0;
}

static int trace_prompt(const struct sb_workload *w, long long user, long long req_idx,
                        struct sb_prompt *p, struct sb_err *err)
{
    (void)user;
    const struct trace_state *st = w->priv;
    if (req_idx < 0 || (size_t)req_idx >= st->t.n)
        return sb_err_set(err, "trace request %lld is beyond the trace's %zu", req_idx, st->t.n);
    size_t i = (size_t)req_idx;
    sb_buf_reset(&p->text);
    sb_buf_reset(&p->extra);
    p->nonce[0] = '\0';
    if (sb_trace_prompt_text(&st->t, &st->words, (uint64_t)w->cfg->seed, i, &p->text) != 0)
        return sb_err_set(err, "trace request %zu: prompt too large", i);
    snprintf(p->hash, sizeof(p->hash), "%016" PRIx64, sb_hash64(p->text.data, p->text.len, 0));
    long long out = st->t.req[i].output_len;
    p->max_tokens = out;
    if (st->own_ignore_eos || st->own_min_tokens || st->user_extra[0]) {
        int rc = sb_buf_adds(&p->extra, "{");
        const char *sep = "";
        if (st->own_ignore_eos) {
            rc |= sb_buf_adds(&p->extra, "\"ignore_eos\":true");
            sep = ",";
        }
        if (st->own_min_tokens) {
            rc |= sb_buf_addf(&p->extra, "%s\"min_tokens\":%lld", sep, out);
            sep = ",";
        }
        if (st->user_extra[0])
            rc |= sb_buf_addf(&p->extra, "%s%s", sep, st->user_extra);
        rc |= sb_buf_adds(&p->extra, "}");
        if (rc)
            return sb_err_set(err, "trace request %zu: extra fields too large", i);
    }
    return 0;
}

static int trace_constant(const struct sb_workload *w)
{
    (void)w;
    return 0;
}

static uint64_t trace_arrival(const struct sb_workload *w, long long k)
{
    const struct trace_state *st = w->priv;
    return k >= 0 && (size_t)k < st->n_replay ? st->sched[k] : UINT64_MAX;
}

static void trace_annotate(const struct sb_workload *w, long long req_idx, struct sb_record *rec)
{
    const struct trace_state *st = w->priv;
    if (req_idx < 0 || (size_t)req_idx >= st->t.n)
        return;
    const struct sb_trace_req *r = &st->t.req[req_idx];
    rec->trace_idx = req_idx;
    rec->reusable_tokens = r->reusable_tokens;
    rec->reuse_distance_tokens = r->reuse_distance;
    rec->context_tokens = rec->context_tokens_nominal = r->input_len;
    /* Exact by construction: every block word is one token (checked at load). */
    if (w->tok)
        rec->prompt_tokens_client = r->input_len + st->bos;
}

static void trace_release(struct sb_workload *w)
{
    struct trace_state *st = w->priv;
    if (!st)
        return;
    sb_trace_release(&st->t);
    free(st->sched);
    free(st->user_extra);
    free(st);
    w->priv = NULL;
}

const struct sb_trace *sb_workload_trace_of(const struct sb_workload *w, size_t *n_replay,
                                            size_t *capped)
{
    if (!w->ops || w->ops != &sb_workload_trace || !w->priv)
        return NULL;
    const struct trace_state *st = w->priv;
    if (n_replay)
        *n_replay = st->n_replay;
    if (capped)
        *capped = st->capped;
    return &st->t;
}

const struct sb_workload_ops sb_workload_trace = {
    .name = "trace",
    .init = trace_init,
    .prompt = trace_prompt,
    .per_user_constant = trace_constant,
    .arrival_ns = trace_arrival,
    .annotate = trace_annotate,
    .release = trace_release,
};
