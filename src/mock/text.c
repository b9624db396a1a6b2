/* Deterministic token text for the mock (see sb/mock_text.h). */
#include "sb/mock_text.h"

#include <stdbool.h>
#include <string.h>

#include "sb/util.h"

static const char *const lorem[] = {
    "lorem",      "ipsum",        "dolor",
    "sit",        "amet",         "consectetur",
    "adipiscing", "elit",         "sed",
    "do",         "eiusmod",      "tempor",
    "incididunt", "ut",           "labore",
    "et",         "dolore",       "magna",
    "aliqua",     "enim",         "ad",
    "minim",      "veniam",       "quis",
    "nostrud",    "exercitation", "ullamco",
    "laboris",    "nisi",         "aliquip",
    "ex",         "ea",           "commodo",
    "consequat",  "duis",         "aute",
    "irure",      "in",           "reprehenderit",
    "voluptate",  "velit",        "esse",
    "cillum",     "fugiat",       "nulla",
    "pariatur",   "excepteur",    "sint",
    "occaecat",   "cupidatat",    "non",
    "proident",   "sunt",         "culpa",
    "qui",        "officia",      "deserunt",
    "mollit",     "anim",         "id",
    "est",        "laborum",      "storage",
    "cache",
};

long long sb_mock_estimate_tokens(size_t bytes)
{
    return (long long)((bytes + 3) / 4);
}

void sb_mock_textgen_init(struct sb_mock_textgen *g, enum sb_mock_mode mode, uint64_t seed,
                          const char *prompt, size_t prompt_len)
{
    g->mode = mode;
    g->prompt = prompt;
    g->prompt_len = prompt ? prompt_len : 0;
    g->key = sb_mix64(seed ^ sb_hash64(prompt, g->prompt_len, 0));
    g->pos = 0;
    g->index = 0;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

/* The next whitespace-separated word of the prompt, wrapping around; false if there is none. */
static bool echo_word(struct sb_mock_textgen *g, const char **w, size_t *wl)
{
    for (int pass = 0; pass < 2; pass++) {
        while (g->pos < g->prompt_len && is_space(g->prompt[g->pos]))
            g->pos++;
        if (g->pos < g->prompt_len) {
            size_t start = g->pos;
            while (g->pos < g->prompt_len && !is_space(g->prompt[g->pos]))
                g->pos++;
            *w = g->prompt + start;
            *wl = g->pos - start;
            return true;
        }
        g->pos = 0;
    }
    return false;
}

size_t sb_mock_textgen_next(struct sb_mock_textgen *g, char *buf, size_t cap)
{
    const char *w = NULL;
    size_t wl = 0;
    if (g->mode == SB_MOCK_ECHO && echo_word(g, &w, &wl)) {
        if (wl > 32) {
            wl = 32; /* one token is at most a long word; never cut a UTF-8 sequence */
            while (wl > 1 && ((unsigned char)w[wl] & 0xC0) == 0x80)
                wl--;
        }
    } else {
        uint64_t h = sb_mix64(g->key + (uint64_t)g->index * 0x9e3779b97f4a7c15ull);
        w = lorem[h % SB_ARRAY_SIZE(lorem)];
        wl = strlen(w);
    }
    g->index++;
    if (cap < 2)
        return 0;
    if (wl > cap - 2)
        wl = cap - 2;
    buf[0] = ' ';
    memcpy(buf + 1, w, wl);
    buf[wl + 1] = '\0';
    return wl + 1;
}
