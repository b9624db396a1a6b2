/*
 * Unit tests for sb/opt.h: one small option table declared here drives defaults, flags, YAML
 * configs, --help and the resolved YAML, the way a command's table does.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "sb/opt.h"
#include "sb/util.h"

struct topts {
    char *name;
    bool verbose;
    long long concurrency;
    double rate;
    char *models;
    bool stream;
    long long max_num_seqs;
    long long max_model_len;
    bool dynamo;
    uint64_t tier0_capacity;
    int policy;
    uint64_t tier1_capacity;
    char *api_key;
    char *config;
    long long seed;
};

#define O(f) offsetof(struct topts, f)

static const char *const policies[] = {"lru", "lfu", "fifo", NULL};

static const struct sb_opt topts_table[] = {
    {.key = "name",
     .flag = "name",
     .type = SB_OPT_STR,
     .offset = O(name),
     .def = "bench",
     .argname = "NAME",
     .help = "run name"},
    {.key = "verbose",
     .flag = "verbose",
     .type = SB_OPT_BOOL,
     .offset = O(verbose),
     .help = "print more"},
    {.key = "run.concurrency",
     .flag = "concurrency",
     .type = SB_OPT_INT,
     .offset = O(concurrency),
     .def = "8",
     .argname = "N",
     .help = "concurrent users",
     .min = 1,
     .max = 1024},
    {.key = "run.rate",
     .flag = "rate",
     .type = SB_OPT_DOUBLE,
     .offset = O(rate),
     .def = "2.5",
     .argname = "RPS",
     .help = "requests per second",
     .min = 0,
     .max = 1000},
    {.key = "run.models",
     .flag = "models",
     .type = SB_OPT_LIST,
     .offset = O(models),
     .def = "llama",
     .argname = "M[,M]",
     .help = "models to call"},
    {.key = "run.stream",
     .flag = "stream",
     .type = SB_OPT_BOOL,
     .offset = O(stream),
     .def = "true",
     .help = "stream tokens"},
    {.key = "engine.max_num_seqs",
     .flag = "max-num-seqs",
     .type = SB_OPT_INT,
     .offset = O(max_num_seqs),
     .def = "256",
     .argname = "N",
     .help = "batch slots"},
    {.key = "engine.max_model_len",
     .flag = "max-model-len",
     .alias = "context_tokens",
     .type = SB_OPT_INT,
     .offset = O(max_model_len),
     .def = "8192",
     .argname = "N",
     .help = "context length"},
    {.key = "dynamo.enabled",
     .flag = "dynamo",
     .type = SB_OPT_BOOL,
     .offset = O(dynamo),
     .help = "use dynamo"},
    {.key = "dynamo.tier0.capacity_bytes",
     .flag = "tier0-capacity",
     .type = SB_OPT_SIZE,
     .offset = O(tier0_capacity),
     .def = "1GiB",
     .argname = "BYTES",
     .help = "tier 0 size"},
    {.key = "dynamo.tier0.policy",
     .flag = "policy",
     .type = SB_OPT_ENUM,
     .offset = O(policy),
     .def = "lru",
     .argname = "P",
     .help = "eviction policy",
     .choices = policies},
    {.key = "dynamo.tier1.capacity_bytes", /* YAML only */
     .type = SB_OPT_SIZE,
     .offset = O(tier1_capacity),
     .def = "64GiB",
     .help = "tier 1 size"},
    {.key = "api_key",
     .flag = "api-key",
     .type = SB_OPT_STR,
     .offset = O(api_key),
     .argname = "KEY",
     .help = "bearer token",
     .flags = SB_OPT_SECRET},
    {.flag = "config",
     .type = SB_OPT_STR,
     .offset = O(config),
     .argname = "FILE",
     .help = "YAML config",
     .flags = SB_OPT_CONFIG | SB_OPT_NOYAML},
    {.key = "seed",
     .flag = "seed",
     .type = SB_OPT_INT,
     .offset = O(seed),
     .def = "42",
     .argname = "N",
     .help = "random seed"},
};

#define NOPTS    SB_ARRAY_SIZE(topts_table)
#define MAX_ARGS 24

/* An option by YAML key, else by flag spelling. */
static const struct sb_opt *lookup(const char *name)
{
    const struct sb_opt *o = sb_opt_find_key(topts_table, NOPTS, name);
    if (!o)
        o = sb_opt_find_flag(topts_table, NOPTS, name);
    assert_non_null(o);
    return o;
}

/* An option's current value as text, so one table can check fields of every type. */
static const char *field_text(const struct topts *t, const char *name, char *buf, size_t cap)
{
    const struct sb_opt *o = lookup(name);
    const char *p = (const char *)t + o->offset;
    switch (o->type) {
    case SB_OPT_BOOL:
        snprintf(buf, cap, "%s", *(const bool *)p ? "true" : "false");
        break;
    case SB_OPT_INT:
        snprintf(buf, cap, "%lld", *(const long long *)p);
        break;
    case SB_OPT_DOUBLE:
        snprintf(buf, cap, "%g", *(const double *)p);
        break;
    case SB_OPT_SIZE:
        snprintf(buf, cap, "%llu", (unsigned long long)*(const uint64_t *)p);
        break;
    case SB_OPT_ENUM:
        snprintf(buf, cap, "%s", o->choices[*(const int *)p]);
        break;
    case SB_OPT_STR:
    case SB_OPT_LIST:
    case SB_OPT_JSON: {
        const char *s = *(char *const *)p;
        snprintf(buf, cap, "%s", s ? s : "(null)");
        break;
    }
    }
    return buf;
}

