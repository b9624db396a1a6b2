/*
 * The LoRA suite's adapter list and per-request choice (see sb/lora_select.h). The choice of
 * request seq draws one uniform number from a counter-based hash of the seed and seq, so it needs
 * no shared generator state and no order among threads. The use count does need the sequence: the
 * selector counts picks in seq order under a lock, up to the largest seq asked for, and keeps the
 * counts of the last SB_LORA_RING requests for the seqs that other threads have taken a number
 * for but not asked about yet (a fetch-add away in the engine, so the ring is never outrun in
 * practice; if it were, the count is recomputed from the start, slowly but right).
 */
#include "sb/lora_select.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/util.h"

#define SB_LORA_RING 4096

/* ---- the list ---- */

void sb_lora_list_release(struct sb_lora_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++) {
        free(l->a[i].name);
        free(l->a[i].path);
    }
    free(l->a);
    free(l->file);
    memset(l, 0, sizeof(*l));
}

/* Whether s[0..n) is UTF-8 without control characters: a name goes into JSON and file names. */
static bool printable_utf8(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        size_t k;
        if (c < 0x20 || c == 0x7f)
            return false;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf)
            k = 1;
        else if (c >= 0xe0 && c <= 0xef)
            k = 2;
        else if (c >= 0xf0 && c <= 0xf4)
            k = 3;
        else
            return false;
        if (i + k >= n)
            return false;
        for (size_t j = 1; j <= k; j++)
            if ((s[i + j] & 0xc0) != 0x80)
                return false;
        i += k + 1;
    }
    return true;
}

struct field {
    const char *p;
    size_t n;
};

/* Splits one line into at most 4 blank-separated fields (a field starting with '#' ends it). */
static size_t split_fields(const char *p, const char *end, struct field *f, size_t max)
{
    size_t n = 0;
    for (;;) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\r'))
            p++;
        if (p == end || *p == '#')
            return n;
        const char *s = p;
        while (p < end && *p != ' ' && *p != '\t' && *p != '\r')
            p++;
        if (n < max)
            f[n] = (struct field){s, (size_t)(p - s)};
        n++;
    }
}

static int parse_id(const struct field *f, long long *out)
{
    char buf[32];
    if (f->n == 0 || f->n >= sizeof(buf))
        return -1;
    memcpy(buf, f->p, f->n);
    buf[f->n] = '\0';
    for (size_t i = 0; i < f->n; i++)
        if (buf[i] < '0' || buf[i] > '9')
            return -1;
    long long v;
    if (sb_parse_ll(buf, &v) != 0 || v < 0 || v > INT_MAX)
        return -1;
    *out = v;
    return 0;
}

static char *dup_field(const struct field *f)
{
    char *d = malloc(f->n + 1);
    if (d) {
        memcpy(d, f->p, f->n);
        d[f->n] = '\0';
    }
    return d;
}

int sb_lora_list_parse(const char *text, size_t len, const char *name, struct sb_lora_list *out,
                       struct sb_err *err)
{
    struct sb_lora_list l = {0};
    size_t cap = 0;
    const char *p = text, *end = text + len;
    long lineno = 0;
    l.file = strdup(name ? name : "");
    if (!l.file)
        goto oom;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        lineno++;
        struct field f[3];
        size_t nf = split_fields(p, eol, f, 3);
        p = eol < end ? eol + 1 : end;
        if (nf == 0)
            continue;
        if (nf > 3) {
            sb_err_set(err,
                       "cannot read lora list '%s' line %ld: %zu fields, expected NAME [ID [PATH]]",
                       name, lineno, nf);
            goto fail;
        }
        if (f[0].n > SB_LORA_NAME_MAX) {
            sb_err_set(err,
                       "cannot read lora list '%s' line %ld: adapter name longer than %d bytes",
                       name, lineno, SB_LORA_NAME_MAX);
            goto fail;
        }
        if (!printable_utf8((const unsigned char *)f[0].p, f[0].n)) {
            sb_err_set(err,
                       "cannot read lora list '%s' line %ld: adapter name is not printable UTF-8",
                       name, lineno);
            goto fail;
        }
        long long id = -1;
        if (nf >= 2 && parse_id(&f[1], &id) != 0) {
            sb_err_set(err,
                       "cannot read lora list '%s' line %ld: bad id '%.*s' (an integer 0 to %d)",
                       name, lineno, (int)(f[1].n > 40 ? 40 : f[1].n), f[1].p, INT_MAX);
            goto fail;
        }
        for (size_t i = 0; i < l.n; i++) {
            if (strlen(l.a[i].name) == f[0].n && memcmp(l.a[i].name, f[0].p, f[0].n) == 0) {
                sb_err_set(err,
                           "cannot read lora list '%s' line %ld: duplicate adapter name '%s' "
                           "(first on line %ld)",
                           name, lineno, l.a[i].name, l.a[i].line);
                goto fail;
            }
            if (id >= 0 && l.a[i].id == id) {
                sb_err_set(err,
                           "cannot read lora list '%s' line %ld: duplicate id %lld (first on line "
                           "%ld, adapter '%s')",
                           name, lineno, id, l.a[i].line, l.a[i].name);
                goto fail;
            }
        }
        if (l.n == cap) {
            size_t nc = cap ? cap * 2 : 8;
            struct sb_lora_adapter *na = realloc(l.a, nc * sizeof(*na));
            if (!na)
                goto oom;
            l.a = na;
            cap = nc;
        }
        struct sb_lora_adapter *a = &l.a[l.n];
        memset(a, 0, sizeof(*a));
        a->line = lineno;
        a->id = id;
        a->name = dup_field(&f[0]);
        l.n++;
        if (!a->name)
            goto oom;
        if (nf == 3 && !(a->path = dup_field(&f[2])))
            goto oom;
    }
    if (l.n == 0) {
        sb_err_set(err, "cannot read lora list '%s': no adapters in it", name);
        goto fail;
    }
    *out = l;
    return 0;
