/*
 * Unit tests for the /proc parsers and their delta math (sb/procfs.h). Tables of hand-written
 * fixtures in the kernels' exact formats (tests/data/proc/) with every expected value spelled out,
 * tables of broken inputs with the message each must give (naming the line), every prefix of every
 * fixture fed from an exact-size allocation (the sanitizer build catches any read past len), the
 * mpstat and iostat arithmetic worked by hand in comments, a fake sysfs tree for partition ->
 * disk resolution, and finally the real /proc and /sys of the machine running the tests.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "sb/procfs.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_CPUS     8

/* ---- helpers ------------------------------------------------------------------------------------
 */

/* Reads a whole file (procfs files report size 0, so read to EOF) into an exact-size allocation
 * with no NUL after it; returns NULL if it cannot be opened. len 0 gives a 1-byte allocation. */
static char *slurp(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        assert_true(r >= 0);
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    char *exact = malloc(n ? n : 1);
    assert_non_null(exact);
    memcpy(exact, buf, n);
    free(buf);
    *len = n;
    return exact;
}

static char *fixture(const char *name, size_t *len)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/proc/%s", SB_TEST_DATA_DIR, name);
    char *t = slurp(path, len);
    if (!t)
        fail_msg("cannot read fixture '%s'", path);
    return t;
}

/* A copy of s without its NUL, so that a parser reading past len trips the sanitizer. */
static char *exact_copy(const char *s, size_t *len)
{
    *len = strlen(s);
    char *c = malloc(*len ? *len : 1);
    assert_non_null(c);
    memcpy(c, s, *len);
    return c;
}

static void check_near(const char *ctx, const char *what, double got, double want)
{
    double tol = 1e-9 * (fabs(want) > 1 ? fabs(want) : 1);
    if (!(fabs(got - want) <= tol))
        fail_msg("%s: %s = %.12g, want %.12g", ctx, what, got, want);
}

static void check_msg(const char *ctx, const struct sb_err *err, const char *want)
{
    if (!strstr(err->msg, want))
        fail_msg("%s: message '%s' lacks '%s'", ctx, err->msg, want);
}

/* ---- /proc/stat ---------------------------------------------------------------------------------
 */

struct stat_case {
    const char *name;
    const char *file; /* fixture, or NULL to use text */
    const char *text;
    struct sb_cpu_times all;
    int ncpus;
    int ids[MAX_CPUS];
    struct sb_cpu_times cpus[MAX_CPUS];
};

static const struct stat_case stat_cases[] = {
    {.name = "4 cpus, 10 fields, guest time (5.x+)",
     .file = "stat_4cpu_guest.txt",
     .all = {8123456, 1234, 2345678, 98765432, 45678, 0, 34567, 0, 600000, 1200},
     .ncpus = 4,
     .ids = {0, 1, 2, 3},
     .cpus = {{2030000, 300, 590000, 24690000, 11000, 0, 20000, 0, 150000, 300},
              {2031000, 310, 585000, 24691000, 11500, 0, 5000, 0, 150000, 300},
              {2031456, 312, 585678, 24692000, 11678, 0, 4567, 0, 150000, 300},
              {2031000, 312, 585000, 24692432, 11500, 0, 5000, 0, 150000, 300}}},
    {.name = "2.6.18: 8 fields, no guest",
     .file = "stat_old_noguest.txt",
     .all = {51234, 120, 23456, 9876543, 3456, 78, 910, 0, 0, 0},
     .ncpus = 2,
     .ids = {0, 1},
     .cpus = {{25617, 60, 11728, 4938271, 1728, 39, 455, 0, 0, 0},
              {25617, 60, 11728, 4938272, 1728, 39, 455, 0, 0, 0}}},
    {.name = "7 fields, cpu1 offline, trailing blanks, CRLF, blank line",
     .file = "stat_offline_cpu.txt",
     .all = {300, 0, 150, 9000, 30, 5, 7, 0, 0, 0},
     .ncpus = 3,
     .ids = {0, 2, 3},
     .cpus = {{100, 0, 50, 3000, 10, 2, 3, 0, 0, 0},
              {100, 0, 50, 3000, 10, 1, 2, 0, 0, 0},
              {100, 0, 50, 3000, 10, 2, 2, 0, 0, 0}}},
    {.name = "2.4: 4 fields, single space, no newline at end, no per-cpu lines",
     .text = "cpu 1 2 3 4",
     .all = {1, 2, 3, 4, 0, 0, 0, 0, 0, 0},
     .ncpus = 0},
    {.name = "a future 11th field is checked and ignored",
     .text = "cpu  1 2 3 4 5 6 7 8 9 10 11\ncpu0 1 2 3 4 5 6 7 8 9 10 11\n",
     .all = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10},
     .ncpus = 1,
     .ids = {0},
     .cpus = {{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}}},
    {.name = "largest u64",
     .text = "cpu  18446744073709551615 0 0 0\n",
     .all = {18446744073709551615ull, 0, 0, 0, 0, 0, 0, 0, 0, 0},
     .ncpus = 0},
};

static void check_times(const char *ctx, const struct sb_cpu_times *got,
                        const struct sb_cpu_times *want)
{
    if (memcmp(got, want, sizeof(*got)) != 0)
        fail_msg("%s: got %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", ctx, got->user,
                 got->nice, got->system, got->idle, got->iowait, got->irq, got->softirq, got->steal,
                 got->guest, got->guest_nice);
}

static void test_procstat_fixtures(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(stat_cases); i++) {
        const struct stat_case *c = &stat_cases[i];
        size_t len;
        char *text = c->file ? fixture(c->file, &len) : exact_copy(c->text, &len);
        struct sb_proc_stat st;
        struct sb_err err = {0};
        if (sb_procstat_parse(text, len, &st, &err) != 0)
            fail_msg("%s: %s", c->name, err.msg);
        check_times(c->name, &st.all, &c->all);
        assert_int_equal(st.ncpus, c->ncpus);
        for (int k = 0; k < c->ncpus; k++) {
            assert_int_equal(st.ids[k], c->ids[k]);
            check_times(c->name, &st.cpus[k], &c->cpus[k]);
        }
        if (c->ncpus == 0)
            assert_null(st.cpus);
        sb_procstat_release(&st);
        sb_procstat_release(&st); /* twice is harmless */
        free(text);
    }
}

