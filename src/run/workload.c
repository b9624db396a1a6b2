/*
 * Workloads (see sb/workload.h). fixed_context reads one prompt file; a nonce tag, when asked for,
 * goes at the start by default so no two users share a cacheable prefix (the old harness put it at
 * the end, which leaves the whole shared prefix reusable by a server's prefix cache).
 */
#include "sb/workload.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/util.h"

static const struct sb_workload_ops *const all_workloads[] = {&sb_workload_fixed_context};

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
        /* Without the exact tokenizer, 4 bytes per token; cut at a UTF-8 boundary. */
        long long keep_tokens = cfg->max_input_len - cfg->input_len_margin;
        if (keep_tokens < 1)
            return sb_err_set(err, "--max-input-len %lld leaves no room after a margin of %lld",
                              cfg->max_input_len, cfg->input_len_margin);
        size_t keep = (size_t)keep_tokens * 4;
        if (keep < w->prompt_len) {
            while (keep > 0 && ((unsigned char)w->prompt[keep] & 0xC0) == 0x80)
                keep--;
            w->prompt_len = keep;
            w->prompt[keep] = '\0';
            w->truncated = true;
        }
    }
    w->est_tokens = (long long)((w->prompt_len + 3) / 4);
    return 0;
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

int sb_workload_open(struct sb_workload *w, const struct sb_run_config *cfg, struct sb_err *err)
{
    memset(w, 0, sizeof(*w));
    w->cfg = cfg;
    for (size_t i = 0; i < SB_ARRAY_SIZE(all_workloads); i++)
        if (strcmp(all_workloads[i]->name, cfg->workload) == 0)
            w->ops = all_workloads[i];
    if (!w->ops)
        return sb_err_set(err, "unknown workload '%s' (available: fixed_context)", cfg->workload);
    return w->ops->init(w, err);
}

void sb_workload_release(struct sb_workload *w)
{
    free(w->prompt);
    free(w->source);
    w->prompt = w->source = NULL;
}

void sb_prompt_init(struct sb_prompt *p)
{
    sb_buf_init(&p->text, 512u << 20);
    p->nonce[0] = p->hash[0] = '\0';
}

void sb_prompt_release(struct sb_prompt *p)
{
    sb_buf_release(&p->text);
}
