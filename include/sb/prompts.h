/*
 * Exact-length prompts: synthetic operations prose (inference servers, storage, telemetry, on-call
 * notes) that holds exactly N tokens under a given tokenizer, text only, no BOS. The text is built
 * from many sentence templates and a vocabulary, drawn from a seeded generator, so the same
 * (tokenizer, N, seed) always gives the same bytes and another seed another text.
 */
#ifndef SB_PROMPTS_H
#define SB_PROMPTS_H

#include <stdbool.h>
#include <stdint.h>

#include "sb/buf.h"
#include "sb/err.h"
#include "sb/tokenizer.h"

/* Smallest N a prompt can have (the document's header line is about 30 tokens). */
#define SB_PROMPTS_MIN_TOKENS 64

/*
 * Parses one size: digits ("1536") or an alias of K * 1024 tokens ("1k" .. "64k", any K >= 1).
 * *alias is set when the spelling was an alias. Returns 0, or -1 for anything else or a size below
 * SB_PROMPTS_MIN_TOKENS or above 16M.
 */
int sb_prompts_parse_size(const char *s, long long *n, bool *alias);

/*
 * Replaces out's content with a text of exactly n tokens under tok (counted without BOS), from
 * seed. Builds prose until the tokenizer counts more than n, cuts it at the last word boundary
 * that keeps it within n (a binary search over cut points, each one counted), then pads with
 * short words one token at a time. Returns 0, or -1 with err when the count cannot be hit exactly
 * or memory runs out.
 */
int sb_prompts_make(struct sb_tokenizer *tok, long long n, uint64_t seed, struct sb_buf *out,
                    struct sb_err *err);

#endif
