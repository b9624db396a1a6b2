/*
 * `sparkbench prompts --tokenizer T --out DIR [--sizes LIST] [--seed S] [--tokenizer-name NAME]`:
 * writes DIR/<N>_tokens.txt holding exactly N tokens under T (text only, no BOS) for each size,
 * the aliases (1k = 1024 ... 64k = 65536) as symbolic links to the numbered files, and
 * DIR/MANIFEST.json: the seed, the tokenizer's name and the sha256 of its tokenizer.json, and
 * each file with its token count. Every file is counted again after it is built; a count that is
 * not N fails the command. Exit 0, 1 on failure, 2 for usage.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "sb/buf.h"
#include "sb/cmd.h"
#include "sb/opt.h"
#include "sb/prompts.h"
#include "sb/sha256.h"
#include "sb/tokenizer.h"
#include "sb/util.h"

#define PROMPTS_MAX_SIZES 64

struct prompts_opts {
    char *tokenizer, *tokenizer_name, *out, *sizes;
    long long seed;
};

#define O(f) offsetof(struct prompts_opts, f)
static const struct sb_opt prompts_options[] = {
    {.flag = "tokenizer",
     .type = SB_OPT_STR,
     .offset = O(tokenizer),
     .argname = "T",
     .help = "tokenizer.json, a directory holding one, or a Hugging Face repo id (ORG/NAME) in the "
             "local cache; never downloads"},
    {.flag = "out",
     .type = SB_OPT_STR,
     .offset = O(out),
     .argname = "DIR",
     .help = "directory for <N>_tokens.txt and MANIFEST.json (made if missing)"},
    {.flag = "sizes",
     .type = SB_OPT_LIST,
     .offset = O(sizes),
     .def = "128,256,512,1024,1536,2048,4096,8192,10000,12000,14000,15000,16384,32768,64000,65536,"
            "1k,2k,4k,8k,16k,32k,64k",
     .argname = "LIST",
     .help = "token counts, comma-separated; Kk is K * 1024 tokens, written as <K*1024>_tokens.txt "
             "with Kk_tokens.txt linking to it"},
    {.flag = "seed",
     .type = SB_OPT_INT,
     .offset = O(seed),
     .def = "1",
     .min = 0,
     .max = 9007199254740991.0,
     .argname = "S",
     .help = "seed of the text generator: the same seed and tokenizer give the same bytes"},
    {.flag = "tokenizer-name",
     .type = SB_OPT_STR,
     .offset = O(tokenizer_name),
     .argname = "NAME",
     .help = "the tokenizer's name in MANIFEST.json (default: the repo id, or the name of the "
             "directory holding tokenizer.json)"},
};
#define NOPTS (sizeof(prompts_options) / sizeof(prompts_options[0]))

static void usage(FILE *f)
{
    fputs("usage: sparkbench prompts --tokenizer T --out DIR [--sizes LIST] [--seed S]\n\n"
          "Writes DIR/<N>_tokens.txt of exactly N tokens under the tokenizer (text only, no BOS):\n"
          "synthetic operations prose, deterministic under the seed, cut and padded at word\n"
          "boundaries and counted again before it is written. Aliases (1k = 1024 tokens ...) are\n"
          "symbolic links. DIR/MANIFEST.json lists every file with its count, and the tokenizer's\n"
          "name and the sha256 of its tokenizer.json. Exit status: 0; 1 when a file cannot be\n"
          "made exact or written; 2 for a usage error.\n\noptions:\n",
          f);
    sb_opt_print_help(prompts_options, NOPTS, f);
}

struct size_item {
    long long n;
    char alias[24]; /* "" for a numbered file */
};