static void check_field(const struct topts *t, const char *name, const char *want)
{
    char buf[256];
    print_message("  %s = %s\n", name, want);
    assert_string_equal(field_text(t, name, buf, sizeof(buf)), want);
}

/* Runs sb_opt_parse over a NULL-terminated argv (argv[0] is the command). */
static int parse(struct topts *t, struct sb_opt_result *res, struct sb_err *err,
                 const char *const *args)
{
    static char *argv[MAX_ARGS + 1];
    int argc = 0;
    while (args[argc]) {
        assert_true(argc < MAX_ARGS);
        argv[argc] = (char *)args[argc];
        argc++;
    }
    argv[argc] = NULL;
    memset(t, 0, sizeof(*t));
    sb_err_clear(err);
    return sb_opt_parse(topts_table, NOPTS, t, argc, argv, res, err);
}

static void done(struct topts *t, struct sb_opt_result *res)
{
    sb_opt_release(topts_table, NOPTS, t);
    free(res->positional);
    res->positional = NULL;
}

/* Temporary files of the running test; the teardown removes them even when an assertion fails. */
static char tmp_paths[32][64];
static size_t ntmp;

static int remove_tmp(void **state)
{
    (void)state;
    for (size_t i = 0; i < ntmp; i++)
        unlink(tmp_paths[i]);
    ntmp = 0;
    return 0;
}

/* Writes text into a fresh temporary file; path receives its name. */
static void write_tmp(char *path, size_t cap, const char *text)
{
    assert_true(ntmp < SB_ARRAY_SIZE(tmp_paths));
    snprintf(tmp_paths[ntmp], sizeof(tmp_paths[ntmp]), "/tmp/sb_test_opt_XXXXXX");
    int fd = mkstemp(tmp_paths[ntmp]);
    assert_true(fd >= 0);
    snprintf(path, cap, "%s", tmp_paths[ntmp++]);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    assert_true(fputs(text, f) >= 0);
    assert_int_equal(fclose(f), 0);
}

static const struct {
    const char *name, *want;
} defaults[] = {
    {"name", "bench"},
    {"verbose", "false"},
    {"run.concurrency", "8"},
    {"run.rate", "2.5"},
    {"run.models", "llama"},
    {"run.stream", "true"},
    {"engine.max_num_seqs", "256"},
    {"engine.max_model_len", "8192"},
    {"dynamo.enabled", "false"},
    {"dynamo.tier0.capacity_bytes", "1073741824"},
    {"dynamo.tier0.policy", "lru"},
    {"dynamo.tier1.capacity_bytes", "68719476736"},
    {"api_key", "(null)"},
    {"config", "(null)"},
    {"seed", "42"},
};

static void test_defaults(void **state)
{
    (void)state;
    struct topts t;
    struct sb_err err;
    memset(&t, 0, sizeof(t));
    sb_err_clear(&err);
    assert_int_equal(sb_opt_defaults(topts_table, NOPTS, &t, &err), 0);
    for (size_t i = 0; i < SB_ARRAY_SIZE(defaults); i++)
        check_field(&t, defaults[i].name, defaults[i].want);
    /* Applying defaults again resets changed values and frees the old strings. */
    t.concurrency = 99;
    assert_int_equal(sb_opt_set(lookup("name"), &t, "changed", "'--name'", &err), 0);
    assert_int_equal(sb_opt_set(lookup("api-key"), &t, "sk-1", "'--api-key'", &err), 0);
    assert_int_equal(sb_opt_defaults(topts_table, NOPTS, &t, &err), 0);
    check_field(&t, "run.concurrency", "8");
    check_field(&t, "name", "bench");
    check_field(&t, "api_key", "(null)");
    sb_opt_release(topts_table, NOPTS, &t);
    assert_null(t.name);
    assert_null(t.models);

    /* A default that does not parse is a programming error, reported as such. */
    static const struct sb_opt bad[] = {
        {.key = "x", .flag = "x", .type = SB_OPT_INT, .offset = 0, .def = "many"},
    };
    long long x = 0;
    assert_int_equal(sb_opt_defaults(bad, 1, &x, &err), -1);
    assert_string_equal(err.msg, "bad built-in default: invalid value 'many' for x: expected "
                                 "an integer");
}

static void test_find(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        bool by_flag;
        bool found;
        size_t offset;
    } cases[] = {
        {"max-num-seqs", true, true, O(max_num_seqs)},
        {"max_num_seqs", true, true, O(max_num_seqs)},
        {"context_tokens", true, true, O(max_model_len)},
        {"tier0_capacity", true, true, O(tier0_capacity)},
        {"config", true, true, O(config)},
        {"max-num-seq", true, false, 0},
        {"tier1-capacity", true, false, 0}, /* YAML only */
        {"run.concurrency", true, false, 0},
        {"engine.max_num_seqs", false, true, O(max_num_seqs)},
        {"dynamo.tier1.capacity_bytes", false, true, O(tier1_capacity)},
        {"api_key", false, true, O(api_key)}, /* secret, but still read from YAML */
        {"config", false, false, 0},          /* command line only */
        {"run", false, false, 0},             /* a section, not an option */
        {"concurrency", false, false, 0},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        const struct sb_opt *o = cases[i].by_flag
                                     ? sb_opt_find_flag(topts_table, NOPTS, cases[i].name)
                                     : sb_opt_find_key(topts_table, NOPTS, cases[i].name);
        print_message("find %s\n", cases[i].name);
        if (!cases[i].found) {
            assert_null(o);
            continue;
        }
        assert_non_null(o);
        assert_int_equal(o->offset, cases[i].offset);
    }
}

