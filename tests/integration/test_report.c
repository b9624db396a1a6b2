/*
 * Integration test for analyze's report: a full set of runs built in memory (an H0 sweep with a
 * known knee, H1, H2A and H2B context sweeps with H7 ticks, H4A/H4B fio profiles, H5, H6, H8A/B)
 * goes through sb_analyze_outputs() with the real gnuplot, and report.html is opened in headless
 * Chromium: every figure kind's script must render without a warning, the page's screenshot must
 * be a PNG that is not blank (decoded with zlib), and a copy of the page with a small script
 * added must report every embedded image loaded, as many as there are figures.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proc.h"
#include "sb/analyze_out.h"
#include "sb/util.h"

#define MAXRUNS  96
#define GIB      (1024.0 * 1024.0 * 1024.0)
#define CHROMIUM "/usr/bin/chromium"

struct runset {
    struct sb_run runs[MAXRUNS];
    char ids[MAXRUNS][64];
    struct sb_h7_point h7[MAXRUNS][30];
    size_t n;
};

/* The figures every kind with a plot should have drawn from this run set. */
static const char *const want_figs[] = {
    "H0_latency_vs_concurrency", "H2_p99_vs_context",
    "H2B_tier_hits_vs_context",  "H3_os_counters",
    "H4_p99_vs_r_await",         "H5_p99_vs_working_set",
    "H6_knee_vs_tier_capacity",  "H7_pred_vs_obs",
    "H7_p99_vs_fetch_p95",       "H8_iowait_vs_p99",
};

static void tstat(struct sb_tstat *t, double mean)
{
    t->n = isnan(mean) ? 0 : 10;
    t->mean = t->p95 = t->min = t->max = mean;
}

static struct sb_run *add_run(struct runset *s, const char *hyp, const char *stack, long long conc,
                              long long ctx, double p50, double ratio)
{
    assert_true(s->n < MAXRUNS);
    size_t i = s->n++;
    struct sb_run *r = &s->runs[i];
    memset(r, 0, sizeof(*r));
    snprintf(s->ids[i], sizeof(s->ids[i]), "20250101_%06zu_%s_%s", i, stack, hyp);
    r->run_id = r->dir = s->ids[i];
    r->hypothesis = (char *)hyp;
    r->stack = (char *)stack;
    r->model = (char *)(stack[0] == 'A' ? "L8B" : "L70B");
    r->workload = (char *)"fixed_context";
    r->phase = r->fio_profile = r->eviction_policy = (char *)"";
    r->concurrency = conc;
    r->context_tokens = ctx;
    r->repetition = 1;
    r->rate = NAN;
    r->t0 = 1.7e9 + 100.0 * (double)i;
    r->t1 = r->t0 + 60;
    r->measured = r->ok = 600;
    r->lat[SB_LAT_TTFT] = (struct sb_summary){600,
                                              p50 * 1.1,
                                              p50 * 0.5,
                                              p50 * ratio * 1.3,
                                              p50,
                                              p50 * 1.2,
                                              p50 * (1 + (ratio - 1) * 0.6),
                                              p50 * ratio,
                                              p50 * ratio * 1.2};
    for (int m = SB_LAT_E2E; m < SB_LAT_N; m++) {
        struct sb_summary *e = &r->lat[m];
        *e = r->lat[SB_LAT_TTFT];
        double k = m == SB_LAT_E2E ? 4 : 0.1;
        double *v[] = {&e->mean, &e->min, &e->max, &e->p50, &e->p90, &e->p95, &e->p99, &e->p999};
        for (size_t j = 0; j < SB_ARRAY_SIZE(v); j++)
            *v[j] *= k;
    }
    r->sysmon_aligned = 0.99;
    r->dynkv_aligned = stack[0] == 'B' ? 0.98 : NAN;
    r->cadence_s = 0.2;
    tstat(&r->cpu_iowait, 0.3);
    tstat(&r->nvme_rps, 2.0);
    tstat(&r->nvme_rmbs, 0.1);
    tstat(&r->nvme_r_await, 0.1);
    tstat(&r->nvme_util, 1);
    tstat(&r->nvme_aqu, 0.01);
    tstat(&r->psi_io_some, 0.05);
    tstat(&r->gpu_util, 90);
    tstat(&r->mem_available, 80 * GIB);
    tstat(&r->tier2_fetch_p95_ms, NAN);
    for (int t = 0; t < 3; t++)
        r->tier_hits[t] = r->tier_misses[t] = r->tier_hit_ratio[t] = NAN;
    r->tier2_share = NAN;
    r->achieved_rps = 10;
    r->output_tok_s = 160;
    return r;
}

