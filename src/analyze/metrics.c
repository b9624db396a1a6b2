/*
 * Reading metrics.jsonl for analyze (sb_run_read_metrics in sb/analyze.h). The file is cut into
 * as many parts as there are CPUs (parts of at least 4 MiB), each starting after a newline, and one
 * thread per part reads its bytes with pread in 256 KiB steps (small enough to stay in the core's
 * L2 cache between the copy and the scan, which measured 5x faster than 1 MiB reads), scans each
 * line with its own sb_mscan and keeps its own counts and latency arrays; the parts are added up
 * after the join, with line numbers shifted by the lines of the parts before. Reading follows
 * sb_jsonl_read's rules: blank lines are counted and skipped, a bad line is counted with its
 * number and never stops the reading, a last line without its newline is torn and not used, and a
 * line over SB_JSONL_LINE_MAX is bad.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sb/analyze.h"
#include "sb/jsonl.h"

#define READ_STEP   (256u * 1024u)
#define PART_MIN    (4u << 20)
#define MAX_THREADS 8
#define BAD_MSG     SB_ERR_MSG_MAX

/* sb_analyze_set_split: 0 is the default (one part per CPU, parts of at least PART_MIN). */
static int split_parts;
static size_t split_min;

void sb_analyze_set_split(int max_parts, size_t min_part_bytes)
{
    split_parts = max_parts;
    split_min = min_part_bytes;
}

/* A growable array of doubles. */
struct dvec {
    double *v;
    size_t n, cap;
};

static int dvec_reserve(struct dvec *d, size_t cap)
{
    if (cap <= d->cap)
        return 0;
    double *v = realloc(d->v, cap * sizeof(double));
    if (!v)
        return -1;
    d->v = v;
    d->cap = cap;
    return 0;
}

static inline int dvec_push(struct dvec *d, double x)
{
    if (d->n == d->cap && dvec_reserve(d, d->cap ? d->cap * 2 : 1024) != 0)
        return -1;
    d->v[d->n++] = x;
    return 0;
}

/* An ok record's completion on both clocks, for the throughput window (known only after the
   join when it comes from the records). */
struct done {
    double mono_s, real_s;
    long long tokens;
};

struct bad_line {
    long lineno; /* within the part until the parts are joined */
    char msg[BAD_MSG];
};

/* One thread's share of the file and what it found there. */
struct part {
    /* in */
    const char *path;
    int fd;
    off_t start, end;
    bool need_ts, keep_first;
    /* out */
    long newlines; /* lines ended in this part: the next part's line numbers start after them */
    size_t lines, blank, bad;
    bool torn;
    struct bad_line kept[SB_JSONL_BAD_KEEP];
    size_t nkept;
    size_t warmup, measured, ok, errors, admitted, rejected, with_phase;
    size_t by_kind[SB_ERRK_COUNT];
    uint64_t output_tokens;
    double ts_min, end_max;
    struct dvec lat[SB_LAT_N];
    struct dvec overhead, prompt_tokens; /* ok measured records: TTFT - server prefill; counts */
    struct done *done;
    size_t n_done, cap_done;
    char *first_line; /* keep_first: a copy of the first record, for the labels */
    size_t first_len;
    bool oom;
    int rc;
    struct sb_err err;
};

static bool is_blank(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
            return false;
    return true;
}

static void keep_bad(struct part *pt, long lineno, const char *msg)
{
    pt->bad++;
    if (pt->nkept < SB_JSONL_BAD_KEEP) {
        struct bad_line *b = &pt->kept[pt->nkept++];
        b->lineno = lineno;
        snprintf(b->msg, sizeof(b->msg), "%s", msg);
    }
}

static void push_done(struct part *pt, const struct sb_mrec *m)
{
    if (pt->n_done == pt->cap_done) {
        size_t nc = pt->cap_done ? pt->cap_done * 2 : 1024;
        struct done *nd = realloc(pt->done, nc * sizeof(*nd));
        if (!nd) {
            pt->oom = true;
            return;
        }
        pt->done = nd;
        pt->cap_done = nc;
    }
    double e2e = m->lat[SB_LAT_E2E];
    pt->done[pt->n_done++] = (struct done){
        .mono_s = m->t_done_ns / 1e9,
        .real_s = isnan(m->ts) ? NAN : m->ts + (isnan(e2e) ? 0 : e2e / 1000.0),
        .tokens = m->output_tokens,
    };
}