static void test_flags(void **state)
{
    (void)state;
    static const struct {
        const char *argv[8];
        const char *name, *want;
    } cases[] = {
        {{"cmd", NULL}, "run.concurrency", "8"},
        {{"cmd", "--concurrency", "16", NULL}, "run.concurrency", "16"},
        {{"cmd", "--concurrency=17", NULL}, "run.concurrency", "17"},
        {{"cmd", "--concurrency", "3", "--concurrency", "4", NULL}, "run.concurrency", "4"},
        {{"cmd", "--max_num_seqs", "64", NULL}, "engine.max_num_seqs", "64"},
        {{"cmd", "--max-num-seqs=65", NULL}, "engine.max_num_seqs", "65"},
        {{"cmd", "--max_num-seqs=66", NULL}, "engine.max_num_seqs", "66"},
        {{"cmd", "--context_tokens", "4096", NULL}, "engine.max_model_len", "4096"},
        {{"cmd", "--context_tokens=1024", NULL}, "engine.max_model_len", "1024"},
        {{"cmd", "--max-model-len", "2048", NULL}, "engine.max_model_len", "2048"},
        {{"cmd", "--verbose", NULL}, "verbose", "true"},
        {{"cmd", "--verbose", "false", NULL}, "verbose", "false"},
        {{"cmd", "--verbose", "yes", NULL}, "verbose", "true"},
        {{"cmd", "--verbose=0", NULL}, "verbose", "false"},
        {{"cmd", "--verbose", "--no-verbose", NULL}, "verbose", "false"},
        {{"cmd", "--no-stream", NULL}, "run.stream", "false"},
        {{"cmd", "--no-stream", "--stream", NULL}, "run.stream", "true"},
        {{"cmd", "--stream", "false", NULL}, "run.stream", "false"},
        {{"cmd", "--stream=off", NULL}, "run.stream", "false"},
        {{"cmd", "--rate", "0.25", NULL}, "run.rate", "0.25"},
        {{"cmd", "--rate=1e3", NULL}, "run.rate", "1000"},
        {{"cmd", "--tier0-capacity", "8GiB", NULL}, "dynamo.tier0.capacity_bytes", "8589934592"},
        {{"cmd", "--tier0_capacity=4k", NULL}, "dynamo.tier0.capacity_bytes", "4096"},
        {{"cmd", "--policy", "fifo", NULL}, "dynamo.tier0.policy", "fifo"},
        {{"cmd", "--policy=lfu", NULL}, "dynamo.tier0.policy", "lfu"},
        {{"cmd", "--models", "a,b", NULL}, "run.models", "a,b"},
        /* a repeated list flag accumulates (the default is replaced, not extended) */
        {{"cmd", "--models", "a", "--models", "b,c", NULL}, "run.models", "a,b,c"},
        {{"cmd", "--models=a", "--models", "b", "--models=c", NULL}, "run.models", "a,b,c"},
        {{"cmd", "--name", "x=y", NULL}, "name", "x=y"},
        {{"cmd", "--name=a=b", NULL}, "name", "a=b"},
        {{"cmd", "--name=", NULL}, "name", ""},
        {{"cmd", "--api-key", "sk-1", NULL}, "api_key", "sk-1"},
        {{"cmd", "--seed", "-5", NULL}, "seed", "-5"},
        {{"cmd", "--dynamo", NULL}, "dynamo.enabled", "true"},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        struct topts t;
        struct sb_opt_result res;
        struct sb_err err;
        print_message("case %zu\n", i);
        assert_int_equal(parse(&t, &res, &err, cases[i].argv), 0);
        assert_false(res.help);
        assert_int_equal(res.npositional, 0);
        check_field(&t, cases[i].name, cases[i].want);
        done(&t, &res);
    }
}

