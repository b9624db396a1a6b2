/*
 * sysmon source "proc": CPU and I/O of chosen processes (the inference server, its workers), from
 * /proc/<pid>/stat and /proc/<pid>/io, so that storage traffic can be pinned on the process that
 * caused it. The processes are named by pid (--pid) or by name (--pid-of: the comm, or the base
 * name of argv[0], as pgrep -x and pidof match). Names are looked up at open, and again -- at most
 * once a second, as it walks all of /proc -- while none matched yet or fewer match than once did,
 * which follows a server restarting under a new pid. A pid is tied to its starttime: a reused pid
 * is another process. A process that is gone is dropped from the line (an empty list: nothing
 * matches now); one whose io file cannot be read (another user's process without
 * CAP_SYS_PTRACE) keeps its stat fields with the io fields null, and says so once on stderr.
 * Rates are deltas over the tick's monotonic time; a process's first tick has none (null).
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sb/procfs.h"
#include "sb/sysmon.h"
#include "sb/util.h"

#define NAME_MAX_LEN      256
#define RESOLVE_EVERY_NS  1000000000ull
#define MAX_EXPLICIT_PIDS 256

struct proc_entry {
    unsigned long long pid;
    bool by_name;                /* found through --pid-of (a rescan may replace it) */
    unsigned long long start;    /* starttime: a pid reused by another process is another one */
    bool have_prev;              /* the prev_* fields hold the last tick's readings */
    bool prev_io_ok;             /* prev_io was read */
    struct sb_pid_io prev_io;    /* bytes */
    unsigned long long prev_cpu; /* utime + stime, clock ticks */
    uint64_t prev_ns;            /* the tick's mono_ns */
    bool io_noticed;             /* the unreadable-io notice was printed */
};

struct proc_state {
    const struct sb_sysmon_config *cfg;
    struct sb_buf text;
    struct proc_entry *v;
    size_t n, cap;
    char **names; /* --pid-of, owned */
    size_t nnames;
    bool want_resolve;        /* fewer processes match the names than once did, or none */
    size_t most_matched;      /* the most processes one walk of /proc matched */
    char missing[160];        /* --pid values without a process at open, for the notice */
    bool resolved_at;         /* last_resolve_ns is known */
    uint64_t last_resolve_ns; /* mono_ns of the last walk of /proc (open's: the first tick's) */
    long clk_tck, page_size;
};

static void proc_state_free(struct proc_state *st)
{
    if (!st)
        return;
    for (size_t i = 0; i < st->nnames; i++)
        free(st->names[i]);
    free(st->names);
    free(st->v);
    sb_buf_release(&st->text);
    free(st);
}

/* Calls fn on each blank-trimmed, non-empty item of the comma list. Stops at fn's first error. */
static int each_item(const char *list,
                     int (*fn)(struct proc_state *, const char *, size_t, struct sb_err *),
                     struct proc_state *st, struct sb_err *err)
{
    const char *p = list;
    while (p && *p) {
        size_t len = strcspn(p, ",");
        const char *s = p, *e = p + len;
        while (s < e && isspace((unsigned char)*s))
            s++;
        while (e > s && isspace((unsigned char)e[-1]))
            e--;
        if (e > s && fn(st, s, (size_t)(e - s), err) != 0)
            return -1;
        p += len + (p[len] == ',');
    }
    return 0;
}

/* Reads and parses <root>/<pid>/stat. 0, or -1 with errno (ESRCH style: the process is gone). */
static int read_stat(struct proc_state *st, unsigned long long pid, struct sb_pid_stat *ps,
                     struct sb_err *err)
{
    char rel[48];
    snprintf(rel, sizeof(rel), "%llu/stat", pid);
    if (sb_sysmon_read_file(st->cfg->proc_root, rel, &st->text) != 0)
        return sb_err_errno(err, errno, "cannot read '%s/%s'", st->cfg->proc_root, rel);
    return sb_pid_stat_parse(st->text.data, st->text.len, ps, err);
}

static struct proc_entry *find_entry(struct proc_state *st, unsigned long long pid)
{
    for (size_t i = 0; i < st->n; i++)
        if (st->v[i].pid == pid)
            return &st->v[i];
    return NULL;
}

