/*
 * Unit tests for the sysmon proc source (source_proc.c) and its parsers (sb_pid_stat_parse,
 * sb_pid_io_parse in procfs.c). The parsers get tables of good and broken texts, comm with blanks,
 * parentheses and a newline included, and every prefix of a real line in an exact-size allocation
 * (the sanitizer build catches a read past len). The source is driven through its ops table over
 * three fake /proc trees (tests/data/proc/pidroot_t{0,1,2}) that play three ticks half a second
 * apart, with every expected value worked by hand in the comments: --pid, --pid-of by comm and by
 * argv[0], a process that exits and one that replaces it (found again at most once a second), an
 * unreadable io file. Then the real /proc: this process by pid and by name, and, run as another
 * user, pid 1 whose io file the kernel refuses (EACCES) while its stat stays readable.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sb/procfs.h"
#include "sb/sysmon.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define SEC          1000000000ull

/* ---- parsers ------------------------------------------------------------------------------------
 */

/* A copy of s without its NUL, so that a parser reading past len trips the sanitizer. */
static char *exact_copy(const char *s, size_t len)
{
    char *c = malloc(len ? len : 1);
    assert_non_null(c);
    memcpy(c, s, len);
    return c;
}

static const char REAL_STAT[] =
    "1 (process_api) S 0 0 0 0 -1 4194560 131974 57124360 0 12910 823 4646 239135 61335 20 0 13 0 "
    "31 45506560 3614 18446744073709551615 1 1 0 0 0 0 0 4096 1256 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 "
    "0 0 0\n";

static void test_stat_parse_good(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        unsigned long long pid;
        const char *comm;
        char st;
        unsigned long long utime, stime, threads, start, rss;
    } cases[] = {
        {REAL_STAT, 1, "process_api", 'S', 823, 4646, 13, 31, 3614},
        /* comm with blanks and parentheses: it ends at the LAST ')' */
        {"4242 (kv) worker) S 1 4242 4242 0 -1 4194560 12345 0 3 0 1000 200 0 0 20 0 12 0 5000 "
         "8589934592 25600 18446744073709551615 1 1 0 0\n",
         4242, "kv) worker", 'S', 1000, 200, 12, 5000, 25600},
        {"7 ()) (x) y)) R 1 7 7 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 99 0 2", 7, ")) (x) y)", 'R', 5, 6,
         1, 99, 2},
        /* prctl(PR_SET_NAME) may put a newline in comm; the line then spans two */
        {"8 (a\nb) S 1 8 8 0 -1 0 0 0 0 0 1 2 -3 -4 -100 -20 4 0 77 0 9\n", 8, "a\nb", 'S', 1, 2, 4,
         77, 9},
        {"9 () Z 1 9 9 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0 \r\n", 9, "", 'Z', 0, 0, 1, 5, 0},
        /* comm longer than the struct keeps: cut, not an error */
        {"10 (kworker/u64:1-events_unbound_that_goes_on_and_on_and_on_and_on_and_on) I 2 0 0 0 -1 "
         "0 0 0 0 0 0 0 0 0 20 0 1 0 3 0 0\n",
         10, "kworker/u64:1-events_unbound_that_goes_on_and_on_and_on_and_on_", 'I', 0, 0, 1, 3, 0},
    };
    for (size_t c = 0; c < ARRAY_LEN(cases); c++) {
        size_t len = strlen(cases[c].text);
        char *t = exact_copy(cases[c].text, len);
        struct sb_pid_stat ps;
        struct sb_err err;
        sb_err_clear(&err);
        if (sb_pid_stat_parse(t, len, &ps, &err) != 0)
            fail_msg("case %zu: %s", c, err.msg);
        assert_int_equal(ps.pid, cases[c].pid);
        assert_string_equal(ps.comm, cases[c].comm);
        assert_int_equal(ps.state, cases[c].st);
        assert_int_equal(ps.utime, cases[c].utime);
        assert_int_equal(ps.stime, cases[c].stime);
        assert_int_equal(ps.num_threads, cases[c].threads);
        assert_int_equal(ps.starttime, cases[c].start);
        assert_int_equal(ps.rss_pages, cases[c].rss);
        free(t);
    }
}

