/*
 * Integration tests for `sparkbench sysmon`: ticks on wall-clock multiples of the interval, the
 * Appendix B objects present, disk traffic made with dd visible in the disk source, SIGINT ends it
 * cleanly with whole lines; the gpu source through the fake NVML, a child's fsync'd writes in its
 * proc object, and the disk source's w/s and wMB/s against sysstat's iostat -x on the same disk.
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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proc.h"
#include "sb/procfs.h"

static const char *bin;

static void test_grid_and_sources(void **state)
{
    (void)state;
    char dir[] = "/var/tmp/sbtest-sysmon-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char out[600], path[700], ddfile[700], ddof[720];
    snprintf(out, sizeof(out), "%s/out", dir);
    snprintf(path, sizeof(path), "%s/sysmon.jsonl", out);
    snprintf(ddfile, sizeof(ddfile), "%s/dd.bin", dir);
    snprintf(ddof, sizeof(ddof), "of=%s", ddfile);
    pid_t pid = fork();
    if (pid == 0) {
        execl(bin, bin, "sysmon", "--out", out, "--duration-s", "1.5", "--interval-ms", "100",
              (char *)NULL);
        _exit(127);
    }
    usleep(300000);
    /* 32 MiB of direct writes on the same disk while sysmon watches. */
    const char *dd[] = {"/bin/dd",  "if=/dev/zero", ddof,          "bs=1M",
                        "count=32", "oflag=direct", "status=none", NULL};
    assert_int_equal(sb_proc_run(dd, NULL, NULL), 0);
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    int n;
    cJSON **v = sb_test_read_jsonl(path, &n);
    assert_true(n >= 13 && n <= 17); /* 1.5 s of 100 ms ticks */
    double prev = 0, wmbs_max = 0;
    for (int i = 0; i < n; i++) {
        double ts = cJSON_GetObjectItemCaseSensitive(v[i], "ts")->valuedouble;
        /* On the grid: a multiple of 0.1 s, one interval after the previous tick. */
        assert_true(fabs(ts * 10 - round(ts * 10)) < 1e-4);
        if (i)
            assert_true(fabs(ts - prev - 0.1) < 1e-4);
        prev = ts;
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(v[i], "missed")))
            continue;
        assert_true(cJSON_GetObjectItemCaseSensitive(v[i], "ts_actual")->valuedouble >= ts);
        const cJSON *mem = cJSON_GetObjectItemCaseSensitive(v[i], "mem");
        assert_non_null(mem);
        assert_true(cJSON_GetObjectItemCaseSensitive(mem, "MemTotal")->valuedouble > 0);
        assert_true(cJSON_GetObjectItemCaseSensitive(mem, "MemAvailable")->valuedouble > 0);
        const cJSON *cpu = cJSON_GetObjectItemCaseSensitive(v[i], "cpu");
        if (i == 0) {
            assert_null(cpu); /* no interval to measure over yet */
            continue;
        }
        assert_non_null(cpu);
        double sum = 0;
        for (const cJSON *f = cpu->child; f; f = f->next)
            sum += f->valuedouble;
        assert_true(fabs(sum - 100) < 0.5);
        const cJSON *nvme = cJSON_GetObjectItemCaseSensitive(v[i], "nvme");
        if (nvme) {
            double w = cJSON_GetObjectItemCaseSensitive(nvme, "wMBs")->valuedouble;
            wmbs_max = w > wmbs_max ? w : wmbs_max;
        }
    }
    print_message("%d ticks, max write rate seen %.1f MB/s\n", n, wmbs_max);
    assert_true(wmbs_max > 1.0); /* dd's direct writes showed up */
    sb_test_free_jsonl(v, n);
    unlink(ddfile);
    unlink(path);
    rmdir(out);
    rmdir(dir);
}