static void test_flag_errors(void **state)
{
    (void)state;
    static const struct {
        const char *argv[8];
        const char *msg;
    } cases[] = {
        {{"cmd", "--concurency", "4", NULL},
         "unknown option '--concurency' (did you mean '--concurrency'?)"},
        {{"cmd", "--max-num-seq", "4", NULL},
         "unknown option '--max-num-seq' (did you mean '--max-num-seqs'?)"},
        {{"cmd", "--tier1-capacity", "1", NULL},
         "unknown option '--tier1-capacity' (did you mean '--tier0-capacity'?)"},
        {{"cmd", "--no-concurrency", NULL},
         "unknown option '--no-concurrency' (did you mean '--concurrency'?)"},
        {{"cmd", "--frobnicate", NULL}, "unknown option '--frobnicate'"},
        {{"cmd", "--xyzzy=1", NULL}, "unknown option '--xyzzy'"},
        {{"cmd", "-x", NULL}, "unknown option '-x'"},
        {{"cmd", "--concurrency", NULL}, "option '--concurrency' needs a value"},
        {{"cmd", "--verbose", "--max_num_seqs", NULL}, "option '--max_num_seqs' needs a value"},
        {{"cmd", "--config", NULL}, "option '--config' needs a value"},
        {{"cmd", "--concurrency", "lots", NULL},
         "invalid value 'lots' for '--concurrency': expected an integer"},
        {{"cmd", "--concurrency=12abc", NULL},
         "invalid value '12abc' for '--concurrency': expected an integer"},
        {{"cmd", "--concurrency=", NULL},
         "invalid value '' for '--concurrency': expected an integer"},
        {{"cmd", "--concurrency=0", NULL},
         "value '0' for '--concurrency' is out of range [1, 1024]"},
        {{"cmd", "--concurrency", "2000", NULL},
         "value '2000' for '--concurrency' is out of range [1, 1024]"},
        {{"cmd", "--rate", "-1", NULL}, "value '-1' for '--rate' is out of range [0, 1000]"},
        {{"cmd", "--rate", "fast", NULL}, "invalid value 'fast' for '--rate': expected a number"},
        {{"cmd", "--policy", "mru", NULL},
         "invalid value 'mru' for '--policy': expected one of lru|lfu|fifo"},
        {{"cmd", "--policy", "LRU", NULL},
         "invalid value 'LRU' for '--policy': expected one of lru|lfu|fifo"},
        {{"cmd", "--tier0-capacity", "lots", NULL},
         "invalid value 'lots' for '--tier0-capacity': expected a size (e.g. 4096, 64KiB, 8GiB)"},
        {{"cmd", "--verbose=maybe", NULL},
         "invalid value 'maybe' for '--verbose': expected a boolean (true/false)"},
        /* the first bad flag is the one reported */
        {{"cmd", "--rate", "1", "--concurrency", "x", "--policy", "y", NULL},
         "invalid value 'x' for '--concurrency': expected an integer"},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        struct topts t;
        struct sb_opt_result res;
        struct sb_err err;
        print_message("expect: %s\n", cases[i].msg);
        assert_int_equal(parse(&t, &res, &err, cases[i].argv), -1);
        assert_string_equal(err.msg, cases[i].msg);
        done(&t, &res);
    }
}

static void test_positional_and_help(void **state)
{
    (void)state;
    struct topts t;
    struct sb_opt_result res;
    struct sb_err err;
    static const char *const args[] = {
        "cmd", "in.jsonl", "--verbose", "out", "-", "--concurrency", "5", "--", "--rate", "x", NULL,
    };
    assert_int_equal(parse(&t, &res, &err, args), 0);
    assert_false(res.help);
    assert_int_equal(res.npositional, 5);
    /* Borrowed from argv, in order; everything after "--" is positional. */
    assert_ptr_equal(res.positional[0], args[1]);
    assert_string_equal(res.positional[1], "out");
    assert_string_equal(res.positional[2], "-");
    assert_string_equal(res.positional[3], "--rate");
    assert_string_equal(res.positional[4], "x");
    check_field(&t, "verbose", "true");
    check_field(&t, "run.concurrency", "5");
    check_field(&t, "run.rate", "2.5");
    done(&t, &res);

    static const struct {
        const char *argv[6];
    } help[] = {
        {{"cmd", "--help", NULL}},
        {{"cmd", "-h", NULL}},
        /* --help wins over anything else, bad flags and missing configs included */
        {{"cmd", "--concurrency", "bad", "--help", NULL}},
        {{"cmd", "--config", "/nonexistent/sb.yaml", "--bogus", "-h", NULL}},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(help); i++) {
        assert_int_equal(parse(&t, &res, &err, help[i].argv), 0);
        assert_true(res.help);
        done(&t, &res);
    }
    /* After "--", --help is an ordinary word. */
    static const char *const literal[] = {"cmd", "--", "--help", NULL};
    assert_int_equal(parse(&t, &res, &err, literal), 0);
    assert_false(res.help);
    assert_int_equal(res.npositional, 1);
    assert_string_equal(res.positional[0], "--help");
    done(&t, &res);
}

static void test_help_text(void **state)
{
    (void)state;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    sb_opt_print_help(topts_table, NOPTS, f);
    assert_int_equal(fclose(f), 0);
    static const char want[] =
        "  --name NAME                    run name [default: bench]\n"
        "  --verbose                      print more\n"
        "  --concurrency N                concurrent users [default: 8]\n"
        "  --rate RPS                     requests per second [default: 2.5]\n"
        "  --models M[,M]                 models to call [default: llama]\n"
        "  --stream                       stream tokens\n"
        "  --max-num-seqs N               batch slots [default: 256]\n"
        "  --max-model-len N              context length [default: 8192] (also "
        "--context_tokens)\n"
        "  --dynamo                       use dynamo\n"
        "  --tier0-capacity BYTES         tier 0 size [default: 1GiB]\n"
        "  --policy P                     eviction policy (lru|lfu|fifo) [default: lru]\n"
        "  --api-key KEY                  bearer token\n"
        "  --config FILE                  YAML config\n"
        "  --seed N                       random seed [default: 42]\n";
    assert_string_equal(text, want);
    assert_null(strstr(text, "tier 1")); /* YAML-only options have no flag to list */
    free(text);
}

