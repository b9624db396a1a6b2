/*
 * Finding and loading run directories for analyze (sb/analyze.h). A run directory is one that
 * holds a metrics.jsonl; this file finds them, reads the small files (config.yaml in either the
 * Test Plan's or the Python harness's shape, run.json), hands metrics.jsonl to metrics.c and the
 * telemetry to telemetry.c, and settles each label from the best source it has: the records'
 * own labels first (what the old process_results.py reported), then config.yaml, run.json, and
 * last what the run id says (`<stamp>_H2B_stackB_L8B_ctx2048` names the hypothesis, stack, model
 * and sweep step of the old runners' directories).
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>
#include <yaml.h>

#include "sb/analyze.h"
#include "sb/opt.h"
#include "sb/util.h"

#define FIND_DEPTH      3
#define RUN_JSON_MAX    (64u << 20)
#define DEFAULT_CADENCE 0.2

/* ---- warnings ---- */

/* gcc -fanalyzer: GCC 12 reports a leak of a string stored into a slot of a heap array at a
   variable index (it loses the pointer there); the array is freed by its owner (r->warnings,
   sb_run_release) */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wanalyzer-malloc-leak"
void sb_run_warn(struct sb_run *r, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    char **w = realloc(r->warnings, (r->nwarnings + 1) * sizeof(char *));
    if (!w)
        return;
    r->warnings = w;
    char *d = strdup(msg);
    if (d)
        r->warnings[r->nwarnings++] = d;
}
#pragma GCC diagnostic pop

/* ---- finding run directories ---- */

struct dirlist {
    char **v;
    size_t n, cap;
};

static int dirlist_add(struct dirlist *l, const char *path)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        char **v = realloc(l->v, cap * sizeof(char *));
        if (!v)
            return -1;
        l->v = v;
        l->cap = cap;
    }
    char *d = strdup(path);
    if (!d)
        return -1;
    l->v[l->n++] = d;
    return 0;
}

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* path and its subdirectories (to depth) into l: the ones holding metrics.jsonl. */
static int find_in(struct dirlist *l, const char *path, int depth, struct sb_err *err)
{
    char p[PATH_MAX];
    if (snprintf(p, sizeof(p), "%s/metrics.jsonl", path) >= (int)sizeof(p))
        return 0;
    if (is_file(p))
        return dirlist_add(l, path) == 0 ? 0 : sb_err_set(err, "out of memory");
    if (depth >= FIND_DEPTH)
        return 0;
    DIR *d = opendir(path);
    if (!d)
        return 0; /* unreadable below the top: not a run */
    struct dirlist subs = {0};
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (snprintf(p, sizeof(p), "%s/%s", path, e->d_name) >= (int)sizeof(p) || !is_dir(p))
            continue;
        if (dirlist_add(&subs, p) != 0) {
            rc = sb_err_set(err, "out of memory");
            goto out;
        }
    }
    if (subs.n > 1) /* qsort of a NULL array is undefined even for 0 elements (clang-tidy) */
        qsort(subs.v, subs.n, sizeof(char *), cmp_str);
    for (size_t i = 0; i < subs.n && rc == 0; i++)
        rc = find_in(l, subs.v[i], depth + 1, err);
out:
    closedir(d);
    sb_runs_free(subs.v, subs.n);
    return rc;
}

struct found {
    char *path, *real;
};

static int cmp_found_real(const void *a, const void *b)
{
    const struct found *x = a, *y = b;
    int c = strcmp(x->real, y->real);
    return c ? c : strcmp(x->path, y->path);
}

static int cmp_found_path(const void *a, const void *b)
{
    return strcmp(((const struct found *)a)->path, ((const struct found *)b)->path);
}

/*
 * Sorts l by path and drops a directory reached twice (a folder and a run inside it, a link):
 * the first path in order stays. 0, or -1 when out of memory (l unchanged).
 */
static int dedupe(struct dirlist *l)
{
    if (l->n == 0)
        return 0;
    struct found *f = calloc(l->n, sizeof(*f));
    if (!f)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < l->n && rc == 0; i++) {
        char real[PATH_MAX];
        f[i].path = l->v[i];
        f[i].real = strdup(realpath(l->v[i], real) ? real : l->v[i]);
        if (!f[i].real)
            rc = -1;
    }
    if (rc == 0) {
        qsort(f, l->n, sizeof(*f), cmp_found_real);
        size_t k = 0;
        for (size_t i = 0; i < l->n; i++) {
            if (k > 0 && strcmp(f[k - 1].real, f[i].real) == 0) {
                free(f[i].path);
                free(f[i].real);
                continue;
            }
            f[k++] = f[i];
        }
        qsort(f, k, sizeof(*f), cmp_found_path);
        for (size_t i = 0; i < k; i++) {
            l->v[i] = f[i].path;
            free(f[i].real);
        }
        l->n = k;
    } else {
        for (size_t i = 0; i < l->n; i++)
            free(f[i].real);
    }
    free(f);
    return rc;
}