struct bad_case {
    const char *name;
    const char *text;
    const char *msg; /* substring the error message must contain */
};

static const struct bad_case stat_bad[] = {
    {"empty", "", "cannot parse '/proc/stat': no aggregate 'cpu' line"},
    {"no cpu line", "intr 1 2 3\nctxt 5\n", "no aggregate 'cpu' line"},
    {"3 fields", "cpu  1 2 3\n", "line 1: expected at least 4 numbers after 'cpu', got 3"},
    {"truncated mid per-cpu line",
     "cpu  8123456 1234 2345678 98765432\ncpu0 2030000 300 590000 24690000\ncpu1 2031000 31",
     "line 3: expected at least 4 numbers after 'cpu1', got 2"},
    {"letter in a field", "cpu  1 2 3 4\ncpu0 1 2 x 4\n",
     "line 2: field 3 of 'cpu0' is not a number: 'x'"},
    {"negative", "cpu  1 -2 3 4\n", "line 1: field 2 of 'cpu' is not a number: '-2'"},
    {"plus sign", "cpu  1 +2 3 4\n", "line 1: field 2 of 'cpu' is not a number: '+2'"},
    {"2^64 overflows", "cpu  18446744073709551616 0 0 0\n",
     "line 1: field 1 of 'cpu' is not a number: '18446744073709551616'"},
    {"garbage number", "cpu  12ab 0 0 0\n", "field 1 of 'cpu' is not a number: '12ab'"},
    {"second aggregate", "cpu  1 2 3 4\ncpu0 1 2 3 4\ncpu  1 2 3 4\n",
     "line 3: second aggregate 'cpu' line"},
    {"unknown cpu line", "cpu  1 2 3 4\ncpuX 1 2 3 4\n", "line 2: unknown cpu line 'cpuX'"},
    {"cpu id overflows int", "cpu  1 2 3 4\ncpu2147483648 1 2 3 4\n",
     "line 2: unknown cpu line 'cpu2147483648'"},
    {"ids go down", "cpu  1 2 3 4\ncpu1 1 2 3 4\ncpu0 1 2 3 4\n",
     "line 3: 'cpu0' follows 'cpu1' (numbers must increase)"},
    {"duplicate id", "cpu  1 2 3 4\ncpu1 1 2 3 4\ncpu1 1 2 3 4\n", "line 3: 'cpu1' follows 'cpu1'"},
};

static void test_procstat_bad(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(stat_bad); i++) {
        size_t len;
        char *text = exact_copy(stat_bad[i].text, &len);
        struct sb_proc_stat st;
        struct sb_err err = {0};
        if (sb_procstat_parse(text, len, &st, &err) == 0)
            fail_msg("%s: accepted", stat_bad[i].name);
        check_msg(stat_bad[i].name, &err, stat_bad[i].msg);
        assert_null(st.cpus);
        assert_int_equal(st.ncpus, 0);
        sb_procstat_release(&st);
        free(text);
    }
}

/* ---- cpu percentages ----------------------------------------------------------------------------
 */

struct pct_case {
    const char *name;
    struct sb_cpu_times a, b; /* user nice system idle iowait irq softirq steal guest guest_nice */
    struct sb_cpu_pct want;   /* user nice system iowait irq softirq steal idle guest guest_nice */
};

static const struct pct_case pct_cases[] = {
    /* deltas: user 30, system 10, idle 50, iowait 10 -> total 100 */
    {"plain, no guest",
     {100, 0, 50, 800, 20, 0, 0, 0, 0, 0},
     {130, 0, 60, 850, 30, 0, 0, 0, 0, 0},
     {30, 0, 10, 10, 0, 0, 0, 50, 0, 0}},
    /*
     * user 1000->1600 but guest 400->600: user-guest 600->1000, delta 400
     * nice 200->260 but guest_nice 50->70: nice-guest_nice 150->190, delta 40
     * system +100, idle +180, iowait 100->90 went backwards -> 0, irq +10, softirq +20, steal +30,
     * guest +200, guest_nice +20
     * total = 400+40+100+180+0+10+20+30+200+20 = 1000, so each percent is delta/10
     */
    {"guest subtracted, iowait went backwards",
     {1000, 200, 300, 5000, 100, 10, 20, 30, 400, 50},
     {1600, 260, 400, 5180, 90, 20, 40, 60, 600, 70},
     {40, 4, 10, 0, 1, 2, 3, 18, 20, 2}},
    /* guest ran ahead of user in b (not updated atomically): user-guest saturates at 0 in both
     * samples, so user delta 0; guest +60, idle +40 -> total 100 */
    {"guest above user",
     {100, 0, 0, 0, 0, 0, 0, 0, 100, 0},
     {150, 0, 0, 40, 0, 0, 0, 0, 160, 0},
     {0, 0, 0, 0, 0, 0, 0, 40, 60, 0}},
    {"no time passed", {5, 5, 5, 5, 5, 5, 5, 5, 1, 1}, {5, 5, 5, 5, 5, 5, 5, 5, 1, 1}, {.user = 0}},
    {"everything reset",
     {50, 50, 50, 50, 50, 50, 50, 50, 10, 10},
     {1, 1, 1, 1, 1, 1, 1, 1, 0, 0},
     {.user = 0}},
    /* 1 jiffy of 3: 33.333..% each of user, system, idle */
    {"thirds",
     {0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
     {1, 0, 1, 1, 0, 0, 0, 0, 0, 0},
     {100.0 / 3, 0, 100.0 / 3, 0, 0, 0, 0, 100.0 / 3, 0, 0}},
};

static void test_cpu_pct(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(pct_cases); i++) {
        const struct pct_case *c = &pct_cases[i];
        struct sb_cpu_pct p;
        sb_cpu_pct(&c->a, &c->b, &p);
        check_near(c->name, "user", p.user, c->want.user);
        check_near(c->name, "nice", p.nice, c->want.nice);
        check_near(c->name, "system", p.system, c->want.system);
        check_near(c->name, "iowait", p.iowait, c->want.iowait);
        check_near(c->name, "irq", p.irq, c->want.irq);
        check_near(c->name, "softirq", p.softirq, c->want.softirq);
        check_near(c->name, "steal", p.steal, c->want.steal);
        check_near(c->name, "idle", p.idle, c->want.idle);
        check_near(c->name, "guest", p.guest, c->want.guest);
        check_near(c->name, "guest_nice", p.guest_nice, c->want.guest_nice);
        double sum = p.user + p.nice + p.system + p.iowait + p.irq + p.softirq + p.steal + p.idle +
                     p.guest + p.guest_nice;
        if (!(fabs(sum) < 1e-9 || fabs(sum - 100) < 1e-9))
            fail_msg("%s: fields add up to %g", c->name, sum);
    }
}

