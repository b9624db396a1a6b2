/*
 * Parsers for the /proc files that sysmon samples five times a second (stat, meminfo, pressure,
 * diskstats), the mpstat/iostat arithmetic over two samples, and the sysfs walk from a dev_t to
 * the disk that /proc/diskstats names. The parsers work on caller-supplied buffers that need not
 * be NUL-terminated: lines and blank-separated tokens are (pointer, length) ranges, and every
 * number goes through one checked converter (digits only, strtoull/ERANGE, whole token consumed),
 * the way fio's diskutil.c refuses a diskstats line whose sscanf count is short. Nothing here
 * allocates per line; diskstats and stat count their lines first and allocate once.
 */
#include "sb/procfs.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define TOK_SHOW 40 /* at most this many bytes of a bad token are quoted in a message */

/* ---- lines and tokens --------------------------------------------------------------------------
 */

struct line_iter {
    const char *p, *end;
    unsigned lineno; /* 1-based number of the line last returned */
};

static void line_iter_init(struct line_iter *it, const char *text, size_t len)
{
    it->p = text;
    it->end = text ? text + len : text;
    it->lineno = 0;
}

/* Returns the next line as [*s, *e) without its '\n', or false at the end of the text. */
static bool line_next(struct line_iter *it, const char **s, const char **e)
{
    if (it->p >= it->end)
        return false;
    const char *nl = memchr(it->p, '\n', (size_t)(it->end - it->p));
    *s = it->p;
    *e = nl ? nl : it->end;
    it->p = nl ? nl + 1 : it->end;
    it->lineno++;
    return true;
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* Skips blanks from *p and returns the length of the token it then points at (0 at line end). */
static size_t tok_next(const char **p, const char *e, const char **tok)
{
    const char *s = *p;
    while (s < e && is_blank(*s))
        s++;
    const char *t = s;
    while (s < e && !is_blank(*s))
        s++;
    *tok = t;
    *p = s;
    return (size_t)(s - t);
}

static bool line_is_blank(const char *s, const char *e)
{
    const char *t;
    return tok_next(&s, e, &t) == 0;
}

static bool tok_eq(const char *t, size_t n, const char *lit)
{
    return strlen(lit) == n && memcmp(t, lit, n) == 0;
}

/* An unsigned decimal token: digits only (strtoull alone would take "-1", "+1" and " 1"). */
static int parse_u64(const char *t, size_t n, unsigned long long *out)
{
    char buf[24];
    if (n == 0 || n >= sizeof(buf))
        return -1;
    for (size_t i = 0; i < n; i++)
        if (t[i] < '0' || t[i] > '9')
            return -1;
    memcpy(buf, t, n);
    buf[n] = '\0';
    char *end;
    errno = 0;
    unsigned long long v = strtoull(buf, &end, 10);
    if (errno == ERANGE || end != buf + n)
        return -1;
    *out = v;
    return 0;
}

/*
 * A fixed-point decimal token as the kernel prints PSI averages ("12.34"). Converted by hand,
 * not with strtod, so a caller's setlocale() cannot turn '.' into an error; digits/10^k is one
 * correctly rounded division, hence the same double strtod would give.
 */
static int parse_decimal(const char *t, size_t n, double *out)
{
    uint64_t mant = 0;
    double scale = 1.0;
    size_t i = 0, digits = 0;
    bool frac = false;
    for (; i < n; i++) {
        if (t[i] == '.' && !frac && digits > 0) {
            frac = true;
            continue;
        }
        if (t[i] < '0' || t[i] > '9' || ++digits > 18)
            return -1;
        mant = mant * 10 + (uint64_t)(t[i] - '0');
        if (frac)
            scale *= 10.0;
    }
    if (digits == 0 || t[n - 1] == '.')
        return -1;
    *out = (double)mant / scale;
    return 0;
}

static int show_len(size_t n)
{
    return n > TOK_SHOW ? TOK_SHOW : (int)n;
}

/* "cannot parse '<file>' line <n>: <detail>"; returns -1. */
__attribute__((format(printf, 4, 5))) static int line_err(struct sb_err *err, const char *file,
                                                          unsigned lineno, const char *fmt, ...)
{
    char detail[SB_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    return sb_err_set(err, "cannot parse '%s' line %u: %s", file, lineno, detail);
}

/* ---- /proc/stat --------------------------------------------------------------------------------
 */

#define STAT_FILE "/proc/stat"

void sb_procstat_release(struct sb_proc_stat *s)
{
    if (!s)
        return;
    free(s->cpus);
    free(s->ids);
    memset(s, 0, sizeof(*s));
}

/* Reads the numbers after "cpu"/"cpuN" into t. */
static int procstat_cpu_fields(const char *p, const char *e, unsigned lineno, const char *label,
                               size_t label_len, struct sb_cpu_times *t, struct sb_err *err)
{
    unsigned long long v[10] = {0};
    int nf = 0;
    const char *tok;
    size_t n;
    while ((n = tok_next(&p, e, &tok)) > 0) {
        unsigned long long x;
        if (parse_u64(tok, n, &x) < 0)
            return line_err(err, STAT_FILE, lineno, "field %d of '%.*s' is not a number: '%.*s'",
                            nf + 1, show_len(label_len), label, show_len(n), tok);
        if (nf < 10)
            v[nf] = x;
        nf++;
    }
    if (nf < 4)
        return line_err(err, STAT_FILE, lineno, "expected at least 4 numbers after '%.*s', got %d",
                        show_len(label_len), label, nf);
    *t = (struct sb_cpu_times){.user = v[0],
                               .nice = v[1],
                               .system = v[2],
                               .idle = v[3],
                               .iowait = v[4],
                               .irq = v[5],
                               .softirq = v[6],
                               .steal = v[7],
                               .guest = v[8],
                               .guest_nice = v[9]};
    return 0;
}

/* Upper bound on "cpuN" lines: all lines starting "cpu", the aggregate included. */
static size_t procstat_count_cpu_lines(const char *text, size_t len)
{
    struct line_iter it;
    const char *s, *e;
    size_t n = 0;
    line_iter_init(&it, text, len);
    while (line_next(&it, &s, &e)) {
        const char *tok;
        if (tok_next(&s, e, &tok) >= 3 && memcmp(tok, "cpu", 3) == 0)
            n++;
    }
    return n;
}

int sb_procstat_parse(const char *text, size_t len, struct sb_proc_stat *out, struct sb_err *err)
{
    struct sb_proc_stat st = {0};
    bool have_all = false;
    size_t cap = procstat_count_cpu_lines(text, len);
    if (cap > 0) {
        st.cpus = malloc(cap * sizeof(*st.cpus));
        st.ids = malloc(cap * sizeof(*st.ids));
        if (!st.cpus || !st.ids) {
            sb_err_set(err, "cannot parse '%s': out of memory for %zu cpus", STAT_FILE, cap);
            goto fail;
        }
    }

    struct line_iter it;
    const char *s, *e;
    line_iter_init(&it, text, len);
    while (line_next(&it, &s, &e)) {
        const char *p = s, *tok;
        size_t n = tok_next(&p, e, &tok);
        if (n < 3 || memcmp(tok, "cpu", 3) != 0)
            continue; /* intr, ctxt, btime, processes, procs_*, softirq, blank */
        if (n == 3) {
            if (have_all) {
                line_err(err, STAT_FILE, it.lineno, "second aggregate 'cpu' line");
                goto fail;
            }
            if (procstat_cpu_fields(p, e, it.lineno, tok, n, &st.all, err) < 0)
                goto fail;
            have_all = true;
            continue;
        }
        unsigned long long id;
        if (parse_u64(tok + 3, n - 3, &id) < 0 || id > INT_MAX) {
            line_err(err, STAT_FILE, it.lineno, "unknown cpu line '%.*s'", show_len(n), tok);
            goto fail;
        }
        if (st.ncpus > 0 && (int)id <= st.ids[st.ncpus - 1]) {
            line_err(err, STAT_FILE, it.lineno, "'%.*s' follows 'cpu%d' (numbers must increase)",
                     show_len(n), tok, st.ids[st.ncpus - 1]);
            goto fail;
        }
        if ((size_t)st.ncpus >= cap) { /* cannot happen: cap counted every "cpu" line */
            line_err(err, STAT_FILE, it.lineno, "more cpu lines than counted");
            goto fail;
        }
        if (procstat_cpu_fields(p, e, it.lineno, tok, n, &st.cpus[st.ncpus], err) < 0)
            goto fail;
        st.ids[st.ncpus++] = (int)id;
    }
    if (!have_all) {
        sb_err_set(err, "cannot parse '%s': no aggregate 'cpu' line", STAT_FILE);
        goto fail;
    }
    if (st.ncpus == 0) {
        free(st.cpus);
        free(st.ids);
        st.cpus = NULL;
        st.ids = NULL;
    }
    *out = st;
    return 0;
fail:
    sb_procstat_release(&st);
    memset(out, 0, sizeof(*out));
    return -1;
}

/* Delta of one jiffies field from a to b; a decrease is a reset and counts as 0. */
static unsigned long long jdelta(unsigned long long a, unsigned long long b)
{
    return b > a ? b - a : 0;
}

/* x - y saturating at 0 (guest can briefly exceed user: they are not updated atomically). */
static unsigned long long sat_sub(unsigned long long x, unsigned long long y)
{
    return x > y ? x - y : 0;
}

void sb_cpu_pct(const struct sb_cpu_times *a, const struct sb_cpu_times *b, struct sb_cpu_pct *out)
{
    unsigned long long d[10] = {
        jdelta(sat_sub(a->user, a->guest), sat_sub(b->user, b->guest)),
        jdelta(sat_sub(a->nice, a->guest_nice), sat_sub(b->nice, b->guest_nice)),
        jdelta(a->system, b->system),
        jdelta(a->iowait, b->iowait),
        jdelta(a->irq, b->irq),
        jdelta(a->softirq, b->softirq),
        jdelta(a->steal, b->steal),
        jdelta(a->idle, b->idle),
        jdelta(a->guest, b->guest),
        jdelta(a->guest_nice, b->guest_nice),
    };
    unsigned long long total = 0;
    for (int i = 0; i < 10; i++)
        total += d[i];
    double pct[10] = {0};
    if (total > 0)
        for (int i = 0; i < 10; i++)
            pct[i] = 100.0 * (double)d[i] / (double)total;
    *out = (struct sb_cpu_pct){.user = pct[0],
                               .nice = pct[1],
                               .system = pct[2],
                               .iowait = pct[3],
                               .irq = pct[4],
                               .softirq = pct[5],
                               .steal = pct[6],
                               .idle = pct[7],
                               .guest = pct[8],
                               .guest_nice = pct[9]};
}

/* ---- /proc/meminfo -----------------------------------------------------------------------------
 */

#define MEMINFO_FILE "/proc/meminfo"

static const struct {
    const char *key;
    size_t off;
} meminfo_keys[] = {
    {"MemTotal", offsetof(struct sb_meminfo, mem_total)},
    {"MemFree", offsetof(struct sb_meminfo, mem_free)},
    {"MemAvailable", offsetof(struct sb_meminfo, mem_available)},
    {"Buffers", offsetof(struct sb_meminfo, buffers)},
    {"Cached", offsetof(struct sb_meminfo, cached)},
    {"Dirty", offsetof(struct sb_meminfo, dirty)},
    {"Writeback", offsetof(struct sb_meminfo, writeback)},
    {"SwapTotal", offsetof(struct sb_meminfo, swap_total)},
    {"SwapFree", offsetof(struct sb_meminfo, swap_free)},
    {"Shmem", offsetof(struct sb_meminfo, shmem)},
};

int sb_meminfo_parse(const char *text, size_t len, struct sb_meminfo *out, struct sb_err *err)
{
    struct sb_meminfo mi;
    unsigned seen = 0, lines = 0;
    for (size_t k = 0; k < sizeof(meminfo_keys) / sizeof(meminfo_keys[0]); k++)
        *(long long *)((char *)&mi + meminfo_keys[k].off) = -1;

    struct line_iter it;
    const char *s, *e;
    line_iter_init(&it, text, len);
    while (line_next(&it, &s, &e)) {
        if (line_is_blank(s, e))
            continue;
        lines++;
        const char *colon = memchr(s, ':', (size_t)(e - s));
        const char *key = s;
        while (key < e && is_blank(*key))
            key++;
        if (!colon || colon <= key)
            return line_err(err, MEMINFO_FILE, it.lineno, "expected 'Key: value', got '%.*s'",
                            show_len((size_t)(e - s)), s);
        size_t klen = (size_t)(colon - key);
        for (size_t i = 0; i < klen; i++)
            if (is_blank(key[i]))
                return line_err(err, MEMINFO_FILE, it.lineno, "blank inside key '%.*s'",
                                show_len(klen), key);
        const char *p = colon + 1, *num, *unit, *extra;
        size_t nnum = tok_next(&p, e, &num);
        size_t nunit = tok_next(&p, e, &unit);
        size_t nextra = tok_next(&p, e, &extra);
        unsigned long long v;
        if (parse_u64(num, nnum, &v) < 0)
            return line_err(err, MEMINFO_FILE, it.lineno, "value of '%.*s' is not a number: '%.*s'",
                            show_len(klen), key, show_len(nnum), num);
        if ((nunit > 0 && !tok_eq(unit, nunit, "kB")) || nextra > 0)
            return line_err(err, MEMINFO_FILE, it.lineno, "unexpected text after '%.*s: %.*s'",
                            show_len(klen), key, show_len(nnum), num);
        for (size_t k = 0; k < sizeof(meminfo_keys) / sizeof(meminfo_keys[0]); k++) {
            if (!tok_eq(key, klen, meminfo_keys[k].key))
                continue;
            if (seen & (1u << k))
                return line_err(err, MEMINFO_FILE, it.lineno, "'%s' appears twice",
                                meminfo_keys[k].key);
            if (nunit == 0)
                return line_err(err, MEMINFO_FILE, it.lineno, "'%s' has no 'kB' unit",
                                meminfo_keys[k].key);
            if (v > (unsigned long long)LLONG_MAX / 1024)
                return line_err(err, MEMINFO_FILE, it.lineno, "'%s' is too large: %llu kB",
                                meminfo_keys[k].key, v);
            seen |= 1u << k;
            *(long long *)((char *)&mi + meminfo_keys[k].off) = (long long)v * 1024;
            break;
        }
    }
    if (lines == 0)
        return sb_err_set(err, "cannot parse '%s': empty", MEMINFO_FILE);
    *out = mi;
    return 0;
}

/* ---- /proc/pressure/ ---------------------------------------------------------------------------
 */

#define PSI_FILE "/proc/pressure"

int sb_psi_parse(const char *text, size_t len, struct sb_psi *out, struct sb_err *err)
{
    static const char *const keys[] = {"avg10", "avg60", "avg300", "total"};
    struct sb_psi psi = {0};
    struct line_iter it;
    const char *s, *e;
    line_iter_init(&it, text, len);
    while (line_next(&it, &s, &e)) {
        const char *p = s, *tok;
        size_t n = tok_next(&p, e, &tok);
        if (n == 0)
            continue;
        struct sb_psi_line *l;
        if (tok_eq(tok, n, "some"))
            l = &psi.some;
        else if (tok_eq(tok, n, "full"))
            l = &psi.full;
        else
            return line_err(err, PSI_FILE, it.lineno, "expected 'some' or 'full', got '%.*s'",
                            show_len(n), tok);
        if (l->present)
            return line_err(err, PSI_FILE, it.lineno, "second '%.*s' line", (int)n, tok);
        const char *kind = tok;
        unsigned seen = 0;
        while ((n = tok_next(&p, e, &tok)) > 0) {
            const char *eq = memchr(tok, '=', n);
            if (!eq || eq == tok)
                return line_err(err, PSI_FILE, it.lineno, "expected key=value, got '%.*s'",
                                show_len(n), tok);
            size_t klen = (size_t)(eq - tok), vlen = n - klen - 1;
            const char *val = eq + 1;
            int k = -1;
            for (int i = 0; i < 4; i++)
                if (tok_eq(tok, klen, keys[i]))
                    k = i;
            if (k < 0)
                continue; /* a key a later kernel may add */
            if (seen & (1u << k))
                return line_err(err, PSI_FILE, it.lineno, "'%s' appears twice", keys[k]);
            seen |= 1u << k;
            if (k == 3) {
                if (parse_u64(val, vlen, &l->total_us) < 0)
                    return line_err(err, PSI_FILE, it.lineno, "total is not a number: '%.*s'",
                                    show_len(vlen), val);
                continue;
            }
            double d;
            if (parse_decimal(val, vlen, &d) < 0 || d > 100.0)
                return line_err(err, PSI_FILE, it.lineno, "%s is not a percentage (0-100): '%.*s'",
                                keys[k], show_len(vlen), val);
            if (k == 0)
                l->avg10 = d;
            else if (k == 1)
                l->avg60 = d;
            else
                l->avg300 = d;
        }
        for (int i = 0; i < 4; i++)
            if (!(seen & (1u << i)))
                return line_err(err, PSI_FILE, it.lineno, "'%.4s' line has no %s", kind, keys[i]);
        l->present = true;
    }
    if (!psi.some.present)
        return sb_err_set(err, "cannot parse '%s': no 'some' line", PSI_FILE);
    *out = psi;
    return 0;
}

/* ---- /proc/diskstats ---------------------------------------------------------------------------
 */

#define DISK_FILE "/proc/diskstats"
#define DISK_MAXF 20

static int diskstats_line(const char *s, const char *e, unsigned lineno, struct sb_disk_counters *d,
                          struct sb_err *err)
{
    const char *tok[DISK_MAXF];
    size_t tlen[DISK_MAXF];
    int nf = 0;
    const char *p = s, *t;
    size_t n;
    while ((n = tok_next(&p, e, &t)) > 0) {
        if (nf < DISK_MAXF) {
            tok[nf] = t;
            tlen[nf] = n;
        }
        nf++;
    }
    if (nf != 14 && nf != 18 && nf != 20)
        return line_err(err, DISK_FILE, lineno, "expected 14, 18 or 20 fields, got %d", nf);

    unsigned long long mm[2];
    for (int i = 0; i < 2; i++)
        if (parse_u64(tok[i], tlen[i], &mm[i]) < 0 || mm[i] > UINT_MAX)
            return line_err(err, DISK_FILE, lineno, "%s number is not a number: '%.*s'",
                            i ? "minor" : "major", show_len(tlen[i]), tok[i]);
    if (tlen[2] >= sizeof(d->name))
        return line_err(err, DISK_FILE, lineno, "device name too long: '%.*s'", show_len(tlen[2]),
                        tok[2]);
    for (size_t i = 0; i < tlen[2]; i++)
        if ((unsigned char)tok[2][i] < 0x21 || (unsigned char)tok[2][i] > 0x7e)
            return line_err(err, DISK_FILE, lineno, "device name has an odd byte 0x%02x",
                            (unsigned char)tok[2][i]);

    unsigned long long v[DISK_MAXF - 3] = {0};
    for (int i = 3; i < nf; i++)
        if (parse_u64(tok[i], tlen[i], &v[i - 3]) < 0)
            return line_err(err, DISK_FILE, lineno, "field %d of '%.*s' is not a number: '%.*s'",
                            i - 2, (int)tlen[2], tok[2], show_len(tlen[i]), tok[i]);

    memset(d, 0, sizeof(*d));
    memcpy(d->name, tok[2], tlen[2]);
    d->major = (unsigned)mm[0];
    d->minor = (unsigned)mm[1];
    d->rd_ios = v[0];
    d->rd_merges = v[1];
    d->rd_sectors = v[2];
    d->rd_ticks = v[3];
    d->wr_ios = v[4];
    d->wr_merges = v[5];
    d->wr_sectors = v[6];
    d->wr_ticks = v[7];
    d->in_flight = v[8];
    d->io_ticks = v[9];
    d->time_in_queue = v[10];
    d->dc_ios = v[11];
    d->dc_merges = v[12];
    d->dc_sectors = v[13];
    d->dc_ticks = v[14];
    d->fl_ios = v[15];
    d->fl_ticks = v[16];
    d->nfields = nf;
    return 0;
}

int sb_diskstats_parse(const char *text, size_t len, struct sb_disk_counters **out, size_t *n,
                       struct sb_err *err)
{
    *out = NULL;
    *n = 0;
    struct line_iter it;
    const char *s, *e;
    size_t cap = 0;
    line_iter_init(&it, text, len);
    while (line_next(&it, &s, &e))
        cap++;
    if (cap == 0)
        return 0;
    struct sb_disk_counters *v = malloc(cap * sizeof(*v));
    if (!v)
        return sb_err_set(err, "cannot parse '%s': out of memory for %zu lines", DISK_FILE, cap);
    size_t used = 0;
    line_iter_init(&it, text, len);
    while (line_next(&it, &s, &e)) {
        if (line_is_blank(s, e))
            continue;
        if (diskstats_line(s, e, it.lineno, &v[used], err) < 0) {
            free(v);
            return -1;
        }
        used++;
    }
    if (used == 0) {
        free(v);
        return 0;
    }
    *out = v;
    *n = used;
    return 0;
}

const struct sb_disk_counters *sb_diskstats_find(const struct sb_disk_counters *v, size_t n,
                                                 const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].name, name) == 0)
            return &v[i];
    return NULL;
}

