/*
 * Parsers and delta math for the Linux /proc telemetry that `sparkbench sysmon` samples every 200
 * ms: /proc/stat (CPU jiffies), /proc/meminfo, /proc/pressure/{cpu,memory,io} (PSI) and
 * /proc/diskstats, plus the iostat -x and mpstat arithmetic over two samples, block-device
 * resolution through sysfs (which disk holds a path), and the per-process /proc/<pid>/io and
 * /proc/<pid>/stat that the proc source reads.
 *
 * The parsers do no I/O: the caller reads the file (procfs reports size 0, so read until EOF) and
 * hands over the bytes. The buffer need not be NUL-terminated and is never read past len. Every
 * number is checked (digits only, no sign, no overflow); lines may end in trailing blanks or '\r',
 * blank lines are skipped. A malformed line is an error whose message names the file and the
 * 1-based line number: "cannot parse '/proc/diskstats' line 3: expected 14, 18 or 20 fields, got
 * 9". All functions that can fail return 0 or -1 and fill a caller's struct sb_err (may be NULL).
 *
 * Cost: each parser makes one pass over the text plus one cheap line count, and at most one
 * allocation per output array per call, never one per line.
 */
#ifndef SB_PROCFS_H
#define SB_PROCFS_H

#include <stdbool.h>
#include <stddef.h>

#include "sb/err.h"

/* ---- /proc/stat ------------------------------------------------------------------------------ */

/*
 * Cumulative CPU time in jiffies (USER_HZ, normally 1/100 s) since boot. user and nice already
 * include guest and guest_nice (the kernel counts guest time twice). Fields the running kernel
 * does not print (iowait..softirq before 2.6, steal before 2.6.11, guest before 2.6.24, guest_nice
 * before 2.6.33) are 0.
 */
struct sb_cpu_times {
    unsigned long long user, nice, system, idle, iowait, irq, softirq, steal, guest, guest_nice;
};

/*
 * One parsed /proc/stat. cpus[i] holds the line "cpu<ids[i]>": offline CPUs are absent from the
 * file, so the numbers can have gaps (cpu0, cpu2, cpu3); they are strictly increasing. cpus and ids
 * are malloc'ed by sb_procstat_parse() (NULL when ncpus is 0) and freed by sb_procstat_release().
 */
struct sb_proc_stat {
    struct sb_cpu_times all; /* the aggregate "cpu" line */
    struct sb_cpu_times *cpus;
    int *ids;
    int ncpus;
};

/*
 * Parses /proc/stat text. Reads the aggregate "cpu" line (required, once) and every "cpuN" line;
 * other lines (intr, ctxt, btime, softirq ...) are skipped unchecked. A cpu line needs at least the
 * 4 fields of 2.4 kernels; numeric fields beyond the 10 known ones (a future kernel) are checked
 * and ignored. *out is overwritten (it need not be initialised); on success the caller releases it
 * with sb_procstat_release(); on failure it holds nothing (releasing it is harmless).
 */
int sb_procstat_parse(const char *text, size_t len, struct sb_proc_stat *out, struct sb_err *err);

/* Frees the arrays of s and zeroes it. s may be NULL or already released. */
void sb_procstat_release(struct sb_proc_stat *s);

/*
 * Share of all CPU time between two samples, in percent. user and nice exclude guest and
 * guest_nice, which have their own fields (as mpstat's %usr, %nice, %guest, %gnice), so the ten
 * fields add up to 100 -- or are all 0 when no time passed.
 */
struct sb_cpu_pct {
    double user, nice, system, iowait, irq, softirq, steal, idle, guest, guest_nice;
};

/*
 * Fills out from the earlier sample a and the later sample b (both not NULL). Each field's delta
 * is taken separately and a delta that went backwards (a CPU coming back online restarts idle and
 * iowait from 0; counter reset) counts as 0; user-guest and nice-guest_nice saturate at 0 when a
 * sample shows more guest than user time. The total is the sum of those clamped deltas, which
 * equals mpstat's interval whenever no counter went backwards. A total of 0 gives all 0.
 */
void sb_cpu_pct(const struct sb_cpu_times *a, const struct sb_cpu_times *b, struct sb_cpu_pct *out);

/* ---- /proc/meminfo --------------------------------------------------------------------------- */

/* Selected /proc/meminfo values in bytes (the file says kB, meaning KiB). -1 when the key is absent
 * (MemAvailable appeared in 3.14, Shmem in 2.6.32). */
struct sb_meminfo {
    long long mem_total, mem_free, mem_available, buffers, cached, dirty, writeback, swap_total,
        swap_free, shmem;
};

/*
 * Parses /proc/meminfo text. Every line must read "Key: <number>" with an optional " kB" unit;
 * unknown keys are accepted (their number is still checked). The known keys must carry "kB" and
 * appear at most once. Empty text is an error. *out is overwritten.
 */
