/*
 * Unit tests for sb/mock_tier2.h: the preallocated file, timed block writes and verified reads,
 * corruption and truncation seen as errors, keep/unlink on close, refused directories, the
 * O_DIRECT fallbacks (block size, tmpfs) and the sysfs disk-name helper. Every test works in its
 * own mkdtemp directory that the teardown removes, also after a failed assertion.
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
#include <linux/magic.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "sb/buf.h"
#include "sb/mock_metrics.h"
#include "sb/mock_tier2.h"
#include "sb/util.h"

/* ---- fixture: one temp dir under /tmp, one under /dev/shm on demand ---- */

struct fixture {
    char dir[64];
    char shm[64]; /* empty unless a test made one */
};

static int chmod_writable(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (type == FTW_D || type == FTW_DNR)
        chmod(path, 0755);
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    remove(path);
    return 0;
}

static void remove_tree(const char *dir)
{
    if (!dir[0])
        return;
    nftw(dir, chmod_writable, 16, FTW_PHYS);
    nftw(dir, remove_entry, 16, FTW_PHYS | FTW_DEPTH);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/sb_test_tier2_XXXXXX");
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
    remove_tree(f->dir);
    remove_tree(f->shm);
    free(f);
    return 0;
}

/* A temp dir on /dev/shm when that is tmpfs; NULL (and a message) otherwise. */
static const char *make_shm_dir(struct fixture *f)
{
    struct statfs fs;
    if (statfs("/dev/shm", &fs) != 0 || fs.f_type != TMPFS_MAGIC) {
        print_message("skipped: /dev/shm is missing or not tmpfs\n");
        return NULL;
    }
    snprintf(f->shm, sizeof(f->shm), "/dev/shm/sb_test_tier2_XXXXXX");
    if (!mkdtemp(f->shm)) {
        f->shm[0] = '\0';
        print_message("skipped: cannot create a dir under /dev/shm\n");
        return NULL;
    }
    return f->shm;
}

static const char *fs_name(const char *dir)
{
    struct statfs fs;
    if (statfs(dir, &fs) != 0)
        return "unknown";
    switch (fs.f_type) {
    case EXT4_SUPER_MAGIC:
        return "ext4";
    case XFS_SUPER_MAGIC:
        return "xfs";
    case BTRFS_SUPER_MAGIC:
        return "btrfs";
    case TMPFS_MAGIC:
        return "tmpfs";
    case OVERLAYFS_SUPER_MAGIC:
        return "overlay";
    default:
        return "other";
    }
}

static struct sb_tier2 *open_ok(const char *dir, uint64_t block_bytes, uint64_t nblocks,
                                bool direct, bool keep)
{
    struct sb_tier2_config cfg = {
        .dir = dir, .block_bytes = block_bytes, .nblocks = nblocks, .direct = direct, .keep = keep};
    struct sb_tier2 *t = NULL;
    struct sb_err err;
    sb_err_clear(&err);
    int rc = sb_tier2_open(&t, &cfg, &err);
    if (rc != 0)
        print_message("open failed: %s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_non_null(t);
    return t;
}

/* ---- tests ---- */

static void test_open_preallocates(void **state)
{
    struct fixture *f = *state;
    static const struct {
        uint64_t block_bytes, nblocks;
        bool direct;
    } cases[] = {
        {4096, 16, false},
        {65536, 8, true},
        {1000, 5, false},
        {1 << 20, 3, true},
    };
    char want[128];
    snprintf(want, sizeof(want), "%s/sparkbench-kv-%ld.bin", f->dir, (long)getpid());
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        struct sb_tier2 *t =
            open_ok(f->dir, cases[i].block_bytes, cases[i].nblocks, cases[i].direct, false);
        assert_string_equal(sb_tier2_path(t), want);
        struct stat st;
        assert_int_equal(stat(want, &st), 0);
        off_t size = (off_t)(cases[i].block_bytes * cases[i].nblocks);
        assert_int_equal(st.st_size, size);
        assert_true((off_t)st.st_blocks * 512 >= size);
        sb_tier2_close(t);
        assert_int_equal(access(want, F_OK), -1);
    }
}