/* ---- /proc/meminfo ------------------------------------------------------------------------------
 */

struct meminfo_case {
    const char *name;
    const char *file;
    const char *text;
    struct sb_meminfo want; /* bytes = kB * 1024 */
};

static const struct meminfo_case meminfo_cases[] = {
    {.name = "6.x, 128 GB",
     .file = "meminfo.txt",
     .want = {.mem_total = 131072000LL * 1024,     /* 134217728000 */
              .mem_free = 81234567LL * 1024,       /* 83184196608 */
              .mem_available = 120000000LL * 1024, /* 122880000000 */
              .buffers = 524288LL * 1024,          /* 536870912 */
              .cached = 36700160LL * 1024,         /* 37580963840 */
              .dirty = 1234LL * 1024,              /* 1263616 */
              .writeback = 0,
              .swap_total = 16777212LL * 1024, /* 17179865088 */
              .swap_free = 16777212LL * 1024,
              .shmem = 2097152LL * 1024}}, /* 2147483648 */
    {.name = "2.6.18: no MemAvailable, no Shmem",
     .file = "meminfo_old.txt",
     .want = {.mem_total = 8174528LL * 1024,
              .mem_free = 1234560LL * 1024,
              .mem_available = -1,
              .buffers = 345600LL * 1024,
              .cached = 4567800LL * 1024,
              .dirty = 512LL * 1024,
              .writeback = 8LL * 1024,
              .swap_total = 2097144LL * 1024,
              .swap_free = 2097000LL * 1024,
              .shmem = -1}},
    {.name = "one key, CRLF and trailing blanks, unknown unitless key",
     .text = "MemTotal:  2 kB  \r\nHugePages_Total:   0\r\nFoo(bar):\t7 kB\r\n\n",
     .want = {2048, -1, -1, -1, -1, -1, -1, -1, -1, -1}},
    {.name = "largest that fits", /* 9007199254740991 * 1024 = 2^63 - 1024 */
     .text = "MemTotal: 9007199254740991 kB",
     .want = {9223372036854774784LL, -1, -1, -1, -1, -1, -1, -1, -1, -1}},
};

static void test_meminfo_fixtures(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(meminfo_cases); i++) {
        const struct meminfo_case *c = &meminfo_cases[i];
        size_t len;
        char *text = c->file ? fixture(c->file, &len) : exact_copy(c->text, &len);
        struct sb_meminfo m;
        struct sb_err err = {0};
        if (sb_meminfo_parse(text, len, &m, &err) != 0)
            fail_msg("%s: %s", c->name, err.msg);
        const long long *g = &m.mem_total, *w = &c->want.mem_total;
        for (int k = 0; k < 10; k++)
            if (g[k] != w[k])
                fail_msg("%s: field %d = %lld, want %lld", c->name, k, g[k], w[k]);
        free(text);
    }
}

static const struct bad_case meminfo_bad[] = {
    {"empty", "", "cannot parse '/proc/meminfo': empty"},
    {"blank lines only", "\n  \n", "cannot parse '/proc/meminfo': empty"},
    {"no colon", "MemTotal: 1 kB\nMemFree 123 kB\n",
     "line 2: expected 'Key: value', got 'MemFree 123 kB'"},
    {"no key", ": 5 kB\n", "line 1: expected 'Key: value'"},
    {"blank in key", "Mem Total: 1 kB\n", "line 1: blank inside key 'Mem Total'"},
    {"not a number", "MemTotal: abc kB\n", "line 1: value of 'MemTotal' is not a number: 'abc'"},
    {"truncated after the colon",
     "MemTotal:       131072000 kB\nMemFree:", "line 2: value of 'MemFree' is not a number: ''"},
    {"unknown key, bad value", "MemTotal: 1 kB\nFoo: bar\n",
     "line 2: value of 'Foo' is not a number: 'bar'"},
    {"wrong unit", "MemTotal: 12 MB\n", "line 1: unexpected text after 'MemTotal: 12'"},
    {"extra token", "MemTotal: 12 kB x\n", "line 1: unexpected text after 'MemTotal: 12'"},
    {"known key without kB", "MemTotal: 12\n", "line 1: 'MemTotal' has no 'kB' unit"},
    {"twice", "MemTotal: 12 kB\nMemFree: 1 kB\nMemTotal: 5 kB\n",
     "line 3: 'MemTotal' appears twice"},
    {"bytes overflow long long", "MemTotal: 9007199254740992 kB\n",
     "line 1: 'MemTotal' is too large: 9007199254740992 kB"},
    {"negative", "MemFree: -5 kB\n", "line 1: value of 'MemFree' is not a number: '-5'"},
};

static void test_meminfo_bad(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(meminfo_bad); i++) {
        size_t len;
        char *text = exact_copy(meminfo_bad[i].text, &len);
        struct sb_meminfo m;
        struct sb_err err = {0};
        if (sb_meminfo_parse(text, len, &m, &err) == 0)
            fail_msg("%s: accepted", meminfo_bad[i].name);
        check_msg(meminfo_bad[i].name, &err, meminfo_bad[i].msg);
        free(text);
    }
}

/* ---- PSI ----------------------------------------------------------------------------------------
 */

struct psi_case {
    const char *name;
    const char *file;
    const char *text;
    struct sb_psi want;
};