/* ---- YAML ---- */

#define MAX_CHECKS 12

static void test_yaml_load(void **state)
{
    (void)state;
    static const struct {
        const char *yaml;
        struct {
            const char *name, *want;
        } checks[MAX_CHECKS];
    } cases[] = {
        {"# nested sections, a flow list, a size suffix, nulls keep the default\n"
         "name: \"my bench\"\n"
         "verbose: true\n"
         "run:\n"
         "  concurrency: 16\n"
         "  rate: 7.5\n"
         "  models: [llama, \"qwen 2\"]\n"
         "engine:\n"
         "  max_num_seqs: 128\n"
         "  max_model_len: ~\n"
         "dynamo:\n"
         "  enabled: yes\n"
         "  tier0:\n"
         "    capacity_bytes: 8GiB\n"
         "    policy: lfu\n"
         "  tier1:\n"
         "    capacity_bytes:\n"
         "seed: null\n"
         "api_key: sk-from-yaml\n",
         {{"name", "my bench"},
          {"verbose", "true"},
          {"run.concurrency", "16"},
          {"run.rate", "7.5"},
          {"run.models", "llama,qwen 2"},
          {"run.stream", "true"},
          {"engine.max_num_seqs", "128"},
          {"engine.max_model_len", "8192"},
          {"dynamo.enabled", "true"},
          {"dynamo.tier0.capacity_bytes", "8589934592"},
          {"dynamo.tier0.policy", "lfu"},
          {"dynamo.tier1.capacity_bytes", "68719476736"}}},
        {"run:\n"
         "  models:\n"
         "    - a\n"
         "    - b\n"
         "    - c\n"
         "seed: 7\n"
         "api_key: sk-from-yaml\n",
         {{"run.models", "a,b,c"}, {"seed", "7"}, {"api_key", "sk-from-yaml"}}},
        {"run:\n  models: []\n", {{"run.models", ""}}},
        {"run:\n  models: x,y\n", {{"run.models", "x,y"}}},
        {"run: {concurrency: 3, stream: off}\n",
         {{"run.concurrency", "3"}, {"run.stream", "false"}}},
        {"dynamo.tier0.policy: fifo\n", {{"dynamo.tier0.policy", "fifo"}}},
        {"dynamo:\n  tier1: {capacity_bytes: 512MiB}\n",
         {{"dynamo.tier1.capacity_bytes", "536870912"}}},
        {"name: 'single quoted'\n", {{"name", "single quoted"}}},
        /* a section with every key commented out is empty, not unknown */
        {"run:\n  # concurrency: 4\ndynamo:\n  tier0: ~\n",
         {{"run.concurrency", "8"}, {"dynamo.tier0.policy", "lru"}}},
        {"name: \"\"\n", {{"name", ""}}},
        {"", {{"name", "bench"}}},
        {"# only a comment\n", {{"seed", "42"}}},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        char path[64];
        struct topts t;
        struct sb_err err;
        memset(&t, 0, sizeof(t));
        sb_err_clear(&err);
        print_message("case %zu\n", i);
        write_tmp(path, sizeof(path), cases[i].yaml);
        assert_int_equal(sb_opt_defaults(topts_table, NOPTS, &t, &err), 0);
        int rc = sb_opt_load_yaml(topts_table, NOPTS, &t, path, &err);
        if (rc != 0)
            print_message("%s\n", err.msg);
        assert_int_equal(rc, 0);
        for (size_t c = 0; c < MAX_CHECKS && cases[i].checks[c].name; c++)
            check_field(&t, cases[i].checks[c].name, cases[i].checks[c].want);
        sb_opt_release(topts_table, NOPTS, &t);
    }
}