static void test_sigint(void **state)
{
    (void)state;
    char dir[] = "/tmp/sbtest-sysmon-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[600];
    snprintf(path, sizeof(path), "%s/sysmon.jsonl", dir);
    pid_t pid = fork();
    if (pid == 0) {
        execl(bin, bin, "sysmon", "--out", dir, "--interval-ms", "50", (char *)NULL);
        _exit(127);
    }
    /* SIGINT once three ticks are written: the sampler is running and handles it (a fixed
       sleep can beat a slow start, when the default action would kill it). */
    for (int i = 0; i < 1000; i++) {
        char *text = sb_test_read_file(path);
        int lines = text ? sb_test_count(text, "\n") : 0;
        free(text);
        if (lines >= 3)
            break;
        usleep(10000);
    }
    kill(pid, SIGINT);
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    int n;
    cJSON **v = sb_test_read_jsonl(path, &n);
    assert_true(n >= 3);
    sb_test_free_jsonl(v, n);
    unlink(path);
    rmdir(dir);
}

/* ---- gpu, proc, and iostat's own numbers -------------------------------------------------------
 */

/* Lines of path holding needle; 0 when it does not exist yet. */
static int count_in(const char *path, const char *needle)
{
    char *t = sb_test_read_file(path);
    int n = t ? sb_test_count(t, needle) : 0;
    free(t);
    return n;
}

/* Waits (30 s at most, a safety net, not a measurement) until path holds needle n times. */
static void wait_for(const char *path, const char *needle, int n)
{
    for (int i = 0; i < 3000 && count_in(path, needle) < n; i++)
        usleep(10000);
    if (count_in(path, needle) < n)
        fail_msg("'%s' never held '%s' %d times", path, needle, n);
}

static const cJSON *get(const cJSON *o, const char *key)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!f)
        fail_msg("no '%s'", key);
    return f;
}

/* The fake NVML through the real binary: every line has the gpu object, and nothing is said. */
static void test_gpu_fake_nvml(void **state)
{
    (void)state;
    char dir[] = "/tmp/sbtest-sysmon-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[600];
    snprintf(path, sizeof(path), "%s/sysmon.jsonl", dir);
    setenv("FAKE_NVML_COUNT", "2", 1);
    setenv("FAKE_NVML_UNSUPPORTED", "mem", 1);
    const char *argv[] = {bin,
                          "sysmon",
                          "--out",
                          dir,
                          "--nvml-lib",
                          SB_FAKE_NVML_LIB,
                          "--duration-s",
                          "0.5",
                          "--interval-ms",
                          "100",
                          "--no-disk",
                          NULL};
    char *out = NULL, *err = NULL;
    assert_int_equal(sb_proc_run(argv, &out, &err), 0);
    unsetenv("FAKE_NVML_COUNT");
    unsetenv("FAKE_NVML_UNSUPPORTED");
    assert_string_equal(err, ""); /* the gpu source came up without a notice */
    int n;
    cJSON **v = sb_test_read_jsonl(path, &n);
    int seen = 0;
    for (int i = 0; i < n; i++) {
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(v[i], "missed")))
            continue;
        const cJSON *gpu = get(v[i], "gpu");
        assert_int_equal(get(gpu, "count")->valueint, 2);
        assert_true(fabs(get(gpu, "util")->valuedouble - 45.0) < 1e-9);
        assert_true(cJSON_IsNull(get(gpu, "mem_used_bytes")));
        assert_string_equal(get(gpu, "mem_src")->valuestring, "unsupported");
        assert_int_equal(cJSON_GetArraySize(get(gpu, "gpus")), 2);
        seen++;
    }
    assert_true(seen >= 3);
    sb_test_free_jsonl(v, n);
    free(out);
    free(err);
    unlink(path);
    rmdir(dir);
}

/* The writer of test_proc_write_bytes: waits for "go", writes 8 MiB and fsyncs, says "done", and
 * exits when the parent closes the pipe. */
