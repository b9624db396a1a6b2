/*
 * A native, exact tokenizer for Hugging Face `tokenizer.json` files: byte-level BPE (Llama 3 / 3.1
 * / 3.3, Qwen 2.5 / 3, GPT-2, gpt-oss). It gives the same ids as the reference implementations:
 * added and special tokens are matched before pre-tokenization and never split; the pre-tokenizer's
 * Split regexes run on PCRE2 (JIT, Unicode properties); merges apply in rank order; the
 * post-processor's TemplateProcessing adds BOS. Any other model, normalizer, pre-tokenizer,
 * post-processor or decoder type is refused at load time with a one-line error naming the type.
 *
 * A tokenizer is not thread-safe (it keeps a pre-token cache and regex match state): use one per
 * thread. Invalid UTF-8 in the input is read as U+FFFD for each maximal invalid subpart (the WHATWG
 * rule, what Python's errors="replace" and node's Buffer.toString() do).
 */
#ifndef SB_TOKENIZER_H
#define SB_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sb/buf.h"
#include "sb/err.h"

struct sb_tokenizer;

/* A growable array of token ids; zero-initialise it, release with sb_ids_release(). */
struct sb_ids {
    int32_t *v;
    size_t n;
    size_t cap;
};

/* Frees the storage and leaves the array empty and reusable. */
void sb_ids_release(struct sb_ids *ids);

/*
 * Finds the tokenizer.json that spec names, without loading it: spec is a path to the file, a
 * directory holding one, or a Hugging Face repo id ("ORG/NAME") looked up in the local cache
 * ($HF_HUB_CACHE, $HF_HOME/hub, $XDG_CACHE_HOME/huggingface/hub, ~/.cache/huggingface/hub:
 * models--ORG--NAME/snapshots/<rev>/tokenizer.json, refs/main's revision first). Never downloads.
 * Writes the path into out (size outsz). On a miss the error lists every place it looked.
 */
int sb_tokenizer_resolve(const char *spec, char *out, size_t outsz, struct sb_err *err);

/* Loads the tokenizer spec names (see sb_tokenizer_resolve()). *out is freed with
   sb_tokenizer_free(). */
int sb_tokenizer_load(const char *spec, struct sb_tokenizer **out, struct sb_err *err);

/* Frees the tokenizer (NULL is fine). */
void sb_tokenizer_free(struct sb_tokenizer *tok);

/* The tokenizer.json path it was loaded from; valid until sb_tokenizer_free(). */
const char *sb_tokenizer_path(const struct sb_tokenizer *tok);

/* Number of ids (vocabulary and added tokens): every id is below this. */
size_t sb_tokenizer_vocab_size(const struct sb_tokenizer *tok);

/*
 * Appends the ids of text[0..len) to out. add_bos adds the post-processor's special tokens (BOS
 * for Llama 3); false gives the text's tokens only. Returns 0, or -1 (out of memory).
 */
int sb_tokenizer_encode(struct sb_tokenizer *tok, const char *text, size_t len, bool add_bos,
                        struct sb_ids *out, struct sb_err *err);

/* Counts the tokens of text[0..len) into *count, as sb_tokenizer_encode() would give them. */
int sb_tokenizer_count(struct sb_tokenizer *tok, const char *text, size_t len, bool add_bos,
                       size_t *count, struct sb_err *err);

/*
 * Appends the text of ids[0..n) to out (special tokens included, as their text). The bytes are
 * what the tokens stand for: a cut inside a multi-byte character gives its partial bytes.
 * Returns 0, or -1 for an id out of range or a full buffer.
 */
int sb_tokenizer_decode(const struct sb_tokenizer *tok, const int32_t *ids, size_t n,
                        struct sb_buf *out, struct sb_err *err);

#endif