static void add_record(struct part *pt, const struct sb_mrec *m)
{
    if (m->has_phase)
        pt->with_phase++;
    if (m->ok) /* a warm-up request that completes inside the window counts there too */
        push_done(pt, m);
    if (m->warmup) {
        pt->warmup++;
        return;
    }
    pt->measured++;
    if (!isnan(m->ts)) { /* the records' window: first to last measured intended send */
        if (!(m->ts >= pt->ts_min))
            pt->ts_min = m->ts;
        if (!(m->ts <= pt->end_max))
            pt->end_max = m->ts;
    }
    if (m->rc >= 200 && m->rc <= 299)
        pt->admitted++;
    if (m->rc == 429 || m->rc == 503)
        pt->rejected++;
    if (!m->ok) {
        pt->errors++;
        enum sb_error_kind k = m->error;
        if (k == SB_ERRK_NONE && m->rc >= 400)
            k = SB_ERRK_HTTP;
        pt->by_kind[(int)k >= 0 && k < SB_ERRK_COUNT ? k : SB_ERRK_NONE]++;
        return;
    }
    pt->ok++;
    if (m->output_tokens > 0)
        pt->output_tokens += (uint64_t)m->output_tokens;
    for (int i = 0; i < SB_LAT_N; i++)
        if (!isnan(m->lat[i]) && dvec_push(&pt->lat[i], m->lat[i]) != 0)
            pt->oom = true;
    double ttft = m->lat[SB_LAT_TTFT];
    if (!isnan(ttft) && !isnan(m->server_prompt_ms) &&
        dvec_push(&pt->overhead, ttft - m->server_prompt_ms) != 0)
        pt->oom = true;
    if (m->prompt_tokens >= 0 && dvec_push(&pt->prompt_tokens, (double)m->prompt_tokens) != 0)
        pt->oom = true;
}

/* One whole line, NUL-terminated at line[len] (its '\n' overwritten). */
static void take_line(struct part *pt, struct sb_mscan *sc, char *line, size_t len, long lineno)
{
    if (len > 0 && line[len - 1] == '\r')
        line[--len] = '\0';
    if (len == 0 || ((unsigned char)line[0] <= ' ' && is_blank(line, len))) {
        pt->blank++;
        return;
    }
    struct sb_mrec m;
    struct sb_err e;
    if (sb_metrics_parse_line(sc, line, len, &m, &e) != 0) {
        keep_bad(pt, lineno, e.msg);
        return;
    }
    pt->lines++;
    if (pt->keep_first && !pt->first_line) {
        pt->first_line = malloc(len + 1);
        if (pt->first_line) {
            memcpy(pt->first_line, line, len + 1);
            pt->first_len = len;
        }
    }
    add_record(pt, &m);
}

static void *read_part(void *arg)
{
    struct part *pt = arg;
    struct sb_mscan *sc = sb_mscan_new(pt->need_ts);
    size_t cap = READ_STEP + 1; /* + the NUL after a line that ends the buffer unterminated */
    char *buf = malloc(cap);
    if (!sc || !buf) {
        pt->rc = sb_err_set(&pt->err, "cannot read '%s': out of memory", pt->path);
        goto out;
    }
    for (int i = 0; i < SB_LAT_N; i++)
        if (dvec_reserve(&pt->lat[i], (size_t)(pt->end - pt->start) / 256 + 64) != 0)
            pt->oom = true;
    size_t have = 0;       /* bytes of an unfinished line at buf[0] */
    bool skipping = false; /* inside a line longer than SB_JSONL_LINE_MAX */
    off_t off = pt->start;
    long lineno = 0;
    while (off < pt->end) {
        if (have + 1 >= cap) {
            /* One line fills the buffer: grow up to the line limit, then give the line up. */
            if (cap - 1 >= SB_JSONL_LINE_MAX) {
                skipping = true;
                have = 0;
            } else {
                size_t ncap = (cap - 1) * 2 + 1;
                char *nb = realloc(buf, ncap);
                if (!nb) {
                    pt->rc = sb_err_set(&pt->err, "cannot read '%s': out of memory", pt->path);
                    goto out;
                }
                buf = nb;
                cap = ncap;
            }
        }
        size_t want = cap - 1 - have;
        if ((off_t)want > pt->end - off)
            want = (size_t)(pt->end - off);
        ssize_t r = pread(pt->fd, buf + have, want, off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            pt->rc = sb_err_errno(&pt->err, errno, "cannot read '%s'", pt->path);
            goto out;
        }
        if (r == 0)
            break; /* the file got shorter while we read it */
        off += r;
        size_t n = have + (size_t)r, pos = 0;
        for (;;) {
            char *nl = memchr(buf + pos, '\n', n - pos);
            if (!nl)
                break;
            size_t len = (size_t)(nl - (buf + pos));
            lineno++;
            if (skipping) {
                keep_bad(pt, lineno, "line longer than the 16 MiB limit");
                skipping = false;
            } else {
                *nl = '\0';
                take_line(pt, sc, buf + pos, len, lineno);
            }
            pos += len + 1;
        }
        have = n - pos;
        if (have > 0 && pos > 0)
            memmove(buf, buf + pos, have);
    }
    pt->newlines = lineno;
    if (skipping || (have > 0 && !is_blank(buf, have)))
        pt->torn = true;
    else if (have > 0)
        pt->blank++;
out:
    sb_mscan_free(sc);
    free(buf);
    return NULL;
}

