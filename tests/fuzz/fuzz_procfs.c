/*
 * The /proc parsers of sb/procfs.h (stat, meminfo, pressure, diskstats, and the per-process io
 * and stat files) on arbitrary text. The first byte picks the parser; the rest is the file. Each
 * is fed from an exact-size, non-NUL-terminated copy (the header says the buffer is never read
 * past len). Checks beyond the sanitizers: a failure always carries a message, /proc/stat's CPU
 * ids are strictly increasing, PSI averages are within 0-100, diskstats entries have a legal
 * field count and a NUL-terminated name.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "sb/procfs.h"

static void need_msg(int rc, const struct sb_err *err, const char *what)
{
    if (rc != 0 && err->msg[0] == '\0')
        sb_fuzz_fail("%s failed without a message", what);
}

static void check_psi_line(const struct sb_psi_line *l)
{
    const double v[3] = {l->avg10, l->avg60, l->avg300};
    for (int i = 0; i < 3; i++)
        if (!(v[i] >= 0 && v[i] <= 100))
            sb_fuzz_fail("psi average %g outside 0-100", v[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int which = data[0] % 6;
    size_t n = size - 1;
    char *p = malloc(n ? n : 1);
    if (!p)
        abort();
    memcpy(p, data + 1, n);
    struct sb_err err = {0};
    int rc = 0;
    switch (which) {
    case 0: {
        struct sb_proc_stat st;
        rc = sb_procstat_parse(p, n, &st, &err);
        if (rc == 0) {
            for (int i = 1; i < st.ncpus; i++)
                if (st.ids[i] <= st.ids[i - 1])
                    sb_fuzz_fail("cpu ids not increasing: %d then %d", st.ids[i - 1], st.ids[i]);
            struct sb_cpu_pct pct;
            sb_cpu_pct(&st.all, &st.all, &pct);
        }
        sb_procstat_release(&st);
        need_msg(rc, &err, "/proc/stat");
        break;
    }
    case 1: {
        struct sb_meminfo mi;
        rc = sb_meminfo_parse(p, n, &mi, &err);
        need_msg(rc, &err, "/proc/meminfo");
        break;
    }
    case 2: {
        struct sb_psi psi;
        rc = sb_psi_parse(p, n, &psi, &err);
        if (rc == 0) {
            if (!psi.some.present)
                sb_fuzz_fail("psi parsed without a some line");
            check_psi_line(&psi.some);
            if (psi.full.present)
                check_psi_line(&psi.full);
        }
        need_msg(rc, &err, "pressure");
        break;
    }
    case 3: {
        struct sb_disk_counters *d = NULL;
        size_t nd = 0;
        rc = sb_diskstats_parse(p, n, &d, &nd, &err);
        if (rc == 0) {
            for (size_t i = 0; i < nd; i++) {
                if (d[i].nfields != 14 && d[i].nfields != 18 && d[i].nfields != 20)
                    sb_fuzz_fail("diskstats entry with %d fields", d[i].nfields);
                if (!memchr(d[i].name, '\0', sizeof(d[i].name)))
                    sb_fuzz_fail("diskstats name not terminated");
                struct sb_disk_rates r;
                sb_disk_rates(&d[i], &d[i], 0.2, &r);
            }
            if (nd > 0 && sb_diskstats_find(d, nd, d[0].name) != &d[0])
                sb_fuzz_fail("diskstats_find misses the first entry");
        } else if (d != NULL || nd != 0) {
            sb_fuzz_fail("diskstats failure left %zu entries", nd);
        }
        free(d);
        need_msg(rc, &err, "/proc/diskstats");
        break;
    }
    case 4: {
        struct sb_pid_io io;
        rc = sb_pid_io_parse(p, n, &io, &err);
        need_msg(rc, &err, "/proc/<pid>/io");
        break;
    }
    default: {
        struct sb_pid_stat ps;
        rc = sb_pid_stat_parse(p, n, &ps, &err);
        if (rc == 0 && !memchr(ps.comm, '\0', sizeof(ps.comm)))
            sb_fuzz_fail("comm not terminated");
        need_msg(rc, &err, "/proc/<pid>/stat");
        break;
    }
    }
    free(p);
    return 0;
}