#define WRAP32 (1ull << 32)
#define NEAR   (1ull << 20)

unsigned long long sb_procfs_delta(unsigned long long a, unsigned long long b)
{
    if (b >= a)
        return b - a;
    if (a >= WRAP32 - NEAR && a < WRAP32 && b < NEAR)
        return WRAP32 - a + b;
    return 0;
}

void sb_disk_rates(const struct sb_disk_counters *a, const struct sb_disk_counters *b, double dt_s,
                   struct sb_disk_rates *out)
{
    memset(out, 0, sizeof(*out));
    if (!(dt_s > 0))
        return;
#define D(f) ((double)sb_procfs_delta(a->f, b->f))
    double rd = D(rd_ios), wr = D(wr_ios), dc = D(dc_ios), fl = D(fl_ios);
    double rsec = D(rd_sectors), wsec = D(wr_sectors), dsec = D(dc_sectors);
    double ms = dt_s * 1000.0;

    out->rps = rd / dt_s;
    out->wps = wr / dt_s;
    out->rmbs = rsec / 2048.0 / dt_s;
    out->wmbs = wsec / 2048.0 / dt_s;
    out->r_await_ms = rd > 0 ? D(rd_ticks) / rd : 0;
    out->w_await_ms = wr > 0 ? D(wr_ticks) / wr : 0;
    out->rareq_sz_kb = rd > 0 ? rsec / rd / 2.0 : 0;
    out->wareq_sz_kb = wr > 0 ? wsec / wr / 2.0 : 0;
    out->aqu_sz = D(time_in_queue) / ms;
    out->util_pct = D(io_ticks) / ms * 100.0;
    out->rrqm_s = D(rd_merges) / dt_s;
    out->wrqm_s = D(wr_merges) / dt_s;