/* The first line start at or after `at`: just past the next '\n' from at - 1; size when none. */
static off_t line_start_after(int fd, off_t at, off_t size)
{
    char buf[64 * 1024];
    off_t off = at - 1;
    while (off < size) {
        ssize_t r = pread(fd, buf, sizeof(buf), off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return size;
        char *nl = memchr(buf, '\n', (size_t)r);
        if (nl)
            return off + (nl - buf) + 1;
        off += r;
    }
    return size;
}

static int cpu_count(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* The first record's labels into the fields still unknown. */
static int fill_labels(struct sb_run *r, const char *line, size_t len)
{
    struct sb_record rec;
    struct sb_err e;
    if (sb_record_from_json(line, len, &rec, &e) != 0)
        return 0;
    struct {
        char **dst;
        const char *src;
    } strs[] = {
        {&r->run_id, rec.run_id},         {&r->stack, rec.stack},
        {&r->model, rec.model},           {&r->workload, rec.workload},
        {&r->hypothesis, rec.hypothesis}, {&r->phase, rec.phase_label},
    };
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
        if ((*strs[i].dst)[0] || !strs[i].src[0])
            continue;
        char *d = strdup(strs[i].src);
        if (!d)
            return -1;
        free(*strs[i].dst);
        *strs[i].dst = d;
    }
    /* 0 is what a line without the field reads as: unknown, like -1. */
    if (r->context_tokens < 0 && rec.context_tokens > 0)
        r->context_tokens = rec.context_tokens;
    /* Open loop has no users: its records' concurrency is null, and older records wrote the
       in-flight cap there, which is max_inflight. */
    if (rec.rate > 0) {
        if (r->max_inflight < 0)
            r->max_inflight = rec.max_inflight > 0 ? rec.max_inflight : rec.concurrency;
    } else if (r->concurrency < 0 && rec.concurrency > 0) {
        r->concurrency = rec.concurrency;
    }
    if (r->repetition < 0 && rec.repetition > 0)
        r->repetition = rec.repetition;
    if (isnan(r->rate) && rec.rate > 0)
        r->rate = rec.rate;
    return 0;
}

/* Joins the parts' latency arrays into the first part's (its reservation usually holds them). */
static int join_lat(struct part *parts, int nparts, int which, struct dvec *out)
{
    size_t total = 0;
    for (int i = 0; i < nparts; i++)
        total += parts[i].lat[which].n;
    *out = parts[0].lat[which];
    memset(&parts[0].lat[which], 0, sizeof(struct dvec));
    if (dvec_reserve(out, total ? total : 1) != 0)
        return -1;
    for (int i = 1; i < nparts; i++) {
        struct dvec *d = &parts[i].lat[which];
        if (d->n)
            memcpy(out->v + out->n, d->v, d->n * sizeof(double));
        out->n += d->n;
        free(d->v);
        memset(d, 0, sizeof(*d));
    }
    return 0;
}

/* Joins the parts' arrays at member offset `off` of struct part into *out (freshly allocated). */
static int join_vec(struct part *parts, int nparts, size_t off, struct dvec *out)
{
    memset(out, 0, sizeof(*out));
    size_t total = 0;
    for (int i = 0; i < nparts; i++)
        total += ((struct dvec *)(void *)((char *)&parts[i] + off))->n;
    if (dvec_reserve(out, total ? total : 1) != 0)
        return -1;
    for (int i = 0; i < nparts; i++) {
        struct dvec *d = (struct dvec *)(void *)((char *)&parts[i] + off);
        if (d->n)
            memcpy(out->v + out->n, d->v, d->n * sizeof(double));
        out->n += d->n;
    }
    return 0;
}

/* The latency arrays to summarize, shared out over threads (each sort is independent). */
struct sum_jobs {
    struct dvec v[SB_LAT_N];
    struct sb_summary *out[SB_LAT_N];
    int nthreads;
};

struct sum_worker {
    struct sum_jobs *jobs;
    int index;
};

static void *summarize_share(void *arg)
{
    struct sum_worker *w = arg;
    for (int i = w->index; i < SB_LAT_N; i += w->jobs->nthreads)
        sb_lat_summarize(w->jobs->v[i].v, w->jobs->v[i].n, w->jobs->out[i]);
    return NULL;
}

static void summarize_all(struct sum_jobs *jobs)
{
    pthread_t tids[SB_LAT_N];
    struct sum_worker w[SB_LAT_N];
    if (jobs->nthreads > SB_LAT_N)
        jobs->nthreads = SB_LAT_N;
    if (jobs->nthreads < 1) /* this thread always does share 0 (clang-analyzer: w[0] unset) */
        jobs->nthreads = 1;
    int started = 1;
    for (int t = 0; t < jobs->nthreads; t++)
        w[t] = (struct sum_worker){jobs, t};
    for (int t = 1; t < jobs->nthreads; t++) {
        if (pthread_create(&tids[t], NULL, summarize_share, &w[t]) != 0)
            break;
        started++;
    }
    summarize_share(&w[0]);
    for (int t = started; t < jobs->nthreads; t++)
        summarize_share(&w[t]); /* a thread that did not start: its share here */
    for (int t = 1; t < started; t++)
        pthread_join(tids[t], NULL);
}

int sb_run_read_metrics(struct sb_run *r, const char *path, struct sb_err *err)
{
    struct part parts[MAX_THREADS];
    pthread_t tids[MAX_THREADS];
    int nparts = 0, rc = -1;
    memset(parts, 0, sizeof(parts));
    struct sb_file_report *fr = &r->metrics_file;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sb_err_errno(err, errno, "cannot open '%s'", path);
    fr->present = true;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = sb_err_errno(err, errno, "cannot read '%s'", path);
        goto out;
    }
    off_t size = st.st_size;
    int want = split_parts > 0 ? split_parts : cpu_count();
    off_t part_min = split_min > 0 ? (off_t)split_min : (off_t)PART_MIN;
    if (want > MAX_THREADS)
        want = MAX_THREADS;
    if ((off_t)want * part_min > size)
        want = (int)(size / part_min) > 0 ? (int)(size / part_min) : 1;
#ifdef POSIX_FADV_SEQUENTIAL
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
    off_t start = 0;
    bool need_ts = !r->window_from_run_json || isnan(r->win_mono0_ns);
    for (int i = 0; i < want && start < size; i++) {
        off_t end = i == want - 1 ? size : line_start_after(fd, size / want * (i + 1), size);
        if (end <= start)
            continue;
        struct part *pt = &parts[nparts++];
        pt->path = path;
        pt->fd = fd;
        pt->start = start;
        pt->end = end;
        pt->need_ts = need_ts;
        pt->keep_first = nparts == 1;
        pt->ts_min = NAN;
        pt->end_max = NAN;
        start = end;
    }
    int started = 0;
    for (int i = 1; i < nparts; i++) {
        if (pthread_create(&tids[i], NULL, read_part, &parts[i]) != 0)
            break;
        started = i;
    }
    if (nparts > 0)
        read_part(&parts[0]);
    /* Parts whose thread did not start are read here, in order. */
    for (int i = started + 1; i < nparts; i++)
        read_part(&parts[i]);
    for (int i = 1; i <= started; i++)
        pthread_join(tids[i], NULL);

    long base = 0, torn_lineno = 0;
    size_t kept = 0, parsed_bad = 0, with_phase = 0;
    struct bad_line all_kept[SB_JSONL_BAD_KEEP];
    double ts_min = NAN, end_max = NAN;
    for (int i = 0; i < nparts; i++) {
        struct part *pt = &parts[i];
        if (pt->rc != 0) {
            *err = pt->err;
            goto out;
        }
        if (pt->oom) {
            rc = sb_err_set(err, "cannot read '%s': out of memory", path);
            goto out;
        }
        for (size_t k = 0; k < pt->nkept && kept < SB_JSONL_BAD_KEEP; k++) {
            all_kept[kept] = pt->kept[k];
            all_kept[kept++].lineno += base;
        }
        fr->lines += pt->lines;
        fr->blank_lines += pt->blank;
        parsed_bad += pt->bad;
        with_phase += pt->with_phase;
        r->warmup += pt->warmup;
        r->measured += pt->measured;
        r->ok += pt->ok;
        r->errors += pt->errors;
        r->admitted += pt->admitted;
        r->rejected += pt->rejected;
        r->output_tokens += pt->output_tokens;
        for (int k = 0; k < SB_ERRK_COUNT; k++)
            r->errors_by_kind[k] += pt->by_kind[k];
        if (!isnan(pt->ts_min) && !(pt->ts_min >= ts_min))
            ts_min = pt->ts_min;
        if (!isnan(pt->end_max) && !(pt->end_max <= end_max))
            end_max = pt->end_max;
        if (pt->torn)
            torn_lineno = base + pt->newlines + 1;
        base += pt->newlines;
    }
    r->completed = r->ok;
    fr->bad_lines = parsed_bad + (torn_lineno > 0);
    for (size_t k = 0; k < kept; k++)
        sb_run_warn(r, "'%s' line %ld: %s", path, all_kept[k].lineno, all_kept[k].msg);
    if (parsed_bad > kept)
        sb_run_warn(r, "'%s': %zu bad lines in all (the first %zu named above)", path, parsed_bad,
                    kept);
    if (torn_lineno > 0)
        sb_run_warn(r, "'%s' line %ld: torn last line (no final newline), not read", path,
                    torn_lineno);
    if (kept > 0)
        snprintf(fr->first_problem, sizeof(fr->first_problem), "metrics.jsonl line %ld: %.200s",
                 all_kept[0].lineno, all_kept[0].msg);
    else if (torn_lineno > 0)
        snprintf(fr->first_problem, sizeof(fr->first_problem),
                 "metrics.jsonl line %ld: torn last line (no final newline)", torn_lineno);
    if (fr->lines == 0 && fr->bad_lines > 0) {
        rc = sb_err_set(err,
                        "'%s' is not JSON lines: none of its %zu non-blank lines is a record "
                        "(%s)",
                        path, fr->bad_lines, fr->first_problem);
        goto out;
    }
    if (fr->lines == 0)
        sb_run_warn(r, "'%s' holds no records", path);
    r->old_format = fr->lines > 0 && with_phase == 0;
    if (parts[0].first_line && fill_labels(r, parts[0].first_line, parts[0].first_len) != 0) {
        rc = sb_err_set(err, "cannot read '%s': out of memory", path);
        goto out;
    }
    if (!r->window_from_run_json) {
        r->t0 = ts_min;
        r->t1 = end_max;
    }
    /* Throughput, as run counts it (sb/stats.h): on run.json's monotonic window when there is
       one (the records' t_last_byte_ns, the very numbers run counted), else on [t0, t1). */
    bool mono = !isnan(r->win_mono0_ns);
    if (mono)
        sb_tput_init(&r->tput, r->win_mono0_ns / 1e9, r->win_mono1_ns / 1e9);
    else
        sb_tput_init(&r->tput, r->t0, r->t1);
    for (int i = 0; i < nparts; i++)
        for (size_t k = 0; k < parts[i].n_done; k++) {
            const struct done *d = &parts[i].done[k];
            sb_tput_add(&r->tput, mono ? d->mono_s : d->real_s, d->tokens);
        }
    struct sum_jobs jobs = {.nthreads = nparts > 1 ? nparts : 1};
    for (int i = 0; i < SB_LAT_N; i++) {
        if (join_lat(parts, nparts, i, &jobs.v[i]) != 0) {
            for (int k = 0; k <= i; k++)
                free(jobs.v[k].v);
            rc = sb_err_set(err, "cannot read '%s': out of memory", path);
            goto out;
        }
        jobs.out[i] = &r->lat[i];
    }
    summarize_all(&jobs);
    for (int i = 0; i < SB_LAT_N; i++)
        free(jobs.v[i].v);
    struct dvec ov, pt;
    if (join_vec(parts, nparts, offsetof(struct part, overhead), &ov) != 0 ||
        join_vec(parts, nparts, offsetof(struct part, prompt_tokens), &pt) != 0) {
        free(ov.v);
        rc = sb_err_set(err, "cannot read '%s': out of memory", path);
        goto out;
    }
    sb_lat_summarize(ov.v, ov.n, &r->client_overhead);
    struct sb_summary ps;
    sb_lat_summarize(pt.v, pt.n, &ps);
    r->context_tokens_server = ps.p50;
    free(ov.v);
    free(pt.v);
    rc = 0;
out:
    for (int i = 0; i < nparts; i++) {
        for (int k = 0; k < SB_LAT_N; k++)
            free(parts[i].lat[k].v);
        free(parts[i].overhead.v);
        free(parts[i].prompt_tokens.v);
        free(parts[i].done);
        free(parts[i].first_line);
    }
    close(fd);
    return rc;
}