int sb_meminfo_parse(const char *text, size_t len, struct sb_meminfo *out, struct sb_err *err);

/* ---- /proc/pressure/{cpu,memory,io} ---------------------------------------------------------- */

/* One PSI line: averages in percent (0-100) over 10, 60 and 300 s, and the stall total in us. */
struct sb_psi_line {
    bool present; /* the line was in the file; all other fields 0 otherwise */
    double avg10, avg60, avg300;
    unsigned long long total_us;
};

/* A PSI file: "some" is always there, "full" is missing from /proc/pressure/cpu before 5.13. */
struct sb_psi {
    struct sb_psi_line some, full;
};

/*
 * Parses one PSI file. Each line is "some|full" followed by key=value pairs; avg10, avg60, avg300
 * and total are required, unknown keys are accepted if they look like key=value. A missing "some"
 * line, a repeated line, or an average outside 0-100 is an error. *out is overwritten.
 */
int sb_psi_parse(const char *text, size_t len, struct sb_psi *out, struct sb_err *err);

/* ---- /proc/diskstats ------------------------------------------------------------------------- */

/*
 * One /proc/diskstats line. Field numbers below are those of the kernel's
 * Documentation/admin-guide/iostats.rst (f1 follows the name). Time fields are milliseconds and
 * are 32-bit in the kernel (they wrap after ~49.7 days); the others are unsigned long (32-bit on
 * 32-bit kernels). Sectors are 512 bytes whatever the device's sector size.
 */
struct sb_disk_counters {
    char name[32]; /* as in the file: "nvme0n1", "sda3", "dm-0" */
    unsigned major, minor;
    unsigned long long rd_ios, rd_merges, rd_sectors, rd_ticks; /* f1-f4 */
    unsigned long long wr_ios, wr_merges, wr_sectors, wr_ticks; /* f5-f8 */
    unsigned long long in_flight;                               /* f9, a level, not cumulative */
    unsigned long long io_ticks;                                /* f10, ms with I/O in flight */
    unsigned long long time_in_queue;                           /* f11, weighted ms */
    unsigned long long dc_ios, dc_merges, dc_sectors, dc_ticks; /* f12-f15 (4.18+), else 0 */
    unsigned long long fl_ios, fl_ticks;                        /* f16-f17 (5.5+), else 0 */
    int nfields; /* fields on the line counting major, minor and name: 14, 18 or 20 */
};

/*
 * Parses the whole of /proc/diskstats, one entry per line, in file order. Each line must have
 * 14 (before 4.18), 18 (discards) or 20 (flushes, 5.5+) fields; the 7-field partition lines of
 * 2.6.24 and older are rejected, as are names of 32 bytes or more. On success *out is one
 * malloc'ed array of *n entries that the caller frees (NULL with *n 0 for a file without lines);
 * on failure *out is NULL, *n is 0, and the message names the line.
 */
int sb_diskstats_parse(const char *text, size_t len, struct sb_disk_counters **out, size_t *n,
                       struct sb_err *err);

/* The entry named name in v[0..n), or NULL. The result points into v. */
const struct sb_disk_counters *sb_diskstats_find(const struct sb_disk_counters *v, size_t n,
                                                 const char *name);

/*
 * Delta of one cumulative counter from the earlier value a to the later value b. Counters only go
 * up, so b < a means a wrap or a reset: when a is within 2^20 of 2^32 (a >= 2^32 - 2^20, a < 2^32)
 * and b < 2^20, it is taken as a 32-bit wrap (the kernel's 32-bit ms fields, or any counter on a
 * 32-bit kernel) and the delta is 2^32 - a + b; any other decrease is clamped to 0.
 */
unsigned long long sb_procfs_delta(unsigned long long a, unsigned long long b);

/*
 * iostat -x figures over an interval; MB is 2^20 bytes, kB 2^10, as iostat prints them.
 * The d* fields are the discard columns and f* the flush columns of newer iostat (0 when the
 * lines have no such fields).
 */
struct sb_disk_rates {
    double rps, wps;                 /* r/s, w/s: completed I/Os per second */
    double rmbs, wmbs;               /* rMB/s, wMB/s */
    double r_await_ms, w_await_ms;   /* mean time per completed I/O, queue included */
    double rareq_sz_kb, wareq_sz_kb; /* mean size of a completed I/O */
    double aqu_sz;                   /* mean queue length (time_in_queue / elapsed) */
    double util_pct;                 /* share of time with I/O in flight (not capped at 100) */
    double rrqm_s, wrqm_s;           /* merges per second */
    double dps, dmbs, d_await_ms, dareq_sz_kb, drqm_s; /* discards */
    double fps, f_await_ms;                            /* flushes */
};

