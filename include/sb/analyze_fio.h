/*
 * The fio noisy neighbour of an H4 run (runs/_fio.sh writes <run dir>/fio.json with fio's
 * --output-format=json): what the neighbour did to the KV device while the run measured, read into
 * the run's summary beside the latencies it caused. fio's JSON (fio HOWTO "JSON output" and
 * stat.c's show_ddir_status_json): "jobs"[] each with "read" and "write" objects holding
 * "bw_bytes" (bytes/s), "iops", "total_ios" and "clat_ns" {"N", "percentile": {"99.000000": ns}}.
 */
#ifndef SB_ANALYZE_FIO_H
#define SB_ANALYZE_FIO_H

#include <stdbool.h>
#include <stddef.h>

/* One fio.json, summed over its jobs; NAN where fio said nothing. */
struct sb_fio_stats {
    bool present;                     /* a fio.json was read */
    size_t jobs;                      /* entries of "jobs" */
    double read_mbs, write_mbs;       /* sum of bw_bytes / 1e6 (MB/s, as nvme_rmbs) */
    double read_iops, write_iops;     /* sum of iops */
    double read_p99_ms, write_p99_ms; /* completion latency p99, the worst job's; NAN when that
                                         direction did no I/O */
};

/* Sets every number of s to NAN, present false, jobs 0. */
void sb_fio_stats_init(struct sb_fio_stats *s);

/*
 * Parses fio's JSON output text[0..len) into s. Lines before the first one opening with '{' are
 * skipped: fio writes notes such as "fio: terminating on signal 2" into --output ahead of the JSON
 * when it is stopped early. Returns 0, or -1 with why (cap bytes) saying what is wrong (not JSON,
 * torn, no "jobs"); s is then left as sb_fio_stats_init sets it. No I/O.
 */
int sb_fio_parse(const char *text, size_t len, struct sb_fio_stats *s, char *why, size_t cap);

#endif