static void test_stat_parse_bad(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *msg;
    } cases[] = {
        {"", "no '(comm)'"},
        {"1 process_api S 0", "no '(comm)'"},
        {"1 (x S 0 0", "no '(comm)'"},
        {"x (a) S 0 0 0 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 5 0 0", "expected 'pid (comm)'"},
        {"1(a) S 0 0 0 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 5 0 0", "expected 'pid (comm)'"},
        {"1 (a)S 0 0 0 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 5 0 0", "expected fields after '(a)'"},
        {"1 (a)", "expected fields after '(a)'"},
        {"1 (a) SS 0 0 0 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 5 0 0", "state is 'SS'"},
        {"1 (a) S 0 0 0 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 5 0", "at least 24 fields, got 23"},
        {"1 (a) S 0 0 0 0 -1 0 0 0 0 0 1x 2 0 0 20 0 1 0 5 0 0", "field 14 is not a number: '1x'"},
        {"1 (a) S 0 0 0 0 -1 0 0 0 0 0 -1 2 0 0 20 0 1 0 5 0 0", "field 14 is negative"},
        {"1 (a) S 0 0 0 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 5 0 - 7", "field 24 is not a number: '-'"},
        {"1 (a) S 0 0 0 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 5 0 99999999999999999999",
         "field 24 is not a number"},
    };
    for (size_t c = 0; c < ARRAY_LEN(cases); c++) {
        size_t len = strlen(cases[c].text);
        char *t = exact_copy(cases[c].text, len);
        struct sb_pid_stat ps;
        struct sb_err err;
        sb_err_clear(&err);
        assert_int_equal(sb_pid_stat_parse(t, len, &ps, &err), -1);
        if (!strstr(err.msg, cases[c].msg) || !strstr(err.msg, "cannot parse '/proc/[pid]/stat'"))
            fail_msg("case %zu: message '%s' lacks '%s'", c, err.msg, cases[c].msg);
        free(t);
    }
}

/* Every cut of a real line parses or fails cleanly, never reading past the cut. */
static void test_stat_parse_prefixes(void **state)
{
    (void)state;
    size_t full = strlen(REAL_STAT), ok = 0;
    for (size_t len = 0; len <= full; len++) {
        char *t = exact_copy(REAL_STAT, len);
        struct sb_pid_stat ps;
        if (sb_pid_stat_parse(t, len, &ps, NULL) == 0) {
            ok++;
            assert_int_equal(ps.utime, 823);
        }
        free(t);
    }
    assert_true(ok > 0 && ok < full); /* the whole line parses, a line cut before rss does not */
}