static const struct psi_case psi_cases[] = {
    {.name = "cpu before 5.13: some only",
     .file = "psi_cpu_some_only.txt",
     .want = {.some = {true, 1.25, 0.87, 0.30, 123456789}}},
    {.name = "io: some and full",
     .file = "psi_io.txt",
     .want = {.some = {true, 12.50, 8.04, 2.99, 987654321},
              .full = {true, 10.01, 6.50, 2.00, 876543210}}},
    {.name = "memory: idle",
     .file = "psi_memory_idle.txt",
     .want = {{true, 0, 0, 0, 0}, {true, 0, 0, 0, 0}}},
    {.name = "full first, key order shuffled, unknown key, CRLF, no final newline",
     .text = "full total=7 avg300=0.01 avg60=100.00 avg10=99.99\r\n"
             "some avg10=0.5 avg60=1 avg300=2.25 total=8 avg3600=1.00",
     .want = {.some = {true, 0.5, 1, 2.25, 8}, .full = {true, 99.99, 100, 0.01, 7}}},
};

static void check_psi_line(const char *ctx, const char *which, const struct sb_psi_line *g,
                           const struct sb_psi_line *w)
{
    if (g->present != w->present || g->total_us != w->total_us)
        fail_msg("%s %s: present %d total %llu, want %d %llu", ctx, which, g->present, g->total_us,
                 w->present, w->total_us);
    check_near(ctx, "avg10", g->avg10, w->avg10);
    check_near(ctx, "avg60", g->avg60, w->avg60);
    check_near(ctx, "avg300", g->avg300, w->avg300);
}

static void test_psi_fixtures(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(psi_cases); i++) {
        const struct psi_case *c = &psi_cases[i];
        size_t len;
        char *text = c->file ? fixture(c->file, &len) : exact_copy(c->text, &len);
        struct sb_psi p;
        struct sb_err err = {0};
        if (sb_psi_parse(text, len, &p, &err) != 0)
            fail_msg("%s: %s", c->name, err.msg);
        check_psi_line(c->name, "some", &p.some, &c->want.some);
        check_psi_line(c->name, "full", &p.full, &c->want.full);
        free(text);
    }
}

#define PSI_OK "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"

static const struct bad_case psi_bad[] = {
    {"empty", "", "cannot parse '/proc/pressure': no 'some' line"},
    {"full only", "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n", "no 'some' line"},
    {"unknown line", "half avg10=0.00\n", "line 1: expected 'some' or 'full', got 'half'"},
    {"no total", "some avg10=0.00 avg60=0.00 avg300=0.00\n", "line 1: 'some' line has no total"},
    {"truncated second line", PSI_OK "full avg10=0.0", "line 2: 'full' line has no avg60"},
    {"cut inside a value", PSI_OK "full avg10=0.00 avg60=", "line 2: avg60 is not a percentage"},
    {"not key=value", "some avg10\n", "line 1: expected key=value, got 'avg10'"},
    {"empty key", "some =1\n", "line 1: expected key=value, got '=1'"},
    {"two dots", "some avg10=1.2.3 avg60=0 avg300=0 total=0\n",
     "line 1: avg10 is not a percentage (0-100): '1.2.3'"},
    {"above 100", "some avg10=100.01 avg60=0 avg300=0 total=0\n",
     "avg10 is not a percentage (0-100): '100.01'"},
    {"negative", "some avg10=0 avg60=-1.00 avg300=0 total=0\n",
     "avg60 is not a percentage (0-100): '-1.00'"},
    {"trailing dot", "some avg10=1. avg60=0 avg300=0 total=0\n", "avg10 is not a percentage"},
    {"leading dot", "some avg10=.5 avg60=0 avg300=0 total=0\n", "avg10 is not a percentage"},
    {"nan", "some avg10=nan avg60=0 avg300=0 total=0\n", "avg10 is not a percentage"},
    {"bad total", "some avg10=0 avg60=0 avg300=0 total=12x\n",
     "line 1: total is not a number: '12x'"},
    {"repeated key", "some avg10=0 avg10=0 avg60=0 avg300=0 total=0\n",
     "line 1: 'avg10' appears twice"},
    {"second some", PSI_OK PSI_OK, "line 2: second 'some' line"},
};

static void test_psi_bad(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(psi_bad); i++) {
        size_t len;
        char *text = exact_copy(psi_bad[i].text, &len);
        struct sb_psi p;
        struct sb_err err = {0};
        if (sb_psi_parse(text, len, &p, &err) == 0)
            fail_msg("%s: accepted", psi_bad[i].name);
        check_msg(psi_bad[i].name, &err, psi_bad[i].msg);
        free(text);
    }
}

/* ---- /proc/diskstats ----------------------------------------------------------------------------
 */

struct disk_case {
    const char *name;
    const char *file;
    const char *text;
    size_t n;
    const char *names[6];
    int nfields;
    struct sb_disk_counters check; /* compared in full with the entry of the same name */
};

static const struct disk_case disk_cases[] = {
    {.name = "4.15: 14 fields",
     .file = "diskstats_14.txt",
     .n = 5,
     .names = {"sda", "sda1", "sda2", "sr0", "dm-0"},
     .nfields = 14,
     .check = {"sda2", 8,     2,      122000, 2345, 9819000, 45200, 234555, 34567, 8765336, 123448,
               0,      98300, 168648, 0,      0,    0,       0,     0,      0,     14}},
    {.name = "5.4: 18 fields (discards)",
     .file = "diskstats_18.txt",
     .n = 3,
     .names = {"nvme0n1", "nvme0n1p1", "nvme0n1p2"},
     .nfields = 18,
     .check = {"nvme0n1", 259,   0,         2345678, 12345, 345678901, 456789,
               1234567,   23456, 98765432,  345678,  2,     567890,    802467,
               3456,      0,     123456789, 789,     0,     0,         18}},
    {.name = "6.x: 20 fields (flushes)",
     .file = "diskstats_20.txt",
     .n = 3,
     .names = {"loop0", "vda", "vda1"},
     .nfields = 20,
     .check = {"vda", 254,   0,     45678, 1234, 3456789, 12345, 67890, 23456, 9876543, 54321,
               1,     23456, 70000, 1200,  0,    2457600, 300,   4567,  890,   20}},
    {.name = "mixed counts, CRLF, trailing blanks, blank lines, no final newline",
     .text = "\n 8 0 sda 1 2 3 4 5 6 7 8 9 10 11  \r\n\n"
             "8 1 sda1 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15\t\n"
             "253 4294967295 dm-0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 18446744073709551615",
     .n = 3,
     .names = {"sda", "sda1", "dm-0"},
     .nfields = 0, /* differs per line */
     .check = {"dm-0", 253, 4294967295u, 1,  2,  3,  4,  5,  6,  7,
               8,      9,   10,          11, 12, 13, 14, 15, 16, 18446744073709551615ull,
               20}},
    {.name = "31-byte name fits",
     .text = "8 0 abcdefghijklmnopqrstuvwxyz01234 0 0 0 0 0 0 0 0 0 0 0\n",
     .n = 1,
     .names = {"abcdefghijklmnopqrstuvwxyz01234"},
     .nfields = 14,
     .check = {"abcdefghijklmnopqrstuvwxyz01234", 8, 0, .nfields = 14}},
};

