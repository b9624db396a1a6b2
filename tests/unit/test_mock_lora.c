/*
 * Unit tests for sb/mock_lora.h: --lora-modules parsing and its errors, adapter files created at
 * start-up (and existing ones left alone), cold and warm acquires, LRU eviction under max_loras,
 * the load time as a lower bound, read failures and the counters. Each test works in its own
 * mkdtemp directory that the teardown removes, also after a failed assertion.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sb/mock_lora.h"
#include "sb/util.h"

struct fixture {
    char dir[64];
};

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    remove(path);
    return 0;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/sb_test_lora_XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    nftw(f->dir, remove_entry, 16, FTW_PHYS | FTW_DEPTH);
    free(f);
    return 0;
}

/* "a=<dir>/a.bin,b=<dir>/b.bin,..." for the first n of names. */
static void modules_for(char *out, size_t cap, const char *dir, const char *const *names, size_t n)
{
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        int w =
            snprintf(out + len, cap - len, "%s%s=%s/%s.bin", i ? "," : "", names[i], dir, names[i]);
        assert_true(w > 0 && (size_t)w < cap - len);
        len += (size_t)w;
    }
}

static struct sb_lora *init_ok(const char *modules, long long max_loras, uint64_t bytes,
                               double load_ms)
{
    struct sb_lora *l = NULL;
    struct sb_err err;
    sb_err_clear(&err);
    int rc = sb_lora_init(&l, modules, max_loras, bytes, load_ms, &err);
    if (rc != 0)
        print_message("init failed: %s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_non_null(l);
    return l;
}

static void test_parse(void **state)
{
    struct fixture *f = *state;
    char ok1[256], ok2[256];
    snprintf(ok1, sizeof(ok1), "sql=%s/sql.bin", f->dir);
    snprintf(ok2, sizeof(ok2), " sql = %s/sql.bin , chat=%s/chat.bin", f->dir, f->dir);
    static const char *const none[] = {NULL};
    static const char *const one[] = {"sql", NULL};
    static const char *const two[] = {"sql", "chat", NULL};
    const struct {
        const char *modules;
        long long max_loras;
        double load_ms;
        const char *msg; /* NULL: success */
        const char *const *names;
    } cases[] = {
        {NULL, 1, 0, NULL, none},
        {"", 4, 0, NULL, none},
        {ok1, 1, 0, NULL, one},
        {ok2, 2, 1.5, NULL, two},
        {"a=b,c", 1, 0, "'c'", NULL},
        {"=x", 1, 0, "'=x'", NULL},
        {"a=", 1, 0, "'a='", NULL},
        {"a=/tmp/x,,b=/tmp/y", 1, 0, "empty item", NULL},
        {"a=/tmp/x,b=/tmp/y,a=/tmp/z", 1, 0, "duplicate lora module name 'a'", NULL},
        {ok1, 0, 0, "max_loras '0'", NULL},
        {ok1, 1, -1, "lora_load_ms", NULL},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        struct sb_lora *l = (struct sb_lora *)&f;
        struct sb_err err;
        sb_err_clear(&err);
        int rc = sb_lora_init(&l, cases[i].modules, cases[i].max_loras, 64, cases[i].load_ms, &err);
        if (cases[i].msg) {
            print_message("'%s' -> %s\n", cases[i].modules ? cases[i].modules : "(null)", err.msg);
            assert_int_equal(rc, -1);
            assert_null(l);
            assert_non_null(strstr(err.msg, cases[i].msg));
            continue;
        }
        assert_int_equal(rc, 0);
        assert_non_null(l);
        size_t n = 0;
        while (cases[i].names[n])
            n++;
        assert_int_equal(sb_lora_count(l), n);
        for (size_t k = 0; k < n; k++) {
            assert_string_equal(sb_lora_name(l, k), cases[i].names[k]);
            assert_int_equal(sb_lora_find(l, cases[i].names[k]), (int)k);
            assert_false(sb_lora_resident(l, k));
        }
        assert_int_equal(sb_lora_find(l, "nope"), -1);
        assert_null(sb_lora_name(l, n));
        sb_lora_free(l);
    }
    /* Failed parses touched no file ("b" would land in the working directory). */
    assert_int_equal(access("b", F_OK), -1);
}

static void test_files_created(void **state)
{
    struct fixture *f = *state;
    static const struct {
        uint64_t bytes;
        off_t existing; /* -1: no file beforehand */
        off_t want;
    } cases[] = {
        {4096, -1, 4096},
        {(3u << 20) + 17, -1, (3 << 20) + 17},
        {0, -1, 0},
        {4096, 100, 100}, /* an existing adapter is used as it is */
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        char path[128], modules[160];
        snprintf(path, sizeof(path), "%s/case%zu.bin", f->dir, i);
        snprintf(modules, sizeof(modules), "m=%s", path);
        if (cases[i].existing >= 0) {
            int fd = open(path, O_WRONLY | O_CREAT, 0644);
            assert_true(fd >= 0);
            assert_int_equal(ftruncate(fd, cases[i].existing), 0);
            close(fd);
        }
        struct sb_lora *l = init_ok(modules, 1, cases[i].bytes, 0);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_size, cases[i].want);
        bool cold = false;
        assert_true(sb_lora_acquire(l, 0, &cold) >= 0);
        assert_true(cold);
        struct sb_lora_stats s;
        sb_lora_get_stats(l, &s);
        assert_int_equal(s.bytes_read, (uint64_t)cases[i].want);
        sb_lora_free(l);
        /* Freeing leaves the file. */
        assert_int_equal(access(path, F_OK), 0);
    }
}