static void test_io_parse(void **state)
{
    (void)state;
    static const char real[] = "rchar: 323934931\nwchar: 323929600\nsyscr: 632687\n"
                               "syscw: 632675\nread_bytes: 1024\nwrite_bytes: 323932160\n"
                               "cancelled_write_bytes: 4096\n";
    size_t len = strlen(real);
    char *t = exact_copy(real, len);
    struct sb_pid_io io;
    struct sb_err err;
    assert_int_equal(sb_pid_io_parse(t, len, &io, &err), 0);
    assert_int_equal(io.rchar, 323934931);
    assert_int_equal(io.wchar, 323929600);
    assert_int_equal(io.syscr, 632687);
    assert_int_equal(io.syscw, 632675);
    assert_int_equal(io.read_bytes, 1024);
    assert_int_equal(io.write_bytes, 323932160);
    assert_int_equal(io.cancelled_write_bytes, 4096);
    free(t);
    /* A cut file lacks a required line, unless the cut keeps a digit of the last one
       ("cancelled_write_bytes: 4" of "...: 4096\n"): that much parses. */
    for (size_t cut = 0; cut < len; cut++) {
        t = exact_copy(real, cut);
        assert_int_equal(sb_pid_io_parse(t, cut, &io, NULL), cut >= len - 4 ? 0 : -1);
        free(t);
    }

    static const struct {
        const char *text;
        int rc;
        const char *msg;
    } cases[] = {
        /* no syscr/syscw, an unknown key, blank lines and '\r': accepted */
        {"rchar: 1\r\n\nwchar: 2\nread_bytes: 3\nwrite_bytes: 4\ncancelled_write_bytes: 5\n"
         "future_key: 6\n",
         0, NULL},
        {"", -1, "no 'rchar' line"},
        {"rchar: 1\nwchar: 2\nread_bytes: 3\ncancelled_write_bytes: 5\n", -1,
         "no 'write_bytes' line"},
        {"rchar: 1\nrchar: 2\n", -1, "line 2: 'rchar' appears twice"},
        {"rchar 1\n", -1, "line 1: expected 'key: value'"},
        {"rchar: -1\n", -1, "line 1: value of 'rchar' is not a number: '-1'"},
        {"rchar: 1 kB\n", -1, "line 1: unexpected text after 'rchar: 1'"},
        {"rchar:\n", -1, "line 1: value of 'rchar' is not a number: ''"},
    };
    for (size_t c = 0; c < ARRAY_LEN(cases); c++) {
        len = strlen(cases[c].text);
        t = exact_copy(cases[c].text, len);
        sb_err_clear(&err);
        assert_int_equal(sb_pid_io_parse(t, len, &io, &err), cases[c].rc);
        if (cases[c].rc == 0) {
            assert_int_equal(io.rchar, 1);
            assert_int_equal(io.syscr, 0);
            assert_int_equal(io.cancelled_write_bytes, 5);
        } else if (!strstr(err.msg, cases[c].msg) ||
                   !strstr(err.msg, "cannot parse '/proc/[pid]/io'")) {
            fail_msg("case %zu: message '%s' lacks '%s'", c, err.msg, cases[c].msg);
        }
        free(t);
    }
}

/* ---- the source over fake /proc trees -----------------------------------------------------------
 */

static char root_t[3][1024];

static int roots_setup(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++)
        snprintf(root_t[i], sizeof(root_t[i]), "%s/proc/pidroot_t%d", SB_TEST_DATA_DIR, i);
    return 0;
}

/* One tick at mono_ns; returns the "proc" array (the caller deletes *doc). */
static const cJSON *tick_at(struct sb_sysmon_source *src, uint64_t mono_ns, cJSON **doc)
{
    struct sb_buf out;
    sb_buf_init(&out, 1u << 20);
    sb_buf_adds(&out, "{");
    struct sb_sysmon_tick tick = {.mono_ns = mono_ns, .sched_real_ns = 1, .real_ns = 1};
    assert_int_equal(src->ops->sample(src, &tick, &out), 0);
    sb_buf_adds(&out, "}");
    *doc = cJSON_Parse(out.data);
    if (!*doc)
        fail_msg("unparseable proc object: %s", out.data);
    sb_buf_release(&out);
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(*doc, "proc");
    assert_true(cJSON_IsArray(arr));
    return arr;
}

static const cJSON *field(const cJSON *o, const char *key)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!f)
        fail_msg("no field '%s'", key);
    return f;
}

static void assert_num(const cJSON *o, const char *key, double want)
{
    const cJSON *f = field(o, key);
    if (!cJSON_IsNumber(f))
        fail_msg("'%s' is not a number", key);
    if (fabs(f->valuedouble - want) > 1e-6 * (fabs(want) + 1))
        fail_msg("'%s' is %.6f, want %.6f", key, f->valuedouble, want);
}