static void test_diskstats_fixtures(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(disk_cases); i++) {
        const struct disk_case *c = &disk_cases[i];
        size_t len, n;
        char *text = c->file ? fixture(c->file, &len) : exact_copy(c->text, &len);
        struct sb_disk_counters *v;
        struct sb_err err = {0};
        if (sb_diskstats_parse(text, len, &v, &n, &err) != 0)
            fail_msg("%s: %s", c->name, err.msg);
        assert_int_equal(n, c->n);
        for (size_t k = 0; k < n; k++) {
            assert_string_equal(v[k].name, c->names[k]);
            if (c->nfields)
                assert_int_equal(v[k].nfields, c->nfields);
        }
        const struct sb_disk_counters *d = sb_diskstats_find(v, n, c->check.name);
        assert_non_null(d);
        struct sb_disk_counters want = c->check; /* name[] is zero-padded in both */
        if (memcmp(d, &want, sizeof(want)) != 0)
            fail_msg("%s: entry '%s' differs (rd_ios %llu fl_ticks %llu nfields %d)", c->name,
                     d->name, d->rd_ios, d->fl_ticks, d->nfields);
        assert_null(sb_diskstats_find(v, n, "nosuchdisk"));
        free(v);
        free(text);
    }
}

static void test_diskstats_empty(void **state)
{
    (void)state;
    struct sb_disk_counters *v = (void *)1;
    size_t n = 99;
    struct sb_err err = {0};
    assert_int_equal(sb_diskstats_parse("", 0, &v, &n, &err), 0);
    assert_null(v);
    assert_int_equal(n, 0);
    assert_int_equal(sb_diskstats_parse("\n \n", 3, &v, &n, &err), 0);
    assert_null(v);
    assert_int_equal(n, 0);
    assert_null(sb_diskstats_find(NULL, 0, "sda"));
}

#define L14 "   8       0 sda 1 2 3 4 5 6 7 8 9 10 11\n"

static const struct bad_case disk_bad[] = {
    {"13 fields", "8 0 sda 1 2 3 4 5 6 7 8 9 10\n",
     "cannot parse '/proc/diskstats' line 1: expected 14, 18 or 20 fields, got 13"},
    {"truncated second line", L14 " 254       0 vda 45678 1234 34",
     "line 2: expected 14, 18 or 20 fields, got 6"},
    {"garbage", L14 L14 "hello world\n", "line 3: expected 14, 18 or 20 fields, got 2"},
    {"2.6.24 partition line (7 fields)", L14 "   8    1 sda1 100 200 300 400\n",
     "line 2: expected 14, 18 or 20 fields, got 7"},
    {"16 fields", "8 0 sda 1 2 3 4 5 6 7 8 9 10 11 12 13\n", "got 16"},
    {"21 fields", "8 0 sda 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18\n", "got 21"},
    {"letter", "8 0 sda 1 2 x 4 5 6 7 8 9 10 11\n",
     "line 1: field 3 of 'sda' is not a number: 'x'"},
    {"negative", "8 0 sda 1 2 3 4 5 6 7 8 -9 10 11\n",
     "line 1: field 9 of 'sda' is not a number: '-9'"},
    {"overflow", "8 0 sda 1 2 3 4 5 6 7 8 9 10 18446744073709551616\n",
     "line 1: field 11 of 'sda' is not a number: '18446744073709551616'"},
    {"major not a number", L14 "x 0 sda 1 2 3 4 5 6 7 8 9 10 11\n",
     "line 2: major number is not a number: 'x'"},
    {"minor above UINT_MAX", "8 4294967296 sda 1 2 3 4 5 6 7 8 9 10 11\n",
     "line 1: minor number is not a number: '4294967296'"},
    {"name of 32 bytes", "8 0 abcdefghijklmnopqrstuvwxyz012345 1 2 3 4 5 6 7 8 9 10 11\n",
     "line 1: device name too long: 'abcdefghijklmnopqrstuvwxyz012345'"},
    {"control byte in name", "8 0 sd\x01 1 2 3 4 5 6 7 8 9 10 11\n",
     "line 1: device name has an odd byte 0x01"},
};

static void test_diskstats_bad(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(disk_bad); i++) {
        size_t len, n = 7;
        char *text = exact_copy(disk_bad[i].text, &len);
        struct sb_disk_counters *v = (void *)1;
        struct sb_err err = {0};
        if (sb_diskstats_parse(text, len, &v, &n, &err) == 0)
            fail_msg("%s: accepted", disk_bad[i].name);
        check_msg(disk_bad[i].name, &err, disk_bad[i].msg);
        assert_null(v);
        assert_int_equal(n, 0);
        free(text);
    }
}

/* ---- every prefix of every fixture ------------------------------------------------------------
 */

static int parse_any(const char *file, const char *text, size_t len, struct sb_err *err)
{
    if (strncmp(file, "stat", 4) == 0) {
        struct sb_proc_stat st;
        int rc = sb_procstat_parse(text, len, &st, err);
        sb_procstat_release(&st);
        return rc;
    }
    if (strncmp(file, "meminfo", 7) == 0) {
        struct sb_meminfo m;
        return sb_meminfo_parse(text, len, &m, err);
    }
    if (strncmp(file, "psi", 3) == 0) {
        struct sb_psi p;
        return sb_psi_parse(text, len, &p, err);
    }
    struct sb_disk_counters *v;
    size_t n;
    int rc = sb_diskstats_parse(text, len, &v, &n, err);
    free(v);
    return rc;
}