#define PROC_WRITE_BYTES (8 << 20)
static void proc_writer(int go_fd, int done_fd, const char *file)
{
    char c;
    if (read(go_fd, &c, 1) != 1)
        _exit(1);
    int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    static char block[1 << 20];
    memset(block, 'w', sizeof(block));
    for (int i = 0; fd >= 0 && i < PROC_WRITE_BYTES / (int)sizeof(block); i++)
        if (write(fd, block, sizeof(block)) != (ssize_t)sizeof(block))
            _exit(2);
    if (fd < 0 || fsync(fd) != 0 || close(fd) != 0)
        _exit(3);
    if (write(done_fd, "d", 1) != 1)
        _exit(4);
    while (read(go_fd, &c, 1) > 0)
        ;
    _exit(0);
}

/* sysmon --pid: a child's 8 MiB of fsync'd writes under /var/tmp show in its write_bytes. */
static void test_proc_write_bytes(void **state)
{
    (void)state;
    char dir[] = "/var/tmp/sbtest-sysmon-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[600], file[600], pidarg[24], needle[48];
    snprintf(path, sizeof(path), "%s/sysmon.jsonl", dir);
    snprintf(file, sizeof(file), "%s/written.bin", dir);
    int go[2], done[2];
    assert_int_equal(pipe(go), 0);
    assert_int_equal(pipe(done), 0);
    pid_t writer = fork();
    assert_true(writer >= 0);
    if (writer == 0) {
        close(go[1]);
        close(done[0]);
        proc_writer(go[0], done[1], file);
    }
    close(go[0]);
    close(done[1]);
    snprintf(pidarg, sizeof(pidarg), "%d", (int)writer);
    snprintf(needle, sizeof(needle), "\"pid\":%d,", (int)writer);
    pid_t mon = fork();
    if (mon == 0) {
        execl(bin, bin, "sysmon", "--out", dir, "--pid", pidarg, "--interval-ms", "100", "--no-gpu",
              "--no-disk", (char *)NULL);
        _exit(127);
    }
    wait_for(path, needle, 2); /* two readings before the writes */
    assert_int_equal(write(go[1], "g", 1), 1);
    char c;
    assert_int_equal(read(done[0], &c, 1), 1);
    int before = count_in(path, needle);
    wait_for(path, needle, before + 2); /* two readings after them */
    kill(mon, SIGINT);
    int status;
    waitpid(mon, &status, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    close(go[1]);
    waitpid(writer, &status, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    close(done[0]);

    int n;
    cJSON **v = sb_test_read_jsonl(path, &n);
    double first = -1, last = -1, max_bps = 0;
    int readings = 0;
    for (int i = 0; i < n; i++) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(v[i], "proc");
        const cJSON *p = arr ? cJSON_GetArrayItem(arr, 0) : NULL;
        if (!p)
            continue;
        assert_int_equal(get(p, "pid")->valueint, writer);
        const cJSON *wb = get(p, "write_bytes"), *bps = get(p, "write_Bps");
        assert_true(cJSON_IsNumber(wb));
        if (readings == 0)
            assert_true(cJSON_IsNull(bps)); /* no interval before the first reading */
        else if (bps->valuedouble > max_bps)
            max_bps = bps->valuedouble;
        first = first < 0 ? wb->valuedouble : first;
        last = wb->valuedouble;
        assert_true(get(p, "threads")->valueint >= 1);
        readings++;
    }
    print_message("%d readings, write_bytes %.0f -> %.0f (+%.0f), peak %.1f MB/s\n", readings,
                  first, last, last - first, max_bps / 1048576);
    assert_true(readings >= 4);
    assert_true(last - first >= PROC_WRITE_BYTES);
    assert_true(max_bps > 0);
    sb_test_free_jsonl(v, n);
    unlink(file);
    unlink(path);
    rmdir(dir);
}

/* The iostat entry for dev in one of iostat -o JSON's reports, or NULL. */
static const cJSON *iostat_disk(const cJSON *report, const char *dev)
{
    const cJSON *disks = cJSON_GetObjectItemCaseSensitive(report, "disk");
    for (const cJSON *d = disks ? disks->child : NULL; d; d = d->next) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(d, "disk_device");
        if (cJSON_IsString(name) && strcmp(name->valuestring, dev) == 0)
            return d;
    }
    return NULL;
}

