/*
 * The LoRA suite's H1 split (sb_run_read_lora in sb/analyze.h): TTFT by adapter and by first use
 * (cold) against later use (warm). A second, plain pass over metrics.jsonl with the record reader,
 * taken only for runs made with --lora-list, so the fast reader of every run stays as it is.
 * Adapters are found by name in a small open-addressing table: a list may hold thousands.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sb/analyze.h"
#include "sb/jsonl.h"
#include "sb/record.h"
#include "sb/util.h"

struct lora_acc {
    char name[128];
    double *ttft[2]; /* [0] cold, [1] warm */
    size_t n[2], cap[2], errors[2];
};

struct lora_pass {
    struct lora_acc *acc; /* accs[0..n) in order of first sight; all is separate */
    size_t n, cap;
    size_t *slots; /* hash table of index + 1; 0 is empty */
    size_t nslots;
    struct lora_acc all;
    bool oom;
};

static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int grow_slots(struct lora_pass *lp)
{
    size_t ns = lp->nslots ? lp->nslots * 2 : 64;
    size_t *sl = calloc(ns, sizeof(*sl));
    if (!sl)
        return -1;
    for (size_t i = 0; i < lp->n; i++) {
        size_t h = (size_t)name_hash(lp->acc[i].name) & (ns - 1);
        while (sl[h])
            h = (h + 1) & (ns - 1);
        sl[h] = i + 1;
    }
    free(lp->slots);
    lp->slots = sl;
    lp->nslots = ns;
    return 0;
}

static struct lora_acc *find_acc(struct lora_pass *lp, const char *name)
{
    if ((lp->n + 1) * 2 > lp->nslots && grow_slots(lp) != 0)
        return NULL;
    size_t h = (size_t)name_hash(name) & (lp->nslots - 1);
    while (lp->slots[h]) {
        struct lora_acc *a = &lp->acc[lp->slots[h] - 1];
        if (strcmp(a->name, name) == 0)
            return a;
        h = (h + 1) & (lp->nslots - 1);
    }
    if (lp->n == lp->cap) {
        size_t nc = lp->cap ? lp->cap * 2 : 16;
        struct lora_acc *na = realloc(lp->acc, nc * sizeof(*na));
        if (!na)
            return NULL;
        lp->acc = na;
        lp->cap = nc;
    }
    struct lora_acc *a = &lp->acc[lp->n];
    memset(a, 0, sizeof(*a));
    snprintf(a->name, sizeof(a->name), "%s", name);
    lp->slots[h] = ++lp->n;
    return a;
}

static void acc_add(struct lora_pass *lp, struct lora_acc *a, int k, const struct sb_record *rec)
{
    if (!rec->ok) {
        a->errors[k]++;
        return;
    }
    if (isnan(rec->lat_ttft_ms))
        return;
    if (sb_doubles_push(&a->ttft[k], &a->n[k], &a->cap[k], rec->lat_ttft_ms) != 0)
        lp->oom = true;
}

static int on_line(char *line, size_t len, long lineno, void *arg)
{
    struct lora_pass *lp = arg;
    (void)lineno;
    struct sb_record rec;
    struct sb_err e;
    if (sb_record_from_json(line, len, &rec, &e) != 0)
        return 0; /* the metrics reader warns about it */
    if (!rec.adapter[0] || rec.adapter_use < 1)
        return 0;
    int k = rec.adapter_use == 1 ? 0 : 1;
    if (k == 1 && rec.warmup) /* warm uses are steady state: the measured window's */
        return 0;
    struct lora_acc *a = find_acc(lp, rec.adapter);
    if (!a) {
        lp->oom = true;
        return -1;
    }
    acc_add(lp, a, k, &rec);
    acc_add(lp, &lp->all, k, &rec);
    return lp->oom ? -1 : 0;
}

static int cmp_acc(const void *x, const void *y)
{
    return strcmp(((const struct lora_acc *)x)->name, ((const struct lora_acc *)y)->name);
}

static void split_of(struct lora_acc *a, struct sb_lora_split *out)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->adapter, sizeof(out->adapter), "%s", a->name);
    for (int k = 0; k < 2; k++) {
        out->n[k] = a->n[k];
        out->errors[k] = a->errors[k];
        sb_stats_summarize(a->ttft[k], a->n[k], &out->ttft[k]);
    }
}

static void acc_release(struct lora_acc *a)
{
    free(a->ttft[0]);
    free(a->ttft[1]);
}

int sb_run_read_lora(struct sb_run *r, const char *path, struct sb_err *err)
{
    struct lora_pass lp = {0};
    snprintf(lp.all.name, sizeof(lp.all.name), "*");
    int rc = sb_jsonl_read(path, on_line, &lp, NULL, err);
    if (rc == 0 && lp.oom)
        rc = -1;
    if (rc == 0 && lp.n > 0) {
        qsort(lp.acc, lp.n, sizeof(*lp.acc), cmp_acc);
        r->lora = calloc(lp.n + 1, sizeof(*r->lora));
        if (!r->lora) {
            rc = -1;
        } else {
            for (size_t i = 0; i < lp.n; i++)
                split_of(&lp.acc[i], &r->lora[i]);
            split_of(&lp.all, &r->lora[lp.n]);
            r->nlora = lp.n + 1;
        }
    }
    if (rc != 0 && lp.oom)
        sb_err_set(err, "cannot split '%s' by adapter: out of memory", path);
    for (size_t i = 0; i < lp.n; i++)
        acc_release(&lp.acc[i]);
    acc_release(&lp.all);
    free(lp.acc);
    free(lp.slots);
    return rc < 0 ? -1 : 0;
}