static void test_create_errors(void **state)
{
    struct fixture *f = *state;
    char missing[128], isdir[128];
    snprintf(missing, sizeof(missing), "%s/no/such/dir/a.bin", f->dir);
    snprintf(isdir, sizeof(isdir), "%s/adir", f->dir);
    assert_int_equal(mkdir(isdir, 0755), 0);
    const struct {
        const char *path;
        const char *msg;
    } cases[] = {
        {missing, "No such file or directory"},
        {isdir, "not a regular file"},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        char modules[192], quoted[160];
        snprintf(modules, sizeof(modules), "ok=%s/ok.bin,bad=%s", f->dir, cases[i].path);
        snprintf(quoted, sizeof(quoted), "'%s'", cases[i].path);
        struct sb_lora *l = (struct sb_lora *)&f;
        struct sb_err err;
        sb_err_clear(&err);
        assert_int_equal(sb_lora_init(&l, modules, 1, 64, 0, &err), -1);
        assert_null(l);
        print_message("-> %s\n", err.msg);
        assert_non_null(strstr(err.msg, quoted));
        assert_non_null(strstr(err.msg, cases[i].msg));
    }
}

static void test_cold_then_warm(void **state)
{
    struct fixture *f = *state;
    static const struct {
        double load_ms;
        uint64_t bytes;
    } cases[] = {{0, 4096}, {5, 1 << 20}, {20, (2u << 20) + 1}};
    static const char *const names[] = {"x"};
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        char modules[128], path[128];
        snprintf(path, sizeof(path), "%s/x.bin", f->dir);
        unlink(path);
        modules_for(modules, sizeof(modules), f->dir, names, 1);
        struct sb_lora *l = init_ok(modules, 1, cases[i].bytes, cases[i].load_ms);
        bool cold = false;
        int64_t ns = sb_lora_acquire(l, 0, &cold);
        assert_true(cold);
        /* A lower bound: the load time is added to a measured, non-negative read time. */
        assert_true(ns >= (int64_t)(cases[i].load_ms * 1e6));
        assert_true(ns > 0);
        assert_true(sb_lora_resident(l, 0));
        cold = true;
        assert_int_equal(sb_lora_acquire(l, 0, &cold), 0);
        assert_false(cold);
        assert_int_equal(sb_lora_acquire(l, 0, NULL), 0);
        assert_int_equal(sb_lora_acquire(l, 1, &cold), -EINVAL);
        struct sb_lora_stats s;
        sb_lora_get_stats(l, &s);
        assert_int_equal(s.loads, 1);
        assert_int_equal(s.hits, 2);
        assert_int_equal(s.evictions, 0);
        assert_int_equal(s.bytes_read, cases[i].bytes);
        sb_lora_free(l);
    }
}

