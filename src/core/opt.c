/*
 * One option table drives defaults, YAML configs, command-line flags, --help and the resolved
 * config.yaml (fio's options.c idea): a command never parses its own flags by hand, so a YAML key
 * and its flag can never drift apart.
 */
#include "sb/opt.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include <yaml.h>

#include "sb/util.h"

/* Entries one option table may hold (sb_opt_parse tracks repeated list flags in a bitmap). */
#define SB_OPT_MAX 256

#define FIELD(obj, o, T)  ((T *)((char *)(obj) + (o)->offset))
#define CFIELD(obj, o, T) ((const T *)((const char *)(obj) + (o)->offset))

static bool flag_eq(const char *want, const char *got)
{
    /* "max-num-seqs" also matches "max_num_seqs". */
    for (; *want && *got; want++, got++) {
        char a = *want == '_' ? '-' : *want;
        char b = *got == '_' ? '-' : *got;
        if (a != b)
            return false;
    }
    return *want == *got;
}

const struct sb_opt *sb_opt_find_flag(const struct sb_opt *opts, size_t n, const char *flag)
{
    for (size_t i = 0; i < n; i++) {
        if (opts[i].flag && flag_eq(opts[i].flag, flag))
            return &opts[i];
        if (opts[i].alias && strcmp(opts[i].alias, flag) == 0)
            return &opts[i];
    }
    return NULL;
}

const struct sb_opt *sb_opt_find_key(const struct sb_opt *opts, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++) {
        if (opts[i].flags & SB_OPT_NOYAML)
            continue;
        if (opts[i].key && strcmp(opts[i].key, key) == 0)
            return &opts[i];
        for (const char *const *a = opts[i].key_aliases; a && *a; a++)
            if (strcmp(*a, key) == 0)
                return &opts[i];
    }
    return NULL;
}

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return 64;
    size_t prev[64], cur[64];
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, sizeof(size_t) * (lb + 1));
    }
    return prev[lb];
}

/* The closest declared spelling, for "did you mean"; NULL when nothing is close. */
static const char *suggest(const struct sb_opt *opts, size_t n, const char *got, bool keys)
{
    const char *best = NULL;
    size_t glen = strlen(got);
    size_t best_d = 2 + glen / 5; /* accept distances up to 1 + len/5: typos, not guesses */
    for (size_t i = 0; i < n; i++) {
        const char *cand = keys ? opts[i].key : opts[i].flag;
        if (!cand || (keys && (opts[i].flags & SB_OPT_NOYAML)))
            continue;
        size_t d = edit_distance(cand, got);
        if (d < best_d) {
            best_d = d;
            best = cand;
        }
    }
    return best;
}

static const char *type_word(enum sb_opt_type t)
{
    switch (t) {
    case SB_OPT_BOOL:
        return "a boolean (true/false)";
    case SB_OPT_INT:
        return "an integer";
    case SB_OPT_DOUBLE:
        return "a number";
    case SB_OPT_SIZE:
        return "a size (e.g. 4096, 64KiB, 8GiB)";
    case SB_OPT_ENUM:
        return "one of the listed choices";
    case SB_OPT_STR:
        return "a string";
    case SB_OPT_LIST:
        return "a list";
    case SB_OPT_JSON:
        return "a mapping";
    }
    return "a value";
}

static int check_range(const struct sb_opt *o, double v, const char *what, const char *value,
                       struct sb_err *err)
{
    if (o->min < o->max && (v < o->min || v > o->max))
        return sb_err_set(err, "value '%s' for %s is out of range [%g, %g]", value, what, o->min,
                          o->max);
    return 0;
}

/* The index of value among o->choices, or -1 with err naming what and the choices. */
static int choice_index(const struct sb_opt *o, const char *value, const char *what,
                        struct sb_err *err)
{
    for (int i = 0; o->choices && o->choices[i]; i++)
        if (strcmp(o->choices[i], value) == 0)
            return i;
    char list[256] = "";
    size_t len = 0;
    for (int i = 0; o->choices && o->choices[i] && len < sizeof(list); i++)
        len +=
            (size_t)snprintf(list + len, sizeof(list) - len, "%s%s", i ? "|" : "", o->choices[i]);
    sb_err_set(err, "invalid value '%s' for %s: expected one of %s", value, what, list);
    return -1;
}