/* Adds pid (starting at starttime start) unless it is watched already; keeps st->v sorted. */
static int add_entry(struct proc_state *st, unsigned long long pid, unsigned long long start,
                     bool by_name)
{
    if (find_entry(st, pid))
        return 0;
    if (st->n == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 8;
        struct proc_entry *v = realloc(st->v, cap * sizeof(*v));
        if (!v)
            return -1;
        st->v = v;
        st->cap = cap;
    }
    size_t at = 0;
    while (at < st->n && st->v[at].pid < pid)
        at++;
    memmove(&st->v[at + 1], &st->v[at], (st->n - at) * sizeof(*st->v));
    st->v[at] = (struct proc_entry){.pid = pid, .by_name = by_name, .start = start};
    st->n++;
    return 0;
}

static void drop_entry(struct proc_state *st, size_t i)
{
    if (st->v[i].by_name)
        st->want_resolve = true;
    memmove(&st->v[i], &st->v[i + 1], (st->n - i - 1) * sizeof(*st->v));
    st->n--;
}

static int add_pid(struct proc_state *st, const char *s, size_t len, struct sb_err *err)
{
    char buf[24];
    long long pid;
    if (len >= sizeof(buf) || strspn(s, "0123456789") < len)
        return sb_err_set(err, "invalid --pid '%.*s': not a process id", (int)len, s);
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (sb_parse_ll(buf, &pid) != 0 || pid < 1 || pid > INT_MAX)
        return sb_err_set(err, "invalid --pid '%s': not a process id", buf);
    struct sb_pid_stat ps;
    if (read_stat(st, (unsigned long long)pid, &ps, NULL) != 0) {
        size_t used = strlen(st->missing);
        snprintf(st->missing + used, sizeof(st->missing) - used, "%s%s", used ? ", " : "", buf);
        return 0;
    }
    if (st->n >= MAX_EXPLICIT_PIDS)
        return sb_err_set(err, "too many --pid values (at most %d)", MAX_EXPLICIT_PIDS);
    if (add_entry(st, (unsigned long long)pid, ps.starttime, false) != 0)
        return sb_err_set(err, "out of memory");
    return 0;
}

static int add_name(struct proc_state *st, const char *s, size_t len, struct sb_err *err)
{
    if (len >= NAME_MAX_LEN)
        return sb_err_set(err, "process name '%.40s...' in --pid-of is too long", s);
    char **names = realloc(st->names, (st->nnames + 1) * sizeof(*names));
    if (!names)
        return sb_err_set(err, "out of memory");
    st->names = names;
    if (!(st->names[st->nnames] = strndup(s, len)))
        return sb_err_set(err, "out of memory");
    st->nnames++;
    return 0;
}

static bool name_wanted(const struct proc_state *st, const char *name, size_t len)
{
    for (size_t i = 0; i < st->nnames; i++)
        if (strlen(st->names[i]) == len && memcmp(st->names[i], name, len) == 0)
            return true;
    return false;
}

/* Whether process pid is one of the --pid-of names: its comm, or argv[0]'s base name. */
static bool pid_matches(struct proc_state *st, const char *pid)
{
    char rel[48];
    snprintf(rel, sizeof(rel), "%s/comm", pid);
    if (sb_sysmon_read_file(st->cfg->proc_root, rel, &st->text) == 0) {
        size_t len = st->text.len;
        if (len > 0 && st->text.data[len - 1] == '\n')
            len--;
        if (name_wanted(st, st->text.data, len))
            return true;
    }
    snprintf(rel, sizeof(rel), "%s/cmdline", pid);
    if (sb_sysmon_read_file(st->cfg->proc_root, rel, &st->text) != 0 || st->text.len == 0)
        return false; /* gone, or a kernel thread (no command line) */
    size_t len = strnlen(st->text.data, st->text.len);
    const char *argv0 = st->text.data;
    const char *slash = memrchr(argv0, '/', len);
    const char *base = slash ? slash + 1 : argv0;
    return name_wanted(st, base, len - (size_t)(base - argv0));
}