static void test_lru(void **state)
{
    struct fixture *f = *state;
    static const char *const names[] = {"a", "b", "c"};
    /* max_loras = 2; resident is a bit mask over a, b, c after the step. */
    static const struct {
        size_t idx;
        bool cold;
        unsigned resident;
    } steps[] = {
        {0, true, 0x1},                  /* a loads */
        {1, true, 0x3},                  /* b loads */
        {0, false, 0x3},                 /* a is now the most recent */
        {2, true, 0x5},                  /* c evicts b, the least recent */
        {1, true, 0x6},                  /* b evicts a (c was used after a) */
        {2, false, 0x6},                 /* c most recent */
        {0, true, 0x5},                  /* a evicts b */
        {0, false, 0x5}, {1, true, 0x3}, /* b evicts c */
    };
    char modules[512];
    modules_for(modules, sizeof(modules), f->dir, names, 3);
    const uint64_t bytes = 12345;
    struct sb_lora *l = init_ok(modules, 2, bytes, 1);
    uint64_t loads = 0, hits = 0, evictions = 0;
    size_t resident = 0;
    for (size_t i = 0; i < SB_ARRAY_SIZE(steps); i++) {
        bool cold = !steps[i].cold;
        int64_t ns = sb_lora_acquire(l, steps[i].idx, &cold);
        assert_true(ns >= 0);
        assert_int_equal(cold, steps[i].cold);
        if (steps[i].cold) {
            assert_true(ns >= 1000000);
            loads++;
            if (resident == 2)
                evictions++;
            else
                resident++;
        } else {
            assert_int_equal(ns, 0);
            hits++;
        }
        for (size_t k = 0; k < 3; k++)
            assert_int_equal(sb_lora_resident(l, k), (steps[i].resident >> k) & 1u);
    }
    struct sb_lora_stats s;
    sb_lora_get_stats(l, &s);
    assert_int_equal(s.loads, loads);
    assert_int_equal(s.hits, hits);
    assert_int_equal(s.evictions, evictions);
    assert_int_equal(s.evictions, 4);
    assert_int_equal(s.bytes_read, loads * bytes);
    sb_lora_free(l);
}

static void test_read_failure(void **state)
{
    struct fixture *f = *state;
    static const char *const names[] = {"a", "b"};
    char modules[256], path_b[128];
    modules_for(modules, sizeof(modules), f->dir, names, 2);
    snprintf(path_b, sizeof(path_b), "%s/b.bin", f->dir);
    struct sb_lora *l = init_ok(modules, 1, 4096, 2);
    bool cold = false;
    assert_true(sb_lora_acquire(l, 0, &cold) > 0);
    assert_int_equal(unlink(path_b), 0);
    cold = true;
    assert_int_equal(sb_lora_acquire(l, 1, &cold), -ENOENT);
    assert_false(cold);
    /* A failed load evicts nothing and loads nothing. */
    assert_true(sb_lora_resident(l, 0));
    assert_false(sb_lora_resident(l, 1));
    struct sb_lora_stats s;
    sb_lora_get_stats(l, &s);
    assert_int_equal(s.loads, 1);
    assert_int_equal(s.evictions, 0);
    assert_int_equal(s.bytes_read, 4096);
    sb_lora_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_parse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_files_created, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cold_then_warm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lru, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_failure, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