/* Removes a trailing '/' (but not the root's) so that paths compare and print alike. */
static void trim_slash(char *p)
{
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/')
        p[--n] = '\0';
}

int sb_runs_find(char *const *paths, size_t npaths, char ***out, size_t *n, struct sb_err *err)
{
    static char *const defaults[] = {"results", "runs"};
    bool explicit = npaths > 0;
    if (!explicit) {
        paths = defaults;
        npaths = SB_ARRAY_SIZE(defaults);
    }
    struct dirlist l = {0};
    *out = NULL;
    *n = 0;
    for (size_t i = 0; i < npaths; i++) {
        char p[PATH_MAX];
        if (snprintf(p, sizeof(p), "%s", paths[i]) >= (int)sizeof(p))
            goto fail_long;
        trim_slash(p);
        struct stat st;
        if (stat(p, &st) != 0) {
            if (!explicit && errno == ENOENT)
                continue;
            sb_err_errno(err, errno, "cannot find '%s'", paths[i]);
            goto fail;
        }
        if (S_ISREG(st.st_mode)) {
            /* A metrics.jsonl named directly stands for its directory. */
            char *slash = strrchr(p, '/');
            const char *base = slash ? slash + 1 : p;
            if (strcmp(base, "metrics.jsonl") != 0) {
                sb_err_set(err, "'%s' is neither a run directory nor a metrics.jsonl", paths[i]);
                goto fail;
            }
            if (slash == p)
                slash[1] = '\0';
            else if (slash)
                *slash = '\0';
            else
                snprintf(p, sizeof(p), ".");
            if (dirlist_add(&l, p) != 0)
                goto fail_oom;
            continue;
        }
        if (!S_ISDIR(st.st_mode)) {
            sb_err_set(err, "'%s' is neither a run directory nor a metrics.jsonl", paths[i]);
            goto fail;
        }
        if (find_in(&l, p, 0, err) != 0)
            goto fail;
    }
    if (dedupe(&l) != 0)
        goto fail_oom;
    *out = l.v;
    *n = l.n;
    return 0;
fail_long:
    sb_err_set(err, "path too long");
    goto fail;
fail_oom:
    sb_err_set(err, "out of memory");
fail:
    sb_runs_free(l.v, l.n);
    return -1;
}

void sb_runs_free(char **dirs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(dirs[i]);
    free(dirs);
}

/* ---- config.yaml: flattened to "section.key" = scalar ---- */

struct cfg_kv {
    char *key, *val;
};

struct cfgmap {
    struct cfg_kv *v;
    size_t n, cap;
};

static void cfg_release(struct cfgmap *m)
{
    for (size_t i = 0; i < m->n; i++) {
        free(m->v[i].key);
        free(m->v[i].val);
    }
    free(m->v);
    memset(m, 0, sizeof(*m));
}

/* gcc -fanalyzer: GCC 12 reports a leak of a string stored into a slot of a heap array at a
   variable index (it loses the pointer there); the array is freed by its owner (cfgmap_release) */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wanalyzer-malloc-leak"
static int cfg_add(struct cfgmap *m, const char *key, const char *val)
{
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 32;
        struct cfg_kv *v = realloc(m->v, cap * sizeof(*v));
        if (!v)
            return -1;
        m->v = v;
        m->cap = cap;
    }
    char *k = strdup(key), *s = strdup(val);
    if (!k || !s) {
        free(k);
        free(s);
        return -1;
    }
    m->v[m->n++] = (struct cfg_kv){k, s};
    return 0;
}
#pragma GCC diagnostic pop

static bool yaml_null(const yaml_node_t *n)
{
    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *v = (const char *)n->data.scalar.value;
    return !v[0] || strcmp(v, "null") == 0 || strcmp(v, "~") == 0 || strcmp(v, "Null") == 0 ||
           strcmp(v, "NULL") == 0;
}