static uint64_t real_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_until_real(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
    while (clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

/*
 * The disk source against sysstat's iostat -x on the same device while dd writes 1 MiB direct
 * blocks in a loop. sysmon ticks on whole wall-clock seconds; iostat samples one interval after
 * another from the moment it starts, so it is started 5 ms after the whole second s0 at which
 * sysmon ticks first: both then measure the same four seconds [s0, s0+4], give or take a few ms
 * at each edge, and their totals are comparable.
 */
static void test_iostat_cross_check(void **state)
{
    (void)state;
    char dev[64];
    struct sb_err e;
    if (access("/usr/bin/iostat", X_OK) != 0)
        fail_msg("iostat missing: scripts/install-deps.sh installs sysstat");
    if (sb_blockdev_of_path("/sys", "/var/tmp", dev, sizeof(dev), &e) != 0) {
        print_message("skipped: no block device under /var/tmp (%s)\n", e.msg);
        skip();
    }
    char dir[] = "/var/tmp/sbtest-iostat-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[600], of[620], loop[800];
    snprintf(path, sizeof(path), "%s/sysmon.jsonl", dir);
    snprintf(of, sizeof(of), "%s/dd.bin", dir);
    snprintf(loop, sizeof(loop),
             "while :; do dd if=/dev/zero of='%s' bs=1M count=16 oflag=direct status=none; done",
             of);
    pid_t writer = fork();
    assert_true(writer >= 0);
    if (writer == 0) {
        setpgid(0, 0); /* so that the shell and its dd can be killed together */
        execl("/bin/sh", "sh", "-c", loop, (char *)NULL);
        _exit(127);
    }
    setpgid(writer, writer);

    /* sysmon starts at least 0.3 s before the whole second s0 (its first tick), and its 5 s run
       ends within [s0+4, s0+5): ticks s0 .. s0+4, four intervals with rates. */
    const uint64_t sec = 1000000000ull;
    uint64_t now = real_now_ns(), s0 = (now / sec + 1) * sec;
    if (s0 - now < 300000000ull)
        s0 += sec;
    sleep_until_real(s0 - 700000000ull);
    pid_t mon = fork();
    if (mon == 0) {
        execl(bin, bin, "sysmon", "--out", dir, "--disk", dev, "--interval-ms", "1000",
              "--duration-s", "5", "--no-gpu", (char *)NULL);
        _exit(127);
    }
    sleep_until_real(s0 + 5000000ull);
    const char *iostat[] = {"/usr/bin/iostat", "-x", "-d", "-y", "-o", "JSON", dev, "1", "4", NULL};
    char *out = NULL, *err = NULL;
    int iostat_rc = sb_proc_run(iostat, &out, &err);
    int status;
    waitpid(mon, &status, 0);
    kill(-writer, SIGKILL);
    waitpid(writer, NULL, 0);
    unlink(of);
    assert_int_equal(iostat_rc, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);

    /* iostat: statistics[] holds one report per second */
    cJSON *doc = cJSON_Parse(out);
    if (!doc)
        fail_msg("iostat printed no JSON: %.300s", out);
    const cJSON *hosts = get(get(doc, "sysstat"), "hosts");
    const cJSON *stats = get(cJSON_GetArrayItem(hosts, 0), "statistics");
    double io_wps = 0, io_wmbs = 0;
    int io_n = 0;
    for (const cJSON *r = stats->child; r; r = r->next) {
        const cJSON *d = iostat_disk(r, dev);
        if (!d)
            continue;
        io_wps += get(d, "w/s")->valuedouble;
        io_wmbs += get(d, "wkB/s")->valuedouble / 1024.0;
        io_n++;
    }
    /* sysmon: the device's object in the ticks s0+1 .. s0+4 (each covers the second before) */
    int n;
    cJSON **v = sb_test_read_jsonl(path, &n);
    double sm_wps = 0, sm_wmbs = 0, first_ts = 0;
    int sm_n = 0;
    for (int i = 0; i < n; i++) {
        double ts = get(v[i], "ts")->valuedouble;
        first_ts = i == 0 ? ts : first_ts;
        const cJSON *disks = cJSON_GetObjectItemCaseSensitive(v[i], "disks");
        const cJSON *d = disks ? cJSON_GetObjectItemCaseSensitive(disks, dev) : NULL;
        if (!d || ts <= (double)(s0 / sec) + 0.5 || ts > (double)(s0 / sec) + 4.5)
            continue;
        sm_wps += get(d, "wps")->valuedouble;
        sm_wmbs += get(d, "wMBs")->valuedouble;
        sm_n++;
    }
    sb_test_free_jsonl(v, n);
    print_message("%s: iostat %d s from %.3f: w/s total %.1f, wMB/s total %.2f\n", dev, io_n,
                  (double)(s0 + 5000000ull) / 1e9, io_wps, io_wmbs);
    print_message("%s: sysmon %d ticks from %.3f: w/s total %.1f, wMB/s total %.2f\n", dev, sm_n,
                  first_ts, sm_wps, sm_wmbs);
    assert_true(fabs(first_ts - (double)(s0 / sec)) < 1e-6); /* the windows are the ones planned */
    assert_int_equal(io_n, 4);
    assert_int_equal(sm_n, 4);
    /* Both saw the dd loop: at least 20 writes and 20 MB in the 4 s (dd alone does hundreds). */
    assert_true(io_wps >= 20 && sm_wps >= 20);
    assert_true(io_wmbs >= 20 && sm_wmbs >= 20);
    /*
     * Tolerance. Both tools apply the same arithmetic to the same /proc/diskstats counters, so
     * over identical seconds they would agree to rounding (iostat prints two decimals). Here each
     * of the 5 reading moments differs by the 5 ms head start, iostat's drift (its alarm()
     * re-arms after each report) and either tool's wake-up latency on a busy machine: a few tens
     * of ms of 4 s at most, ~1 % at a steady rate (observed on a virtio disk: 0.1-0.5 %, e.g.
     * 4660 vs 4640 writes, 3021.8 vs 3015.7 MB). The rate is not steady at that grain (a new dd
     * every 16 MiB, other processes' I/O), so 5 % of the larger total, or 20 (I/Os or MB) when
     * totals are small; a unit slip (sectors for kB, a factor of 2 or 1024, merges counted as
     * I/Os, a lost interval) lands far outside it.
     */
    double tol_wps = fmax(0.05 * fmax(io_wps, sm_wps), 20.0);
    double tol_mbs = fmax(0.05 * fmax(io_wmbs, sm_wmbs), 20.0);
    assert_true(fabs(io_wps - sm_wps) <= tol_wps);
    assert_true(fabs(io_wmbs - sm_wmbs) <= tol_mbs);
    cJSON_Delete(doc);
    free(out);
    free(err);
    unlink(path);
    rmdir(dir);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s SPARKBENCH_BINARY [SOURCE_DIR]\n", argv[0]);
        return 2;
    }
    bin = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grid_and_sources),   cmocka_unit_test(test_sigint),
        cmocka_unit_test(test_gpu_fake_nvml),      /* gpu through libfakenvml.so */
        cmocka_unit_test(test_proc_write_bytes),   /* proc: a child's write_bytes */
        cmocka_unit_test(test_iostat_cross_check), /* disk against iostat -x */
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