static void test_write_read(void **state)
{
    struct fixture *f = *state;
    static const struct {
        uint64_t block_bytes, nblocks;
        bool direct;
        uint64_t slots[4];
    } cases[] = {
        {4096, 8, false, {0, 3, 7, 5}},
        {4096, 8, true, {7, 0, 1, 2}},
        {65536, 32, true, {31, 16, 0, 9}},
        {777, 10, false, {9, 1, 4, 0}},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        struct sb_tier2 *t =
            open_ok(f->dir, cases[i].block_bytes, cases[i].nblocks, cases[i].direct, false);
        size_t n = SB_ARRAY_SIZE(cases[i].slots);
        for (size_t k = 0; k < n; k++)
            assert_true(sb_tier2_write(t, cases[i].slots[k]) > 0);
        /* Read back in the other order, half through the callback adapters. */
        int64_t (*rd)(void *, uint64_t) = sb_tier2_io_read;
        for (size_t k = n; k-- > 0;) {
            int64_t ns = k % 2 ? rd(t, cases[i].slots[k]) : sb_tier2_read(t, cases[i].slots[k]);
            assert_true(ns > 0);
        }
        /* A rewrite through the adapter keeps the slot readable. */
        int64_t (*wr)(void *, uint64_t) = sb_tier2_io_write;
        assert_true(wr(t, cases[i].slots[0]) > 0);
        assert_true(sb_tier2_read(t, cases[i].slots[0]) > 0);
        /* Past the end: an error, counted, no I/O. */
        assert_int_equal(sb_tier2_write(t, cases[i].nblocks), -ERANGE);
        assert_int_equal(sb_tier2_read(t, cases[i].nblocks + 5), -ERANGE);

        struct sb_tier2_stats s;
        sb_tier2_get_stats(t, &s);
        assert_int_equal(s.writes, n + 1);
        assert_int_equal(s.reads, n + 1);
        assert_int_equal(s.write_bytes, (n + 1) * cases[i].block_bytes);
        assert_int_equal(s.read_bytes, (n + 1) * cases[i].block_bytes);
        assert_int_equal(s.write_errors, 1);
        assert_int_equal(s.read_errors, 1);
        assert_true(s.write_ns_total >= s.writes);
        assert_true(s.read_ns_total >= s.reads);

        const struct sb_histo *h = sb_tier2_read_histo(t);
        assert_int_equal(h->count, s.reads);
        uint64_t sum = 0;
        for (size_t b = 0; b <= h->nbounds; b++)
            sum += h->counts[b];
        assert_int_equal(sum, s.reads);
        assert_true(h->nbounds >= 2);
        assert_true(h->bounds[0] <= 0.00001 + 1e-12);
        assert_true(h->bounds[h->nbounds - 1] >= 1.0);
        struct sb_buf b;
        sb_buf_init(&b, 1 << 16);
        assert_int_equal(sb_histo_render(h, "kv_disk_read_seconds", "x", &b), 0);
        char want[64];
        snprintf(want, sizeof(want), "kv_disk_read_seconds_count %llu\n",
                 (unsigned long long)s.reads);
        assert_non_null(strstr(b.data, want));
        sb_buf_release(&b);
        sb_tier2_close(t);
    }
}

static void test_unwritten_slot(void **state)
{
    struct fixture *f = *state;
    static const struct {
        bool direct;
        uint64_t written, probe;
    } cases[] = {
        {false, 1, 0},
        {false, 0, 3},
        {true, 2, 1},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        struct sb_tier2 *t = open_ok(f->dir, 4096, 4, cases[i].direct, false);
        assert_true(sb_tier2_write(t, cases[i].written) > 0);
        assert_int_equal(sb_tier2_read(t, cases[i].probe), -ENODATA);
        struct sb_tier2_stats s;
        sb_tier2_get_stats(t, &s);
        assert_int_equal(s.reads, 0);
        assert_int_equal(s.read_errors, 1);
        assert_int_equal(sb_tier2_read_histo(t)->count, 0);
        sb_tier2_close(t);
    }
}