    out->dps = dc / dt_s;
    out->dmbs = dsec / 2048.0 / dt_s;
    out->d_await_ms = dc > 0 ? D(dc_ticks) / dc : 0;
    out->dareq_sz_kb = dc > 0 ? dsec / dc / 2.0 : 0;
    out->drqm_s = D(dc_merges) / dt_s;
    out->fps = fl / dt_s;
    out->f_await_ms = fl > 0 ? D(fl_ticks) / fl : 0;
#undef D
}

/* ---- block devices through sysfs ---------------------------------------------------------------
 */

int sb_blockdev_of_devt(const char *sysfs_root, unsigned major, unsigned minor, char *out,
                        size_t cap, struct sb_err *err)
{
    char link[PATH_MAX], target[PATH_MAX], pfile[PATH_MAX];
    if (major == 0)
        return sb_err_set(err,
                          "device %u:%u is no block device (an anonymous device: tmpfs, overlay, "
                          "btrfs subvolume or similar)",
                          major, minor);
    int m = snprintf(link, sizeof(link), "%s/dev/block/%u:%u", sysfs_root, major, minor);
    if (m < 0 || (size_t)m >= sizeof(link))
        return sb_err_set(err, "sysfs path too long: '%s'", sysfs_root);
    ssize_t n = readlink(link, target, sizeof(target) - 1);
    if (n < 0)
        return sb_err_errno(err, errno, "cannot resolve block device %u:%u through '%s'", major,
                            minor, link);
    if ((size_t)n >= sizeof(target) - 1)
        return sb_err_set(err, "link target too long: '%s'", link);
    while (n > 1 && target[n - 1] == '/')
        n--;
    target[n] = '\0';

    /* target is "../../devices/.../block/vda" or ".../block/vda/vda1": the last component names
     * the device, the one before it the disk when the device is a partition */
    char *last = strrchr(target, '/');
    const char *name = last ? last + 1 : target;
    m = snprintf(pfile, sizeof(pfile), "%s/partition", link);
    if (m < 0 || (size_t)m >= sizeof(pfile))
        return sb_err_set(err, "sysfs path too long: '%s'", link);
    if (access(pfile, F_OK) == 0) {
        if (!last || last == target)
            return sb_err_set(err, "partition '%s' has no parent in '%s'", name, target);
        *last = '\0';
        char *prev = strrchr(target, '/');
        name = prev ? prev + 1 : target;
    }
    size_t len = strlen(name);
    if (len == 0 || len >= cap)
        return sb_err_set(err, "block device name '%s' does not fit in %zu bytes", name, cap);
    for (size_t i = 0; i <= len; i++)
        out[i] = name[i] == '!' ? '/' : name[i];
    return 0;
}

