/*
 * Prometheus text exposition format 0.0.4: a push parser over a whole page held in memory, and a
 * snapshot of one page kept for lookups (sums over label filters, first-of-names, histogram
 * buckets and quantiles over the delta between two scrapes). No I/O here: the scraper fetches
 * the page and hands the bytes over.
 *
 * Grammar accepted (Prometheus docs "Exposition formats", and expfmt's text_parse.go where the
 * docs are silent): lines end in LF (a CR before the LF is tolerated); blank lines are ignored;
 * blanks (space, tab) may lead a line and separate tokens, including around '{', '=', ',', '}';
 * "# HELP name text" (escapes \\ and \n), "# TYPE name counter|gauge|histogram|summary|untyped"
 * (at most one of each per name), any other '#' line is a comment; a sample is
 *   name [ '{' [ label '=' '"' value '"' { ',' label '=' '"' value '"' } [ ',' ] ] '}' ]
 *        value [ timestamp ]
 * with names [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]*, label values with the
 * escapes \\, \" and \n, values as Go's ParseFloat reads them (NaN, +Inf, -Inf, Inf, exponents),
 * timestamps as signed 64-bit milliseconds. A page without a final newline is fine.
 */
#ifndef SB_PROM_H
#define SB_PROM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sb/buf.h"
#include "sb/err.h"

/* More labels than this on one sample makes that line bad. */
#define SB_PROM_MAX_LABELS 64
/* A line longer than this (bytes, without its newline) is bad: it bounds the unescape scratch. */
#define SB_PROM_LINE_MAX (1u << 20)
/* Distinct bucket bounds one struct sb_prom_histogram holds. */
#define SB_PROM_MAX_BUCKETS 128