/* Parses the list into items: numbered files first (deduplicated, in order), then aliases. */
static int parse_sizes(const char *list, struct size_item *items, size_t *nitems, char *bad,
                       size_t badsz)
{
    long long nums[PROMPTS_MAX_SIZES];
    struct size_item aliases[PROMPTS_MAX_SIZES];
    size_t nn = 0, na = 0;
    const char *p = list;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char one[24];
        if (len == 0 || len >= sizeof(one)) {
            snprintf(bad, badsz, "'%.*s' is not a size", (int)(len < 30 ? len : 30), p);
            return -1;
        }
        memcpy(one, p, len);
        one[len] = '\0';
        long long n;
        bool alias;
        if (sb_prompts_parse_size(one, &n, &alias) != 0) {
            snprintf(bad, badsz, "'%s' is not a size (%d to 16777216 tokens, or Kk)", one,
                     SB_PROMPTS_MIN_TOKENS);
            return -1;
        }
        bool seen = false;
        for (size_t i = 0; i < nn; i++)
            seen = seen || nums[i] == n;
        if (!seen) {
            if (nn == PROMPTS_MAX_SIZES) {
                snprintf(bad, badsz, "more than %d sizes", PROMPTS_MAX_SIZES);
                return -1;
            }
            nums[nn++] = n;
        }
        if (alias && na < PROMPTS_MAX_SIZES) {
            aliases[na].n = n;
            snprintf(aliases[na].alias, sizeof(aliases[na].alias), "%lldk", n / 1024);
            na++;
        }
        p = e ? e + 1 : p + len;
    }
    *nitems = 0;
    for (size_t i = 0; i < nn; i++)
        items[(*nitems)++] = (struct size_item){.n = nums[i]};
    for (size_t i = 0; i < na; i++) {
        bool dup = false;
        for (size_t j = 0; j < i; j++)
            dup = dup || strcmp(aliases[j].alias, aliases[i].alias) == 0;
        if (!dup)
            items[(*nitems)++] = aliases[i];
    }
    return 0;
}

/* The default name: the repo id as given, or the directory that holds tokenizer.json. */
static void default_name(const char *spec, const char *path, char *out, size_t outsz)
{
    struct stat st;
    if (stat(spec, &st) != 0) {
        snprintf(out, outsz, "%s", spec);
        return;
    }
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    slash = strrchr(dir, '/');
    const char *base = slash ? slash + 1 : dir;
    size_t len = strlen(base);
    if (len >= outsz)
        len = outsz - 1;
    memcpy(out, base, len);
    out[len] = '\0';
}

