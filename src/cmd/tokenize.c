/*
 * `sparkbench tokenize --tokenizer T [--count | --ids | --decode] [--no-bos] [FILE|-]`: what a user
 * reaches for to check a prompt file. Loads the tokenizer (a tokenizer.json, a directory holding
 * one, or a Hugging Face repo id in the local cache) and prints the token count, the ids as one
 * line of JSON, or, with --decode, the text of the ids read from the input (a JSON array, or
 * numbers separated by spaces, commas or newlines). BOS follows the tokenizer's post-processor;
 * --no-bos leaves it out. Exit 0, 1 when the tokenizer or the input cannot be read, 2 for usage.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/buf.h"
#include "sb/cmd.h"
#include "sb/opt.h"
#include "sb/tokenizer.h"

#define TOKENIZE_MAX_INPUT (4ull << 30)

struct tokenize_opts {
    char *tokenizer;
    bool count, ids, decode, no_bos;
};

#define O(f) offsetof(struct tokenize_opts, f)
static const struct sb_opt tokenize_options[] = {
    {.flag = "tokenizer",
     .type = SB_OPT_STR,
     .offset = O(tokenizer),
     .argname = "T",
     .help = "tokenizer.json, a directory holding one, or a Hugging Face repo id (ORG/NAME) in the "
             "local cache ($HF_HUB_CACHE, $HF_HOME/hub, ~/.cache/huggingface/hub); never "
             "downloads"},
    {.flag = "count",
     .type = SB_OPT_BOOL,
     .offset = O(count),
     .help = "print the token count (the default)"},
    {.flag = "ids",
     .type = SB_OPT_BOOL,
     .offset = O(ids),
     .help = "print the token ids as one line of JSON"},
    {.flag = "decode",
     .type = SB_OPT_BOOL,
     .offset = O(decode),
     .help = "read ids (a JSON array, or numbers separated by spaces, commas or newlines) and "
             "print their text"},
    {.flag = "no-bos",
     .type = SB_OPT_BOOL,
     .offset = O(no_bos),
     .help = "leave out the special tokens the post-processor adds (BOS for Llama 3)"},
};
#define NOPTS (sizeof(tokenize_options) / sizeof(tokenize_options[0]))

static void usage(FILE *f)
{
    fputs(
        "usage: sparkbench tokenize --tokenizer T [--count | --ids | --decode] [--no-bos] "
        "[FILE|-]\n\n"
        "Tokenizes FILE (or standard input) with a Hugging Face tokenizer.json, natively and\n"
        "exactly (byte-level BPE: Llama 3 / 3.1 / 3.3, Qwen 2.5 / 3, GPT-2, gpt-oss), and prints\n"
        "the token count, the ids as one line of JSON, or with --decode the text of ids. BOS is\n"
        "added as the tokenizer's post-processor says unless --no-bos. Exit status: 0; 1 when\n"
        "the tokenizer or the input cannot be read; 2 for a usage error.\n\noptions:\n",
        f);
    sb_opt_print_help(tokenize_options, NOPTS, f);
}

static int read_input(const char *path, struct sb_buf *b)
{
    if (path && strcmp(path, "-") != 0)
        return sb_buf_add_file(b, path);
    char chunk[1 << 16];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), stdin)) > 0)
        if (sb_buf_add(b, chunk, n) != 0)
            return -1;
    return ferror(stdin) ? -1 : 0;
}

/* Parses ids separated by anything that is not a digit or '-' ("[1, 2]", "1 2\n3"). */
static int parse_ids(const char *s, size_t len, struct sb_ids *ids, char *bad, size_t badsz)
{
    size_t i = 0;
    while (i < len) {
        char c = s[i];
        if (c == '[' || c == ']' || c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            i++;
            continue;
        }
        char *end;
        errno = 0;
        long long v = strtoll(s + i, &end, 10);
        if (end == s + i || errno || v < 0 || v > INT32_MAX) {
            snprintf(bad, badsz, "'%.20s' is not a token id", s + i);
            return -1;
        }
        if (ids->n == ids->cap) {
            size_t cap = ids->cap ? ids->cap * 2 : 256;
            int32_t *p = realloc(ids->v, cap * sizeof(*p));
            if (!p) {
                snprintf(bad, badsz, "out of memory");
                return -1;
            }
            ids->v = p;
            ids->cap = cap;
        }
        ids->v[ids->n++] = (int32_t)v;
        i = (size_t)(end - s);
    }
    return 0;
}