enum damage { DAMAGE_HEAD, DAMAGE_BLOCK, DAMAGE_TRUNCATE };

static void test_corruption(void **state)
{
    struct fixture *f = *state;
    static const struct {
        const char *name;
        bool direct;
        enum damage damage;
    } cases[] = {
        {"garbage over the slot word", false, DAMAGE_HEAD},
        {"garbage over the whole block, O_DIRECT", true, DAMAGE_BLOCK},
        {"file truncated inside the block", false, DAMAGE_TRUNCATE},
    };
    const uint64_t bs = 8192, victim = 2;
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        struct sb_tier2 *t = open_ok(f->dir, bs, 4, cases[i].direct, false);
        for (uint64_t s = 0; s < 4; s++)
            assert_true(sb_tier2_write(t, s) > 0);
        int fd = open(sb_tier2_path(t), O_WRONLY);
        assert_true(fd >= 0);
        static unsigned char junk[8192];
        memset(junk, 0xa5, sizeof(junk));
        switch (cases[i].damage) {
        case DAMAGE_HEAD:
            assert_int_equal(pwrite(fd, junk, 8, (off_t)(victim * bs)), 8);
            break;
        case DAMAGE_BLOCK:
            assert_int_equal(pwrite(fd, junk, bs, (off_t)(victim * bs)), (ssize_t)bs);
            break;
        case DAMAGE_TRUNCATE:
            assert_int_equal(ftruncate(fd, (off_t)(victim * bs + 100)), 0);
            break;
        }
        assert_int_equal(fsync(fd), 0);
        close(fd);
        print_message("%s\n", cases[i].name);
        assert_int_equal(sb_tier2_read(t, victim), -EIO);
        /* The blocks before it are intact. */
        assert_true(sb_tier2_read(t, victim - 1) > 0);
        struct sb_tier2_stats s;
        sb_tier2_get_stats(t, &s);
        assert_int_equal(s.read_errors, 1);
        assert_int_equal(s.reads, 1);
        sb_tier2_close(t);
    }
}

static void test_close_keep(void **state)
{
    struct fixture *f = *state;
    static const struct {
        bool keep;
        int access_rc;
    } cases[] = {{false, -1}, {true, 0}};
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        struct sb_tier2 *t = open_ok(f->dir, 4096, 2, false, cases[i].keep);
        char path[128];
        snprintf(path, sizeof(path), "%s", sb_tier2_path(t));
        assert_true(sb_tier2_write(t, 1) > 0);
        assert_int_equal(access(path, F_OK), 0);
        sb_tier2_close(t);
        assert_int_equal(access(path, F_OK), cases[i].access_rc);
        unlink(path);
    }
}

static void test_same_dir_twice(void **state)
{
    struct fixture *f = *state;
    struct sb_tier2 *a = open_ok(f->dir, 4096, 2, false, false);
    struct sb_tier2_config cfg = {.dir = f->dir, .block_bytes = 4096, .nblocks = 2};
    struct sb_tier2 *b = (struct sb_tier2 *)&cfg;
    struct sb_err err;
    sb_err_clear(&err);
    assert_int_equal(sb_tier2_open(&b, &cfg, &err), -1);
    assert_null(b);
    assert_non_null(strstr(err.msg, "in use"));
    /* The refused open must not have removed the first tier's file. */
    assert_int_equal(access(sb_tier2_path(a), F_OK), 0);
    assert_true(sb_tier2_write(a, 0) > 0);
    assert_true(sb_tier2_read(a, 0) > 0);
    sb_tier2_close(a);
}

enum where { WHERE_FILE, WHERE_MISSING, WHERE_READONLY, WHERE_TMP };