/* A list value as stored: its comma-separated items trimmed of blanks, empty ones dropped
   ("a, b," and "a,b" are one list), so that config.yaml writes back what loads back. */
static char *list_normalize(const char *value)
{
    char *out = malloc(strlen(value) + 1);
    if (!out)
        return NULL;
    size_t len = 0;
    for (const char *p = value; *p;) {
        size_t n = strcspn(p, ",");
        const char *b = p, *e = p + n;
        while (b < e && isspace((unsigned char)*b))
            b++;
        while (e > b && isspace((unsigned char)e[-1]))
            e--;
        if (e > b) {
            if (len)
                out[len++] = ',';
            memcpy(out + len, b, (size_t)(e - b));
            len += (size_t)(e - b);
        }
        p += n;
        if (*p == ',')
            p++;
    }
    out[len] = '\0';
    return out;
}

/* gcc -fanalyzer: GCC 12 loses the copy stored through FIELD(obj, o, char *), an offset into the
   caller's struct, which sb_opt_release frees (in sb_opt_set, and in sb_opt_defaults, where it
   follows sb_opt_set's copy of a default list) */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wanalyzer-malloc-leak"
int sb_opt_set(const struct sb_opt *o, void *obj, const char *value, const char *what,
               struct sb_err *err)
{
    switch (o->type) {
    case SB_OPT_BOOL: {
        bool b;
        if (sb_parse_bool(value, &b) != 0)
            return sb_err_set(err, "invalid value '%s' for %s: expected %s", value, what,
                              type_word(o->type));
        *FIELD(obj, o, bool) = b;
        return 0;
    }
    case SB_OPT_INT: {
        long long v;
        if (sb_parse_ll(value, &v) != 0)
            return sb_err_set(err, "invalid value '%s' for %s: expected %s", value, what,
                              type_word(o->type));
        if (check_range(o, (double)v, what, value, err) != 0)
            return -1;
        *FIELD(obj, o, long long) = v;
        return 0;
    }
    case SB_OPT_DOUBLE: {
        double v;
        if (sb_parse_double(value, &v) != 0)
            return sb_err_set(err, "invalid value '%s' for %s: expected %s", value, what,
                              type_word(o->type));
        if (check_range(o, v, what, value, err) != 0)
            return -1;
        *FIELD(obj, o, double) = v;
        return 0;
    }
    case SB_OPT_SIZE: {
        uint64_t v;
        if (sb_parse_size(value, &v) != 0)
            return sb_err_set(err, "invalid value '%s' for %s: expected %s", value, what,
                              type_word(o->type));
        if (check_range(o, (double)v, what, value, err) != 0)
            return -1;
        *FIELD(obj, o, uint64_t) = v;
        return 0;
    }
    case SB_OPT_ENUM: {
        int i = choice_index(o, value, what, err);
        if (i < 0)
            return -1;
        *FIELD(obj, o, int) = i;
        return 0;
    }
    case SB_OPT_JSON: {
        cJSON *j = cJSON_Parse(value);
        bool is_obj = cJSON_IsObject(j);
        cJSON_Delete(j);
        if (!is_obj)
            return sb_err_set(err,
                              "invalid value for %s: expected a JSON object like "
                              "'{\"ignore_eos\": true}'",
                              what);
    }
        /* fall through */
    case SB_OPT_STR:
    case SB_OPT_LIST: {
        /* A STR option with choices keeps its string but takes only those (the file and line
           of a config are then named, as for an ENUM). */
        if (o->type == SB_OPT_STR && o->choices && choice_index(o, value, what, err) < 0)
            return -1;
        if (o->check && o->check(value, err) != 0)
            return -1;
        char *copy = o->type == SB_OPT_LIST ? list_normalize(value) : strdup(value);
        if (!copy)
            return sb_err_set(err, "out of memory");
        char **slot = FIELD(obj, o, char *);
        free(*slot);
        *slot = copy;
        return 0;
    }
    }
    return sb_err_set(err, "internal error: option %s has no type", what);
}