static void assert_null_field(const cJSON *o, const char *key)
{
    if (!cJSON_IsNull(field(o, key)))
        fail_msg("'%s' should be null", key);
}

/* The pids on the line, in order, into a comma string ("4242,4444"). */
static const char *pids_of(const cJSON *arr, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = '\0';
    for (const cJSON *p = arr->child; p; p = p->next)
        n += (size_t)snprintf(buf + n, cap - n, "%s%.0f", n ? "," : "",
                              field(p, "pid")->valuedouble);
    return buf;
}

static const cJSON *proc_of(const cJSON *arr, double pid)
{
    for (const cJSON *p = arr->child; p; p = p->next)
        if (field(p, "pid")->valuedouble == pid)
            return p;
    fail_msg("pid %.0f not on the line", pid);
    return NULL;
}

static void assert_all_rates_null(const cJSON *p)
{
    assert_null_field(p, "read_Bps");
    assert_null_field(p, "write_Bps");
    assert_null_field(p, "cpu_pct");
}

/*
 * --pid 4242,4343,4444 over three ticks at 10.0, 10.5 and 11.0 s. USER_HZ is 100 on Linux, so
 * cpu_pct = d(utime + stime) / 100 / dt * 100 = d(ticks) / dt (% of one core).
 */
static void test_fixture_pids(void **state)
{
    (void)state;
    long page = sysconf(_SC_PAGESIZE);
    assert_int_equal(sysconf(_SC_CLK_TCK), 100);
    struct sb_sysmon_config cfg = {.proc_root = root_t[0], .pids = "4444, 4242,4343"};
    struct sb_sysmon_source src = {.ops = &sb_source_proc};
    struct sb_err err;
    assert_int_equal(src.ops->open(&src, &cfg, &err), 0);
    char buf[128];
    cJSON *doc;

    const cJSON *arr = tick_at(&src, 10 * SEC, &doc);
    assert_string_equal(pids_of(arr, buf, sizeof(buf)), "4242,4343,4444");
    const cJSON *p = proc_of(arr, 4242);
    assert_string_equal(field(p, "name")->valuestring, "kv) worker");
    assert_num(p, "read_bytes", 409600);
    assert_num(p, "write_bytes", 8388608);
    assert_num(p, "cancelled_write_bytes", 4096);
    assert_num(p, "rchar", 1000000);
    assert_num(p, "wchar", 2000000);
    assert_num(p, "threads", 12);
    assert_num(p, "rss_bytes", 25600.0 * page);
    assert_all_rates_null(p); /* the first tick has no interval */
    p = proc_of(arr, 4444);
    assert_string_equal(field(p, "name")->valuestring, "pt_main_thread");
    assert_null_field(p, "read_bytes"); /* no io file: stat fields only */
    assert_null_field(p, "wchar");
    assert_num(p, "threads", 3);
    assert_all_rates_null(p);
    cJSON_Delete(doc);

    cfg.proc_root = root_t[1];
    arr = tick_at(&src, 10 * SEC + SEC / 2, &doc);
    p = proc_of(arr, 4242);
    /* read_bytes 409600 -> 1458176: 1 MiB in 0.5 s; write_bytes 8 -> 12 MiB: 4 MiB in 0.5 s;
       utime + stime 1200 -> 1225: 25 ticks = 0.25 s of CPU in 0.5 s */
    assert_num(p, "read_Bps", 2097152);
    assert_num(p, "write_Bps", 8388608);
    assert_num(p, "cpu_pct", 50);
    assert_num(p, "threads", 13);
    assert_num(p, "rss_bytes", 25856.0 * page);
    p = proc_of(arr, 4343);
    /* 600 -> 800 ticks: 2 s of CPU in 0.5 s = four cores; write_bytes 0 -> 512000 */
    assert_num(p, "cpu_pct", 400);
    assert_num(p, "read_Bps", 0);
    assert_num(p, "write_Bps", 1024000);
    assert_num(p, "wchar", 512020);
    p = proc_of(arr, 4444);
    assert_num(p, "cpu_pct", 4); /* 15 -> 17 ticks */
    assert_null_field(p, "read_Bps");
    assert_null_field(p, "write_Bps");
    cJSON_Delete(doc);

    /* 4343 exited; 4545 (a new trtllm-serve) is not one of the pids asked for */
    cfg.proc_root = root_t[2];
    arr = tick_at(&src, 11 * SEC, &doc);
    assert_string_equal(pids_of(arr, buf, sizeof(buf)), "4242,4444");
    p = proc_of(arr, 4242);
    assert_num(p, "write_Bps", 2097152); /* + 1 MiB in 0.5 s */
    assert_num(p, "read_Bps", 0);
    assert_num(p, "cpu_pct", 0);
    cJSON_Delete(doc);

    /* and it stays gone even if its pid's directory comes back */
    cfg.proc_root = root_t[1];
    arr = tick_at(&src, 12 * SEC, &doc);
    assert_string_equal(pids_of(arr, buf, sizeof(buf)), "4242,4444");
    cJSON_Delete(doc);
    src.ops->close(&src);
}