static void test_every_prefix(void **state)
{
    (void)state;
    static const char *const files[] = {
        "stat_4cpu_guest.txt", "stat_old_noguest.txt", "stat_offline_cpu.txt",
        "meminfo.txt",         "meminfo_old.txt",      "psi_cpu_some_only.txt",
        "psi_io.txt",          "psi_memory_idle.txt",  "diskstats_14.txt",
        "diskstats_18.txt",    "diskstats_20.txt",     "diskstats_snap_a.txt",
    };
    for (size_t f = 0; f < ARRAY_LEN(files); f++) {
        size_t len;
        char *whole = fixture(files[f], &len);
        for (size_t cut = 0; cut <= len; cut++) {
            char *part = malloc(cut ? cut : 1);
            assert_non_null(part);
            memcpy(part, whole, cut);
            struct sb_err err = {0};
            int rc = parse_any(files[f], part, cut, &err);
            if (cut == len && rc != 0)
                fail_msg("%s whole: %s", files[f], err.msg);
            if (rc != 0 && strncmp(err.msg, "cannot parse '/proc/", 20) != 0)
                fail_msg("%s cut at %zu: odd message '%s'", files[f], cut, err.msg);
            free(part);
        }
        free(whole);
    }
}

/* ---- counter deltas and iostat rates ------------------------------------------------------------
 */

static void test_delta(void **state)
{
    (void)state;
    static const struct {
        unsigned long long a, b, want;
        const char *why;
    } cases[] = {
        {5, 7, 2, "forward"},
        {7, 7, 0, "unchanged"},
        {5000, 100, 0, "reset: clamped"},
        {4294967000ull, 204, 500, "32-bit wrap: 296 before 2^32 + 204 after"},
        {4293918720ull, 0, 1048576, "wrap from exactly 2^32-2^20"},
        {4293918719ull, 0, 0, "one below 2^32-2^20: a reset"},
        {4294967295ull, 1048575, 1048576, "wrap to 2^20-1"},
        {4294967000ull, 1048576, 0, "later value not below 2^20: a reset"},
        {4294967301ull, 3, 0, "earlier value above 2^32 is 64-bit: a reset"},
        {18446744073709551615ull, 0, 0, "64-bit maximum: a reset"},
        {0, 18446744073709551615ull, 18446744073709551615ull, "full range forward"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++)
        if (sb_procfs_delta(cases[i].a, cases[i].b) != cases[i].want)
            fail_msg("%s: delta(%llu, %llu) = %llu, want %llu", cases[i].why, cases[i].a,
                     cases[i].b, sb_procfs_delta(cases[i].a, cases[i].b), cases[i].want);
}

struct rates_case {
    const char *name;
    const char *file_a, *file_b; /* fixtures, or NULL to use text_a/text_b */
    const char *text_a, *text_b;
    const char *disk;
    double dt;
    struct sb_disk_rates want;
};

static const struct rates_case rates_cases[] = {
    /*
     * nvme0n1, 200 ms apart (dt = 0.2 s, so dt*1000 = 200 ms):
     *   reads:  ios 100000->100500 (d 500), merges 2000->2020 (20), sectors 8000000->8128000
     *           (128000), ticks 50000->50250 (250 ms)
     *   r/s      = 500/0.2              = 2500
     *   rrqm/s   = 20/0.2               = 100
     *   rMB/s    = 128000/2048/0.2      = 62.5/0.2 = 312.5
     *   r_await  = 250/500              = 0.5 ms
     *   rareq-sz = 128000/500/2         = 128 kB
     *   writes: ios 40000->40100 (100), merges 1000->1004 (4), sectors 3200000->3251200 (51200),
     *           ticks 90000->90300 (300 ms)
     *   w/s = 500, wrqm/s = 20, wMB/s = 51200/2048/0.2 = 125, w_await = 300/100 = 3 ms,
     *   wareq-sz = 51200/100/2 = 256 kB
     *   io_ticks 120000->120150 (150): %util = 150/200*100 = 75
     *   time_in_queue 140000->140550 (550): aqu-sz = 550/200 = 2.75
     *   discards: ios 10->12 (2), sectors 2048->6144 (4096), ticks 5->9 (4):
     *     d/s = 10, dMB/s = 4096/2048/0.2 = 10, d_await = 2 ms, dareq-sz = 4096/2/2 = 1024 kB
     *   flushes: ios 300->310 (10), ticks 150->155 (5): f/s = 50, f_await = 0.5 ms
     */
    {.name = "busy nvme, 200 ms",
     .file_a = "diskstats_snap_a.txt",
     .file_b = "diskstats_snap_b.txt",
     .disk = "nvme0n1",
     .dt = 0.2,
     .want = {.rps = 2500,
              .wps = 500,
              .rmbs = 312.5,
              .wmbs = 125,
              .r_await_ms = 0.5,
              .w_await_ms = 3,
              .rareq_sz_kb = 128,
              .wareq_sz_kb = 256,
              .aqu_sz = 2.75,
              .util_pct = 75,
              .rrqm_s = 100,
              .wrqm_s = 20,
              .dps = 10,
              .dmbs = 10,
              .d_await_ms = 2,
              .dareq_sz_kb = 1024,
              .drqm_s = 0,
              .fps = 50,
              .f_await_ms = 0.5}},
    /* the partition: reads 500 / 128000 sectors / 250 ms, writes 100 / 51200 / 300 ms, io_ticks
     * 150, time_in_queue 138900->139450 (550): the same figures but no flushes */
    {.name = "its partition",
     .file_a = "diskstats_snap_a.txt",
     .file_b = "diskstats_snap_b.txt",
     .disk = "nvme0n1p1",
     .dt = 0.2,
     .want = {2500, 500, 312.5, 125, 0.5, 3, 128, 256, 2.75, 75, 100, 20, 10, 10, 2, 1024, 0, 0,
              0}},
    /* nothing moved: every rate 0 and the awaits and sizes 0, not NaN */
    {.name = "idle sda",
     .file_a = "diskstats_snap_a.txt",
     .file_b = "diskstats_snap_b.txt",
     .disk = "sda",
     .dt = 0.2,
     .want = {0}},
    /*
     * 14-field 32-bit-era line across a wrap, 1 s apart. 2^32 = 4294967296.
     *   rd_ios     4294967000 (2^32-296)  -> 704:  d = 296+704   = 1000
     *   rd_sectors 4294966000 (2^32-1296) -> 6896: d = 1296+6896 = 8192
     *   rd_ticks   4294967200 (2^32-96)   -> 404:  d = 96+404    = 500
     *   io_ticks   4294967250 (2^32-46)   -> 204:  d = 46+204    = 250
     *   time_in_q  4294967290 (2^32-6)    -> 494:  d = 6+494     = 500
     *   wr_ios 5000 -> 100 and wr_sectors 80000 -> 1600: far from 2^32, a reset, clamped to 0
     * r/s = 1000, rMB/s = 8192/2048 = 4, r_await = 500/1000 = 0.5 ms,
     * rareq-sz = 8192/1000/2 = 4.096 kB, aqu-sz = 500/1000 = 0.5, %util = 250/1000*100 = 25,
     * writes all 0 (no I/O counted, so w_await and wareq-sz 0)
     */
    {.name = "32-bit wrap and a reset",
     .text_a = "8 0 sda 4294967000 0 4294966000 4294967200 5000 0 80000 9000 0 4294967250 "
               "4294967290\n",
     .text_b = "8 0 sda 704 0 6896 404 100 0 1600 200 0 204 494\n",
     .disk = "sda",
     .dt = 1.0,
     .want = {.rps = 1000,
              .rmbs = 4,
              .r_await_ms = 0.5,
              .rareq_sz_kb = 4.096,
              .aqu_sz = 0.5,
              .util_pct = 25}},
    {.name = "dt 0 gives zeros",
     .file_a = "diskstats_snap_a.txt",
     .file_b = "diskstats_snap_b.txt",
     .disk = "nvme0n1",
     .dt = 0,
     .want = {0}},
    {.name = "negative dt gives zeros",
     .file_a = "diskstats_snap_a.txt",
     .file_b = "diskstats_snap_b.txt",
     .disk = "nvme0n1",
     .dt = -0.2,
     .want = {0}},
};

static void check_rates(const char *ctx, const struct sb_disk_rates *g,
                        const struct sb_disk_rates *w)
{
    static const char *const names[] = {
        "r/s",      "w/s",      "rMB/s",  "wMB/s",  "r_await", "w_await", "rareq-sz",
        "wareq-sz", "aqu-sz",   "%util",  "rrqm/s", "wrqm/s",  "d/s",     "dMB/s",
        "d_await",  "dareq-sz", "drqm/s", "f/s",    "f_await",
    };
    _Static_assert(sizeof(struct sb_disk_rates) ==
                       sizeof(names) / sizeof(names[0]) * sizeof(double),
                   "names[] must list every field of struct sb_disk_rates");
    const double *gv = (const double *)g, *wv = (const double *)w;
    for (size_t i = 0; i < ARRAY_LEN(names); i++) {
        if (isnan(gv[i]))
            fail_msg("%s: %s is NaN", ctx, names[i]);
        check_near(ctx, names[i], gv[i], wv[i]);
    }
}

static struct sb_disk_counters *parse_snapshot(const char *file, const char *text, size_t *n)
{
    size_t len;
    char *t = file ? fixture(file, &len) : exact_copy(text, &len);
    struct sb_disk_counters *v;
    struct sb_err err = {0};
    if (sb_diskstats_parse(t, len, &v, n, &err) != 0)
        fail_msg("%s", err.msg);
    free(t);
    return v;
}

static void test_disk_rates(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(rates_cases); i++) {
        const struct rates_case *c = &rates_cases[i];
        size_t na, nb;
        struct sb_disk_counters *va = parse_snapshot(c->file_a, c->text_a, &na);
        struct sb_disk_counters *vb = parse_snapshot(c->file_b, c->text_b, &nb);
        const struct sb_disk_counters *a = sb_diskstats_find(va, na, c->disk);
        const struct sb_disk_counters *b = sb_diskstats_find(vb, nb, c->disk);
        assert_non_null(a);
        assert_non_null(b);
        struct sb_disk_rates r;
        sb_disk_rates(a, b, c->dt, &r);
        check_rates(c->name, &r, &c->want);
        free(va);
        free(vb);
    }
}