int sb_opt_defaults(const struct sb_opt *opts, size_t n, void *obj, struct sb_err *err)
{
    for (size_t i = 0; i < n; i++) {
        const struct sb_opt *o = &opts[i];
        if (o->def) {
            if (sb_opt_set(o, obj, o->def, o->flag ? o->flag : o->key, err) != 0) {
                sb_err_prefix(err, "bad built-in default: ");
                return -1;
            }
            continue;
        }
        switch (o->type) {
        case SB_OPT_BOOL:
            *FIELD(obj, o, bool) = false;
            break;
        case SB_OPT_INT:
            *FIELD(obj, o, long long) = 0;
            break;
        case SB_OPT_DOUBLE:
            *FIELD(obj, o, double) = 0;
            break;
        case SB_OPT_SIZE:
            *FIELD(obj, o, uint64_t) = 0;
            break;
        case SB_OPT_ENUM:
            *FIELD(obj, o, int) = 0;
            break;
        case SB_OPT_STR:
        case SB_OPT_LIST:
        case SB_OPT_JSON: {
            char **slot = FIELD(obj, o, char *);
            free(*slot);
            *slot = NULL;
            break;
        }
        }
    }
    return 0;
}
#pragma GCC diagnostic pop

void sb_opt_release(const struct sb_opt *opts, size_t n, void *obj)
{
    for (size_t i = 0; i < n; i++) {
        if (opts[i].type == SB_OPT_STR || opts[i].type == SB_OPT_LIST ||
            opts[i].type == SB_OPT_JSON) {
            char **slot = FIELD(obj, &opts[i], char *);
            free(*slot);
            *slot = NULL;
        }
    }
}

/* ---- YAML ---- */

struct yaml_ctx {
    const struct sb_opt *opts;
    size_t n;
    void *obj;
    const char *path;
    yaml_document_t *doc;
    struct sb_err *err;
    const uint64_t *given; /* options given by flag (sb_opt_parse), or NULL */
};

static bool key_under(const char *key, const char *prefix, size_t len)
{
    return key && strncmp(key, prefix, len) == 0 && key[len] == '.';
}

static bool is_section(const struct sb_opt *opts, size_t n, const char *prefix)
{
    size_t len = strlen(prefix);
    for (size_t i = 0; i < n; i++) {
        if (key_under(opts[i].key, prefix, len))
            return true;
        for (const char *const *a = opts[i].key_aliases; a && *a; a++)
            if (key_under(*a, prefix, len))
                return true;
    }
    return false;
}

static int yaml_fail(struct yaml_ctx *c, const yaml_node_t *node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int yaml_fail(struct yaml_ctx *c, const yaml_node_t *node, const char *fmt, ...)
{
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return sb_err_set(c->err, "cannot parse '%s' line %lu: %s", c->path,
                      (unsigned long)node->start_mark.line + 1, msg);
}

static bool scalar_is_null(const yaml_node_t *v)
{
    const char *s = (const char *)v->data.scalar.value;
    return v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
           (s[0] == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0);
}

static int walk_mapping(struct yaml_ctx *c, yaml_node_t *map, const char *prefix);

/* A YAML subtree as cJSON: plain scalars that read as numbers, booleans or null keep that type. */
static cJSON *node_to_json(yaml_document_t *doc, yaml_node_t *node, int depth)
{
    if (!node || depth > 32)
        return NULL;
    if (node->type == YAML_SCALAR_NODE) {
        const char *s = (const char *)node->data.scalar.value;
        if (node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
            double d;
            bool b;
            if (scalar_is_null(node))
                return cJSON_CreateNull();
            if (strcmp(s, "true") == 0 || strcmp(s, "false") == 0) {
                sb_parse_bool(s, &b);
                return cJSON_CreateBool(b);
            }
            if (sb_parse_double(s, &d) == 0)
                return cJSON_CreateNumber(d);
        }
        return cJSON_CreateString(s);
    }
    if (node->type == YAML_SEQUENCE_NODE) {
        cJSON *arr = cJSON_CreateArray();
        for (yaml_node_item_t *it = node->data.sequence.items.start;
             it < node->data.sequence.items.top; it++) {
            cJSON *item = node_to_json(doc, yaml_document_get_node(doc, *it), depth + 1);
            if (!item) {
                cJSON_Delete(arr);
                return NULL;
            }
            cJSON_AddItemToArray(arr, item);
        }
        return arr;
    }
    cJSON *obj = cJSON_CreateObject();
    for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);
        cJSON *val = node_to_json(doc, yaml_document_get_node(doc, p->value), depth + 1);
        if (!k || k->type != YAML_SCALAR_NODE || !val) {
            cJSON_Delete(val);
            cJSON_Delete(obj);
            return NULL;
        }
        cJSON_AddItemToObject(obj, (const char *)k->data.scalar.value, val);
    }
    return obj;
}