int cmd_prompts(int argc, char **argv)
{
    struct prompts_opts opts = {0};
    struct sb_opt_result res = {0};
    struct sb_err err;
    struct sb_tokenizer *tok = NULL;
    struct sb_buf text;
    cJSON *manifest = NULL;
    char *json = NULL;
    int rc = 1;
    sb_err_clear(&err);
    sb_buf_init(&text, 1ull << 30);
    if (sb_cmd_parse("prompts", prompts_options, NOPTS, &opts, argc, argv, usage, &res, &rc) != 0)
        goto out;
    rc = 1;
    if (!opts.tokenizer || !*opts.tokenizer) {
        rc = sb_usage_error("prompts", "--tokenizer is required");
        goto out;
    }
    if (!opts.out || !*opts.out) {
        rc = sb_usage_error("prompts", "--out is required");
        goto out;
    }
    struct size_item items[2 * PROMPTS_MAX_SIZES];
    size_t nitems = 0;
    char bad[128];
    if (parse_sizes(opts.sizes ? opts.sizes : "", items, &nitems, bad, sizeof(bad)) != 0 ||
        (nitems == 0 && snprintf(bad, sizeof(bad), "--sizes is empty") > 0)) {
        rc = sb_usage_error("prompts", bad);
        goto out;
    }
    if (sb_tokenizer_load(opts.tokenizer, &tok, &err) != 0) {
        fprintf(stderr, "sparkbench prompts: %s\n", err.msg);
        goto out;
    }
    char hex[65], name[512];
    if (sb_sha256_file(sb_tokenizer_path(tok), hex, &err) != 0 || sb_mkdir_p(opts.out, &err) != 0) {
        fprintf(stderr, "sparkbench prompts: %s\n", err.msg);
        goto out;
    }
    if (opts.tokenizer_name && *opts.tokenizer_name)
        snprintf(name, sizeof(name), "%s", opts.tokenizer_name);
    else
        default_name(opts.tokenizer, sb_tokenizer_path(tok), name, sizeof(name));

    manifest = cJSON_CreateObject();
    cJSON *tj = cJSON_AddObjectToObject(manifest, "tokenizer");
    cJSON_AddStringToObject(tj, "name", name);
    cJSON_AddStringToObject(tj, "sha256", hex);
    cJSON_AddNumberToObject(manifest, "seed", (double)opts.seed);
    cJSON_AddBoolToObject(manifest, "bos", false);
    cJSON_AddStringToObject(manifest, "generator", "sparkbench prompts");
    cJSON *files = cJSON_AddArrayToObject(manifest, "files");
    for (size_t i = 0; i < nitems; i++) {
        char file[64], path[4200];
        cJSON *f = cJSON_CreateObject();
        cJSON_AddItemToArray(files, f);
        if (items[i].alias[0]) {
            char target[64];
            snprintf(file, sizeof(file), "%s_tokens.txt", items[i].alias);
            snprintf(target, sizeof(target), "%lld_tokens.txt", items[i].n);
            snprintf(path, sizeof(path), "%s/%s", opts.out, file);
            if ((unlink(path) != 0 && errno != ENOENT) || symlink(target, path) != 0) {
                fprintf(stderr, "sparkbench prompts: cannot link '%s' to %s: %s\n", path, target,
                        strerror(errno));
                goto out;
            }
            cJSON_AddStringToObject(f, "file", file);
            cJSON_AddNumberToObject(f, "tokens", (double)items[i].n);
            cJSON_AddStringToObject(f, "alias_of", target);
            printf("%s -> %s\n", path, target);
            continue;
        }
        snprintf(file, sizeof(file), "%lld_tokens.txt", items[i].n);
        snprintf(path, sizeof(path), "%s/%s", opts.out, file);
        uint64_t seed = (uint64_t)opts.seed;
        if (sb_prompts_make(tok, items[i].n, seed, &text, &err) != 0) {
            fprintf(stderr, "sparkbench prompts: %s: %s\n", file, err.msg);
            goto out;
        }
        size_t check = 0;
        if (sb_tokenizer_count(tok, text.data, text.len, false, &check, &err) != 0 ||
            check != (size_t)items[i].n) {
            fprintf(stderr, "sparkbench prompts: %s counts %zu tokens, not %lld\n", file, check,
                    items[i].n);
            goto out;
        }
        if (unlink(path) != 0 &&
            errno != ENOENT) { /* an old alias link must not be written through */
            fprintf(stderr, "sparkbench prompts: cannot replace '%s': %s\n", path, strerror(errno));
            goto out;
        }
        if (sb_write_file_atomic(path, text.data, text.len, &err) != 0) {
            fprintf(stderr, "sparkbench prompts: %s\n", err.msg);
            goto out;
        }
        uint8_t d[32];
        char fhex[65];
        static const char digits[] = "0123456789abcdef";
        sb_sha256(text.data, text.len, d);
        for (int k = 0; k < 32; k++) {
            fhex[2 * k] = digits[d[k] >> 4];
            fhex[2 * k + 1] = digits[d[k] & 15];
        }
        fhex[64] = '\0';
        cJSON_AddStringToObject(f, "file", file);
        cJSON_AddNumberToObject(f, "tokens", (double)items[i].n);
        cJSON_AddNumberToObject(f, "bytes", (double)text.len);
        cJSON_AddStringToObject(f, "sha256", fhex);
        printf("%s: %lld tokens, %zu bytes\n", path, items[i].n, text.len);
    }
    json = cJSON_Print(manifest);
    char mpath[4200];
    snprintf(mpath, sizeof(mpath), "%s/MANIFEST.json", opts.out);
    struct sb_buf mj;
    sb_buf_init(&mj, 1 << 24);
    int werr = !json || sb_buf_adds(&mj, json) || sb_buf_add(&mj, "\n", 1) ||
               sb_write_file_atomic(mpath, mj.data, mj.len, &err);
    sb_buf_release(&mj);
    if (werr) {
        fprintf(stderr, "sparkbench prompts: %s\n", err.msg[0] ? err.msg : "out of memory");
        goto out;
    }
    rc = fflush(stdout) == 0 ? 0 : 1;
out:
    free(json);
    cJSON_Delete(manifest);
    sb_tokenizer_free(tok);
    sb_buf_release(&text);
    sb_opt_release(prompts_options, NOPTS, &opts);
    free(res.positional);
    return rc;
}
