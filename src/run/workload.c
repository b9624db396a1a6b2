/*
 * Workloads (see sb/workload.h). fixed_context reads one prompt file; a nonce tag, when asked for,
 * goes at the start by default so no two users share a cacheable prefix (the old harness put it at
 * the end, which leaves the whole shared prefix reusable by a server's prefix cache).
 *
 * With a tokenizer, counts are exact. The base prompt is counted once at open. A nonce changes only
 * the pre-tokens next to it, so a nonce prompt costs the tokens of an edge of the base prompt
 * (about 256 bytes, cut where a pre-token starts: a space before a letter, after a non-space) with
 * the nonce, plus the base count without that edge; the first prompts are also counted in full and
 * a disagreement falls back to full counts. --max-input-len keeps the last N - M tokens: the cut is
 * at a token boundary found by decoding the dropped ids, moved to a character boundary and
 * recounted.
 */
#include "sb/workload.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/util.h"

/* The tokenizer's lock and the nonce-edge state, shared by the loop threads. */
struct sb_tokcount {
    pthread_mutex_t lock;
    size_t edge;           /* see the top comment; 0: count prompts in full */
    long long edge_tokens; /* tokens of the base prompt's edge, no BOS */
    int checks;            /* nonce prompts still to be checked against a full count */
};

#define EDGE_BYTES 256

static const struct sb_workload_ops *const all_workloads[] = {
    &sb_workload_fixed_context, &sb_workload_sessioned_chat, &sb_workload_trace};

static int read_file(const char *path, char **out, size_t *len, struct sb_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return sb_err_errno(err, errno, "cannot open prompt file '%s'", path);
    struct sb_buf b;
    sb_buf_init(&b, 256u << 20);
    char tmp[65536];
    size_t r;
    while ((r = fread(tmp, 1, sizeof(tmp), f)) > 0) {
        if (sb_buf_add(&b, tmp, r) != 0) {
            fclose(f);
            sb_buf_release(&b);
            return sb_err_set(err, "prompt file '%s' is larger than 256 MiB", path);
        }
    }
    bool bad = ferror(f);
    fclose(f);
    if (bad) {
        sb_buf_release(&b);
        return sb_err_set(err, "cannot read prompt file '%s'", path);
    }
    if (b.len == 0) {
        sb_buf_release(&b);
        return sb_err_set(err, "prompt file '%s' is empty", path);
    }
    *out = sb_buf_detach(&b, len);
    return 0;
}

/* Keeps the last keep tokens of the prompt (no BOS): the tail from a token boundary. */
static int keep_tail_tokens(struct sb_workload *w, long long keep, struct sb_err *err)
{
    struct sb_ids ids = {0};
    struct sb_buf dropped;
    sb_buf_init(&dropped, 4 * w->prompt_len + 16); /* U+FFFD for each invalid byte */
    int rc = sb_tokenizer_encode(w->tok, w->prompt, w->prompt_len, false, &ids, err);
    if (rc != 0 || (long long)ids.n <= keep)
        goto out;
    /* The bytes of the dropped ids are where the kept tail starts. */
    size_t drop = ids.n - (size_t)keep;
    size_t off = 0;
    size_t now = 0;
    for (;;) {
        sb_buf_reset(&dropped);
        rc = sb_tokenizer_decode(w->tok, ids.v, drop, &dropped, err);
        if (rc != 0)
            goto out;
        off = dropped.len < w->prompt_len ? dropped.len : w->prompt_len;
        while (off < w->prompt_len && ((unsigned char)w->prompt[off] & 0xC0) == 0x80)
            off++;
        rc = sb_tokenizer_count(w->tok, w->prompt + off, w->prompt_len - off, false, &now, err);
        if (rc != 0)
            goto out;
        if ((long long)now <= keep || drop >= ids.n)
            break;
        drop++;
    }
    w->trunc_from = (long long)ids.n;
    w->trunc_to = (long long)now;
    memmove(w->prompt, w->prompt + off, w->prompt_len - off);
    w->prompt_len -= off;
    w->prompt[w->prompt_len] = '\0';
    w->truncated = true;
out:
    sb_ids_release(&ids);
    sb_buf_release(&dropped);
    return rc;
}