int cmd_tokenize(int argc, char **argv)
{
    struct tokenize_opts opts = {0};
    struct sb_opt_result res = {0};
    struct sb_err err;
    struct sb_tokenizer *tok = NULL;
    struct sb_buf in, out;
    struct sb_ids ids = {0};
    int rc = 1;
    sb_err_clear(&err);
    sb_buf_init(&in, TOKENIZE_MAX_INPUT);
    sb_buf_init(&out, TOKENIZE_MAX_INPUT);
    if (sb_opt_parse(tokenize_options, NOPTS, &opts, argc, argv, &res, &err) != 0) {
        rc = sb_usage_error("tokenize", err.msg);
        goto out;
    }
    if (res.help) {
        usage(stdout);
        rc = 0;
        goto out;
    }
    if (!opts.tokenizer || !*opts.tokenizer) {
        rc = sb_usage_error("tokenize", "--tokenizer is required");
        goto out;
    }
    if ((int)opts.count + (int)opts.ids + (int)opts.decode > 1) {
        rc = sb_usage_error("tokenize", "--count, --ids and --decode exclude each other");
        goto out;
    }
    if (res.npositional > 1) {
        rc = sb_usage_error("tokenize", "takes at most one FILE");
        goto out;
    }
    const char *path = res.npositional ? res.positional[0] : NULL;
    if (sb_tokenizer_load(opts.tokenizer, &tok, &err) != 0) {
        fprintf(stderr, "sparkbench tokenize: %s\n", err.msg);
        goto out;
    }
    if (read_input(path, &in) != 0) {
        fprintf(stderr, "sparkbench tokenize: cannot read '%s': %s\n",
                path ? path : "standard input", strerror(errno));
        goto out;
    }
    if (opts.decode) {
        char bad[64];
        if (parse_ids(in.data ? in.data : "", in.len, &ids, bad, sizeof(bad)) != 0) {
            fprintf(stderr, "sparkbench tokenize: cannot decode: %s\n", bad);
            goto out;
        }
        if (sb_tokenizer_decode(tok, ids.v, ids.n, &out, &err) != 0) {
            fprintf(stderr, "sparkbench tokenize: %s\n", err.msg);
            goto out;
        }
        fwrite(out.data ? out.data : "", 1, out.len, stdout);
        rc = fflush(stdout) == 0 ? 0 : 1;
        goto out;
    }
    if (sb_tokenizer_encode(tok, in.data ? in.data : "", in.len, !opts.no_bos, &ids, &err) != 0) {
        fprintf(stderr, "sparkbench tokenize: %s\n", err.msg);
        goto out;
    }
    if (opts.ids) {
        sb_buf_add(&out, "[", 1);
        for (size_t i = 0; i < ids.n; i++)
            sb_buf_addf(&out, i ? ",%d" : "%d", ids.v[i]);
        sb_buf_add(&out, "]\n", 2);
        fwrite(out.data, 1, out.len, stdout);
    } else {
        printf("%zu\n", ids.n);
    }
    rc = fflush(stdout) == 0 ? 0 : 1;
out:
    sb_tokenizer_free(tok);
    sb_ids_release(&ids);
    sb_buf_release(&in);
    sb_buf_release(&out);
    sb_opt_release(tokenize_options, NOPTS, &opts);
    free(res.positional);
    return rc;
}