int sb_blockdev_of_path(const char *sysfs_root, const char *path, char *out, size_t cap,
                        struct sb_err *err)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return sb_err_errno(err, errno, "cannot stat '%s'", path);
    unsigned maj = major(st.st_dev), min = minor(st.st_dev);
    if (sb_blockdev_of_devt(sysfs_root, maj, min, out, cap, err) < 0) {
        sb_err_prefix(err, "cannot find the disk of '%s': ", path);
        return -1;
    }
    return 0;
}

/* ---- /proc/<pid>/io ----------------------------------------------------------------------------
 */

#define PID_IO_FILE "/proc/[pid]/io"

static const struct {
    const char *key;
    size_t off;
    bool required;
} pid_io_keys[] = {
    {"rchar", offsetof(struct sb_pid_io, rchar), true},
    {"wchar", offsetof(struct sb_pid_io, wchar), true},
    {"syscr", offsetof(struct sb_pid_io, syscr), false},
    {"syscw", offsetof(struct sb_pid_io, syscw), false},
    {"read_bytes", offsetof(struct sb_pid_io, read_bytes), true},
    {"write_bytes", offsetof(struct sb_pid_io, write_bytes), true},
    {"cancelled_write_bytes", offsetof(struct sb_pid_io, cancelled_write_bytes), true},
};

