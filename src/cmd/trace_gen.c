/*
 * `sparkbench trace-gen --out FILE [options]`: writes a synthetic request trace in the Mooncake
 * format that `run --workload trace` replays (sb/trace.h), for sweeps the real traces cannot give:
 * a chosen arrival rate, prefix popularity and reuse distance.
 *
 * The model, request by request (everything drawn from one generator seeded by --seed, so a seed
 * gives the same bytes):
 *   - arrivals are Poisson at --rate (exponential gaps), timestamps in whole ms;
 *   - with probability --reuse-prob the request continues an earlier one: a distance d is drawn
 *     from --reuse-distance (tokens), and the request continues the latest one that had at least
 *     d input tokens sent after it (none that old: a fresh request). It keeps that request's whole
 *     blocks (its prefix included) and adds new blocks of --input-tokens new tokens; a
 *     continuation over --max-input-tokens starts fresh instead;
 *   - a fresh request starts with one of --prefixes shared prefixes of --prefix-tokens tokens,
 *     picked by Zipf(--prefix-zipf) popularity (prefix k with weight 1 / (k + 1)^s), then
 *     --input-tokens new tokens;
 *   - --output-tokens sets output_length.
 * New blocks get new ids; the ids of a block are the same wherever its prefix is, so equal ids
 * mean a reusable prefix, as in Mooncake's traces. The file is parsed back before it is written
 * (the same checks as a replay) and a summary with the trace's own oracle goes to stderr.
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/buf.h"
#include "sb/cmd.h"
#include "sb/opt.h"
#include "sb/trace.h"
#include "sb/util.h"

struct gen_opts {
    char *out, *input_tokens, *output_tokens, *reuse_distance;
    long long requests, prefixes, prefix_tokens, block_tokens, max_input_tokens, seed;
    double duration_s, rate, prefix_zipf, reuse_prob;
};

#define O(f) offsetof(struct gen_opts, f)
static const struct sb_opt gen_options[] = {
    {.flag = "out",
     .type = SB_OPT_STR,
     .offset = O(out),
     .argname = "FILE",
     .help = "the trace to write ('-': standard output)"},
    {.flag = "requests",
     .type = SB_OPT_INT,
     .offset = O(requests),
     .def = "1000",
     .min = 1,
     .max = 100000000,
     .argname = "N",
     .help = "requests to write"},
    {.flag = "duration-s",
     .type = SB_OPT_DOUBLE,
     .offset = O(duration_s),
     .def = "0",
     .min = 0,
     .max = 1e9,
     .argname = "S",
     .help = "stop before the first arrival at or after S seconds (0: --requests alone)"},
    {.flag = "rate",
     .type = SB_OPT_DOUBLE,
     .offset = O(rate),
     .def = "1",
     .min = 1e-6,
     .max = 1e6,
     .argname = "R",
     .help = "Poisson arrivals per second"},
    {.flag = "input-tokens",
     .type = SB_OPT_STR,
     .offset = O(input_tokens),
     .def = "lognormal:2048:1024",
     .argname = "DIST",
     .help = "new prompt tokens of each request (beyond its shared or continued prefix): N, "
             "uniform:A:B, lognormal:MEAN:SD or exp:MEAN"},
    {.flag = "output-tokens",
     .type = SB_OPT_STR,
     .offset = O(output_tokens),
     .def = "lognormal:256:128",
     .argname = "DIST",
     .help = "output_length (same forms)"},
    {.flag = "prefixes",
     .type = SB_OPT_INT,
     .offset = O(prefixes),
     .def = "8",
     .min = 0,
     .max = 10000000,
     .argname = "K",
     .help = "shared prefixes (system prompts) a fresh request starts with (0: none)"},
    {.flag = "prefix-tokens",
     .type = SB_OPT_INT,
     .offset = O(prefix_tokens),
     .def = "1024",
     .min = 0,
     .max = 10000000,
     .argname = "N",
     .help = "tokens of each shared prefix, whole blocks (a multiple of --block-tokens)"},
    {.flag = "prefix-zipf",
     .type = SB_OPT_DOUBLE,
     .offset = O(prefix_zipf),
     .def = "1",
     .min = 0,
     .max = 100,
     .argname = "S",
     .help = "popularity of the prefixes: prefix k (0-based) has weight 1 / (k + 1)^S (0: "
             "uniform)"},
    {.flag = "reuse-prob",
     .type = SB_OPT_DOUBLE,
     .offset = O(reuse_prob),
     .def = "0.5",
     .min = 0,
     .max = 1,
     .argname = "P",
     .help = "chance that a request continues an earlier one (a conversation's next turn)"},
    {.flag = "reuse-distance",
     .type = SB_OPT_STR,
     .offset = O(reuse_distance),
     .def = "exp:100000",
     .argname = "DIST",
     .help = "tokens of other requests between a continued request and its continuation (same "
             "forms as --input-tokens)"},
    {.flag = "max-input-tokens",
     .type = SB_OPT_INT,
     .offset = O(max_input_tokens),
     .def = "126976",
     .min = 1,
     .max = 100000000,
     .argname = "N",
     .help = "a continuation longer than this starts a fresh request instead"},
    {.flag = "block-tokens",
     .type = SB_OPT_INT,
     .offset = O(block_tokens),
     .def = "512",
     .min = 1,
     .max = 1000000,
     .argname = "N",
     .help = "tokens per hash id (Mooncake: 512)"},
    {.flag = "seed",
     .type = SB_OPT_INT,
     .offset = O(seed),
     .def = "42",
     .min = 0,
     .max = 9007199254740991.0,
     .argname = "S",
     .help = "seed: the same options and seed give the same file"},
};
#define NOPTS (sizeof(gen_options) / sizeof(gen_options[0]))

static void usage(FILE *f)
{
    fputs("usage: sparkbench trace-gen --out FILE [options]\n\n"
          "Writes a synthetic request trace in the Mooncake format (timestamp ms, input_length,\n"
          "output_length, hash_ids of --block-tokens blocks) for `run --workload trace`: Poisson\n"
          "arrivals at --rate, fresh requests on Zipf-popular shared prefixes, and continuations\n"
          "of earlier requests at a drawn reuse distance. The file is checked by parsing it back;\n"
          "a summary with its own oracle (prefix hit ratio of an unbounded cache) goes to stderr.\n"
          "Exit status: 0; 1 when the file cannot be written; 2 for usage.\n\n"
          "options:\n",
          f);
    sb_opt_print_help(gen_options, NOPTS, f);
}

/* A length distribution: a constant, uniform:A:B, lognormal:MEAN:SD or exp:MEAN. */
struct dist {
    enum { D_CONST, D_UNIFORM, D_LOGNORMAL, D_EXP } kind;
    double a, b; /* const: a; uniform: [a, b]; lognormal: mu, sigma of the log; exp: mean */
};