/* The scalar under root.section.name, or NULL. */
static const char *doc_scalar(yaml_document_t *doc, const char *section, const char *name)
{
    yaml_node_t *map = yaml_document_get_root_node(doc);
    const char *want[2] = {section, name};
    for (int depth = 0; depth < 2; depth++) {
        if (!map || map->type != YAML_MAPPING_NODE)
            return NULL;
        yaml_node_t *next = NULL;
        for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
             p++) {
            yaml_node_t *k = yaml_document_get_node(doc, p->key);
            if (k && k->type == YAML_SCALAR_NODE &&
                strcmp((const char *)k->data.scalar.value, want[depth]) == 0)
                next = yaml_document_get_node(doc, p->value);
        }
        map = next;
    }
    return map && map->type == YAML_SCALAR_NODE ? (const char *)map->data.scalar.value : NULL;
}

/* "H2B" out of run.hypothesis or the leading word of run.id ("H2B_ctx_sweep_..."), else "". */
static void doc_hypothesis(yaml_document_t *doc, char *out, size_t cap)
{
    const char *ids[] = {doc_scalar(doc, "run", "hypothesis"), doc_scalar(doc, "run", "id")};
    out[0] = '\0';
    for (int i = 0; i < 2; i++) {
        const char *s = ids[i];
        size_t n = 0;
        if (!s || s[0] != 'H' || s[1] < '0' || s[1] > '9')
            continue;
        for (n = 2; s[n] >= '0' && s[n] <= '9'; n++)
            ;
        if (s[n] == 'A' || s[n] == 'B')
            n++;
        if (s[n] && s[n] != '_' && s[n] != '-' && s[n] != ' ')
            continue;
        snprintf(out, cap, "%.*s", (int)n, s);
        return;
    }
}

/* A list where one value goes: the Test Plan's section 13 template writes a sweep
   (run.context_tokens: [256, 512, ...]) into the run's config. A flag for the key on the command
   line picks the point (the runners pass one per point), so the list is skipped; without one,
   the run is refused saying what to do. */
static int scalar_list(struct yaml_ctx *c, yaml_node_t *v, const struct sb_opt *o, const char *key)
{
    size_t idx = (size_t)(o - c->opts);
    if (c->given && o->flag && (c->given[idx / 64] >> (idx % 64) & 1))
        return 0;
    char list[160] = "[", hyp[16];
    size_t len = 1;
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
         it++) {
        yaml_node_t *item = yaml_document_get_node(c->doc, *it);
        const char *s =
            item && item->type == YAML_SCALAR_NODE ? (const char *)item->data.scalar.value : "...";
        int w = snprintf(list + len, sizeof(list) - len, "%s%s",
                         it > v->data.sequence.items.start ? ", " : "", s);
        if (w < 0 || (size_t)w >= sizeof(list) - len - 5) {
            snprintf(list + len, sizeof(list) - len, ", ...");
            len = strlen(list);
            break;
        }
        len += (size_t)w;
    }
    snprintf(list + len, sizeof(list) - len, "]");
    /* Only run.* keys are a sweep's: the runners sweep them, one point per run. */
    if (!o->flag || strncmp(key, "run.", 4) != 0)
        return yaml_fail(c, v, "key '%s' takes %s, not a list %s", key, type_word(o->type), list);
    doc_hypothesis(c->doc, hyp, sizeof(hyp));
    if (!hyp[0])
        return yaml_fail(c, v,
                         "key '%s' takes %s, not a list %s: a run takes one value; give one with "
                         "--%s %s, or sweep the list with the hypothesis's runner "
                         "(runs/run_H<n>_*.sh --config %s)",
                         key, type_word(o->type), list, o->flag, o->argname ? o->argname : "VALUE",
                         c->path);
    return yaml_fail(c, v,
                     "key '%s' takes %s, not a list %s: a run takes one value; give one with "
                     "--%s %s, or sweep the list with the runner for %s (runs/run_%s_*.sh "
                     "--config %s)",
                     key, type_word(o->type), list, o->flag, o->argname ? o->argname : "VALUE", hyp,
                     hyp, c->path);
}