/* Stack B KV telemetry: hits spread over the tiers, tier-2 share growing with pressure. */
static void kv(struct runset *s, struct sb_run *r, double pressure)
{
    double t2 = 0.05 + 0.5 * pressure;
    double hits[3] = {600 * (1 - pressure), 300, 1000 * t2};
    for (int t = 0; t < 3; t++) {
        r->tier_hits[t] = hits[t];
        r->tier_misses[t] = 100 + 200 * pressure * t;
    }
    tstat(&r->nvme_rps, 5 + 2000 * pressure);
    tstat(&r->nvme_rmbs, 1 + 400 * pressure);
    tstat(&r->nvme_r_await, 0.2 + 3 * pressure);
    tstat(&r->cpu_iowait, 0.5 + 9 * pressure);
    tstat(&r->psi_io_some, 0.1 + 20 * pressure);
    tstat(&r->mem_available, (40 - 30 * pressure) * GIB);
    tstat(&r->tier2_fetch_p95_ms, 1 + 12 * pressure);
    /* H7 ticks: observed = 1.05 x predicted + 3 MB/s, give or take a deterministic wobble. */
    size_t i = (size_t)(r - s->runs);
    for (size_t k = 0; k < 30; k++) {
        double pred = 400 * pressure * (1 + 0.3 * sin((double)k));
        s->h7[i][k] = (struct sb_h7_point){
            .ts = r->t0 + 0.2 * (double)k,
            .pred_rmbs = pred,
            .obs_rmbs = 1.05 * pred + 3 + 2 * cos(3.0 * (double)k),
            .obs_rps = 5 * pred,
            .fetch_p95_ms = 1 + 12 * pressure,
        };
    }
    r->h7 = s->h7[i];
    r->nh7 = 30;
}