int sb_pid_io_parse(const char *text, size_t len, struct sb_pid_io *out, struct sb_err *err)
{
    struct sb_pid_io io = {0};
    unsigned seen = 0;
    struct line_iter it;
    const char *s, *e;
    line_iter_init(&it, text, len);
    while (line_next(&it, &s, &e)) {
        const char *p = s, *key, *num, *extra;
        size_t nkey = tok_next(&p, e, &key);
        if (nkey == 0)
            continue;
        if (nkey < 2 || key[nkey - 1] != ':')
            return line_err(err, PID_IO_FILE, it.lineno, "expected 'key: value', got '%.*s'",
                            show_len((size_t)(e - s)), s);
        nkey--; /* the ':' */
        size_t nnum = tok_next(&p, e, &num);
        unsigned long long v;
        if (parse_u64(num, nnum, &v) < 0)
            return line_err(err, PID_IO_FILE, it.lineno, "value of '%.*s' is not a number: '%.*s'",
                            show_len(nkey), key, show_len(nnum), num);
        if (tok_next(&p, e, &extra) > 0)
            return line_err(err, PID_IO_FILE, it.lineno, "unexpected text after '%.*s: %.*s'",
                            show_len(nkey), key, show_len(nnum), num);
        for (size_t k = 0; k < sizeof(pid_io_keys) / sizeof(pid_io_keys[0]); k++) {
            if (!tok_eq(key, nkey, pid_io_keys[k].key))
                continue;
            if (seen & (1u << k))
                return line_err(err, PID_IO_FILE, it.lineno, "'%s' appears twice",
                                pid_io_keys[k].key);
            seen |= 1u << k;
            *(unsigned long long *)((char *)&io + pid_io_keys[k].off) = v;
            break;
        }
    }
    for (size_t k = 0; k < sizeof(pid_io_keys) / sizeof(pid_io_keys[0]); k++)
        if (pid_io_keys[k].required && !(seen & (1u << k)))
            return sb_err_set(err, "cannot parse '%s': no '%s' line", PID_IO_FILE,
                              pid_io_keys[k].key);
    *out = io;
    return 0;
}