static void test_open_refused(void **state)
{
    struct fixture *f = *state;
    struct statvfs vfs;
    assert_int_equal(statvfs(f->dir, &vfs), 0);
    uint64_t avail_blocks = (uint64_t)vfs.f_bavail * vfs.f_frsize / 4096;
    static const struct {
        const char *name;
        enum where where;
        uint64_t block_bytes;
        uint64_t nblocks; /* UINT64_MAX: more than the free space */
        const char *msg;  /* besides the dir */
    } cases[] = {
        {"not a directory", WHERE_FILE, 4096, 4, "not a directory"},
        {"missing", WHERE_MISSING, 4096, 4, "No such file or directory"},
        {"read-only", WHERE_READONLY, 4096, 4, "not writable"},
        {"more than the free space", WHERE_TMP, 4096, UINT64_MAX, "free space"},
        {"no blocks", WHERE_TMP, 4096, 0, "block count"},
        {"tiny blocks", WHERE_TMP, 4, 16, "block size"},
        {"file larger than off_t", WHERE_TMP, 1 << 20, UINT64_MAX / 1024, "block count"},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        char dir[128];
        switch (cases[i].where) {
        case WHERE_FILE: {
            snprintf(dir, sizeof(dir), "%s/plain", f->dir);
            int fd = open(dir, O_WRONLY | O_CREAT, 0644);
            assert_true(fd >= 0);
            close(fd);
            break;
        }
        case WHERE_MISSING:
            snprintf(dir, sizeof(dir), "%s/nope", f->dir);
            break;
        case WHERE_READONLY: {
            snprintf(dir, sizeof(dir), "%s/ro", f->dir);
            assert_int_equal(mkdir(dir, 0755), 0);
            assert_int_equal(chmod(dir, 0555), 0);
            char probe[160];
            snprintf(probe, sizeof(probe), "%s/probe", dir);
            int fd = open(probe, O_WRONLY | O_CREAT, 0644);
            if (fd >= 0) {
                close(fd);
                unlink(probe);
                print_message("skipped case '%s': running as root, chmod 0555 does not stop "
                              "writes\n",
                              cases[i].name);
                continue;
            }
            break;
        }
        case WHERE_TMP:
            snprintf(dir, sizeof(dir), "%s", f->dir);
            break;
        }
        uint64_t nblocks = cases[i].nblocks;
        if (nblocks == UINT64_MAX)
            nblocks = avail_blocks + ((uint64_t)1 << 20); /* 4 GiB more than free */
        struct sb_tier2_config cfg = {
            .dir = dir, .block_bytes = cases[i].block_bytes, .nblocks = nblocks, .direct = true};
        struct sb_tier2 *t = (struct sb_tier2 *)&cfg;
        struct sb_err err;
        sb_err_clear(&err);
        print_message("%s\n", cases[i].name);
        assert_int_equal(sb_tier2_open(&t, &cfg, &err), -1);
        assert_null(t);
        print_message("  -> %s\n", err.msg);
        assert_non_null(strstr(err.msg, cases[i].msg));
        if (cases[i].where != WHERE_TMP || strstr(cases[i].msg, "space")) {
            char quoted[160];
            snprintf(quoted, sizeof(quoted), "'%s'", dir);
            assert_non_null(strstr(err.msg, quoted));
        }
        /* Nothing may be left behind by a refused open. */
        char leftover[192];
        snprintf(leftover, sizeof(leftover), "%s/sparkbench-kv-%ld.bin", f->dir, (long)getpid());
        assert_int_equal(access(leftover, F_OK), -1);
    }
}

enum direct_expect { EXPECT_CONSISTENT, EXPECT_FALLBACK, EXPECT_BUFFERED };