oom:
    sb_err_set(err, "out of memory reading lora list '%s'", name);
fail:
    sb_lora_list_release(&l);
    return -1;
}

int sb_lora_list_load(const char *path, struct sb_lora_list *out, struct sb_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return sb_err_errno(err, errno, "cannot open lora list '%s'", path);
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            size_t nc = cap ? cap * 2 : 4096;
            if (nc > (64u << 20)) {
                fclose(f);
                free(buf);
                return sb_err_set(err, "cannot read lora list '%s': larger than 64 MiB", path);
            }
            char *nb = realloc(buf, nc);
            if (!nb) {
                fclose(f);
                free(buf);
                return sb_err_set(err, "out of memory reading lora list '%s'", path);
            }
            buf = nb;
            cap = nc;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0)
            break;
    }
    int rerr = ferror(f);
    fclose(f);
    if (rerr) {
        free(buf);
        return sb_err_set(err, "cannot read lora list '%s'", path);
    }
    int rc = sb_lora_list_parse(buf ? buf : "", len, path, out, err);
    free(buf);
    return rc;
}

int sb_lora_list_check_mode(const struct sb_lora_list *l, enum sb_lora_mode mode,
                            struct sb_err *err)
{
    if (mode != SB_LORA_MODE_TRTLLM)
        return 0;
    for (size_t i = 0; i < l->n; i++)
        if (l->a[i].id < 0 || !l->a[i].path)
            return sb_err_set(err,
                              "lora list '%s' line %ld: --lora-mode trtllm needs an id and a path "
                              "for adapter '%s' (NAME ID PATH: TensorRT-LLM's lora_int_id and "
                              "lora_path)",
                              l->file, l->a[i].line, l->a[i].name);
    return 0;
}

/* ---- the policy ---- */

int sb_lora_policy_parse(const char *text, struct sb_lora_policy *out, struct sb_err *err)
{
    const char *t = text ? text : "";
    if (strcmp(t, "round_robin") == 0) {
        *out = (struct sb_lora_policy){SB_LORA_ROUND_ROBIN, 0};
        return 0;
    }
    if (strcmp(t, "uniform") == 0) {
        *out = (struct sb_lora_policy){SB_LORA_UNIFORM, 0};
        return 0;
    }
    if (strncmp(t, "zipf:", 5) == 0) {
        double s;
        if (sb_parse_double(t + 5, &s) == 0 && isfinite(s) && s > 0) {
            *out = (struct sb_lora_policy){SB_LORA_ZIPF, s};
            return 0;
        }
        return sb_err_set(err, "invalid --lora-select '%s': zipf's exponent must be a number > 0",
                          t);
    }
    return sb_err_set(err, "invalid --lora-select '%s': expected round_robin, uniform or zipf:S",
                      t);
}

const char *sb_lora_policy_name(const struct sb_lora_policy *p, char *buf, size_t cap)
{
    switch (p->kind) {
    case SB_LORA_ROUND_ROBIN:
        snprintf(buf, cap, "round_robin");
        break;
    case SB_LORA_UNIFORM:
        snprintf(buf, cap, "uniform");
        break;
    case SB_LORA_ZIPF:
        snprintf(buf, cap, "zipf:%g", p->s);
        break;
    }
    return buf;
}

