/*
 * The mock's token text: deterministic words from the seed ("lorem") or the prompt's own words
 * cycled ("echo"), and the prompt-token estimate used until an exact tokenizer is wired in.
 */
#ifndef SB_MOCK_TEXT_H
#define SB_MOCK_TEXT_H

#include <stddef.h>
#include <stdint.h>

enum sb_mock_mode {
    SB_MOCK_ECHO,
    SB_MOCK_LOREM,
};

/* Prompt tokens estimated as ceil(bytes / 4): the rule of thumb for English BPE vocabularies. */
long long sb_mock_estimate_tokens(size_t bytes);

/*
 * Token generator state for one request. `prompt` is borrowed and must outlive the generator
 * (echo mode reads it).
 */
struct sb_mock_textgen {
    enum sb_mock_mode mode;
    uint64_t key; /* seed mixed with the prompt's hash */
    const char *prompt;
    size_t prompt_len;
    size_t pos;      /* echo cursor */
    long long index; /* tokens produced so far */
};

void sb_mock_textgen_init(struct sb_mock_textgen *g, enum sb_mock_mode mode, uint64_t seed,
                          const char *prompt, size_t prompt_len);

/*
 * Writes the next token's text (a leading space then a word; never empty, never needs JSON
 * escaping beyond what sb_json_escape does) into buf and returns its length (< cap).
 */
size_t sb_mock_textgen_next(struct sb_mock_textgen *g, char *buf, size_t cap);

#endif