static void build_runs(struct runset *s)
{
    s->n = 0;
    /* H0, Stack A: p99/p50 over 2 from concurrency 16 on: knee 16, U_work 8. */
    static const long long conc[] = {1, 2, 4, 8, 16, 32, 64};
    static const double ratio[] = {1.3, 1.4, 1.5, 1.7, 2.4, 3.1, 4.0};
    for (size_t i = 0; i < SB_ARRAY_SIZE(conc); i++)
        add_run(s, "H0", "A", conc[i], 1024, 20 + 0.5 * (double)conc[i], ratio[i]);
    struct sb_run *rep = add_run(s, "H0", "A", 8, 1024, 24, 1.72);
    rep->repetition = 2;
    /* H1: cold and warm LoRA. */
    add_run(s, "H1", "A", 1, 1024, 180, 1.5)->phase = (char *)"cold";
    add_run(s, "H1", "A", 1, 1024, 40, 1.3)->phase = (char *)"warm";
    /* H2A, Stack A: NVMe flat. */
    static const long long ctx[] = {256, 512, 1024, 2048, 4096};
    for (size_t i = 0; i < 4; i++)
        add_run(s, "H2A", "A", 4, ctx[i], 30 + (double)ctx[i] / 100, 1.4 + 0.1 * (double)i);
    /* H2B, Stack B: a storage knee at 1024 tokens. */
    static const double h2b_ratio[] = {1.4, 1.6, 2.3, 2.8, 3.5};
    for (size_t i = 0; i < 5; i++) {
        struct sb_run *r =
            add_run(s, "H2B", "B", 4, ctx[i], 35 + (double)ctx[i] / 80, h2b_ratio[i]);
        kv(s, r, (double)i / 5);
    }
    /* H4A / H4B under fio profiles. */
    static const char *const prof[] = {"baseline", "moderate", "heavy"};
    for (size_t i = 0; i < 3; i++) {
        struct sb_run *a = add_run(s, "H4A", "A", 8, 1024, 40, 1.5 + 0.02 * (double)i);
        a->fio_profile = a->phase = (char *)prof[i];
        tstat(&a->nvme_r_await, 0.1 + 4 * (double)i);
        struct sb_run *b = add_run(s, "H4B", "B", 8, 2048, 50, 1.8 + 0.8 * (double)i);
        b->fio_profile = b->phase = (char *)prof[i];
        kv(s, b, 0.4);
        tstat(&b->nvme_r_await, 0.3 + 4.5 * (double)i);
        tstat(&b->tier2_fetch_p95_ms, 2 + 6 * (double)i);
    }
    /* H5: working sets from concurrency x context. */
    for (size_t i = 0; i < 4; i++) {
        long long c = 4 << i;
        struct sb_run *r =
            add_run(s, "H5", "B", c, 4096, 40 + 10 * (double)i, 1.5 + 0.4 * (double)i);
        r->kv_working_set_bytes = (double)c * 4096 * 131072;
        kv(s, r, 0.15 * (double)i);
    }
    /* H6: two policies x three capacities, each with a concurrency sweep. */
    static const char *const pol[] = {"lru", "lfu"};
    for (size_t p = 0; p < 2; p++)
        for (size_t cap = 0; cap < 3; cap++)
            for (size_t k = 0; k < 3; k++) {
                double knee_shift = (double)cap + 0.5 * (double)p;
                struct sb_run *r = add_run(s, "H6", "B", 4 << k, 2048, 40,
                                           1.5 + 0.6 * (double)k * (1.5 - 0.4 * knee_shift));
                r->eviction_policy = (char *)pol[p];
                r->tier0_bytes = (uint64_t)(8 << cap) << 30;
                r->tier1_bytes = (uint64_t)(8 << cap) << 30;
                kv(s, r, 0.6 - 0.15 * knee_shift);
            }
    /* H8A / H8B. */
    for (size_t i = 0; i < 4; i++) {
        add_run(s, "H8A", "A", 2 << i, 1024, 25 + 4 * (double)i, 1.5 + 0.3 * (double)i);
        struct sb_run *b =
            add_run(s, "H8B", "B", 2 << i, 2048, 35 + 8 * (double)i, 1.6 + 0.5 * (double)i);
        kv(s, b, 0.2 * (double)i);
    }
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* ---- a PNG reader: enough of the format to count the screenshot's colours ---- */

typedef int (*uncompress_fn)(unsigned char *dest, unsigned long *dest_len, const unsigned char *src,
                             unsigned long src_len);

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int paeth(int a, int b, int c)
{
    int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

struct png_stats {
    uint32_t width, height;
    size_t distinct;  /* distinct RGB colours */
    double nonwhite;  /* share of pixels that are not (near) white */
    size_t colourful; /* pixels with a clear hue (gnuplot's lines), not grey text */
};

/*
 * Decodes an 8-bit RGB or RGBA, non-interlaced PNG (what Chromium writes) and fills st. zlib
 * is loaded at run time: the test binaries link only sbcore and cmocka.
 */
static void png_stats(const char *path, struct png_stats *st)
{
    char *data = NULL;
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    struct stat sst;
    assert_int_equal(fstat(fileno(fp), &sst), 0);
    size_t len = (size_t)sst.st_size;
    data = malloc(len);
    assert_int_equal(fread(data, 1, len, fp), len);
    fclose(fp);
    const unsigned char *p = (const unsigned char *)data;
    assert_true(len > 8);
    assert_memory_equal(p, "\x89PNG\r\n\x1a\n", 8);
    size_t off = 8, idat_len = 0;
    unsigned char *idat = NULL;
    int depth = 0, ctype = -1, interlace = -1;
    while (off + 12 <= len) {
        uint32_t clen = be32(p + off);
        const unsigned char *type = p + off + 4, *body = p + off + 8;
        assert_true(off + 12 + clen <= len);
        if (memcmp(type, "IHDR", 4) == 0) {
            st->width = be32(body);
            st->height = be32(body + 4);
            depth = body[8];
            ctype = body[9];
            interlace = body[12];
        } else if (memcmp(type, "IDAT", 4) == 0) {
            idat = realloc(idat, idat_len + clen);
            memcpy(idat + idat_len, body, clen);
            idat_len += clen;
        } else if (memcmp(type, "IEND", 4) == 0) {
            break;
        }
        off += 12 + clen;
    }
    assert_int_equal(depth, 8);
    assert_true(ctype == 2 || ctype == 6);
    assert_int_equal(interlace, 0);
    assert_true(st->width > 0 && st->height > 0 && idat_len > 0);

    void *z = dlopen("libz.so.1", RTLD_NOW);
    assert_non_null(z);
    uncompress_fn unz;
    *(void **)&unz = dlsym(z, "uncompress");
    assert_non_null(unz);
    size_t bpp = ctype == 6 ? 4 : 3, stride = (size_t)st->width * bpp;
    unsigned long raw_len = (unsigned long)((stride + 1) * st->height);
    unsigned char *raw = malloc(raw_len);
    assert_non_null(raw);
    unsigned long got = raw_len;
    assert_int_equal(unz(raw, &got, idat, idat_len), 0);
    assert_int_equal(got, raw_len);
    dlclose(z);

    /* Undo the per-row filters in place. */
    for (size_t y = 0; y < st->height; y++) {
        unsigned char *row = raw + y * (stride + 1), f = row[0], *cur = row + 1;
        unsigned char *prev = y ? raw + (y - 1) * (stride + 1) + 1 : NULL;
        for (size_t x = 0; x < stride; x++) {
            int a = x >= bpp ? cur[x - bpp] : 0, b = prev ? prev[x] : 0;
            int c = prev && x >= bpp ? prev[x - bpp] : 0;
            int v = cur[x];
            switch (f) {
            case 0:
                break;
            case 1:
                v += a;
                break;
            case 2:
                v += b;
                break;
            case 3:
                v += (a + b) / 2;
                break;
            case 4:
                v += paeth(a, b, c);
                break;
            default:
                fail_msg("bad PNG filter %d in row %zu", f, y);
            }
            cur[x] = (unsigned char)v;
        }
    }
    uint8_t *seen = calloc(1u << 21, 1); /* one bit per 24-bit colour */
    assert_non_null(seen);
    size_t nonwhite = 0;
    st->distinct = st->colourful = 0;
    for (size_t y = 0; y < st->height; y++) {
        const unsigned char *px = raw + y * (stride + 1) + 1;
        for (size_t x = 0; x < st->width; x++, px += bpp) {
            uint32_t rgb = (uint32_t)px[0] << 16 | (uint32_t)px[1] << 8 | px[2];
            if (!(seen[rgb >> 3] & (1u << (rgb & 7)))) {
                seen[rgb >> 3] |= (uint8_t)(1u << (rgb & 7));
                st->distinct++;
            }
            if (px[0] < 240 || px[1] < 240 || px[2] < 240)
                nonwhite++;
            int hi = px[0] > px[1] ? px[0] : px[1], lo = px[0] < px[1] ? px[0] : px[1];
            hi = px[2] > hi ? px[2] : hi;
            lo = px[2] < lo ? px[2] : lo;
            if (hi - lo > 60)
                st->colourful++;
        }
    }
    st->nonwhite = (double)nonwhite / ((double)st->width * st->height);
    free(seen);
    free(raw);
    free(idat);
    free(data);
}

/* ---- the test ---- */

struct fixture {
    char tmp[64];
    struct runset runs;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    snprintf(f->tmp, sizeof(f->tmp), "/tmp/sbtest-report-XXXXXX");
    if (!mkdtemp(f->tmp)) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

/* Removes the temporary directory (kept, and named, when SB_KEEP_REPORT is set). */
static int teardown(void **state)
{
    struct fixture *f = *state;
    if (getenv("SB_KEEP_REPORT"))
        print_message("kept %s\n", f->tmp);
    else
        nftw(f->tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static size_t count_files(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0, sl = strlen(suffix);
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l > sl && strcmp(e->d_name + l - sl, suffix) == 0)
            n++;
    }
    closedir(d);
    return n;
}

/* Runs sb_analyze_outputs with stderr captured into *errtext (free it). */
static int outputs_capture(struct runset *s, const struct sb_analyze_opts *o, const char *tmp,
                           char **errtext)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/stderr.txt", tmp);
    fflush(stderr);
    int saved = dup(2), fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, 2);
    close(fd);
    struct sb_err err = {0};
    int rc = sb_analyze_outputs(s->runs, s->n, o, &err);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    if (rc)
        print_error("sb_analyze_outputs: %s\n", err.msg);
    *errtext = sb_test_read_file(path);
    assert_non_null(*errtext);
    return rc;
}

static const char check_script[] =
    "<script>\n"
    "window.addEventListener('load', function () {\n"
    "  var imgs = document.images, ok = 0;\n"
    "  for (var i = 0; i < imgs.length; i++)\n"
    "    if (imgs[i].complete && imgs[i].naturalWidth > 0) ok++;\n"
    "  document.body.setAttribute('data-images-ok', ok + '/' + imgs.length);\n"
    "});\n"
    "</script>\n";

static void test_report_renders(void **state)
{
    struct fixture *f = *state;
    const char *tmp = f->tmp;
    if (access("/usr/bin/gnuplot", X_OK) != 0 || access(CHROMIUM, X_OK) != 0)
        fail_msg("gnuplot or chromium missing: scripts/install-deps.sh installs them");
    char out[256], uwork[256], figdir[300], home[256];
    snprintf(out, sizeof(out), "%s/analysis", tmp);
    snprintf(uwork, sizeof(uwork), "%s/results/H0/uwork.txt", tmp);
    snprintf(figdir, sizeof(figdir), "%s/figures", out);
    snprintf(home, sizeof(home), "%s/home", tmp);
    assert_int_equal(mkdir(home, 0700), 0);

    struct runset *s = &f->runs;
    build_runs(s);
    char *argv[] = {(char *)"sparkbench", (char *)"analyze", (char *)"--out", out};
    struct sb_analyze_opts o = {
        .out_dir = out,
        .uwork_path = uwork,
        .knee_metric = SB_LAT_TTFT,
        .knee_ratio = 2.0,
        .kv_bytes_per_token = 131072,
        .gnuplot = (char *)"gnuplot",
        .argv = argv,
        .argc = 4,
        .quiet = true,
    };
    char *errtext;
    assert_int_equal(outputs_capture(s, &o, tmp, &errtext), 0);
    /* Every script rendered: gnuplot complained about none of them. */
    if (strstr(errtext, "warning"))
        fail_msg("analyze warned: %s", errtext);
    free(errtext);

    char *txt = sb_test_read_file(uwork);
    assert_non_null(txt);
    assert_string_equal(txt, "8\n");
    free(txt);

    /* One SVG and one PNG per script, and the expected figures among them. */
    size_t ngp = count_files(figdir, ".gp");
    assert_int_equal(ngp, SB_ARRAY_SIZE(want_figs));
    assert_int_equal(count_files(figdir, ".svg"), ngp);
    assert_int_equal(count_files(figdir, ".png"), ngp);
    for (size_t i = 0; i < SB_ARRAY_SIZE(want_figs); i++) {
        char path[600];
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s.png", figdir, want_figs[i]);
        if (stat(path, &st) != 0 || st.st_size < 1000)
            fail_msg("figure '%s' missing or tiny", path);
    }

    char html_path[300], check_path[300], shot[300];
    snprintf(html_path, sizeof(html_path), "%s/report.html", out);
    snprintf(check_path, sizeof(check_path), "%s/check.html", tmp);
    snprintf(shot, sizeof(shot), "%s/shot.png", tmp);
    char *html = sb_test_read_file(html_path);
    assert_non_null(html);
    assert_int_equal(sb_test_count(html, "<img "), (int)ngp);
    assert_non_null(strstr(html, "U_work = 8"));

    /* A copy of the page with the image check before </body>. */
    char *end = strstr(html, "</body>");
    assert_non_null(end);
    FILE *fp = fopen(check_path, "w");
    assert_non_null(fp);
    fwrite(html, 1, (size_t)(end - html), fp);
    fputs(check_script, fp);
    fputs(end, fp);
    fclose(fp);
    free(html);

    setenv("HOME", home, 1);
    char url[400], shot_arg[400], profile[400];
    snprintf(url, sizeof(url), "file://%s", check_path);

    snprintf(shot_arg, sizeof(shot_arg), "--screenshot=%s", shot);
    snprintf(profile, sizeof(profile), "--user-data-dir=%s/profile", home);
    const char *dump[] = {"/usr/bin/timeout",
                          "120",
                          CHROMIUM,
                          "--headless=new",
                          "--no-sandbox",
                          "--disable-gpu",
                          profile,
                          "--virtual-time-budget=5000",
                          "--dump-dom",
                          url,
                          NULL};
    char *dom = NULL, *cerr = NULL;
    int rc = sb_proc_run(dump, &dom, &cerr);
    if (rc != 0)
        fail_msg("chromium --dump-dom exited %d: %.2000s", rc, cerr ? cerr : "");
    char want[64];
    snprintf(want, sizeof(want), "data-images-ok=\"%zu/%zu\"", ngp, ngp);
    if (!strstr(dom, want)) {
        const char *got = strstr(dom, "data-images-ok");
        fail_msg("want %s, page says %.40s", want, got ? got : "nothing (script did not run)");
    }
    free(dom);
    free(cerr);

    const char *screenshot[] = {"/usr/bin/timeout",
                                "120",
                                CHROMIUM,
                                "--headless=new",
                                "--no-sandbox",
                                "--disable-gpu",
                                profile,
                                "--hide-scrollbars",
                                shot_arg,
                                "--window-size=1200,2000",
                                url,
                                NULL};
    rc = sb_proc_run(screenshot, NULL, &cerr);
    if (rc != 0)
        fail_msg("chromium --screenshot exited %d: %.2000s", rc, cerr ? cerr : "");
    free(cerr);
    struct png_stats st = {0};
    png_stats(shot, &st);
    assert_int_equal(st.width, 1200);
    assert_int_equal(st.height, 2000);
    /* Text, tables and the first figure (H0, within the first 2000 pixels): many colours, a
     * fair share of ink, and gnuplot's coloured lines. */
    if (st.distinct < 32 || st.nonwhite < 0.02 || st.colourful < 200)
        fail_msg("screenshot looks blank: %zu colours, %.3f non-white, %zu colourful pixels",
                 st.distinct, st.nonwhite, st.colourful);
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_report_renders, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