static void test_yaml_errors(void **state)
{
    (void)state;
    static const struct {
        const char *yaml;
        int line;
        const char *msg; /* after "cannot parse 'PATH' line N: " */
    } cases[] = {
        {"run:\n  concurency: 4\n", 2,
         "unknown key 'run.concurency' (did you mean 'run.concurrency'?)"},
        {"engine:\n  max_num_seq: 4\n", 2,
         "unknown key 'engine.max_num_seq' (did you mean 'engine.max_num_seqs'?)"},
        {"name: x\nbogus_section_name: 1\n", 2, "unknown key 'bogus_section_name'"},
        {"run:\n  zzzzzzzz: 1\n", 2, "unknown key 'run.zzzzzzzz'"},
        {"seed: 1\nconfig: other.yaml\n", 2, "unknown key 'config'"},
        {"run:\n  rate: 1\n  concurrency: lots\n", 3,
         "invalid value 'lots' for key 'run.concurrency': expected an integer"},
        {"run:\n  concurrency: 0\n", 2,
         "value '0' for key 'run.concurrency' is out of range [1, 1024]"},
        {"verbose: perhaps\n", 1,
         "invalid value 'perhaps' for key 'verbose': expected a boolean (true/false)"},
        {"dynamo:\n  tier0:\n    policy: mru\n", 3,
         "invalid value 'mru' for key 'dynamo.tier0.policy': expected one of lru|lfu|fifo"},
        {"dynamo:\n  tier0:\n    capacity_bytes: 8 gigs\n", 3,
         "invalid value '8 gigs' for key 'dynamo.tier0.capacity_bytes': expected a size (e.g. "
         "4096, 64KiB, 8GiB)"},
        {"name: a\nrun:\n  rate: 1\n  rate: 2\n", 4, "duplicate key 'rate'"},
        {"seed: 1\nname: a\nseed: 2\n", 3, "duplicate key 'seed'"},
        {"- a\n- b\n", 1, "the top level must be a mapping of keys"},
        {"just a string\n", 1, "the top level must be a mapping of keys"},
        {"run: 5\n", 1, "key 'run' is a section: it takes a mapping"},
        {"dynamo:\n  tier0: [a]\n", 2, "key 'dynamo.tier0' is a section: it takes a mapping"},
        {"seed: [1, 2]\n", 1, "key 'seed' takes an integer, not a list [1, 2]"},
        {"name:\n  first: x\n", 2, "key 'name' takes a string, not a mapping"},
        {"run:\n  models:\n    - a,b\n", 3, "key 'run.models': list item 'a,b' contains a comma"},
        {"run:\n  models: [[a]]\n", 2, "key 'run.models': list items must be plain values"},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        char path[64], want[512];
        struct topts t;
        struct sb_err err;
        memset(&t, 0, sizeof(t));
        sb_err_clear(&err);
        write_tmp(path, sizeof(path), cases[i].yaml);
        snprintf(want, sizeof(want), "cannot parse '%s' line %d: %s", path, cases[i].line,
                 cases[i].msg);
        print_message("expect: %s\n", want);
        assert_int_equal(sb_opt_defaults(topts_table, NOPTS, &t, &err), 0);
        int rc = sb_opt_load_yaml(topts_table, NOPTS, &t, path, &err);
        assert_int_equal(rc, -1);
        assert_string_equal(err.msg, want);
        sb_opt_release(topts_table, NOPTS, &t);
    }
}

/* libyaml's own errors: the message names the file and the line, then libyaml's words. */
static void test_yaml_malformed(void **state)
{
    (void)state;
    static const struct {
        const char *yaml;
        int line;
    } cases[] = {
        {"run:\n  concurrency: 4\n  rate: [1, 2\nseed: 3\n", 4},
        {"name: a\nrun:\n  concurrency: 4\n rate: 2\n", 4},
        {"name: \"open\nseed: 1\n", 3},
        {"seed: 1\n\tname: x\n", 2},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        char path[64], prefix[160];
        struct topts t;
        struct sb_err err;
        memset(&t, 0, sizeof(t));
        sb_err_clear(&err);
        write_tmp(path, sizeof(path), cases[i].yaml);
        snprintf(prefix, sizeof(prefix), "cannot parse '%s' line %d: ", path, cases[i].line);
        assert_int_equal(sb_opt_defaults(topts_table, NOPTS, &t, &err), 0);
        int rc = sb_opt_load_yaml(topts_table, NOPTS, &t, path, &err);
        print_message("got: %s\n", err.msg);
        assert_int_equal(rc, -1);
        assert_int_equal(strncmp(err.msg, prefix, strlen(prefix)), 0);
        assert_true(strlen(err.msg) > strlen(prefix));
        sb_opt_release(topts_table, NOPTS, &t);
    }

    /* A file that is not there. */
    struct topts t;
    struct sb_err err;
    memset(&t, 0, sizeof(t));
    sb_err_clear(&err);
    assert_int_equal(sb_opt_load_yaml(topts_table, NOPTS, &t, "/nonexistent-dir/sb.yaml", &err),
                     -1);
    assert_string_equal(err.msg,
                        "cannot open config '/nonexistent-dir/sb.yaml': No such file or directory");
}

static void test_config_flag(void **state)
{
    (void)state;
    char path[64], arg[96];
    write_tmp(path, sizeof(path),
              "run:\n"
              "  concurrency: 16\n"
              "  rate: 7.5\n"
              "dynamo:\n"
              "  tier0:\n"
              "    policy: lfu\n");
    snprintf(arg, sizeof(arg), "--config=%s", path);
    static const struct {
        const char *argv[8]; /* "@" stands for the config path, "@=" for --config=PATH */
        const char *concurrency, *rate, *policy;
        bool has_config;
    } cases[] = {
        /* the config applies first wherever --config is; flags win over it */
        {{"cmd", "--concurrency", "3", "--config", "@", NULL}, "3", "7.5", "lfu", true},
        {{"cmd", "--config", "@", "--concurrency", "3", NULL}, "3", "7.5", "lfu", true},
        {{"cmd", "--policy", "fifo", "@=", "--rate=1", NULL}, "16", "1", "fifo", true},
        {{"cmd", "@=", NULL}, "16", "7.5", "lfu", true},
        {{"cmd", NULL}, "8", "2.5", "lru", false},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        const char *argv[8];
        for (size_t a = 0; a < 8; a++) {
            argv[a] = cases[i].argv[a];
            if (argv[a] && strcmp(argv[a], "@") == 0)
                argv[a] = path;
            else if (argv[a] && strcmp(argv[a], "@=") == 0)
                argv[a] = arg;
        }
        struct topts t;
        struct sb_opt_result res;
        struct sb_err err;
        print_message("case %zu\n", i);
        assert_int_equal(parse(&t, &res, &err, argv), 0);
        check_field(&t, "run.concurrency", cases[i].concurrency);
        check_field(&t, "run.rate", cases[i].rate);
        check_field(&t, "dynamo.tier0.policy", cases[i].policy);
        check_field(&t, "config", cases[i].has_config ? path : "(null)");
        assert_int_equal(res.npositional, 0);
        done(&t, &res);
    }

    /* Errors in the config come back through sb_opt_parse. */
    char bad[64], want[256];
    write_tmp(bad, sizeof(bad), "run:\n  concurency: 4\n");
    const char *argv[] = {"cmd", "--config", bad, NULL};
    struct topts t;
    struct sb_opt_result res;
    struct sb_err err;
    assert_int_equal(parse(&t, &res, &err, argv), -1);
    snprintf(want, sizeof(want),
             "cannot parse '%s' line 2: unknown key 'run.concurency' (did you mean "
             "'run.concurrency'?)",
             bad);
    assert_string_equal(err.msg, want);
    done(&t, &res);

    const char *missing[] = {"cmd", "--verbose", "--config", "/nonexistent-dir/c.yaml", NULL};
    assert_int_equal(parse(&t, &res, &err, missing), -1);
    assert_string_equal(err.msg,
                        "cannot open config '/nonexistent-dir/c.yaml': No such file or directory");
    done(&t, &res);
}