/* Walks <root> for processes with a wanted name and adds the new ones. */
static int resolve_names(struct proc_state *st)
{
    DIR *d = opendir(st->cfg->proc_root);
    if (!d)
        return -1;
    struct dirent *de;
    size_t matched = 0;
    while ((de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        if (!*n || strspn(n, "0123456789") != strlen(n) || strlen(n) > 10)
            continue;
        if (!pid_matches(st, n))
            continue;
        unsigned long long pid = strtoull(n, NULL, 10);
        struct sb_pid_stat ps;
        if (read_stat(st, pid, &ps, NULL) != 0)
            continue; /* gone since */
        struct proc_entry *e = find_entry(st, pid);
        if (e && e->start != ps.starttime)
            continue; /* a reused pid, still listed: the next tick drops it, the rescan adds it */
        if (add_entry(st, pid, ps.starttime, true) != 0) {
            closedir(d);
            return -1;
        }
        matched++;
    }
    closedir(d);
    if (matched > st->most_matched)
        st->most_matched = matched;
    /* Keep looking while a process that went away has not come back (a restarting server). */
    st->want_resolve = matched == 0 || matched < st->most_matched;
    return 0;
}

static int proc_open(struct sb_sysmon_source *src, const struct sb_sysmon_config *cfg,
                     struct sb_err *err)
{
    bool pids = cfg->pids && *cfg->pids, names = cfg->pid_of && *cfg->pid_of;
    if (!pids && !names)
        return 1; /* not asked for: no notice */
    struct proc_state *st = calloc(1, sizeof(*st));
    if (!st)
        return sb_err_set(err, "out of memory");
    st->cfg = cfg;
    sb_buf_init(&st->text, 1u << 20);
    st->clk_tck = sysconf(_SC_CLK_TCK);
    st->page_size = sysconf(_SC_PAGESIZE);
    if (st->clk_tck <= 0)
        st->clk_tck = 100;
    if (st->page_size <= 0)
        st->page_size = 4096;
    if ((pids && each_item(cfg->pids, add_pid, st, err) != 0) ||
        (names && each_item(cfg->pid_of, add_name, st, err) != 0))
        goto fail;
    if (st->nnames > 0 && resolve_names(st) != 0) {
        sb_err_errno(err, errno, "cannot list processes in '%s'", cfg->proc_root);
        goto fail;
    }
    if (st->nnames == 0 && st->n == 0) {
        snprintf(src->note, sizeof(src->note), "no process %.160s", st->missing);
        proc_state_free(st);
        return 1;
    }
    if (st->missing[0])
        fprintf(stderr, "sparkbench sysmon: proc: no process %s (left out)\n", st->missing);
    src->state = st;
    return 0;
fail:
    proc_state_free(st);
    return -1;
}

/* `,"key":<v>` or null. */
static int add_u64(struct sb_buf *out, const char *key, bool ok, unsigned long long v)
{
    return ok ? sb_buf_addf(out, ",\"%s\":%llu", key, v) : sb_buf_addf(out, ",\"%s\":null", key);
}

static int add_rate(struct sb_buf *out, const char *key, bool ok, double v, int decimals)
{
    return ok ? sb_buf_addf(out, ",\"%s\":%.*f", key, decimals, v)
              : sb_buf_addf(out, ",\"%s\":null", key);
}

/* Reads <root>/<pid>/io; false (and the one notice) when it cannot be read. */
static bool read_io(struct proc_state *st, struct proc_entry *e, struct sb_pid_io *io)
{
    char rel[48];
    struct sb_err err;
    snprintf(rel, sizeof(rel), "%llu/io", e->pid);
    if (sb_sysmon_read_file(st->cfg->proc_root, rel, &st->text) != 0) {
        int errnum = errno;
        /* ENOENT/ESRCH: it exited between the two reads, or the kernel has no I/O accounting. */
        if (!e->io_noticed && errnum != ENOENT && errnum != ESRCH)
            fprintf(stderr,
                    "sparkbench sysmon: proc: cannot read '%s/%s': %s (its I/O fields are "
                    "null)\n",
                    st->cfg->proc_root, rel, strerror(errnum));
        e->io_noticed = true;
        return false;
    }
    if (sb_pid_io_parse(st->text.data, st->text.len, io, &err) != 0) {
        if (!e->io_noticed)
            fprintf(stderr, "sparkbench sysmon: proc: pid %llu: %s (its I/O fields are null)\n",
                    e->pid, err.msg);
        e->io_noticed = true;
        return false;
    }
    return true;
}

static int add_process(struct proc_state *st, struct proc_entry *e, const struct sb_pid_stat *ps,
                       const struct sb_sysmon_tick *tick, bool first, struct sb_buf *out)
{
    struct sb_pid_io io = {0};
    bool io_ok = read_io(st, e, &io);
    unsigned long long cpu = ps->utime + ps->stime;
    double dt =
        e->have_prev && tick->mono_ns > e->prev_ns ? (double)(tick->mono_ns - e->prev_ns) / 1e9 : 0;
    bool rates = dt > 0, io_rates = rates && io_ok && e->prev_io_ok;
    int rc = sb_buf_addf(out, "%s{\"pid\":%llu,\"name\":\"", first ? "" : ",", e->pid);
    rc |= sb_buf_add_json_escaped(out, ps->comm, strlen(ps->comm)) | sb_buf_adds(out, "\"");
    rc |= add_u64(out, "read_bytes", io_ok, io.read_bytes);
    rc |= add_u64(out, "write_bytes", io_ok, io.write_bytes);
    rc |= add_u64(out, "cancelled_write_bytes", io_ok, io.cancelled_write_bytes);
    rc |= add_u64(out, "rchar", io_ok, io.rchar);
    rc |= add_u64(out, "wchar", io_ok, io.wchar);
    rc |= add_rate(
        out, "read_Bps", io_rates,
        io_rates ? (double)sb_procfs_delta(e->prev_io.read_bytes, io.read_bytes) / dt : 0, 1);
    rc |= add_rate(
        out, "write_Bps", io_rates,
        io_rates ? (double)sb_procfs_delta(e->prev_io.write_bytes, io.write_bytes) / dt : 0, 1);
    /* percent of one core, as top and pidstat show it: 200 is two cores busy */
    rc |= add_rate(
        out, "cpu_pct", rates,
        rates ? (double)sb_procfs_delta(e->prev_cpu, cpu) / (double)st->clk_tck / dt * 100.0 : 0,
        2);
    rc |= add_u64(out, "threads", true, ps->num_threads);
    rc |= add_u64(out, "rss_bytes", true, ps->rss_pages * (unsigned long long)st->page_size);
    rc |= sb_buf_adds(out, "}");
    e->have_prev = true;
    e->prev_io_ok = io_ok;
    e->prev_io = io;
    e->prev_cpu = cpu;
    e->prev_ns = tick->mono_ns;
    return rc;
}

static int proc_sample(struct sb_sysmon_source *src, const struct sb_sysmon_tick *tick,
                       struct sb_buf *out)
{
    struct proc_state *st = src->state;
    if (!st->resolved_at) {
        st->resolved_at = true; /* open's walk counts as this tick's */
        st->last_resolve_ns = tick->mono_ns;
    }
    int rc = sb_buf_adds(out, "\"proc\":[");
    bool first = true;
    for (size_t i = 0; i < st->n;) {
        struct proc_entry *e = &st->v[i];
        struct sb_pid_stat ps;
        if (read_stat(st, e->pid, &ps, NULL) != 0 || ps.starttime != e->start) {
            drop_entry(st, i); /* gone (or its pid reused): off the line */
            continue;
        }
        rc |= add_process(st, e, &ps, tick, first, out);
        first = false;
        i++;
    }
    rc |= sb_buf_adds(out, "]");
    /* After the line: a process found now shows its first (rate-less) reading next tick. */
    if (st->nnames > 0 && st->want_resolve &&
        tick->mono_ns - st->last_resolve_ns >= RESOLVE_EVERY_NS) {
        st->last_resolve_ns = tick->mono_ns;
        resolve_names(st);
    }
    return rc ? -1 : 0;
}

static void proc_close(struct sb_sysmon_source *src)
{
    proc_state_free(src->state);
    src->state = NULL;
}

const struct sb_sysmon_source_ops sb_source_proc = {
    .name = "proc", .open = proc_open, .sample = proc_sample, .close = proc_close};