/* Where a pre-token starts: a space after a non-space and before an ASCII letter. */
static bool piece_start(const char *s, size_t len, size_t i)
{
    if (i == 0 || i + 1 >= len || s[i] != ' ')
        return false;
    char b = s[i - 1], a = s[i + 1];
    return b != ' ' && b != '\n' && b != '\r' && b != '\t' &&
           ((a >= 'a' && a <= 'z') || (a >= 'A' && a <= 'Z'));
}

/* Counts the base prompt and picks the nonce edge. */
static int count_init(struct sb_workload *w, struct sb_err *err)
{
    const struct sb_run_config *cfg = w->cfg;
    struct sb_tokcount *tc = calloc(1, sizeof(*tc));
    if (!tc)
        return sb_err_set(err, "out of memory");
    pthread_mutex_init(&tc->lock, NULL);
    w->tc = tc;
    size_t n = 0;
    if (sb_tokenizer_count(w->tok, w->prompt, w->prompt_len, true, &n, err) != 0)
        return -1;
    w->exact_tokens = (long long)n;
    if (!cfg->nonce_per_user && !cfg->nonce_per_request)
        return 0;
    size_t len = w->prompt_len, edge = 0;
    if (cfg->nonce_position == SB_NONCE_START) {
        for (size_t i = EDGE_BYTES; i < len && !edge; i++)
            if (piece_start(w->prompt, len, i))
                edge = i;
    } else if (len > EDGE_BYTES) {
        for (size_t i = len - EDGE_BYTES; i > 0 && !edge; i--)
            if (piece_start(w->prompt, len, i))
                edge = i;
    }
    if (!edge)
        return 0;
    const char *e = cfg->nonce_position == SB_NONCE_START ? w->prompt : w->prompt + edge;
    size_t elen = cfg->nonce_position == SB_NONCE_START ? edge : len - edge;
    if (sb_tokenizer_count(w->tok, e, elen, false, &n, err) != 0)
        return -1;
    tc->edge = edge;
    tc->edge_tokens = (long long)n;
    tc->checks = 4;
    return 0;
}

int sb_workload_count(const struct sb_workload *w, const struct sb_prompt *p, long long *out,
                      struct sb_err *err)
{
    *out = -1;
    if (!w->tok)
        return 0;
    if (!p->nonce[0]) {
        *out = w->exact_tokens;
        return 0;
    }
    struct sb_tokcount *tc = w->tc;
    const struct sb_run_config *cfg = w->cfg;
    size_t n = 0;
    int rc = 0;
    pthread_mutex_lock(&tc->lock);
    if (tc->edge && p->text.len > w->prompt_len) {
        /* The nonce's part: what the text holds beyond the base prompt. */
        size_t extra = p->text.len - w->prompt_len;
        const char *e =
            cfg->nonce_position == SB_NONCE_START ? p->text.data : p->text.data + tc->edge;
        size_t elen = cfg->nonce_position == SB_NONCE_START ? tc->edge + extra
                                                            : w->prompt_len - tc->edge + extra;
        rc = sb_tokenizer_count(w->tok, e, elen, false, &n, err);
        *out = w->exact_tokens - tc->edge_tokens + (long long)n;
        if (rc == 0 && tc->checks > 0) {
            tc->checks--;
            rc = sb_tokenizer_count(w->tok, p->text.data, p->text.len, true, &n, err);
            if (rc == 0 && (long long)n != *out) {
                tc->edge = 0; /* not a clean boundary for this tokenizer: count in full */
                *out = (long long)n;
            }
        }
    } else {
        rc = sb_tokenizer_count(w->tok, p->text.data, p->text.len, true, &n, err);
        *out = (long long)n;
    }
    pthread_mutex_unlock(&tc->lock);
    if (rc != 0)
        *out = -1;
    return rc;
}

