/*
 * Small shared helpers: clocks, a seeded random generator, checked number parsing, hashing and
 * JSON string escaping. Nothing here allocates unless the name says so.
 */
#ifndef SB_UTIL_H
#define SB_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SB_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t sb_mono_ns(void);
/* CLOCK_REALTIME in nanoseconds since the epoch. */
uint64_t sb_real_ns(void);

/* splitmix64: a one-step mixer; also the seeding function of struct sb_rng. */
uint64_t sb_mix64(uint64_t x);

/* The first index of the nondecreasing cdf[0..n) (n > 0) whose value exceeds u, by bisection;
   n - 1 when none does. */
size_t sb_cdf_index(const double *cdf, size_t n, double u);

/* xoshiro256** generator: deterministic from its seed, cheap, not for cryptography. */
struct sb_rng {
    uint64_t s[4];
};
void sb_rng_seed(struct sb_rng *r, uint64_t seed);
uint64_t sb_rng_next(struct sb_rng *r);
/* Uniform double in [0, 1). */
double sb_rng_uniform(struct sb_rng *r);
/* Uniform integer in [0, n) (n > 0). */
uint64_t sb_rng_below(struct sb_rng *r, uint64_t n);

/* FNV-1a 64-bit hash of a byte range. */
uint64_t sb_hash64(const void *data, size_t len, uint64_t seed);

/* Checked parsing: whole string must be consumed, range-checked. Return 0 or -1. */
int sb_parse_ll(const char *s, long long *out);
int sb_parse_double(const char *s, double *out);
int sb_parse_bool(const char *s, bool *out);
/* Byte sizes with optional suffix: 512, 4k, 8KiB, 1.5GB, 2GiB (k/M/G/T are powers of 1024). */
int sb_parse_size(const char *s, uint64_t *out);

/*
 * Appends s[0..len) to dst as the body of a JSON string (no surrounding quotes), escaping quotes,
 * backslashes and control characters. Bytes that are not UTF-8 (invalid, overlong, surrogate or
 * truncated sequences, as a server may send) become U+FFFD, one per maximal invalid subpart, so
 * the output is always valid UTF-8 JSON. Returns bytes written, or the bytes needed when dst is
 * NULL or too small (like snprintf); dst is always NUL-terminated when cap > 0.
 */
size_t sb_json_escape(char *dst, size_t cap, const char *s, size_t len);

/*
 * The length to keep of s[0..len) so that it is at most max bytes and does not end inside a
 * UTF-8 character: len when it fits, else max backed up to the start of the character that the
 * cut would split (bytes that are not UTF-8 are cut anywhere; the JSON writers replace them).
 */
size_t sb_utf8_truncate(const char *s, size_t len, size_t max);

/*
 * Copies src[0..len) (no NUL needed) into dst[cap] cut by sb_utf8_truncate to cap - 1 bytes, and
 * NUL-terminates. Every copy of outside text (a server's message, a config's label) into a
 * fixed-size field goes through here. Returns the bytes copied.
 */
size_t sb_utf8_copy(char *dst, size_t cap, const char *src, size_t len);

/* Raises the soft RLIMIT_NOFILE to the hard limit (thousands of sockets). Returns the new soft
 * limit. */
long sb_raise_nofile(void);

/*
 * Unix seconds from ISO-8601 as the Python harness wrote it:
 * YYYY-MM-DD[T ]HH:MM:SS[.fff...][Z|+HH:MM|-HH:MM|+HHMM]; no zone means UTC. The fraction is
 * appended as text to the integer seconds and read with strtod, so "...41.412Z" gives the same
 * double as the literal 1763202101.412. Returns 0, or -1 when s is anything else.
 */
int sb_parse_iso8601(const char *s, double *out);

struct sb_err;
/* mkdir -p: creates path and its missing parents (0755). Returns 0 when path is a directory
   afterwards, or -1 with err naming the component that could not be made. */
int sb_mkdir_p(const char *path, struct sb_err *err);

/*
 * Replaces path with data[0..len) atomically: writes "<path>.tmp.<pid>", fsyncs it, renames it
 * over path and fsyncs the directory. A reader sees the old content (or no file) or the new one,
 * never an empty or half-written file, even when the disk fills or the machine stops; on failure
 * the temporary file is removed and err names path ("cannot write '<path>': <strerror>").
 * Returns 0 or -1.
 */
int sb_write_file_atomic(const char *path, const char *data, size_t len, struct sb_err *err);

/* An option check (sb_opt's .check) for URLs and comma-separated lists of them: refuses one that
   carries credentials before its host ("http://user:key@host"), which would otherwise be copied
   into config.yaml, run.json, sysmon.jsonl and every message naming the URL. The error shows the
   URL with the credentials cut out. Returns 0 or -1. */
int sb_url_check_no_credentials(const char *value, struct sb_err *err);

/* Appends x to the growable array *v of *n values (capacity *cap, doubled as needed, from 1024).
   0, or -1 when memory runs out (the array is left as it was). */
int sb_doubles_push(double **v, size_t *n, size_t *cap, double x);

#endif