/*
 * Computes iostat -x semantics from the earlier counters a and the later b of one device, dt_s
 * seconds apart (every delta through sb_procfs_delta()):
 *   r/s = df1/dt   rrqm/s = df2/dt   rMB/s = df3/2048/dt   r_await = df4/df1 ms
 *   rareq-sz = df3/df1/2 kB   aqu-sz = df11/(dt*1000)   %util = df10/(dt*1000)*100
 * and likewise w_* from f5-f8, d_* from f12-f15, f/s and f_await from f16-f17. An await or request
 * size is 0 when no I/O of its kind completed. dt_s <= 0 (or not a number) gives all 0.
 */
void sb_disk_rates(const struct sb_disk_counters *a, const struct sb_disk_counters *b, double dt_s,
                   struct sb_disk_rates *out);

/* ---- block devices through sysfs ------------------------------------------------------------- */

/*
 * Writes to out (cap bytes, NUL-terminated) the whole-disk name, as /proc/diskstats spells it, of
 * the block device major:minor, looked up through <sysfs_root>/dev/block/MAJ:MIN (sysfs_root is
 * normally "/sys"; tests pass a fake tree). A partition (its sysfs directory has a 'partition'
 * file) resolves to its parent: nvme0n1p2 -> nvme0n1, vda1 -> vda, sda3 -> sda; a whole disk or a
 * device-mapper node (dm-0) stays itself. sysfs's '!' becomes '/' (cciss!c0d0 -> cciss/c0d0).
 * Fails for major 0 (tmpfs, overlay, proc, btrfs subvolumes: no block device behind st_dev), an
 * unknown device, or a name that does not fit.
 */
int sb_blockdev_of_devt(const char *sysfs_root, unsigned major, unsigned minor, char *out,
                        size_t cap, struct sb_err *err);

/* Like sb_blockdev_of_devt() for the device holding path (stat(2)'s st_dev). */
int sb_blockdev_of_path(const char *sysfs_root, const char *path, char *out, size_t cap,
                        struct sb_err *err);

/*
 * The comma-separated disks `run --sysmon` watches, into out (cap bytes): the disk holding the KV
 * tier-2 path first, since the first disk is sysmon's "nvme" (NVMe r/s, rMB/s and r_await for H2,
 * H4, H7 and H8), then the run directory's when it is another; either may be NULL or "". -1 (out
 * empty) when the list does not fit.
 */
int sb_sysmon_disk_list(const char *tier2_dev, const char *run_dev, char *out, size_t cap);

/* ---- /proc/<pid>/io and /proc/<pid>/stat ----------------------------------------------------- */

/*
 * A process's I/O counters (/proc/<pid>/io, bytes since it started, all threads together).
 * rchar/wchar count every read()/write()-like call, page cache hits included; read_bytes and
 * write_bytes count what the process caused to be fetched from or sent to storage (write_bytes
 * at the moment a page is dirtied, so a later truncate shows up in cancelled_write_bytes). syscr
 * and syscw are 0 when the file lacks them.
 */
struct sb_pid_io {
    unsigned long long rchar, wchar, syscr, syscw, read_bytes, write_bytes, cancelled_write_bytes;
};

/*
 * Parses /proc/<pid>/io text: lines "key: <number>"; rchar, wchar, read_bytes, write_bytes and
 * cancelled_write_bytes are required (each at most once), unknown keys are accepted (their number
 * is still checked). *out is overwritten.
 */
int sb_pid_io_parse(const char *text, size_t len, struct sb_pid_io *out, struct sb_err *err);

/*
 * The fields of /proc/<pid>/stat that sysmon uses (proc(5) numbering in the comments). Times are
 * clock ticks (sysconf(_SC_CLK_TCK), normally 100 a second).
 */
struct sb_pid_stat {
    unsigned long long pid;          /* (1) */
    char comm[64];                   /* (2) without its parentheses, cut to 63 bytes */
    char state;                      /* (3) R, S, D, Z, ... */
    unsigned long long utime, stime; /* (14), (15): this process's threads, children excluded */
    unsigned long long num_threads;  /* (20) */
    unsigned long long starttime;    /* (22) ticks after boot: with pid, names one process */
    unsigned long long rss_pages;    /* (24) resident pages (sysconf(_SC_PAGESIZE) bytes each) */
};

/*
 * Parses /proc/<pid>/stat text: "pid (comm) state f4 f5 ...". comm may hold anything a process
 * can name itself, blanks, parentheses and newlines included, so it runs from the first '(' to
 * the LAST ')' of the text. At least the fields up to rss (24) are required; every field after
 * comm is checked to be an integer (a '-' is allowed: tpgid, priority and nice can be negative),
 * and the ones kept must not be negative. *out is overwritten.
 */
int sb_pid_stat_parse(const char *text, size_t len, struct sb_pid_stat *out, struct sb_err *err);

#endif
