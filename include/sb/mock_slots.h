/*
 * llama.cpp's slots for `sparkbench mock --quirks llamacpp`: each slot keeps the KV of the last
 * prompt it served (and the tokens it generated) until it serves another prompt or is erased, and
 * a new request reuses the common prefix with its slot's cache. No I/O.
 */
#ifndef SB_MOCK_SLOTS_H
#define SB_MOCK_SLOTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One slot; prompt text is the cached prompt (owned), its tokens counted as the mock counts them.
 */
struct sb_mock_slot {
    char *prompt;
    size_t len;
    long long n_prompt;  /* prompt tokens of the cached prompt */
    long long n_tokens;  /* tokens in the slot's KV: the prompt and what was decoded after it */
    long long n_decoded; /* tokens generated for the last task */
    long long id_task;   /* the last task's number, -1 none */
    bool busy;
    uint64_t last_used; /* logical clock of the last release (least recently used goes first) */
};

struct sb_mock_slots {
    struct sb_mock_slot *v;
    size_t n;
    uint64_t clock;
};

/* n slots, all empty. 0, or -1 when out of memory. */
int sb_mock_slots_init(struct sb_mock_slots *s, size_t n);
void sb_mock_slots_release(struct sb_mock_slots *s);

/*
 * Assigns an idle slot to a prompt as llama.cpp's get_available_slot does: the idle slot whose
 * cached prompt shares the longest prefix with it when that prefix is over half the prompt
 * (--slot-prompt-similarity 0.5), else the least recently used idle slot. *cached is the common
 * prefix reused, in tokens (prefix bytes / 4, the mock's estimate), at most prompt_tokens - 1: the
 * last prompt token is always evaluated again. The slot then caches this prompt. Returns the
 * slot's index, or -1 when every slot is busy or out of memory.
 */
int sb_mock_slots_take(struct sb_mock_slots *s, const char *prompt, size_t len,
                       long long prompt_tokens, long long id_task, long long *cached);

/* The task on slot i ended after generating n_decoded tokens: its KV keeps the prompt and every
   generated token but the last (never decoded). */
void sb_mock_slots_put(struct sb_mock_slots *s, int i, long long n_decoded);

/* Erases an idle slot's cache; returns the tokens erased, or -1 when i is out of range or busy. */
long long sb_mock_slots_erase(struct sb_mock_slots *s, size_t i);

/* Erases every idle slot (the cache-reset endpoints); returns the tokens erased. */
long long sb_mock_slots_erase_all(struct sb_mock_slots *s);

/* Tokens held in all slots' KV now (llamacpp:kv_cache_tokens). */
long long sb_mock_slots_tokens(const struct sb_mock_slots *s);

#endif