/* ---- /proc/<pid>/stat --------------------------------------------------------------------------
 */

#define PID_STAT_FILE "/proc/[pid]/stat"
#define PID_STAT_MIN  24 /* rss, the last field kept */

/* An integer token with an optional '-' (the signed fields print as %d / %ld). */
static int parse_i64_tok(const char *t, size_t n, bool *neg, unsigned long long *mag)
{
    *neg = n > 0 && t[0] == '-';
    return parse_u64(t + *neg, n - *neg, mag);
}

int sb_pid_stat_parse(const char *text, size_t len, struct sb_pid_stat *out, struct sb_err *err)
{
    struct sb_pid_stat ps = {0};
    const char *end = text ? text + len : text;
    while (end > text && (end[-1] == '\n' || is_blank(end[-1])))
        end--;
    const char *open = text ? memchr(text, '(', (size_t)(end - text)) : NULL;
    const char *close = text ? memrchr(text, ')', (size_t)(end - text)) : NULL;
    if (!open || !close || close < open)
        return sb_err_set(err, "cannot parse '%s': no '(comm)'", PID_STAT_FILE);
    const char *p = text, *tok;
    size_t n = tok_next(&p, open, &tok);
    if (parse_u64(tok, n, &ps.pid) < 0 || p + 1 != open || !is_blank(*p))
        return sb_err_set(err, "cannot parse '%s': expected 'pid (comm)', got '%.*s'",
                          PID_STAT_FILE, show_len((size_t)(open - text)), text);
    size_t clen = (size_t)(close - open - 1);
    if (clen >= sizeof(ps.comm))
        clen = sizeof(ps.comm) - 1;
    memcpy(ps.comm, open + 1, clen);
    ps.comm[clen] = '\0';

    p = close + 1;
    if (p >= end || !is_blank(*p))
        return sb_err_set(err, "cannot parse '%s': expected fields after '(%s)'", PID_STAT_FILE,
                          ps.comm);
    int field = 2; /* the number of the field last read */
    while ((n = tok_next(&p, end, &tok)) > 0) {
        field++;
        if (field == 3) {
            if (n != 1)
                return sb_err_set(err, "cannot parse '%s': state is '%.*s', not one letter",
                                  PID_STAT_FILE, show_len(n), tok);
            ps.state = tok[0];
            continue;
        }
        bool neg;
        unsigned long long v;
        if (parse_i64_tok(tok, n, &neg, &v) < 0)
            return sb_err_set(err, "cannot parse '%s': field %d is not a number: '%.*s'",
                              PID_STAT_FILE, field, show_len(n), tok);
        unsigned long long *dst = field == 14   ? &ps.utime
                                  : field == 15 ? &ps.stime
                                  : field == 20 ? &ps.num_threads
                                  : field == 22 ? &ps.starttime
                                  : field == 24 ? &ps.rss_pages
                                                : NULL;
        if (!dst)
            continue;
        if (neg)
            return sb_err_set(err, "cannot parse '%s': field %d is negative: '%.*s'", PID_STAT_FILE,
                              field, show_len(n), tok);
        *dst = v;
    }
    if (field < PID_STAT_MIN)
        return sb_err_set(err, "cannot parse '%s': expected at least %d fields, got %d",
                          PID_STAT_FILE, PID_STAT_MIN, field);
    *out = ps;
    return 0;
}

int sb_sysmon_disk_list(const char *tier2_dev, const char *run_dev, char *out, size_t cap)
{
    const char *a = tier2_dev ? tier2_dev : "", *b = run_dev ? run_dev : "";
    if (a[0] && strcmp(a, b) == 0)
        b = "";
    int n = snprintf(out, cap, "%s%s%s", a, a[0] && b[0] ? "," : "", b[0] ? b : "");
    if (n < 0 || (size_t)n >= cap) {
        if (cap)
            out[0] = '\0';
        return -1;
    }
    return 0;
}