static int cfg_walk(struct cfgmap *m, yaml_document_t *doc, yaml_node_t *map, const char *prefix)
{
    for (yaml_node_pair_t *pr = map->data.mapping.pairs.start; pr < map->data.mapping.pairs.top;
         pr++) {
        yaml_node_t *k = yaml_document_get_node(doc, pr->key);
        yaml_node_t *v = yaml_document_get_node(doc, pr->value);
        if (!k || !v || k->type != YAML_SCALAR_NODE)
            continue;
        char key[512];
        if (snprintf(key, sizeof(key), "%s%s%s", prefix, prefix[0] ? "." : "",
                     (const char *)k->data.scalar.value) >= (int)sizeof(key))
            continue;
        if (v->type == YAML_MAPPING_NODE) {
            if (cfg_walk(m, doc, v, key) != 0)
                return -1;
        } else if (v->type == YAML_SCALAR_NODE && !yaml_null(v)) {
            if (cfg_add(m, key, (const char *)v->data.scalar.value) != 0)
                return -1;
        }
        /* Sequences (a sweep's list of values) say nothing about one run. */
    }
    return 0;
}

/* Reads path into m; a missing file leaves m empty. Returns 0, or -1 with err. */
static int cfg_load(const char *path, struct cfgmap *m, struct sb_err *err)
{
    yaml_document_t doc;
    int rc = sb_yaml_load_file(path, "", true, &doc, err);
    if (rc != 0)
        return rc > 0 ? 0 : -1;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root && root->type == YAML_MAPPING_NODE && cfg_walk(m, &doc, root, "") != 0)
        rc = sb_err_set(err, "out of memory");
    yaml_document_delete(&doc);
    return rc;
}

/* The value of the first of keys (NULL-terminated) that is set; NULL when none is. */
static const char *cfg_get(const struct cfgmap *m, const char *const *keys)
{
    for (; *keys; keys++)
        for (size_t i = 0; i < m->n; i++)
            if (strcmp(m->v[i].key, *keys) == 0)
                return m->v[i].val;
    return NULL;
}

#define KEYS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* ---- labels ---- */

static int set_str(char **dst, const char *v)
{
    char *d = strdup(v);
    if (!d)
        return -1;
    free(*dst);
    *dst = d;
    return 0;
}

/* Sets *dst to v when *dst is still "" and v is a non-empty string. */
static int fill_str(char **dst, const char *v)
{
    if ((*dst)[0] || !v || !v[0])
        return 0;
    return set_str(dst, v);
}

static void fill_ll(long long *dst, const char *v)
{
    long long x;
    if (*dst < 0 && v && sb_parse_ll(v, &x) == 0 && x > 0)
        *dst = x;
}

static void fill_size(uint64_t *dst, const char *v)
{
    uint64_t x;
    if (*dst == 0 && v && sb_parse_size(v, &x) == 0)
        *dst = x;
}

/* "stackA", "stackB_dynamo_tiered" (the old harness's stack names) read as "A", "B". */
static int normalize_stack(char **stack)
{
    const char *s = *stack;
    if (strncasecmp(s, "stack", 5) != 0 || !isalpha((unsigned char)s[5]) ||
        (s[6] != '\0' && s[6] != '_' && s[6] != '-'))
        return 0;
    char letter[2] = {(char)toupper((unsigned char)s[5]), '\0'};
    return set_str(stack, letter);
}

static bool is_hypothesis_token(const char *t, size_t n)
{
    if (n < 2 || n > 8 || (t[0] != 'H' && t[0] != 'h') || !isdigit((unsigned char)t[1]))
        return false;
    size_t i = 1;
    while (i < n && isdigit((unsigned char)t[i]))
        i++;
    for (; i < n; i++)
        if (!isalpha((unsigned char)t[i]))
            return false;
    return true;
}

/*
 * What a run id of the old runners says: <stamp>_<H..>_stack<X>_<model>[_<step>]. Fills the
 * labels still unknown.
 */
static int labels_from_run_id(struct sb_run *r)
{
    char id[256];
    snprintf(id, sizeof(id), "%s", r->run_id);
    char *tok[32];
    int nt = 0;
    char *save = NULL;
    for (char *t = strtok_r(id, "_", &save); t && nt < 32; t = strtok_r(NULL, "_", &save))
        tok[nt++] = t;
    int h = -1;
    for (int i = 0; i < nt && h < 0; i++)
        if (is_hypothesis_token(tok[i], strlen(tok[i])))
            h = i;
    if (h < 0)
        return 0;
    char hyp[16];
    snprintf(hyp, sizeof(hyp), "%s", tok[h]);
    for (char *c = hyp; *c; c++)
        *c = (char)toupper((unsigned char)*c);
    if (fill_str(&r->hypothesis, hyp) != 0)
        return -1;
    int s = h + 1;
    if (s >= nt || strncasecmp(tok[s], "stack", 5) != 0)
        return 0;
    if (fill_str(&r->stack, tok[s]) != 0)
        return -1;
    int rest = nt - s - 1;
    if (rest >= 2 && fill_str(&r->phase, tok[nt - 1]) != 0)
        return -1;
    if (rest >= 1 && !r->model[0]) {
        char model[256] = "";
        size_t used = 0;
        for (int i = s + 1; i < (rest >= 2 ? nt - 1 : nt); i++)
            used += (size_t)snprintf(model + used, sizeof(model) - used, "%s%s", used ? "_" : "",
                                     tok[i]);
        if (fill_str(&r->model, model) != 0)
            return -1;
    }
    return 0;
}