static char *write_to_string(const struct topts *t)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    assert_int_equal(sb_opt_write_yaml(topts_table, NOPTS, t, f), 0);
    assert_int_equal(fclose(f), 0);
    return text;
}

static void test_write_yaml(void **state)
{
    (void)state;
    struct topts t;
    struct sb_opt_result res;
    struct sb_err err;

    /* The defaults: sections open in declaration order and close when the key leaves them. */
    static const char *const plain[] = {"cmd", "--api-key", "sk-secret", NULL};
    assert_int_equal(parse(&t, &res, &err, plain), 0);
    char *text = write_to_string(&t);
    assert_string_equal(text, "name: \"bench\"\n"
                              "verbose: false\n"
                              "run:\n"
                              "  concurrency: 8\n"
                              "  rate: 2.5\n"
                              "  models: [\"llama\"]\n"
                              "  stream: true\n"
                              "engine:\n"
                              "  max_num_seqs: 256\n"
                              "  max_model_len: 8192\n"
                              "dynamo:\n"
                              "  enabled: false\n"
                              "  tier0:\n"
                              "    capacity_bytes: 1073741824\n"
                              "    policy: \"lru\"\n"
                              "  tier1:\n"
                              "    capacity_bytes: 68719476736\n"
                              "seed: 42\n");
    free(text);
    done(&t, &res);

    /* Changed values, quoting, lists; the secret never appears. */
    /* clang-format off */
    static const char *const changed[] = {
        "cmd", "--name", "say \"hi\"\\", "--verbose", "--concurrency", "3", "--rate", "0.1",
        "--models", "a,b c", "--no-stream", "--dynamo", "--tier0-capacity", "8GiB",
        "--policy", "fifo", "--api-key", "sk-secret", "--seed", "-1", NULL,
    };
    /* clang-format on */
    assert_int_equal(parse(&t, &res, &err, changed), 0);
    text = write_to_string(&t);
    assert_string_equal(text, "name: \"say \\\"hi\\\"\\\\\"\n"
                              "verbose: true\n"
                              "run:\n"
                              "  concurrency: 3\n"
                              "  rate: 0.10000000000000001\n"
                              "  models: [\"a\", \"b c\"]\n"
                              "  stream: false\n"
                              "engine:\n"
                              "  max_num_seqs: 256\n"
                              "  max_model_len: 8192\n"
                              "dynamo:\n"
                              "  enabled: true\n"
                              "  tier0:\n"
                              "    capacity_bytes: 8589934592\n"
                              "    policy: \"fifo\"\n"
                              "  tier1:\n"
                              "    capacity_bytes: 68719476736\n"
                              "seed: -1\n");
    assert_null(strstr(text, "sk-secret"));
    assert_null(strstr(text, "api_key"));
    assert_null(strstr(text, "config"));

    /* Round trip: the written file loads back to the same values (the secret stays unset). */
    char path[64];
    write_tmp(path, sizeof(path), text);
    free(text);
    struct topts back;
    memset(&back, 0, sizeof(back));
    assert_int_equal(sb_opt_defaults(topts_table, NOPTS, &back, &err), 0);
    int rc = sb_opt_load_yaml(topts_table, NOPTS, &back, path, &err);
    if (rc != 0)
        print_message("%s\n", err.msg);
    assert_int_equal(rc, 0);
    for (size_t i = 0; i < SB_ARRAY_SIZE(defaults); i++) {
        char a[256], b[256];
        const char *name = defaults[i].name;
        if (strcmp(name, "api_key") == 0 || strcmp(name, "config") == 0)
            continue;
        print_message("  %s\n", name);
        assert_string_equal(field_text(&back, name, b, sizeof(b)),
                            field_text(&t, name, a, sizeof(a)));
    }
    assert_true(back.rate == t.rate);
    assert_null(back.api_key);
    assert_string_equal(t.api_key, "sk-secret");
    sb_opt_release(topts_table, NOPTS, &back);
    done(&t, &res);
}