/* ---- block devices through a fake sysfs -------------------------------------------------------
 */

#define VDA  "../../devices/pci0000:00/0000:00:02.0/virtio1/block/vda"
#define NVME "../../devices/pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1"
#define SDA  "../../devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda"
#define DM0  "../../devices/virtual/block/dm-0"
#define CCIS "../../devices/pci0000:00/0000:00:05.0/cciss0/block/cciss!c0d0"

/* Each device: its dev/block link and whether its directory holds a 'partition' file. */
static const struct {
    const char *devt, *target;
    bool partition;
} fake_devices[] = {
    {"254:0", VDA, false},
    {"254:1", VDA "/vda1", true},
    {"254:2", VDA "/vda2/", true}, /* a trailing slash in the link is tolerated */
    {"259:0", NVME, false},
    {"259:2", NVME "/nvme0n1p2", true},
    {"8:0", SDA, false},
    {"8:3", SDA "/sda3", true},
    {"253:0", DM0, false},
    {"104:0", CCIS, false},
    {"104:1", CCIS "/cciss!c0d0p1", true},
    {"7:0", "../../devices/virtual/block/loop0", false},
};

static void mkdir_p(const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            fail_msg("mkdir '%s': %s", tmp, strerror(errno));
        *p = '/';
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
        fail_msg("mkdir '%s': %s", tmp, strerror(errno));
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void build_fake_sysfs(const char *root)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/dev/block", root);
    mkdir_p(path);
    for (size_t i = 0; i < ARRAY_LEN(fake_devices); i++) {
        /* the target is relative to dev/block, so dev/block/../../X is root/X */
        snprintf(path, sizeof(path), "%s/%s", root, fake_devices[i].target + strlen("../../"));
        mkdir_p(path);
        if (fake_devices[i].partition) {
            size_t l = strlen(path);
            if (path[l - 1] == '/')
                path[l - 1] = '\0';
            strncat(path, "/partition", sizeof(path) - strlen(path) - 1);
            FILE *f = fopen(path, "w");
            assert_non_null(f);
            fputs("1\n", f);
            fclose(f);
        }
        snprintf(path, sizeof(path), "%s/dev/block/%s", root, fake_devices[i].devt);
        if (symlink(fake_devices[i].target, path) != 0)
            fail_msg("symlink '%s': %s", path, strerror(errno));
    }
}