/* H4's storage profile: config, else a phase label naming one of the Test Plan's profiles. */
static int fio_profile_from_phase(struct sb_run *r)
{
    static const char *const profiles[] = {"baseline", "moderate", "heavy"};
    if (r->fio_profile[0])
        return 0;
    for (size_t i = 0; i < SB_ARRAY_SIZE(profiles); i++)
        if (strcasestr(r->phase, profiles[i]))
            return set_str(&r->fio_profile, profiles[i]);
    return 0;
}

static int labels_from_config(struct sb_run *r, const struct cfgmap *c, double *cadence_s)
{
    if (fill_str(&r->run_id, cfg_get(c, KEYS("run.id", "run_id"))) != 0 ||
        fill_str(&r->stack, cfg_get(c, KEYS("run.stack", "stack"))) != 0 ||
        fill_str(&r->model, cfg_get(c, KEYS("run.model", "model.name", "model"))) != 0 ||
        fill_str(&r->workload, cfg_get(c, KEYS("run.workload", "workload"))) != 0 ||
        fill_str(&r->hypothesis, cfg_get(c, KEYS("run.hypothesis", "hypothesis"))) != 0 ||
        fill_str(&r->phase, cfg_get(c, KEYS("run.phase", "phase"))) != 0 ||
        fill_str(&r->fio_profile, cfg_get(c, KEYS("run.fio_profile", "fio_profile"))) != 0 ||
        fill_str(&r->eviction_policy,
                 cfg_get(c, KEYS("dynamo.eviction_policy", "runtime.dynamo.eviction_policy"))) != 0)
        return -1;
    fill_ll(&r->context_tokens, cfg_get(c, KEYS("run.context_tokens", "context_tokens")));
    fill_ll(&r->repetition, cfg_get(c, KEYS("run.repetition", "repetition")));
    double rate;
    const char *v = cfg_get(c, KEYS("run.rate", "rate"));
    if (isnan(r->rate) && v && sb_parse_double(v, &rate) == 0 && rate > 0)
        r->rate = rate;
    /* An open-loop run has no users: config.yaml's concurrency is an unused default there, and
       its cap is max_inflight. */
    if (isnan(r->rate) && !(r->workload && strcmp(r->workload, "trace") == 0))
        fill_ll(&r->concurrency, cfg_get(c, KEYS("run.concurrency", "concurrency")));
    else
        fill_ll(&r->max_inflight, cfg_get(c, KEYS("run.max_inflight", "max_inflight")));
    fill_size(&r->kv_block_size_bytes,
              cfg_get(c, KEYS("dynamo.kv_block_size_bytes", "runtime.dynamo.kv_block_size_bytes")));
    fill_size(&r->tier0_bytes, cfg_get(c, KEYS("dynamo.tier0.capacity_bytes",
                                               "runtime.dynamo.tier0.capacity_bytes")));
    fill_size(&r->tier1_bytes, cfg_get(c, KEYS("dynamo.tier1.capacity_bytes",
                                               "runtime.dynamo.tier1.capacity_bytes")));
    fill_size(&r->tier2_bytes,
              cfg_get(c, KEYS("dynamo.tier2.allocate_bytes", "runtime.dynamo.tier2.allocate_bytes",
                              "dynamo.tier2.capacity_bytes")));
    double ms;
    v = cfg_get(c, KEYS("telemetry.cadence_ms", "runtime.dynamo.telemetry_interval_ms"));
    if (v && sb_parse_double(v, &ms) == 0 && ms > 0)
        *cadence_s = ms / 1000.0;
    return 0;
}

/* ---- the settings that make runs comparable ---- */