static int parse_dist(const char *s, const char *flag, struct dist *d, char *msg, size_t cap)
{
    double x, y;
    char tail;
    if (sscanf(s, "uniform:%lf:%lf%c", &x, &y, &tail) == 2 && x >= 0 && y >= x) {
        *d = (struct dist){D_UNIFORM, x, y};
    } else if (sscanf(s, "lognormal:%lf:%lf%c", &x, &y, &tail) == 2 && x > 0 && y >= 0) {
        double s2 = log(1 + (y * y) / (x * x)); /* the mean and sd of the value itself */
        *d = (struct dist){D_LOGNORMAL, log(x) - s2 / 2, sqrt(s2)};
    } else if (sscanf(s, "exp:%lf%c", &x, &tail) == 1 && x > 0) {
        *d = (struct dist){D_EXP, x, 0};
    } else if (sb_parse_double(s, &x) == 0 && x >= 0) {
        *d = (struct dist){D_CONST, x, 0};
    } else {
        snprintf(msg, cap,
                 "--%s '%s': want N, uniform:A:B (0 <= A <= B), lognormal:MEAN:SD or exp:MEAN",
                 flag, s);
        return -1;
    }
    return 0;
}

static double draw(const struct dist *d, struct sb_rng *r)
{
    switch (d->kind) {
    case D_CONST:
        return d->a;
    case D_UNIFORM:
        return d->a + floor(sb_rng_uniform(r) * (d->b - d->a + 1));
    case D_LOGNORMAL: {
        double u1 = 1.0 - sb_rng_uniform(r), u2 = sb_rng_uniform(r);
        double z = sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
        return exp(d->a + d->b * z);
    }
    case D_EXP:
        return -d->a * log(1.0 - sb_rng_uniform(r));
    }
    return 0;
}