/*
 * --pid-of trtllm-serve: 4343 by its comm, 4444 by argv[0]'s base name (its comm is
 * pt_main_thread), not 2 (a kernel thread, empty cmdline). 4343 exits at 10.7 s and 4545 starts;
 * /proc is walked again no sooner than 1 s after the last walk (open's, counted at 10.0 s).
 */
static void test_fixture_pid_of(void **state)
{
    (void)state;
    struct sb_sysmon_config cfg = {.proc_root = root_t[0], .pid_of = "trtllm-serve"};
    struct sb_sysmon_source src = {.ops = &sb_source_proc};
    struct sb_err err;
    assert_int_equal(src.ops->open(&src, &cfg, &err), 0);
    static const struct {
        int root;
        uint64_t ms;
        const char *pids;
    } ticks[] = {
        {0, 10000, "4343,4444"}, {1, 10500, "4343,4444"},
        {2, 10700, "4444"},      /* 4343 gone: dropped; 0.7 s since the walk: no new one */
        {2, 10900, "4444"},      /* 0.9 s */
        {2, 11000, "4444"},      /* 1.0 s: walks after this line... */
        {2, 11200, "4444,4545"}, /* ...and 4545 is on the next */
        {2, 11400, "4444,4545"},
    };
    char buf[128];
    for (size_t t = 0; t < ARRAY_LEN(ticks); t++) {
        cfg.proc_root = root_t[ticks[t].root];
        cJSON *doc;
        const cJSON *arr = tick_at(&src, ticks[t].ms * 1000000ull, &doc);
        if (strcmp(pids_of(arr, buf, sizeof(buf)), ticks[t].pids) != 0)
            fail_msg("tick %zu: pids %s, want %s", t, buf, ticks[t].pids);
        if (ticks[t].ms == 11200) {
            const cJSON *p = proc_of(arr, 4545);
            assert_string_equal(field(p, "name")->valuestring, "trtllm-serve");
            assert_num(p, "threads", 8);
            assert_all_rates_null(p); /* its first tick */
            assert_num(proc_of(arr, 4444), "cpu_pct", 0);
        }
        if (ticks[t].ms == 11400)
            assert_num(proc_of(arr, 4545), "cpu_pct", 0); /* 2 -> 2 ticks */
        cJSON_Delete(doc);
    }
    src.ops->close(&src);

    /* names that match nothing yet: on, with an empty list, until a process shows up */
    cfg = (struct sb_sysmon_config){.proc_root = root_t[0], .pid_of = "vllm,kv) worker"};
    assert_int_equal(src.ops->open(&src, &cfg, &err), 0);
    cJSON *doc;
    const cJSON *arr = tick_at(&src, 5 * SEC, &doc);
    assert_string_equal(pids_of(arr, buf, sizeof(buf)), "4242"); /* comm with ')' and blank */
    cJSON_Delete(doc);
    src.ops->close(&src);
    cfg = (struct sb_sysmon_config){.proc_root = root_t[0], .pid_of = "vllm"};
    assert_int_equal(src.ops->open(&src, &cfg, &err), 0);
    arr = tick_at(&src, 5 * SEC, &doc);
    assert_int_equal(cJSON_GetArraySize(arr), 0);
    cJSON_Delete(doc);
    src.ops->close(&src);
}