/*
 * config.yaml keys (as `sparkbench run` writes every resolved option) whose value changes what a
 * run measures, beside the ones sb_run holds as fields (stack, model, workload, context,
 * concurrency, rate, tiers, eviction policy, phase). Left out on purpose: the id, seed, repetition,
 * duration, request count, warm-up and ramp-up (a repetition may be longer or seeded apart),
 * sessioned_chat's --salt (every repetition draws its own, so that it misses the cache of the run
 * before), output paths, timeouts, threads and telemetry. A key a run's config lacks is left out of
 * its settings, so the old harness's configs compare as before.
 */
static const struct setting_key {
    const char *key;
    enum { ALWAYS, CLOSED_LOOP, OPEN_LOOP, GAMMA, LORA, SESSIONS, TRACE } when;
} setting_keys[] = {
    {"run.served_model", ALWAYS},
    {"run.api", ALWAYS},
    {"run.stream", ALWAYS},
    {"run.new_connection", ALWAYS},
    {"run.nonce_per_user", ALWAYS},
    {"run.nonce_per_request", ALWAYS},
    {"run.nonce_position", ALWAYS},
    {"run.max_tokens", ALWAYS},
    {"run.temperature", ALWAYS},
    {"run.top_p", ALWAYS},
    {"run.prompt_file", ALWAYS},
    {"run.max_input_len", ALWAYS},
    {"run.input_len_margin", ALWAYS},
    {"run.tokenizer", ALWAYS},
    {"run.think_ms", CLOSED_LOOP},
    {"run.arrival", OPEN_LOOP},
    {"run.max_inflight", OPEN_LOOP},
    {"run.burstiness", GAMMA},
    {"server.endpoint", ALWAYS},
    {"endpoint.protocol", ALWAYS},
    {"model.precision", ALWAYS},
    {"model.max_num_tokens", ALWAYS},
    {"runtime.kv_sharing_enabled", ALWAYS},
    {"run.lora_list", LORA},
    {"run.lora_select", LORA},
    {"run.lora_mode", LORA},
    /* sessioned_chat: the working set and its reuse are what H5 and H6 sweep */
    {"run.sessions", SESSIONS},
    {"run.session_order", SESSIONS},
    {"run.system_tokens", SESSIONS},
    {"run.session_context_tokens", SESSIONS},
    {"run.turn_tokens", SESSIONS},
    {"run.turns", SESSIONS},
    {"run.history", SESSIONS},
    {"run.max_context", SESSIONS},
    {"run.context_policy", SESSIONS},
    {"run.idle_prob", SESSIONS},
    {"run.idle_s", SESSIONS},
    {"run.idle_cap_s", SESSIONS},
    {"run.prime", SESSIONS},
    {"run.kv_bytes_per_token", SESSIONS},
    {"run.trace", TRACE},
    {"run.trace_speed", TRACE},
    {"run.trace_max_gap_s", TRACE},
    {"run.trace_block_tokens", TRACE},
    {"run.trace_force_output", TRACE},
};

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Appends "key=value\n" with the value's line breaks flattened. */
static int settings_add(struct sb_buf *b, const char *key, const char *val)
{
    int rc = sb_buf_addf(b, "%s=", key);
    for (const char *c = val; *c; c++)
        rc |= sb_buf_add(b, *c == '\n' || *c == '\r' ? " " : c, 1);
    return rc | sb_buf_adds(b, "\n");
}

/*
 * r->settings from config.yaml (the keys above, then every server.extra_body.* and workload.*
 * key in name order) and run.json's part already in r->settings (its endpoint when the config
 * has none, its prompt size). 0 or -1 (out of memory).
 */