/* One label of a sample. Not NUL-terminated; value is unescaped. */
struct sb_prom_label {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

/*
 * One sample as the parser hands it to the callback. name, labels and the strings they point to
 * are borrowed: valid only until the callback returns (they point into the page or into the
 * parser's scratch) and are not NUL-terminated. type is a static string, valid forever.
 */
struct sb_prom_sample {
    const char *name; /* full sample name, e.g. "x_bucket" */
    size_t name_len;
    const struct sb_prom_label *labels; /* in page order */
    size_t nlabels;
    double value; /* NaN, +Inf, -Inf supported */
    bool has_timestamp;
    int64_t timestamp_ms;
    /*
     * TYPE of the family this sample belongs to: "counter", "gauge", "histogram", "summary" or
     * "untyped". A TYPE line for the exact name wins; otherwise x_bucket (histogram), x_sum and
     * x_count (histogram or summary), x_created (histogram, summary or counter) and x_total
     * (counter) resolve to the TYPE of x; anything else is "untyped".
     */
    const char *type;
};

/* Called once per sample. Returns 0 to go on; any other value stops the parse and is returned
 * by it (use positive values, so they cannot be mistaken for -1). */
typedef int (*sb_prom_cb)(const struct sb_prom_sample *s, void *arg);

/* Called once per "# HELP" line with the metric name and its unescaped docstring (both borrowed
 * like a sample's strings). Same return convention as sb_prom_cb. */
typedef int (*sb_prom_help_cb)(const char *name, size_t name_len, const char *help, size_t help_len,
                               void *arg);

/*
 * Parses a whole exposition text[0..len) (need not be NUL-terminated) and calls cb (may be NULL)
 * for each sample in page order. Returns 0; -1 with err saying "cannot parse prometheus text line
 * N: <problem>" on the first bad line in strict mode (lenient false), or when memory runs out in
 * either mode; or the callback's non-zero return. In lenient mode a bad line is skipped and
 * counted in *bad_lines (may be NULL; set in both modes), and err (may be NULL) describes the
 * first skipped line with err->code left 0. No allocation per sample: one block per call holds
 * the parser state (labels array reused line to line, family table for 128 TYPE/HELP names);
 * more names double the table, and the first escaped label value or HELP text on a line sizes
 * an unescape scratch to that line.
 */
int sb_prom_parse(const char *text, size_t len, bool lenient, sb_prom_cb cb, void *arg,
                  size_t *bad_lines, struct sb_err *err);

/* sb_prom_parse() that also reports HELP lines to help_cb (may be NULL). */
int sb_prom_parse_full(const char *text, size_t len, bool lenient, sb_prom_cb cb,
                       sb_prom_help_cb help_cb, void *arg, size_t *bad_lines, struct sb_err *err);

/*
 * Reads one sample value as the format writes it (Go ParseFloat syntax: decimal, exponent, NaN,
 * +Inf, -Inf, Inf; case-insensitive specials) from s[0..len). Also reads a bucket's le label.
 * Returns 0, or -1 when the bytes are not exactly one number (or overflow to infinity).
 */
int sb_prom_parse_value(const char *s, size_t len, double *out);

/* ---- snapshots ---- */

/* A parsed page kept for lookups: every sample with its labels, copied into one allocation. */
struct sb_prom_snapshot;

/*
 * Parses text leniently (bad lines skipped and counted) into a new snapshot that owns copies of
 * everything it keeps; the page may be freed afterwards. Returns 0 with *out set (free with
 * sb_prom_snapshot_free), or -1 with err when memory runs out.
 */
int sb_prom_snapshot_parse(struct sb_prom_snapshot **out, const char *text, size_t len,
                           struct sb_err *err);
/* Frees s (NULL is fine). */
void sb_prom_snapshot_free(struct sb_prom_snapshot *s);

/* Samples held and lines skipped as bad while parsing. */
size_t sb_prom_snapshot_count(const struct sb_prom_snapshot *s);
size_t sb_prom_snapshot_bad_lines(const struct sb_prom_snapshot *s);
/* The i-th sample in page order (i < count), valid until the snapshot is freed; its name and
 * label strings are NUL-terminated copies. */
const struct sb_prom_sample *sb_prom_snapshot_sample(const struct sb_prom_snapshot *s, size_t i);

/*
 * Sum of the values of all samples named exactly name whose labels include every given pair.
 * label_pairs holds 2 * npairs strings, name then value: {"model", "llama", "status", "ok"};
 * it may be NULL when npairs is 0. Returns false (and leaves *out alone) when no sample matched.
 */
bool sb_prom_snapshot_sum(const struct sb_prom_snapshot *s, const char *name,
                          const char *const *label_pairs, size_t npairs, double *out);

/*
 * For each of names in order, looks for a sample with that name; at the first name that has one,
 * stores the value of its first sample (page order) in *out and returns that names[i] pointer.
 * Returns NULL (and leaves *out alone) when none of the names appears. Made for renamed series:
 * {"kvbm_onboard_blocks_d2d", "dynamo_kvbm_onboard_blocks_d2d"}.
 */
const char *sb_prom_snapshot_first(const struct sb_prom_snapshot *s, const char *const *names,
                                   size_t nnames, double *out);

/* ---- histograms ---- */

/* One classic histogram bucket: upper bound and cumulative count ("le" and the _bucket value). */
struct sb_prom_bucket {
    double le;
    double count;
};

/* A histogram family summed over label sets: buckets by ascending le, counts cumulative. */
struct sb_prom_histogram {
    struct sb_prom_bucket buckets[SB_PROM_MAX_BUCKETS];
    size_t nbuckets; /* 0 when no <family>_bucket sample matched */
    double sum;      /* sum of matching <family>_sum samples, 0 when none */
    double count;    /* sum of matching <family>_count samples, 0 when none */
};

/*
 * Fills h with the buckets of family ("dynamo_frontend_time_to_first_token_seconds", without
 * _bucket) over every label set that includes the given pairs (as sb_prom_snapshot_sum), counts
 * of equal le summed, plus _sum and _count of the same
 * label sets. Summing label sets is only meaningful when they share one bucket layout (as PromQL's
 * sum by (le)). Returns 0 (h->nbuckets 0 when nothing matched), or -1 with err when a bucket has
 * no or an unreadable le label, or more than SB_PROM_MAX_BUCKETS distinct bounds.
 */
int sb_prom_snapshot_histogram(const struct sb_prom_snapshot *s, const char *family,
                               const char *const *label_pairs, size_t npairs,
                               struct sb_prom_histogram *h, struct sb_err *err);

/*
 * out = b - a bucket by bucket (matched on le; a bound missing from a counts 0), and likewise
 * _sum and _count. a may be NULL (out = b). When b's total is below a's the counters were reset
 * between the scrapes and out = b, as Prometheus' increase() does. out must not alias a or b.
 */
void sb_prom_histogram_delta(struct sb_prom_histogram *out, const struct sb_prom_histogram *a,
                             const struct sb_prom_histogram *b);

/*
 * The q-quantile of cumulative buckets (ascending le, the last one +Inf) by linear interpolation
 * inside the bucket that holds rank q * total, exactly as PromQL's histogram_quantile on classic
 * buckets: the lowest bucket starts at 0 (or returns its le when le <= 0), a rank in the +Inf
 * bucket returns the largest finite le, counts are made monotonic first; q = 0 gives the lower
 * bound of the first non-empty bucket. NaN when q is NaN, when
 * there are fewer than 2 buckets, the last is not +Inf, or no observations; -Inf for q < 0 and
 * +Inf for q > 1.
 */
double sb_prom_buckets_quantile(const struct sb_prom_bucket *buckets, size_t n, double q);

/*
 * Quantile q of family over the observations made between snapshots a and b (b's counts minus
 * a's, over all label sets; a may be NULL for "since the start"). NaN when the family is absent
 * from b, its buckets cannot be read, or no observations fell between the two.
 */
double sb_prom_histogram_quantile(const struct sb_prom_snapshot *a,
                                  const struct sb_prom_snapshot *b, const char *family, double q);
/* The same over only the label sets that include the given pairs (see sb_prom_snapshot_sum). */
double sb_prom_histogram_quantile_where(const struct sb_prom_snapshot *a,
                                        const struct sb_prom_snapshot *b, const char *family,
                                        const char *const *label_pairs, size_t npairs, double q);

/* ---- every series of a page, for sysmon's raw record ---- */

/*
 * The series of one page as keys "name{label=\"value\",...}" (the sample name and its labels in
 * page order, values escaped as the format writes them; a sample without labels is its bare
 * name) sorted bytewise, each with its value; a series met twice on a page keeps its last value.
 * keys holds the NUL-terminated keys back to back, off[i] where key i starts.
 */
struct sb_prom_series_set {
    char *keys;
    size_t *off;
    double *val;
    size_t n;
};

/* Builds set (released with sb_prom_series_set_release) from s. 0, or -1 with err (out of
 * memory). */
int sb_prom_series_set_build(struct sb_prom_series_set *set, const struct sb_prom_snapshot *s,
                             struct sb_err *err);
void sb_prom_series_set_release(struct sb_prom_series_set *set);

/*
 * Appends to out one JSON object {"key":value,...} of the series of cur whose value differs from
 * prev's (prev NULL: every series of cur), and "key":null for a series of prev that cur lacks.
 * Values are numbers (the shortest decimal that reads back exactly), or the strings "NaN",
 * "+Inf", "-Inf"; NaN on both sides is no change. *nchanged gets the number of members. 0, or
 * -1 when out refuses to grow.
 */
int sb_prom_series_diff_json(const struct sb_prom_series_set *prev,
                             const struct sb_prom_series_set *cur, struct sb_buf *out,
                             size_t *nchanged);

#endif