static void test_open_cases(void **state)
{
    (void)state;
    static const struct {
        const char *pids, *pid_of;
        int rc;
        const char *text; /* in the note (rc 1) or the error (rc -1); "" for an empty note */
    } cases[] = {
        {NULL, NULL, 1, ""}, /* not asked for: silent */
        {"", "", 1, ""},
        {"99999", NULL, 1, "no process 99999"},
        {"99998,99999", NULL, 1, "no process 99998, 99999"},
        {"12a", NULL, -1, "invalid --pid '12a'"},
        {"0", NULL, -1, "invalid --pid '0'"},
        {"-5", NULL, -1, "invalid --pid '-5'"},
        {"99999999999999999999999", NULL, -1, "invalid --pid"},
        {"99999,4242", NULL, 0, NULL}, /* one that exists is enough */
        {"99999", "vllm", 0, NULL},    /* a name may match later */
    };
    for (size_t c = 0; c < ARRAY_LEN(cases); c++) {
        struct sb_sysmon_config cfg = {.proc_root = root_t[0],
                                       .pids = (char *)cases[c].pids,
                                       .pid_of = (char *)cases[c].pid_of};
        struct sb_sysmon_source src = {.ops = &sb_source_proc};
        struct sb_err err;
        sb_err_clear(&err);
        int rc = src.ops->open(&src, &cfg, &err);
        if (rc != cases[c].rc)
            fail_msg("case %zu: open gave %d, want %d (%s)", c, rc, cases[c].rc, err.msg);
        if (rc == 0) {
            assert_non_null(src.state);
            src.ops->close(&src);
            continue;
        }
        assert_null(src.state);
        const char *got = rc == 1 ? src.note : err.msg;
        if (cases[c].text[0] ? !strstr(got, cases[c].text) : got[0] != '\0')
            fail_msg("case %zu: '%s' does not say '%s'", c, got, cases[c].text);
    }
}

/* ---- the real /proc -----------------------------------------------------------------------------
 */

static const char *own_comm(char *buf, size_t cap)
{
    FILE *f = fopen("/proc/self/comm", "r");
    assert_non_null(f);
    assert_non_null(fgets(buf, (int)cap, f));
    fclose(f);
    buf[strcspn(buf, "\n")] = '\0';
    return buf;
}