/* The tree lives from setup to teardown, so a failing case still removes it. */
static int fake_sysfs_setup(void **state)
{
    static char root[64];
    snprintf(root, sizeof(root), "/tmp/sb_procfs_sysfs.XXXXXX");
    if (!mkdtemp(root))
        return -1;
    *state = root;
    build_fake_sysfs(root);
    return 0;
}

static int fake_sysfs_teardown(void **state)
{
    return nftw((const char *)*state, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void test_blockdev_fake_sysfs(void **state)
{
    const char *root = *state;

    static const struct {
        unsigned major, minor;
        size_t cap;
        const char *want; /* NULL: must fail with msg */
        const char *msg;
    } cases[] = {
        {254, 0, 32, "vda", NULL},
        {254, 1, 32, "vda", NULL},
        {254, 2, 32, "vda", NULL},
        {259, 0, 32, "nvme0n1", NULL},
        {259, 2, 32, "nvme0n1", NULL},
        {8, 0, 32, "sda", NULL},
        {8, 3, 32, "sda", NULL},
        {253, 0, 32, "dm-0", NULL},
        {104, 0, 32, "cciss/c0d0", NULL},
        {104, 1, 32, "cciss/c0d0", NULL},
        {7, 0, 32, "loop0", NULL},
        {7, 0, 6, "loop0", NULL},                                  /* exactly fits */
        {7, 0, 5, NULL, "block device name 'loop0' does not fit"}, /* one short */
        {8, 99, 32, NULL, "cannot resolve block device 8:99 through '"},
        {0, 42, 32, NULL, "device 0:42 is no block device"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char out[32];
        struct sb_err err = {0};
        int rc = sb_blockdev_of_devt(root, cases[i].major, cases[i].minor, out, cases[i].cap, &err);
        char ctx[64];
        snprintf(ctx, sizeof(ctx), "%u:%u cap %zu", cases[i].major, cases[i].minor, cases[i].cap);
        if (cases[i].want) {
            if (rc != 0)
                fail_msg("%s: %s", ctx, err.msg);
            assert_string_equal(out, cases[i].want);
        } else {
            if (rc == 0)
                fail_msg("%s: resolved to '%s'", ctx, out);
            check_msg(ctx, &err, cases[i].msg);
        }
    }
}

static void test_blockdev_of_path_errors(void **state)
{
    (void)state;
    char out[32];
    struct sb_err err = {0};
    /* procfs sits on an anonymous device (major 0) */
    assert_int_equal(sb_blockdev_of_path("/sys", "/proc", out, sizeof(out), &err), -1);
    check_msg("/proc", &err, "cannot find the disk of '/proc': device 0:");
    check_msg("/proc", &err, "is no block device");
    assert_int_equal(sb_blockdev_of_path("/sys", "/nonexistent/sparkbench", out, sizeof(out), &err),
                     -1);
    check_msg("missing", &err, "cannot stat '/nonexistent/sparkbench': No such file or directory");
}

/* ---- the machine running the tests ------------------------------------------------------------
 */

static void test_real_proc(void **state)
{
    (void)state;
    size_t len;
    struct sb_err err = {0};

    char *text = slurp("/proc/stat", &len);
    assert_non_null(text);
    struct sb_proc_stat st;
    if (sb_procstat_parse(text, len, &st, &err) != 0)
        fail_msg("real /proc/stat: %s", err.msg);
    assert_true(st.ncpus >= 1);
    assert_true(st.all.user + st.all.system + st.all.idle > 0);
    sb_procstat_release(&st);
    free(text);

    text = slurp("/proc/meminfo", &len);
    assert_non_null(text);
    struct sb_meminfo m;
    if (sb_meminfo_parse(text, len, &m, &err) != 0)
        fail_msg("real /proc/meminfo: %s", err.msg);
    assert_true(m.mem_total > 0);
    assert_true(m.mem_free >= 0 && m.mem_free <= m.mem_total);
    free(text);

    text = slurp("/proc/diskstats", &len);
    assert_non_null(text);
    struct sb_disk_counters *v;
    size_t n;
    if (sb_diskstats_parse(text, len, &v, &n, &err) != 0)
        fail_msg("real /proc/diskstats: %s", err.msg);
    free(text);

    static const char *const psi[] = {"/proc/pressure/cpu", "/proc/pressure/memory",
                                      "/proc/pressure/io"};
    for (size_t i = 0; i < ARRAY_LEN(psi); i++) {
        text = slurp(psi[i], &len);
        if (!text) {
            printf("    (%s not readable: kernel without PSI, skipped)\n", psi[i]);
            continue;
        }
        struct sb_psi p;
        if (sb_psi_parse(text, len, &p, &err) != 0)
            fail_msg("real %s: %s", psi[i], err.msg);
        assert_true(p.some.present);
        free(text);
    }

    char disk[32];
    if (sb_blockdev_of_path("/sys", "/", disk, sizeof(disk), &err) != 0) {
        printf("    (block device of '/' not found, skipped: %s)\n", err.msg);
    } else {
        printf("    ('/' is on '%s')\n", disk);
        if (!sb_diskstats_find(v, n, disk))
            fail_msg("'/' is on '%s', which /proc/diskstats lacks", disk);
    }
    free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_procstat_fixtures),
        cmocka_unit_test(test_procstat_bad),
        cmocka_unit_test(test_cpu_pct),
        cmocka_unit_test(test_meminfo_fixtures),
        cmocka_unit_test(test_meminfo_bad),
        cmocka_unit_test(test_psi_fixtures),
        cmocka_unit_test(test_psi_bad),
        cmocka_unit_test(test_diskstats_fixtures),
        cmocka_unit_test(test_diskstats_empty),
        cmocka_unit_test(test_diskstats_bad),
        cmocka_unit_test(test_every_prefix),
        cmocka_unit_test(test_delta),
        cmocka_unit_test(test_disk_rates),
        cmocka_unit_test_setup_teardown(test_blockdev_fake_sysfs, fake_sysfs_setup,
                                        fake_sysfs_teardown),
        cmocka_unit_test(test_blockdev_of_path_errors),
        cmocka_unit_test(test_real_proc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