static int apply_node(struct yaml_ctx *c, yaml_node_t *knode, yaml_node_t *v, const char *key)
{
    const struct sb_opt *o = sb_opt_find_key(c->opts, c->n, key);
    if (o && o->type == SB_OPT_JSON) {
        if (v->type == YAML_SCALAR_NODE && scalar_is_null(v))
            return 0;
        if (v->type != YAML_MAPPING_NODE)
            return yaml_fail(c, v, "key '%s' takes a mapping", key);
        cJSON *j = node_to_json(c->doc, v, 0);
        char *text = j ? cJSON_PrintUnformatted(j) : NULL;
        cJSON_Delete(j);
        if (!text)
            return yaml_fail(c, v, "key '%s': cannot convert the mapping", key);
        char **slot = FIELD(c->obj, o, char *);
        free(*slot);
        *slot = text;
        return 0;
    }
    if (v->type == YAML_MAPPING_NODE) {
        if (is_section(c->opts, c->n, key))
            return walk_mapping(c, v, key);
        if (o)
            return yaml_fail(c, v, "key '%s' takes %s, not a mapping", key, type_word(o->type));
    }
    if (!o && is_section(c->opts, c->n, key)) {
        /* "run:" with every key commented out is an empty section, not an unknown key. */
        if (v->type == YAML_SCALAR_NODE && scalar_is_null(v))
            return 0;
        return yaml_fail(c, v, "key '%s' is a section: it takes a mapping", key);
    }
    if (!o) {
        const char *hint = suggest(c->opts, c->n, key, true);
        if (hint)
            return yaml_fail(c, knode, "unknown key '%s' (did you mean '%s'?)", key, hint);
        return yaml_fail(c, knode, "unknown key '%s'", key);
    }
    char what[300];
    snprintf(what, sizeof(what), "key '%s'", key);
    if (v->type == YAML_SEQUENCE_NODE) {
        if (o->type != SB_OPT_LIST)
            return scalar_list(c, v, o, key);
        size_t cap = 1, len = 0;
        char *joined = NULL;
        for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
             it++) {
            yaml_node_t *item = yaml_document_get_node(c->doc, *it);
            if (!item || item->type != YAML_SCALAR_NODE) {
                free(joined);
                return yaml_fail(c, v, "key '%s': list items must be plain values", key);
            }
            const char *s = (const char *)item->data.scalar.value;
            if (strchr(s, ',')) {
                free(joined);
                return yaml_fail(c, item, "key '%s': list item '%s' contains a comma", key, s);
            }
            size_t sl = strlen(s);
            char *grown = realloc(joined, cap + len + sl + 1);
            if (!grown) {
                free(joined);
                return sb_err_set(c->err, "out of memory");
            }
            joined = grown;
            cap += sl + 1;
            if (len)
                joined[len++] = ',';
            memcpy(joined + len, s, sl);
            len += sl;
            joined[len] = '\0';
        }
        struct sb_err inner;
        sb_err_clear(&inner);
        if (o->check && o->check(joined ? joined : "", &inner) != 0) {
            free(joined);
            return yaml_fail(c, v, "%s: %s", what, inner.msg);
        }
        char **slot = FIELD(c->obj, o, char *);
        free(*slot);
        *slot = list_normalize(joined ? joined : "");
        free(joined);
        if (!*slot)
            return sb_err_set(c->err, "out of memory");
        return 0;
    }
    if (v->type != YAML_SCALAR_NODE)
        return yaml_fail(c, v, "key '%s' takes %s", key, type_word(o->type));
    if (scalar_is_null(v))
        return 0; /* an empty value keeps the default */
    struct sb_err inner;
    sb_err_clear(&inner);
    if (sb_opt_set(o, c->obj, (const char *)v->data.scalar.value, what, &inner) != 0) {
        if (!strstr(inner.msg, what)) /* a check's message names the flag only */
            return yaml_fail(c, v, "%s: %s", what, inner.msg);
        return yaml_fail(c, v, "%s", inner.msg);
    }
    return 0;
}