/* ---- the selector ---- */

struct sb_lora_selector {
    const struct sb_lora_list *l;
    struct sb_lora_policy pol;
    uint64_t key;
    double *cdf; /* zipf: cumulative shares by rank, cdf[n-1] == 1 */
    pthread_mutex_t lock;
    long long next;               /* seqs below have been counted */
    long long *counts;            /* uses of each adapter among seqs [0, next) */
    long long ring[SB_LORA_RING]; /* use count of seq, at seq % SB_LORA_RING, for the last ones */
};

int sb_lora_selector_new(const struct sb_lora_list *l, const struct sb_lora_policy *p,
                         uint64_t seed, struct sb_lora_selector **out, struct sb_err *err)
{
    *out = NULL;
    struct sb_lora_selector *s = calloc(1, sizeof(*s));
    if (!s)
        return sb_err_set(err, "out of memory");
    s->l = l;
    s->pol = *p;
    /* Its own stream: arrivals and nonces draw from the same seed. */
    s->key = sb_mix64(seed ^ 0x4c6f5241ull);
    s->counts = calloc(l->n ? l->n : 1, sizeof(*s->counts));
    if (p->kind == SB_LORA_ZIPF)
        s->cdf = malloc((l->n ? l->n : 1) * sizeof(double));
    if (!s->counts || (p->kind == SB_LORA_ZIPF && !s->cdf)) {
        free(s->counts);
        free(s->cdf);
        free(s);
        return sb_err_set(err, "out of memory");
    }
    if (s->cdf) {
        double sum = 0;
        for (size_t k = 0; k < l->n; k++)
            sum += pow((double)(k + 1), -p->s);
        double acc = 0;
        for (size_t k = 0; k < l->n; k++) {
            acc += pow((double)(k + 1), -p->s);
            s->cdf[k] = acc / sum;
        }
        s->cdf[l->n - 1] = 1.0;
    }
    pthread_mutex_init(&s->lock, NULL);
    *out = s;
    return 0;
}

void sb_lora_selector_free(struct sb_lora_selector *s)
{
    if (!s)
        return;
    pthread_mutex_destroy(&s->lock);
    free(s->counts);
    free(s->cdf);
    free(s);
}

size_t sb_lora_pick(const struct sb_lora_selector *s, long long seq)
{
    size_t n = s->l->n;
    if (s->pol.kind == SB_LORA_ROUND_ROBIN)
        return (size_t)((unsigned long long)seq % n);
    uint64_t x = sb_mix64(s->key ^ sb_mix64((uint64_t)seq));
    double u = (double)(x >> 11) / 9007199254740992.0; /* [0, 1) */
    if (s->pol.kind == SB_LORA_UNIFORM) {
        size_t i = (size_t)(u * (double)n);
        return i < n ? i : n - 1;
    }
    return sb_cdf_index(s->cdf, n, u); /* the first rank whose cumulative share exceeds u */
}

void sb_lora_selector_take(struct sb_lora_selector *s, long long seq, size_t *idx, long long *use)
{
    size_t i = sb_lora_pick(s, seq);
    long long u = 0;
    pthread_mutex_lock(&s->lock);
    while (s->next <= seq) {
        size_t k = sb_lora_pick(s, s->next);
        s->ring[s->next % SB_LORA_RING] = ++s->counts[k];
        s->next++;
    }
    if (seq >= s->next - SB_LORA_RING) {
        u = s->ring[seq % SB_LORA_RING];
    } else { /* fell out of the ring: count again */
        for (long long q = 0; q <= seq; q++)
            u += sb_lora_pick(s, q) == i;
    }
    pthread_mutex_unlock(&s->lock);
    *idx = i;
    *use = u;
}

void sb_lora_selector_counts(struct sb_lora_selector *s, long long *counts)
{
    pthread_mutex_lock(&s->lock);
    memcpy(counts, s->counts, s->l->n * sizeof(*counts));
    pthread_mutex_unlock(&s->lock);
}

void sb_lora_apply(const struct sb_lora_list *l, enum sb_lora_mode mode, size_t idx,
                   struct sb_request_params *rp)
{
    const struct sb_lora_adapter *a = &l->a[idx];
    if (mode == SB_LORA_MODE_MODEL) {
        rp->model = a->name;
        return;
    }
    rp->lora_name = a->name;
    rp->lora_id = a->id;
    rp->lora_path = a->path;
}