static void test_direct(void **state)
{
    struct fixture *f = *state;
    print_message("/tmp is %s\n", fs_name("/tmp"));
    static const struct {
        const char *name;
        bool on_shm;
        uint64_t block_bytes;
        bool direct;
        enum direct_expect expect;
    } cases[] = {
        {"/tmp, 4 KiB", false, 4096, true, EXPECT_CONSISTENT},
        {"/tmp, 64 KiB", false, 65536, true, EXPECT_CONSISTENT},
        {"/tmp, 4 KiB + 512", false, 4096 + 512, true, EXPECT_FALLBACK},
        {"/tmp, 1000 bytes", false, 1000, true, EXPECT_FALLBACK},
        {"/tmp, not asked", false, 4096, false, EXPECT_BUFFERED},
        {"/dev/shm (tmpfs), 4 KiB", true, 4096, true, EXPECT_FALLBACK},
        {"/dev/shm (tmpfs), not asked", true, 4096, false, EXPECT_BUFFERED},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        const char *dir = f->dir;
        if (cases[i].on_shm) {
            dir = f->shm[0] ? f->shm : make_shm_dir(f);
            if (!dir)
                continue;
        }
        struct sb_tier2 *t = open_ok(dir, cases[i].block_bytes, 4, cases[i].direct, false);
        const char *warn = sb_tier2_warning(t);
        print_message("%s: direct=%d warning=%s\n", cases[i].name, sb_tier2_is_direct(t),
                      warn ? warn : "(none)");
        switch (cases[i].expect) {
        case EXPECT_CONSISTENT:
            assert_true(sb_tier2_is_direct(t) != (warn != NULL));
            break;
        case EXPECT_FALLBACK:
            assert_false(sb_tier2_is_direct(t));
            assert_non_null(warn);
            assert_non_null(strstr(warn, "O_DIRECT"));
            assert_null(strchr(warn, '\n'));
            break;
        case EXPECT_BUFFERED:
            assert_false(sb_tier2_is_direct(t));
            assert_null(warn);
            break;
        }
        /* Whichever way it went, I/O works. */
        assert_true(sb_tier2_write(t, 3) > 0);
        assert_true(sb_tier2_read(t, 3) > 0);
        sb_tier2_close(t);
    }
}

static void test_device(void **state)
{
    struct fixture *f = *state;
    const char *dirs[] = {f->dir, NULL};
    dirs[1] = make_shm_dir(f);
    for (size_t i = 0; i < SB_ARRAY_SIZE(dirs); i++) {
        if (!dirs[i])
            continue;
        struct sb_tier2 *t = open_ok(dirs[i], 4096, 1, false, false);
        const char *dev = sb_tier2_device(t);
        print_message("%s (%s): device %s\n", dirs[i], fs_name(dirs[i]), dev ? dev : "(none)");
        if (dev) {
            assert_true(strlen(dev) > 0);
            assert_null(strchr(dev, '/'));
            char sys[128];
            snprintf(sys, sizeof(sys), "/sys/block/%s", dev);
            assert_int_equal(access(sys, F_OK), 0);
        }
        sb_tier2_close(t);
    }
}

static void test_disk_from_sysfs(void **state)
{
    (void)state;
    static const struct {
        const char *target;
        bool partition;
        int rc;
        const char *name;
    } cases[] = {
        {"../../devices/pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1/nvme0n1p2", true, 0, "nvme0n1"},
        {"../../devices/pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1", false, 0, "nvme0n1"},
        {"../../devices/pci0000:00/0000:00:05.0/virtio2/block/vda/vda1", true, 0, "vda"},
        {"../../devices/pci0000:00/0000:00:05.0/virtio2/block/vda", false, 0, "vda"},
        {"../../devices/virtual/block/dm-0/", false, 0, "dm-0"},
        {"../../devices/platform/host0/target0:0:0/0:0:0:0/block/sda/sda3", true, 0, "sda"},
        {"sda1", true, -1, NULL},
        {"", false, -1, NULL},
        {"../..", false, -1, NULL},
        {"../../devices/x/0123456789012345678901234567890123456789", false, -1, NULL},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        char out[16] = "unchanged";
        int rc = sb_tier2_disk_from_sysfs(cases[i].target, cases[i].partition, out, sizeof(out));
        assert_int_equal(rc, cases[i].rc);
        if (cases[i].name)
            assert_string_equal(out, cases[i].name);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_preallocates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unwritten_slot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corruption, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_keep, setup, teardown),
        cmocka_unit_test_setup_teardown(test_same_dir_twice, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_direct, setup, teardown),
        cmocka_unit_test_setup_teardown(test_device, setup, teardown),
        cmocka_unit_test(test_disk_from_sysfs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
