/*
 * llama.cpp's slot cache for the mock's llamacpp quirk (see sb/mock_slots.h): which slot a prompt
 * lands on and how much of its KV is reused, following tools/server/server.cpp's
 * get_available_slot (similarity first, least recently used otherwise) and its prompt-cache rule
 * that the last prompt token is always evaluated.
 */
#include "sb/mock_slots.h"

#include <stdlib.h>
#include <string.h>

int sb_mock_slots_init(struct sb_mock_slots *s, size_t n)
{
    memset(s, 0, sizeof(*s));
    s->v = calloc(n ? n : 1, sizeof(*s->v));
    if (!s->v)
        return -1;
    s->n = n;
    for (size_t i = 0; i < n; i++)
        s->v[i].id_task = -1;
    return 0;
}

void sb_mock_slots_release(struct sb_mock_slots *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i].prompt);
    free(s->v);
    memset(s, 0, sizeof(*s));
}

/* Prompt tokens shared by the slot's cached prompt and this one. */
static long long common_tokens(const struct sb_mock_slot *sl, const char *prompt, size_t len)
{
    size_t n = sl->len < len ? sl->len : len, k = 0;
    while (k < n && sl->prompt[k] == prompt[k])
        k++;
    long long t = (long long)(k / 4);
    return t < sl->n_prompt ? t : sl->n_prompt;
}

int sb_mock_slots_take(struct sb_mock_slots *s, const char *prompt, size_t len,
                       long long prompt_tokens, long long id_task, long long *cached)
{
    int best = -1, lru = -1;
    long long best_common = 0;
    for (size_t i = 0; i < s->n; i++) {
        const struct sb_mock_slot *sl = &s->v[i];
        if (sl->busy)
            continue;
        long long c = sl->prompt ? common_tokens(sl, prompt, len) : 0;
        if (c > best_common && 2 * c > prompt_tokens) {
            best = (int)i;
            best_common = c;
        }
        if (lru < 0 || sl->last_used < s->v[lru].last_used)
            lru = (int)i;
    }
    int i = best >= 0 ? best : lru;
    if (i < 0)
        return -1;
    struct sb_mock_slot *sl = &s->v[i];
    long long c = sl->prompt ? common_tokens(sl, prompt, len) : 0;
    if (c >= prompt_tokens)
        c = prompt_tokens - 1;
    char *copy = malloc(len + 1);
    if (!copy)
        return -1;
    /* A prompt of token ids has no text (prompt NULL, len 0), and memcpy from NULL is undefined
       even for 0 bytes (found by tests/fuzz/fuzz_mock.c under UBSan). */
    if (len)
        memcpy(copy, prompt, len);
    copy[len] = '\0';
    free(sl->prompt);
    sl->prompt = copy;
    sl->len = len;
    sl->n_prompt = prompt_tokens;
    sl->n_tokens = prompt_tokens;
    sl->n_decoded = 0;
    sl->id_task = id_task;
    sl->busy = true;
    *cached = c > 0 ? c : 0;
    return i;
}

void sb_mock_slots_put(struct sb_mock_slots *s, int i, long long n_decoded)
{
    if (i < 0 || (size_t)i >= s->n)
        return;
    struct sb_mock_slot *sl = &s->v[i];
    sl->busy = false;
    sl->n_decoded = n_decoded;
    sl->n_tokens = sl->n_prompt + (n_decoded > 0 ? n_decoded - 1 : 0);
    sl->last_used = ++s->clock;
}

long long sb_mock_slots_erase(struct sb_mock_slots *s, size_t i)
{
    if (i >= s->n || s->v[i].busy)
        return -1;
    struct sb_mock_slot *sl = &s->v[i];
    long long n = sl->n_tokens;
    free(sl->prompt);
    sl->prompt = NULL;
    sl->len = 0;
    sl->n_prompt = sl->n_tokens = 0;
    return n;
}

long long sb_mock_slots_erase_all(struct sb_mock_slots *s)
{
    long long n = 0;
    for (size_t i = 0; i < s->n; i++) {
        long long e = sb_mock_slots_erase(s, i);
        n += e > 0 ? e : 0;
    }
    return n;
}

long long sb_mock_slots_tokens(const struct sb_mock_slots *s)
{
    long long n = 0;
    for (size_t i = 0; i < s->n; i++)
        n += s->v[i].n_tokens;
    return n;
}