static int walk_mapping(struct yaml_ctx *c, yaml_node_t *map, const char *prefix)
{
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
        if (!k || !v)
            continue;
        if (k->type != YAML_SCALAR_NODE)
            return yaml_fail(c, k, "keys must be plain names");
        const char *name = (const char *)k->data.scalar.value;
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
            yaml_node_t *k2 = yaml_document_get_node(c->doc, q->key);
            if (k2 && k2->type == YAML_SCALAR_NODE &&
                strcmp((const char *)k2->data.scalar.value, name) == 0)
                return yaml_fail(c, k, "duplicate key '%s'", name);
        }
        char key[256];
        if (prefix[0])
            snprintf(key, sizeof(key), "%s.%s", prefix, name);
        else
            snprintf(key, sizeof(key), "%s", name);
        if (apply_node(c, k, v, key) != 0)
            return -1;
    }
    return 0;
}

int sb_yaml_load_file(const char *path, const char *what, bool missing_ok,
                      struct yaml_document_s *doc, struct sb_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (missing_ok && errno == ENOENT)
            return 1;
        return sb_err_errno(err, errno, "cannot open %s'%s'", what, path);
    }
    yaml_parser_t parser;
    int rc = -1;
    if (!yaml_parser_initialize(&parser)) {
        fclose(f);
        return sb_err_set(err, "out of memory");
    }
    yaml_parser_set_input_file(&parser, f);
    if (!yaml_parser_load(&parser, doc))
        sb_err_set(err, "cannot parse '%s' line %lu: %s", path,
                   (unsigned long)parser.problem_mark.line + 1,
                   parser.problem ? parser.problem : "malformed YAML");
    else
        rc = 0;
    yaml_parser_delete(&parser);
    fclose(f);
    return rc;
}

static int load_yaml(const struct sb_opt *opts, size_t n, void *obj, const char *path,
                     const uint64_t *given, struct sb_err *err)
{
    yaml_document_t doc;
    if (sb_yaml_load_file(path, "config ", false, &doc, err) != 0)
        return -1;
    int rc = -1;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) {
        rc = 0; /* an empty file sets nothing */
        goto out_doc;
    }
    struct yaml_ctx c = {opts, n, obj, path, &doc, err, given};
    if (root->type != YAML_MAPPING_NODE) {
        yaml_fail(&c, root, "the top level must be a mapping of keys");
        goto out_doc;
    }
    rc = walk_mapping(&c, root, "");
out_doc:
    yaml_document_delete(&doc);
    return rc;
}

int sb_opt_load_yaml(const struct sb_opt *opts, size_t n, void *obj, const char *path,
                     struct sb_err *err)
{
    return load_yaml(opts, n, obj, path, NULL, err);
}

/* ---- command line ---- */

static bool bool_word(const char *s)
{
    bool b;
    return s && sb_parse_bool(s, &b) == 0;
}

int sb_opt_parse(const struct sb_opt *opts, size_t n, void *obj, int argc, char **argv,
                 struct sb_opt_result *res, struct sb_err *err)
{
    memset(res, 0, sizeof(*res));
    res->positional = calloc((size_t)(argc > 0 ? argc : 1), sizeof(char *));
    if (!res->positional)
        return sb_err_set(err, "out of memory");
    if (sb_opt_defaults(opts, n, obj, err) != 0)
        return -1;