static int settings_build(struct sb_run *r, const struct cfgmap *c, const char *from_run_json,
                          const char *run_json_endpoint)
{
    struct sb_buf b;
    sb_buf_init(&b, 1u << 20);
    int rc = 0;
    const char *arrival = cfg_get(c, KEYS("run.arrival"));
    /* trace replay is open loop at the trace's own times, with no --rate */
    bool trace = r->workload && strcmp(r->workload, "trace") == 0;
    bool open_loop = !isnan(r->rate) || trace;
    const char *lora_list = cfg_get(c, KEYS("run.lora_list"));
    bool lora = lora_list && *lora_list;
    /* config.yaml holds the session options for every workload: they count for this one only */
    bool sessions = r->workload && strcmp(r->workload, "sessioned_chat") == 0;
    for (size_t i = 0; i < SB_ARRAY_SIZE(setting_keys); i++) {
        const struct setting_key *k = &setting_keys[i];
        if ((k->when == LORA && !lora) || (k->when == SESSIONS && !sessions) ||
            (k->when == TRACE && !trace) || (k->when == CLOSED_LOOP && open_loop) ||
            (k->when == OPEN_LOOP && !open_loop) ||
            (k->when == GAMMA && (!open_loop || !arrival || strcmp(arrival, "gamma") != 0)))
            continue;
        const char *v = cfg_get(c, (const char *const[]){k->key, NULL});
        if (!v && strcmp(k->key, "server.endpoint") == 0 && run_json_endpoint[0])
            v = run_json_endpoint;
        if (v)
            rc |= settings_add(&b, k->key, v);
    }
    const char **extra = malloc((c->n + 1) * sizeof(*extra));
    size_t nextra = 0;
    if (!extra)
        rc = -1;
    for (size_t i = 0; extra && i < c->n; i++)
        if (strncmp(c->v[i].key, "server.extra_body.", 18) == 0 ||
            strncmp(c->v[i].key, "workload.", 9) == 0)
            extra[nextra++] = c->v[i].key;
    if (nextra)
        qsort(extra, nextra, sizeof(*extra), cmp_str_ptr);
    for (size_t i = 0; i < nextra; i++)
        rc |= settings_add(&b, extra[i], cfg_get(c, (const char *const[]){extra[i], NULL}));
    free(extra);
    rc |= sb_buf_adds(&b, from_run_json);
    if (rc == 0)
        rc = set_str(&r->settings, b.data ? b.data : "");
    sb_buf_release(&b);
    return rc ? -1 : 0;
}

/* ---- run.json ---- */

static double json_num(const cJSON *o, const char *key)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(x) ? x->valuedouble : NAN;
}

/* run.json: the run id and the measurement window (and whether it says if the server truncated
 * prompts), and into settings (cap bytes) its prompt size and into endpoint (cap bytes) its
 * endpoint. A missing file is the old harness's case. */
static int read_run_json(struct sb_run *r, const char *path, bool *truncation_known, char *settings,
                         char *endpoint, size_t cap)
{
    settings[0] = endpoint[0] = '\0';
    struct sb_buf text;
    sb_buf_init(&text, RUN_JSON_MAX);
    errno = 0;
    if (sb_buf_add_file(&text, path) != 0) {
        int eno = errno ? errno : EFBIG; /* no errno: over RUN_JSON_MAX */
        if (eno != ENOENT)
            sb_run_warn(r, "cannot read '%s': %s", path, strerror(eno));
        sb_buf_release(&text);
        return 0;
    }
    cJSON *j = cJSON_ParseWithLength(text.data ? text.data : "", text.len);
    sb_buf_release(&text);
    if (!cJSON_IsObject(j)) {
        sb_run_warn(r, "cannot parse '%s': not a JSON object; the window comes from the records",
                    path);
        cJSON_Delete(j);
        return 0;
    }
    int rc = 0;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "run_id");
    if (cJSON_IsString(id) && fill_str(&r->run_id, id->valuestring) != 0)
        rc = -1;
    /* The prompt's size tells two prompt files apart (run writes it whatever the source). */
    double bytes = json_num(cJSON_GetObjectItemCaseSensitive(j, "prompt"), "bytes");
    if (bytes >= 0)
        snprintf(settings, cap, "prompt.bytes=%.0f\n", bytes);
    const cJSON *ep = cJSON_GetObjectItemCaseSensitive(j, "endpoint");
    if (cJSON_IsString(ep))
        snprintf(endpoint, cap, "%s", ep->valuestring);
    /* The window ends when sending stopped (measure_end_ts). An older run.json has only the
       last completion (end_ts), drain included: its window then comes from the records. */
    double t0 = json_num(j, "measure_start_ts");
    if (isnan(t0))
        t0 = json_num(j, "start_ts");
    double t1 = json_num(j, "measure_end_ts");
    if (t1 >= t0) {
        r->t0 = t0;
        r->t1 = t1;
        r->window_from_run_json = true;
        const cJSON *tp = cJSON_GetObjectItemCaseSensitive(j, "throughput");
        double m0 = json_num(tp, "window_start_mono_ns"), m1 = json_num(tp, "window_end_mono_ns");
        if (m1 >= m0) {
            r->win_mono0_ns = m0;
            r->win_mono1_ns = m1;
        }
    }
    /* How the run ended, and whether the client kept its schedule (src/cmd/run.c writes both). */
    const cJSON *why = cJSON_GetObjectItemCaseSensitive(j, "exit_reason");
    if (cJSON_IsString(why) && fill_str(&r->exit_reason, why->valuestring) != 0)
        rc = -1;
    const cJSON *lag = cJSON_GetObjectItemCaseSensitive(j, "client_lag");
    double late = json_num(lag, "late_sends");
    if (late >= 0 && late < 9e18)
        r->late_sends = (long long)late;
    r->max_sched_delay_ms = json_num(lag, "max_sched_delay_ms");
    const cJSON *fb = cJSON_GetObjectItemCaseSensitive(lag, "fell_behind");
    if (cJSON_IsBool(fb))
        r->fell_behind = cJSON_IsTrue(fb);
    else /* an older run.json: the same rule on its counts */
    {
        double sent = json_num(lag, "measured_sends");
        if (isnan(sent))
            sent = json_num(cJSON_GetObjectItemCaseSensitive(j, "counts"), "sent");
        r->fell_behind = sb_client_fell_behind(
            r->late_sends, sent >= 0 && sent < 9e18 ? (long long)sent : 0, r->max_sched_delay_ms);
    }
    /* The in-flight count the load generator measured, and the prompt sent vs counted. */
    r->inflight_mean = json_num(j, "inflight_mean");
    const cJSON *pr = cJSON_GetObjectItemCaseSensitive(j, "prompt");
    r->prompt_est_tokens = json_num(pr, "estimated_tokens");
    /* With --tokenizer the context axis is the exact count of the prompt (BOS included, a
       nonce's few tokens not: the same for every user), not the prompt file's nominal size. */
    double exact = json_num(pr, "exact_tokens");
    if (exact > 0 && exact < 9e18) {
        r->context_tokens = (long long)exact;
        r->prompt_est_tokens = exact;
    }
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(pr, "server_truncated");
    if (cJSON_IsBool(st)) {
        r->server_truncated = cJSON_IsTrue(st);
        *truncation_known = true;
    }
    cJSON_Delete(j);
    return rc;
}