static long long draw_len(const struct dist *d, struct sb_rng *r, long long min)
{
    double v = llround(draw(d, r));
    return v < (double)min ? min : (long long)v;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

struct gen_req {
    long long input;
    size_t first_id, nids;
};

int cmd_trace_gen(int argc, char **argv)
{
    struct gen_opts o = {0};
    struct sb_opt_result res;
    int rc = 2;
    struct sb_buf text;
    sb_buf_init(&text, SIZE_MAX);
    struct gen_req *req = NULL;
    uint64_t *ids = NULL;
    long long *cum = NULL;
    double *zipf = NULL;
    size_t nids = 0, cap_ids = 0;
    if (sb_cmd_parse("trace-gen", gen_options, NOPTS, &o, argc, argv, usage, &res, &rc) != 0)
        goto out;
    char msg[512];
    struct dist din, dout, ddist;
    if (!o.out || !*o.out) {
        rc = sb_usage_error("trace-gen", "missing --out FILE");
        goto out;
    }
    if (parse_dist(o.input_tokens, "input-tokens", &din, msg, sizeof(msg)) != 0 ||
        parse_dist(o.output_tokens, "output-tokens", &dout, msg, sizeof(msg)) != 0 ||
        parse_dist(o.reuse_distance, "reuse-distance", &ddist, msg, sizeof(msg)) != 0) {
        rc = sb_usage_error("trace-gen", msg);
        goto out;
    }
    if (o.prefix_tokens % o.block_tokens != 0) {
        snprintf(msg, sizeof(msg), "--prefix-tokens %lld is not a multiple of --block-tokens %lld",
                 o.prefix_tokens, o.block_tokens);
        rc = sb_usage_error("trace-gen", msg);
        goto out;
    }
    rc = 1;
    size_t n = (size_t)o.requests;
    req = calloc(n, sizeof(*req));
    cum = calloc(n + 1, sizeof(*cum));
    long long pblocks = o.prefixes > 0 ? o.prefix_tokens / o.block_tokens : 0;
    size_t nprefix = pblocks > 0 ? (size_t)o.prefixes : 0;
    zipf = calloc(nprefix + 1, sizeof(double));
    cap_ids = 65536; /* allocated before the loop: every request has at least one block */
    ids = malloc(cap_ids * sizeof(*ids));
    if (!req || !cum || !zipf || !ids)
        goto oom;
    for (size_t k = 0; k < nprefix; k++) /* cumulative weights */
        zipf[k + 1] = zipf[k] + pow((double)k + 1, -o.prefix_zipf);
    uint64_t next_id = nprefix * (uint64_t)pblocks; /* prefix k's blocks: k * pblocks + j */
    struct sb_rng rng;
    sb_rng_seed(&rng, (uint64_t)o.seed ^ 0x7ace9e11ull);
    double t_ms = 0;
    size_t i = 0;
    for (; i < n; i++) {
        if (i > 0)
            t_ms += -log(1.0 - sb_rng_uniform(&rng)) / o.rate * 1000.0;
        double ts = floor(t_ms);
        if (o.duration_s > 0 && ts >= o.duration_s * 1000)
            break;
        long long fresh_new = draw_len(&din, &rng, 1);
        long long out_len = draw_len(&dout, &rng, 1);
        /* the parent of a continuation, if any: the latest j with cum[i] - cum[j + 1] >= d */
        long long parent = -1;
        if (i > 0 && sb_rng_uniform(&rng) < o.reuse_prob) {
            double d = draw(&ddist, &rng);
            size_t lo = 0, hi = i; /* find the largest j < i with cum[j + 1] <= cum[i] - d */
            while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                if ((double)cum[mid + 1] <= (double)cum[i] - d)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            if (lo > 0)
                parent = (long long)lo - 1;
        }
        size_t keep = 0; /* whole blocks taken from the parent */
        if (parent >= 0) {
            keep = (size_t)(req[parent].input / o.block_tokens);
            if ((long long)keep * o.block_tokens + fresh_new > o.max_input_tokens || keep == 0)
                parent = -1, keep = 0;
        }
        size_t pk = 0;
        if (parent < 0 && nprefix > 0) { /* Zipf: inverse of the cumulative weights */
            double u = sb_rng_uniform(&rng) * zipf[nprefix];
            size_t lo = 0, hi = nprefix - 1;
            while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                if (zipf[mid + 1] > u)
                    hi = mid;
                else
                    lo = mid + 1;
            }
            pk = lo;
        }
        long long head = parent >= 0 ? (long long)keep * o.block_tokens : pblocks * o.block_tokens;
        long long input = head + fresh_new;
        size_t nb = (size_t)((input + o.block_tokens - 1) / o.block_tokens);
        if (nids + nb > cap_ids) {
            size_t nc = cap_ids * 2;
            while (nc < nids + nb)
                nc *= 2;
            uint64_t *ni = realloc(ids, nc * sizeof(*ni));
            if (!ni)
                goto oom;
            ids = ni;
            cap_ids = nc;
        }
        req[i] = (struct gen_req){input, nids, nb};
        size_t j = 0;
        if (parent >= 0)
            for (; j < keep; j++)
                /* the parent wrote its nb >= keep ids in its own iteration; clang's analyzer
                   does not follow that across iterations of this loop */
                // NOLINTNEXTLINE(clang-analyzer-core.uninitialized.Assign)
                ids[nids + j] = ids[req[parent].first_id + j];
        else
            for (; j < (size_t)pblocks; j++)
                ids[nids + j] = (uint64_t)pk * (uint64_t)pblocks + j;
        for (; j < nb; j++)
            ids[nids + j] = next_id++;
        nids += nb;
        cum[i + 1] = cum[i] + input;
        int e = sb_buf_addf(&text,
                            "{\"timestamp\": %.0f, \"input_length\": %lld, "
                            "\"output_length\": %lld, \"hash_ids\": [",
                            ts, input, out_len);
        for (j = 0; j < nb; j++)
            e |= sb_buf_addf(&text, "%s%llu", j ? ", " : "",
                             (unsigned long long)ids[req[i].first_id + j]);
        e |= sb_buf_adds(&text, "]}\n");
        if (e)
            goto oom;
    }
    /* Parsed back with the replay's own checks, and its oracle for the summary. */
    struct sb_trace t;
    struct sb_err err;
    if (sb_trace_parse(text.data ? text.data : "", text.len, o.out, o.block_tokens, &t, &err) !=
        0) {
        fprintf(stderr, "sparkbench trace-gen: the generated trace does not parse back: %s\n",
                err.msg);
        goto out;
    }
    long long continued = 0;
    double *dist = malloc((t.n + 1) * sizeof(double));
    size_t nd = 0;
    for (size_t k = 0; k < t.n && dist; k++) {
        continued += t.req[k].reusable_tokens > pblocks * o.block_tokens;
        if (t.req[k].reuse_distance >= 0)
            dist[nd++] = (double)t.req[k].reuse_distance;
    }
    double med = NAN;
    if (dist && nd) {
        qsort(dist, nd, sizeof(double), cmp_double);
        med = dist[nd / 2];
    }
    free(dist);
    double span = t.n ? t.req[t.n - 1].ts_ms / 1000.0 : 0;
    fprintf(stderr,
            "sparkbench trace-gen: %zu requests over %.1f s (%.2f/s), %lld input tokens, oracle "
            "prefix hits %.1f %% (unbounded cache), %lld continuations, median reuse distance "
            "%.0f tokens\n",
            t.n, span, span > 0 ? (double)(t.n - 1) / span : NAN, t.input_tokens,
            t.input_tokens ? 100.0 * (double)t.oracle_hit_tokens / (double)t.input_tokens : 0.0,
            continued, med);
    sb_trace_release(&t);
    if (strcmp(o.out, "-") == 0) {
        if (fwrite(text.data, 1, text.len, stdout) != text.len || fflush(stdout) != 0) {
            fprintf(stderr, "sparkbench trace-gen: cannot write standard output\n");
            goto out;
        }
    } else if (sb_write_file_atomic(o.out, text.data, text.len, &err) != 0) {
        fprintf(stderr, "sparkbench trace-gen: %s\n", err.msg);
        goto out;
    }
    rc = 0;
    goto out;
oom:
    fprintf(stderr, "sparkbench trace-gen: out of memory\n");
out:
    free(req);
    free(ids);
    free(cum);
    free(zipf);
    sb_buf_release(&text);
    sb_opt_release(gen_options, NOPTS, &o);
    free(res.positional);
    return rc;
}