    /* Pass 1: --help and the config file, so the YAML applies before any flag; which options
       have a flag (a flag's value stands in for a sweep list in the YAML). */
    const char *config = NULL;
    uint64_t given[SB_OPT_MAX / 64] = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0)
            break;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            res->help = true;
            return 0;
        }
        if (strncmp(a, "--", 2) != 0)
            continue;
        char name[128];
        const char *eq = strchr(a + 2, '=');
        size_t nl = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);
        if (nl >= sizeof(name))
            continue;
        memcpy(name, a + 2, nl);
        name[nl] = '\0';
        const struct sb_opt *o = sb_opt_find_flag(opts, n, name);
        if (o && (o->flags & SB_OPT_CONFIG))
            config = eq ? eq + 1 : (i + 1 < argc ? argv[i + 1] : NULL);
        if (o && (size_t)(o - opts) < SB_OPT_MAX)
            given[(size_t)(o - opts) / 64] |= 1ull << ((size_t)(o - opts) % 64);
    }
    if (config && load_yaml(opts, n, obj, config, given, err) != 0)
        return -1;

    /* Pass 2: every flag, in order; later ones win, except that list flags accumulate. */
    bool only_positional = false;
    uint64_t list_seen[SB_OPT_MAX / 64] = {0}; /* list options already given a flag */
    if (n > SB_OPT_MAX)
        return sb_err_set(err, "internal error: an option table of %zu entries (at most %d)", n,
                          SB_OPT_MAX);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_positional || a[0] != '-' || a[1] == '\0') {
            res->positional[res->npositional++] = argv[i];
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_positional = true;
            continue;
        }
        if (a[1] != '-')
            return sb_err_set(err, "unknown option '%s'", a);
        char name[128];
        const char *eq = strchr(a + 2, '=');
        size_t nl = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);
        if (nl >= sizeof(name))
            return sb_err_set(err, "unknown option '%.60s...'", a);
        memcpy(name, a + 2, nl);
        name[nl] = '\0';
        const struct sb_opt *o = sb_opt_find_flag(opts, n, name);
        const char *value = eq ? eq + 1 : NULL;
        if (!o && !value && strncmp(name, "no-", 3) == 0) {
            o = sb_opt_find_flag(opts, n, name + 3);
            if (o && o->type == SB_OPT_BOOL) {
                *FIELD(obj, o, bool) = false;
                continue;
            }
            o = NULL;
        }
        if (!o) {
            const char *hint = suggest(opts, n, name, false);
            if (hint)
                return sb_err_set(err, "unknown option '--%s' (did you mean '--%s'?)", name, hint);
            return sb_err_set(err, "unknown option '--%s'", name);
        }
        char what[160];
        snprintf(what, sizeof(what), "'--%s'", name);
        if (o->type == SB_OPT_BOOL && !value) {
            /* "--flag" alone means true; "--flag false" is accepted for old scripts. */
            if (i + 1 < argc && bool_word(argv[i + 1]))
                value = argv[++i];
            else
                value = "true";
        } else if (!value) {
            if (i + 1 >= argc)
                return sb_err_set(err, "option '--%s' needs a value", name);
            value = argv[++i];
        }
        char **slot = o->type == SB_OPT_LIST ? FIELD(obj, o, char *) : NULL;
        size_t idx = (size_t)(o - opts);
        if (slot && (list_seen[idx / 64] >> (idx % 64) & 1) && *slot) {
            /* A repeated list flag adds to the list its first use started. */
            size_t la = strlen(*slot), lb = strlen(value);
            char *joined = malloc(la + lb + 2);
            if (!joined)
                return sb_err_set(err, "out of memory");
            memcpy(joined, *slot, la);
            joined[la] = ',';
            memcpy(joined + la + 1, value, lb + 1);
            free(*slot);
            *slot = list_normalize(joined);
            free(joined);
            if (!*slot)
                return sb_err_set(err, "out of memory");
            continue;
        }
        if (sb_opt_set(o, obj, value, what, err) != 0)
            return -1;
        if (slot)
            list_seen[idx / 64] |= 1ull << (idx % 64);
    }
    return 0;
}

void sb_opt_print_help(const struct sb_opt *opts, size_t n, FILE *f)
{
    for (size_t i = 0; i < n; i++) {
        const struct sb_opt *o = &opts[i];
        if (!o->flag)
            continue;
        char left[96];
        const char *arg = o->type == SB_OPT_BOOL ? "" : (o->argname ? o->argname : "VALUE");
        snprintf(left, sizeof(left), "--%s%s%s", o->flag, arg[0] ? " " : "", arg);
        fprintf(f, "  %-30s %s", left, o->help ? o->help : "");
        if (o->type == SB_OPT_ENUM && o->choices) {
            fputs(" (", f);
            for (int c = 0; o->choices[c]; c++)
                fprintf(f, "%s%s", c ? "|" : "", o->choices[c]);
            fputc(')', f);
        }
        if (o->def && o->type != SB_OPT_BOOL)
            fprintf(f, " [default: %s]", o->def);
        if (o->alias)
            fprintf(f, " (also --%s)", o->alias);
        fputc('\n', f);
    }
}