/* ---- one run ---- */

/* gcc -fanalyzer: GCC 12 loses the strings stored through strs[i] into *r; sb_run_release()
   frees them */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wanalyzer-malloc-leak"
static int run_init(struct sb_run *r, const char *dir)
{
    memset(r, 0, sizeof(*r));
    char **strs[] = {&r->run_id,      &r->stack,   &r->model,       &r->workload,
                     &r->hypothesis,  &r->phase,   &r->fio_profile, &r->eviction_policy,
                     &r->exit_reason, &r->settings};
    for (size_t i = 0; i < SB_ARRAY_SIZE(strs); i++)
        if (!(*strs[i] = strdup("")))
            return -1;
    r->late_sends = -1;
    r->max_sched_delay_ms = NAN;
    if (!(r->dir = strdup(dir)))
        return -1;
    r->context_tokens = r->concurrency = r->repetition = r->max_inflight = -1;
    r->rate = NAN;
    r->inflight_mean = r->prompt_est_tokens = r->context_tokens_server = NAN;
    sb_stats_summarize(NULL, 0, &r->client_overhead);
    r->kv_working_set_bytes = NAN;
    r->t0 = r->t1 = NAN;
    r->win_mono0_ns = r->win_mono1_ns = NAN;
    r->achieved_rps = r->output_tok_s = NAN;
    r->sysmon_aligned = r->dynkv_aligned = NAN;
    r->cadence_s = r->cadence_dynkv_s = NAN;
    for (int i = 0; i < 3; i++)
        r->tier_hits[i] = r->tier_misses[i] = r->tier_hit_ratio[i] = NAN;
    r->tier2_share = NAN;
    sb_sess_init(&r->sess);
    sb_fio_stats_init(&r->fio);
    struct sb_tstat *ts[] = {
        &r->cpu_iowait, &r->nvme_rps,    &r->nvme_rmbs, &r->nvme_r_await,  &r->nvme_util,
        &r->nvme_aqu,   &r->psi_io_some, &r->gpu_util,  &r->mem_available, &r->tier2_fetch_p95_ms};
    for (size_t i = 0; i < SB_ARRAY_SIZE(ts); i++)
        sb_tstat_of(NULL, 0, ts[i]);
    for (int i = 0; i < SB_LAT_N; i++)
        sb_stats_summarize(NULL, 0, &r->lat[i]);
    return 0;
}
#pragma GCC diagnostic pop

static const char *base_name(const char *path)
{
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    const char *s = path + n;
    while (s > path && s[-1] != '/')
        s--;
    return s;
}