static int fixed_init(struct sb_workload *w, struct sb_err *err)
{
    const struct sb_run_config *cfg = w->cfg;
    char path[4096];
    if (cfg->prompt_file)
        snprintf(path, sizeof(path), "%s", cfg->prompt_file);
    else
        snprintf(path, sizeof(path), "%s/%lld_tokens.txt", cfg->prompts_dir, cfg->context_tokens);
    w->source = strdup(path);
    if (read_file(path, &w->prompt, &w->prompt_len, err) != 0) {
        if (!cfg->prompt_file)
            sb_err_prefix(err, "no prompt for --context-tokens %lld: ", cfg->context_tokens);
        return -1;
    }
    if (cfg->max_input_len > 0) {
        long long keep_tokens = cfg->max_input_len - cfg->input_len_margin;
        if (keep_tokens < 1)
            return sb_err_set(err, "--max-input-len %lld leaves no room after a margin of %lld",
                              cfg->max_input_len, cfg->input_len_margin);
        if (w->tok) {
            if (keep_tail_tokens(w, keep_tokens, err) != 0)
                return -1;
        } else {
            /* Without the exact tokenizer, 4 bytes per token; cut at a UTF-8 boundary. */
            size_t keep = (size_t)keep_tokens * 4;
            if (keep < w->prompt_len) {
                while (keep > 0 && ((unsigned char)w->prompt[keep] & 0xC0) == 0x80)
                    keep--;
                w->prompt_len = keep;
                w->prompt[keep] = '\0';
                w->truncated = true;
            }
        }
    }
    w->est_tokens = (long long)((w->prompt_len + 3) / 4);
    return w->tok ? count_init(w, err) : 0;
}

static int fixed_prompt(const struct sb_workload *w, long long user, long long req_idx,
                        struct sb_prompt *p, struct sb_err *err)
{
    const struct sb_run_config *cfg = w->cfg;
    sb_buf_reset(&p->text);
    p->nonce[0] = '\0';
    if (cfg->nonce_per_user || cfg->nonce_per_request) {
        uint64_t key = sb_mix64((uint64_t)cfg->seed ^ sb_mix64((uint64_t)user + 1));
        if (cfg->nonce_per_request)
            key = sb_mix64(key ^ sb_mix64((uint64_t)req_idx + 0x1000));
        snprintf(p->nonce, sizeof(p->nonce), "%016" PRIx64, key);
    }
    int rc = 0;
    if (p->nonce[0] && cfg->nonce_position == SB_NONCE_START)
        rc |= sb_buf_addf(&p->text, "[session %s] ", p->nonce);
    rc |= sb_buf_add(&p->text, w->prompt, w->prompt_len);
    if (p->nonce[0] && cfg->nonce_position == SB_NONCE_END)
        rc |= sb_buf_addf(&p->text, " [session %s]", p->nonce);
    if (rc)
        return sb_err_set(err, "prompt too large");
    snprintf(p->hash, sizeof(p->hash), "%016" PRIx64, sb_hash64(p->text.data, p->text.len, 0));
    return 0;
}

static int fixed_constant(const struct sb_workload *w)
{
    return !w->cfg->nonce_per_request;
}

const struct sb_workload_ops sb_workload_fixed_context = {
    .name = "fixed_context",
    .init = fixed_init,
    .prompt = fixed_prompt,
    .per_user_constant = fixed_constant,
};

int sb_workload_open(struct sb_workload *w, const struct sb_run_config *cfg,
                     struct sb_tokenizer *tok, struct sb_err *err)
{
    memset(w, 0, sizeof(*w));
    w->cfg = cfg;
    w->tok = tok;
    w->exact_tokens = w->trunc_from = w->trunc_to = -1;
    for (size_t i = 0; i < SB_ARRAY_SIZE(all_workloads); i++)
        if (strcmp(all_workloads[i]->name, cfg->workload) == 0)
            w->ops = all_workloads[i];
    if (!w->ops)
        return sb_err_set(err,
                          "unknown workload '%s' (available: fixed_context, sessioned_chat, trace)",
                          cfg->workload);
    return w->ops->init(w, err);
}

void sb_workload_release(struct sb_workload *w)
{
    if (w->ops && w->ops->release)
        w->ops->release(w);
    free(w->prompt);
    free(w->source);
    w->prompt = w->source = NULL;
    if (w->tc) {
        pthread_mutex_destroy(&w->tc->lock);
        free(w->tc);
        w->tc = NULL;
    }
}

void sb_prompt_init(struct sb_prompt *p)
{
    sb_buf_init(&p->text, 512u << 20);
    sb_buf_init(&p->extra, 1u << 20);
    p->nonce[0] = p->hash[0] = '\0';
    p->messages = false;
    p->max_tokens = -1;
}

void sb_prompt_release(struct sb_prompt *p)
{
    sb_buf_release(&p->text);
    sb_buf_release(&p->extra);
}