static void write_yaml_string(FILE *f, const char *s)
{
    size_t need = sb_json_escape(NULL, 0, s, strlen(s));
    char *buf = malloc(need + 1);
    if (!buf) {
        fputs("\"\"", f);
        return;
    }
    sb_json_escape(buf, need + 1, s, strlen(s));
    /* JSON leaves NEL, LINE SEPARATOR and PARAGRAPH SEPARATOR raw; YAML 1.1 (libyaml) reads them
       as line breaks and folds them, so a value holding one came back changed (found by
       tests/fuzz/fuzz_yaml). They are written as \u escapes, which both read back. */
    fputc('"', f);
    for (const char *p = buf; *p; p++) {
        const unsigned char *u = (const unsigned char *)p;
        if (u[0] == 0xC2 && u[1] == 0x85) {
            fputs("\\u0085", f);
            p++;
        } else if (u[0] == 0xE2 && u[1] == 0x80 && (u[2] == 0xA8 || u[2] == 0xA9)) {
            fputs(u[2] == 0xA8 ? "\\u2028" : "\\u2029", f);
            p += 2;
        } else
            fputc(*p, f);
    }
    fputc('"', f);
    free(buf);
}

/* Splits a dotted section path into at most 8 components (pointers into path, lengths). */
static int split_path(const char *path, size_t len, const char *comp[8], size_t clen[8])
{
    int nc = 0;
    size_t pos = 0;
    while (pos < len && nc < 8) {
        const char *dot = memchr(path + pos, '.', len - pos);
        size_t end = dot ? (size_t)(dot - path) : len;
        comp[nc] = path + pos;
        clen[nc++] = end - pos;
        pos = end + 1;
    }
    return nc;
}

int sb_opt_write_yaml(const struct sb_opt *opts, size_t n, const void *obj, FILE *f)
{
    /* Options of one section are declared next to each other, so sections open in order. */
    const char *prev_key = "";
    size_t prev_len = 0;
    for (size_t i = 0; i < n; i++) {
        const struct sb_opt *o = &opts[i];
        if (!o->key || (o->flags & (SB_OPT_SECRET | SB_OPT_NOYAML)))
            continue;
        const char *dot = strrchr(o->key, '.');
        size_t sect_len = dot ? (size_t)(dot - o->key) : 0;
        const char *leaf = dot ? dot + 1 : o->key;
        const char *pc[8], *cc[8];
        size_t pl[8], cl[8];
        int np = split_path(prev_key, prev_len, pc, pl);
        int nc = split_path(o->key, sect_len, cc, cl);
        int shared = 0;
        while (shared < np && shared < nc && pl[shared] == cl[shared] &&
               memcmp(pc[shared], cc[shared], cl[shared]) == 0)
            shared++;
        for (int d = shared; d < nc; d++)
            fprintf(f, "%*s%.*s:\n", 2 * d, "", (int)cl[d], cc[d]);
        int depth = nc;
        prev_key = o->key;
        prev_len = sect_len;
        fprintf(f, "%*s%s: ", (int)(2 * depth), "", leaf);
        switch (o->type) {
        case SB_OPT_BOOL:
            fputs(*CFIELD(obj, o, bool) ? "true" : "false", f);
            break;
        case SB_OPT_INT:
            fprintf(f, "%lld", *CFIELD(obj, o, long long));
            break;
        case SB_OPT_DOUBLE:
            fprintf(f, "%.17g", *CFIELD(obj, o, double));
            break;
        case SB_OPT_SIZE:
            fprintf(f, "%llu", (unsigned long long)*CFIELD(obj, o, uint64_t));
            break;
        case SB_OPT_ENUM: {
            int idx = *CFIELD(obj, o, int);
            write_yaml_string(f, o->choices ? o->choices[idx] : "");
            break;
        }
        case SB_OPT_STR: {
            const char *s = *CFIELD(obj, o, char *);
            if (s)
                write_yaml_string(f, s);
            else
                fputs("null", f);
            break;
        }
        case SB_OPT_JSON: {
            const char *s = *CFIELD(obj, o, char *);
            fputs(s ? s : "{}", f); /* JSON is valid YAML flow syntax */
            break;
        }
        case SB_OPT_LIST: {
            const char *s = *CFIELD(obj, o, char *);
            fputc('[', f);
            while (s && *s) {
                const char *comma = strchr(s, ',');
                size_t len = comma ? (size_t)(comma - s) : strlen(s);
                char *item = strndup(s, len);
                if (!item)
                    return -1;
                write_yaml_string(f, item);
                free(item);
                s = comma ? comma + 1 : NULL;
                if (s)
                    fputs(", ", f);
            }
            fputc(']', f);
            break;
        }
        }
        fputc('\n', f);
    }
    return ferror(f) ? -1 : 0;
}