int sb_run_load(const char *dir, const struct sb_analyze_opts *opts, struct sb_run *r,
                struct sb_err *err)
{
    char path[PATH_MAX], path2[PATH_MAX], json_settings[1024], json_endpoint[1024];
    struct cfgmap cfg = {0};
    double cadence = DEFAULT_CADENCE;
    int rc = -1;
    sb_err_clear(err);
    if (run_init(r, dir) != 0)
        goto oom;
#define PATH_OF(buf, name)                                                                         \
    if (snprintf(buf, sizeof(buf), "%s/%s", dir, name) >= (int)sizeof(buf)) {                      \
        sb_err_set(err, "path too long: '%s'", dir);                                               \
        goto out;                                                                                  \
    }
    PATH_OF(path, "run.json");
    bool truncation_known = false;
    if (read_run_json(r, path, &truncation_known, json_settings, json_endpoint,
                      sizeof(json_settings)) != 0)
        goto oom;
    PATH_OF(path, "metrics.jsonl");
    if (sb_run_read_metrics(r, path, err) != 0)
        goto out;
    PATH_OF(path, "config.yaml");
    struct sb_err cerr;
    sb_err_clear(&cerr);
    if (cfg_load(path, &cfg, &cerr) != 0)
        sb_run_warn(r, "%s", cerr.msg);
    if (labels_from_config(r, &cfg, &cadence) != 0 ||
        settings_build(r, &cfg, json_settings, json_endpoint) != 0)
        goto oom;
    /* A LoRA suite run: the H1 split by adapter and first use, a second pass over its records. */
    const char *lora_list = cfg_get(&cfg, KEYS("run.lora_list"));
    if (lora_list && *lora_list) {
        PATH_OF(path, "metrics.jsonl");
        if (sb_run_read_lora(r, path, err) != 0)
            goto out;
    }
    /* The directory's name is the run id when nothing else says. */
    char base[256];
    snprintf(base, sizeof(base), "%.*s", (int)strcspn(base_name(dir), "/"), base_name(dir));
    if (fill_str(&r->run_id, base) != 0 || labels_from_run_id(r) != 0 ||
        normalize_stack(&r->stack) != 0 || fio_profile_from_phase(r) != 0)
        goto oom;
    PATH_OF(path, "sysmon.jsonl");
    PATH_OF(path2, "dynkv.jsonl");
#undef PATH_OF
    sb_run_read_telemetry(r, path, path2, cadence);
    /* A run.json older than the flag: the same rule run applies, on the records' counts. */
    if (!truncation_known && !isnan(r->context_tokens_server) && r->prompt_est_tokens > 0)
        r->server_truncated = sb_prompt_truncated((long long)llround(r->context_tokens_server),
                                                  (long long)llround(r->prompt_est_tokens));
    sb_run_derive(r, opts);
    if (sb_sess_load(r, dir, opts) != 0)
        goto oom;
    if (snprintf(path, sizeof(path), "%s/fio.json", dir) < (int)sizeof(path))
        sb_run_read_fio(r, path);
    rc = 0;
    goto out;
oom:
    sb_err_set(err, "cannot load '%s': out of memory", dir);
out:
    cfg_release(&cfg);
    return rc;
}

const char *sb_run_flags(const struct sb_run *r, char *buf, size_t cap)
{
    if (cap == 0)
        return buf;
    buf[0] = '\0';
    const char *why = r->exit_reason ? r->exit_reason : "";
    bool ended_badly = why[0] && strcmp(why, "completed") != 0 && strcmp(why, "duration") != 0;
    bool lag = r->fell_behind;
    char lagtext[96] = "";
    if (lag)
        snprintf(lagtext, sizeof(lagtext), "client lag (%lld late sends; max %.1f ms)",
                 r->late_sends, r->max_sched_delay_ms);
    char trunc[128] = "";
    if (r->server_truncated)
        snprintf(trunc, sizeof(trunc),
                 "server truncated the prompt (sent ~%.0f tokens; server counted %.0f)",
                 r->prompt_est_tokens, r->context_tokens_server);
    snprintf(buf, cap, "%s%s%s%s%s", ended_badly ? why : "", ended_badly && lag ? "; " : "",
             lagtext, (ended_badly || lag) && trunc[0] ? "; " : "", trunc);
    return buf;
}

void sb_run_release(struct sb_run *r)
{
    char *strs[] = {r->dir,        r->run_id, r->stack,       r->model,           r->workload,
                    r->hypothesis, r->phase,  r->fio_profile, r->eviction_policy, r->exit_reason,
                    r->settings};
    for (size_t i = 0; i < SB_ARRAY_SIZE(strs); i++)
        free(strs[i]);
    for (size_t i = 0; i < r->nwarnings; i++)
        free(r->warnings[i]);
    free(r->warnings);
    free(r->h7);
    free(r->lora);
    sb_sess_release(&r->sess);
    memset(r, 0, sizeof(*r));
}