/* A list is its items, trimmed, the empty ones dropped, however it was written: "a, b," from a
   flag or a YAML scalar must not become [" b", ""] in config.yaml, which then reloads as two
   items (found by tests/fuzz/fuzz_yaml). An item longer than 255 bytes is written whole. */
static void test_list_items(void **state)
{
    (void)state;
    struct topts t;
    struct sb_opt_result res;
    struct sb_err err;
    static const char *const spaced[] = {"cmd",      "--models", " a , b c,,\t",
                                         "--models", ", d ,",    NULL};
    assert_int_equal(parse(&t, &res, &err, spaced), 0);
    assert_string_equal(t.models, "a,b c,d");
    done(&t, &res);

    static const char *const empty[] = {"cmd", "--models", " , ", NULL};
    assert_int_equal(parse(&t, &res, &err, empty), 0);
    assert_string_equal(t.models, "");
    char *text = write_to_string(&t);
    assert_non_null(strstr(text, "  models: []\n"));
    free(text);
    done(&t, &res);

    char yaml[1024], longitem[301];
    memset(longitem, 'x', 300);
    longitem[300] = '\0';
    snprintf(yaml, sizeof(yaml), "run:\n  models:  a, %s ,  # a comment\n", longitem);
    char path[64];
    write_tmp(path, sizeof(path), yaml);
    assert_int_equal(sb_opt_defaults(topts_table, NOPTS, &t, &err), 0);
    assert_int_equal(sb_opt_load_yaml(topts_table, NOPTS, &t, path, &err), 0);
    char want[400];
    snprintf(want, sizeof(want), "a,%s", longitem);
    assert_string_equal(t.models, want);
    text = write_to_string(&t);
    snprintf(want, sizeof(want), "  models: [\"a\", \"%s\"]\n", longitem);
    assert_non_null(strstr(text, want));
    free(text);
    sb_opt_release(topts_table, NOPTS, &t);

    write_tmp(path, sizeof(path), "run:\n  models: [\" a \", \"\", b]\n");
    assert_int_equal(sb_opt_defaults(topts_table, NOPTS, &t, &err), 0);
    assert_int_equal(sb_opt_load_yaml(topts_table, NOPTS, &t, path, &err), 0);
    assert_string_equal(t.models, "a,b");
    sb_opt_release(topts_table, NOPTS, &t);
}

/* NEL, LINE SEPARATOR and PARAGRAPH SEPARATOR are line breaks to libyaml: written raw inside a
   quoted value, "a<NEL> b" came back as "a b" (found by tests/fuzz/fuzz_yaml). */
static void test_write_yaml_line_breaks(void **state)
{
    (void)state;
    struct topts t;
    struct sb_opt_result res;
    struct sb_err err;
    static const char *const argv[] = {"cmd", "--name", "a\xc2\x85 b\xe2\x80\xa8  c\xe2\x80\xa9 d",
                                       NULL};
    assert_int_equal(parse(&t, &res, &err, argv), 0);
    char *text = write_to_string(&t);
    assert_non_null(strstr(text, "name: \"a\\u0085 b\\u2028  c\\u2029 d\"\n"));
    char path[64];
    write_tmp(path, sizeof(path), text);
    free(text);
    struct topts back;
    memset(&back, 0, sizeof(back));
    assert_int_equal(sb_opt_defaults(topts_table, NOPTS, &back, &err), 0);
    assert_int_equal(sb_opt_load_yaml(topts_table, NOPTS, &back, path, &err), 0);
    assert_string_equal(back.name, t.name);
    sb_opt_release(topts_table, NOPTS, &back);
    done(&t, &res);
}

/* A STR option with choices stores the string but takes only the listed ones. */
static void test_str_choices(void **state)
{
    (void)state;
    static const char *const kinds[] = {"fixed_context", "trace", NULL};
    const struct sb_opt o = {.key = "run.workload",
                             .flag = "workload",
                             .type = SB_OPT_STR,
                             .offset = 0,
                             .choices = kinds};
    char *slot = NULL;
    struct sb_err err;
    assert_int_equal(sb_opt_set(&o, &slot, "trace", "'--workload'", &err), 0);
    assert_string_equal(slot, "trace");
    assert_int_equal(sb_opt_set(&o, &slot, "nosuch", "'--workload'", &err), -1);
    assert_string_equal(err.msg, "invalid value 'nosuch' for '--workload': expected one of "
                                 "fixed_context|trace");
    assert_string_equal(slot, "trace"); /* unchanged */
    free(slot);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_find),
        cmocka_unit_test(test_flags),
        cmocka_unit_test(test_flag_errors),
        cmocka_unit_test(test_str_choices),
        cmocka_unit_test(test_positional_and_help),
        cmocka_unit_test(test_help_text),
        cmocka_unit_test_teardown(test_yaml_load, remove_tmp),
        cmocka_unit_test_teardown(test_yaml_errors, remove_tmp),
        cmocka_unit_test_teardown(test_yaml_malformed, remove_tmp),
        cmocka_unit_test_teardown(test_config_flag, remove_tmp),
        cmocka_unit_test_teardown(test_write_yaml, remove_tmp),
        cmocka_unit_test_teardown(test_list_items, remove_tmp),
        cmocka_unit_test_teardown(test_write_yaml_line_breaks, remove_tmp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