/* This process, by pid and by name; 1 MiB written with fsync between ticks is in write_bytes. */
static void test_real_self(void **state)
{
    (void)state;
    char pid[24], comm[64];
    snprintf(pid, sizeof(pid), "%d", (int)getpid());
    own_comm(comm, sizeof(comm));
    for (int by_name = 0; by_name < 2; by_name++) {
        struct sb_sysmon_config cfg = {.proc_root = "/proc"};
        if (by_name)
            cfg.pid_of = comm;
        else
            cfg.pids = pid;
        struct sb_sysmon_source src = {.ops = &sb_source_proc};
        struct sb_err err;
        assert_int_equal(src.ops->open(&src, &cfg, &err), 0);
        cJSON *doc0, *doc1;
        const cJSON *p0 = proc_of(tick_at(&src, 100 * SEC, &doc0), getpid());
        assert_string_equal(field(p0, "name")->valuestring, comm);
        assert_true(field(p0, "threads")->valuedouble >= 1);
        assert_true(field(p0, "rss_bytes")->valuedouble > 0);

        char path[] = "/var/tmp/sbtest-proc-XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        static char block[1 << 20];
        memset(block, 'x', sizeof(block));
        assert_int_equal(write(fd, block, sizeof(block)), sizeof(block));
        assert_int_equal(fsync(fd), 0);
        close(fd);
        unlink(path);

        const cJSON *p1 = proc_of(tick_at(&src, 101 * SEC, &doc1), getpid());
        double wrote =
            field(p1, "write_bytes")->valuedouble - field(p0, "write_bytes")->valuedouble;
        assert_true(wrote >= sizeof(block));
        /* over the 1 s between the two ticks, the rate is the delta itself */
        assert_num(p1, "write_Bps", wrote);
        assert_true(field(p1, "wchar")->valuedouble - field(p0, "wchar")->valuedouble >=
                    sizeof(block));
        assert_true(field(p1, "cpu_pct")->valuedouble >= 0);
        cJSON_Delete(doc0);
        cJSON_Delete(doc1);
        src.ops->close(&src);
    }
}

/*
 * Another user's process: the kernel lets anyone read /proc/1/stat but /proc/1/io only with
 * ptrace rights (EACCES). Run as nobody when the test runs as root; skipped when pid 1 is ours.
 */
static void test_real_io_refused(void **state)
{
    (void)state;
    struct stat st;
    assert_int_equal(stat("/proc/1", &st), 0);
    if (geteuid() != 0 && st.st_uid == geteuid())
        skip();
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
            _exit(10);
        if (access("/proc/1/io", R_OK) == 0 && open("/proc/1/io", O_RDONLY) >= 0)
            _exit(11); /* readable after all (a kernel without the check): nothing to test */
        struct sb_sysmon_config cfg = {.proc_root = "/proc", .pids = "1"};
        struct sb_sysmon_source src = {.ops = &sb_source_proc};
        struct sb_err err;
        if (src.ops->open(&src, &cfg, &err) != 0)
            _exit(12);
        struct sb_buf out;
        sb_buf_init(&out, 1u << 20);
        for (int t = 0; t < 2; t++) {
            sb_buf_reset(&out);
            sb_buf_adds(&out, "{");
            struct sb_sysmon_tick tick = {.mono_ns = (100 + (uint64_t)t) * SEC};
            if (src.ops->sample(&src, &tick, &out) != 0)
                _exit(13);
        }
        sb_buf_adds(&out, "}");
        cJSON *doc = cJSON_Parse(out.data);
        const cJSON *arr = doc ? cJSON_GetObjectItemCaseSensitive(doc, "proc") : NULL;
        const cJSON *p = arr ? cJSON_GetArrayItem(arr, 0) : NULL;
        if (!p)
            _exit(14);
        bool good = cJSON_GetObjectItemCaseSensitive(p, "pid")->valuedouble == 1 &&
                    cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(p, "read_bytes")) &&
                    cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(p, "write_Bps")) &&
                    cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(p, "cpu_pct")) &&
                    cJSON_GetObjectItemCaseSensitive(p, "threads")->valuedouble >= 1;
        cJSON_Delete(doc);
        sb_buf_release(&out);
        src.ops->close(&src);
        _exit(good ? 0 : 15);
    }
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) == 11)
        skip();
    assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stat_parse_good),     cmocka_unit_test(test_stat_parse_bad),
        cmocka_unit_test(test_stat_parse_prefixes), cmocka_unit_test(test_io_parse),
        cmocka_unit_test(test_fixture_pids),        cmocka_unit_test(test_fixture_pid_of),
        cmocka_unit_test(test_open_cases),          cmocka_unit_test(test_real_self),
        cmocka_unit_test(test_real_io_refused),
    };
    return cmocka_run_group_tests(tests, roots_setup, NULL);
}
