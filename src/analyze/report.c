/*
 * The report, and sb_analyze_outputs() which runs the whole output half in order. The report is
 * built once as a list of blocks (headings, paragraphs, tables, figures) and written twice
 * through a table of renderers: report.md, which links the figure files (figures/X.png), and
 * report.html, which is self-contained (each figure embedded as a base64 data: URI, CSS inline,
 * every piece of text HTML-escaped) so it can be mailed or archived alone. Tables in the report
 * are the figures' CSV tables themselves (cut to REPORT_ROWS rows), so they cannot disagree.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sb/analyze_out.h"
#include "sb/build_info.h"
#include "sb/util.h"

#define REPORT_MAX  (512u << 20)
#define REPORT_ROWS 60 /* rows of a data table shown in the report; the CSV has them all */
#define FIG_MAX     (64u << 20)

enum blk_type { BLK_H1, BLK_H2, BLK_H3, BLK_PARA, BLK_CODE, BLK_TABLE, BLK_FIGURE, BLK_LIST };

struct blk {
    enum blk_type type;
    char *text;                   /* owned: heading, paragraph, code; list items joined by \n */
    const struct sb_table *table; /* BLK_TABLE: borrowed, or owned below */
    struct sb_table *owned;
    const struct sb_figure *fig; /* BLK_FIGURE */
};

struct doc {
    struct blk *b;
    size_t n;
    bool failed;
};

/* gcc -fanalyzer: GCC 12 reports the realloc of d->b as a leak on its failure branch, where d->b
   still owns the old block */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wanalyzer-malloc-leak"
static struct blk *doc_add(struct doc *d, enum blk_type type, const char *text)
{
    if (d->failed)
        return NULL;
    struct blk *nb = realloc(d->b, (d->n + 1) * sizeof(*nb));
    if (!nb) {
        d->failed = true;
        return NULL;
    }
    d->b = nb;
    struct blk *b = &d->b[d->n++];
    memset(b, 0, sizeof(*b));
    b->type = type;
    if (text && !(b->text = strdup(text)))
        d->failed = true;
    return b;
}
#pragma GCC diagnostic pop

static void doc_addf(struct doc *d, enum blk_type type, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void doc_addf(struct doc *d, enum blk_type type, const char *fmt, ...)
{
    char text[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    doc_add(d, type, text);
}

/* Adds an owned table (taken over whether or not this succeeds). */
static void doc_table_owned(struct doc *d, struct sb_table *t)
{
    struct blk *b = doc_add(d, BLK_TABLE, NULL);
    if (!b || sb_table_failed(t)) {
        d->failed = true;
        sb_table_release(t);
        free(t);
        return;
    }
    b->table = b->owned = t;
}

static struct sb_table *new_table(const char *const *header, size_t ncols)
{
    struct sb_table *t = malloc(sizeof(*t));
    if (t && sb_table_init(t, header, ncols) != 0) {
        free(t);
        return NULL;
    }
    return t;
}

static void doc_release(struct doc *d)
{
    for (size_t i = 0; i < d->n; i++) {
        free(d->b[i].text);
        if (d->b[i].owned) {
            sb_table_release(d->b[i].owned);
            free(d->b[i].owned);
        }
    }
    free(d->b);
    memset(d, 0, sizeof(*d));
}

/* ---- rendering ---- */

struct renderer {
    const char *ext;
    void (*begin)(struct sb_buf *o, const char *title);
    void (*heading)(struct sb_buf *o, int level, const char *text);
    void (*para)(struct sb_buf *o, const char *text);
    void (*code)(struct sb_buf *o, const char *text);
    void (*list)(struct sb_buf *o, const char *items);
    void (*table)(struct sb_buf *o, const struct sb_table *t);
    void (*figure)(struct sb_buf *o, const struct sb_figure *f, const char *fig_dir);
    void (*end)(struct sb_buf *o);
};

/* A cell as the report shows it: "n/a" for an empty one, long decimals cut to 6 digits. */
static const char *show_cell(const char *s, char *buf, size_t cap)
{
    double v;
    if (!s[0])
        return "n/a";
    if (strchr(s, '.') && !strchr(s, ' ') && sb_parse_double(s, &v) == 0 && isfinite(v)) {
        snprintf(buf, cap, "%.6g", v);
        return buf;
    }
    return s;
}

static size_t shown_rows(const struct sb_table *t)
{
    return t->nrows < REPORT_ROWS ? t->nrows : REPORT_ROWS;
}

/* markdown */

static bool is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* Markdown text: what could start markup is escaped; '_' only where it could (not inside a
 * word like U_work, where CommonMark never reads it as emphasis). */
static void md_text(struct sb_buf *o, const char *s)
{
    for (const char *p = s; *p; p++) {
        bool intraword = *p == '_' && p > s && is_alnum(p[-1]) && is_alnum(p[1]);
        if (strchr("\\`*[]<>|", *p) || (*p == '_' && !intraword))
            sb_buf_adds(o, "\\");
        if (*p == '\n' || *p == '\r')
            sb_buf_adds(o, " ");
        else
            sb_buf_add(o, p, 1);
    }
}

static void md_begin(struct sb_buf *o, const char *title)
{
    (void)o;
    (void)title;
}

static void md_heading(struct sb_buf *o, int level, const char *text)
{
    sb_buf_addf(o, "%.*s ", level, "######");
    md_text(o, text);
    sb_buf_adds(o, "\n\n");
}

static void md_para(struct sb_buf *o, const char *text)
{
    md_text(o, text);
    sb_buf_adds(o, "\n\n");
}

static void md_code(struct sb_buf *o, const char *text)
{
    /* A fence longer than any run of backticks inside. */
    size_t longest = 0, run = 0;
    for (const char *p = text; *p; p++) {
        run = *p == '`' ? run + 1 : 0;
        longest = run > longest ? run : longest;
    }
    size_t fence = longest < 3 ? 3 : longest + 1;
    for (size_t i = 0; i < fence; i++)
        sb_buf_adds(o, "`");
    sb_buf_adds(o, "sh\n");
    sb_buf_adds(o, text);
    sb_buf_adds(o, "\n");
    for (size_t i = 0; i < fence; i++)
        sb_buf_adds(o, "`");
    sb_buf_adds(o, "\n\n");
}

static void md_list(struct sb_buf *o, const char *items)
{
    const char *p = items;
    while (*p) {
        size_t len = strcspn(p, "\n");
        char item[2048];
        snprintf(item, sizeof(item), "%.*s", (int)len, p);
        sb_buf_adds(o, "- ");
        md_text(o, item);
        sb_buf_adds(o, "\n");
        p += len;
        if (*p)
            p++;
    }
    sb_buf_adds(o, "\n");
}

static void md_table(struct sb_buf *o, const struct sb_table *t)
{
    char num[64];
    size_t rows = shown_rows(t);
    for (size_t r = 0; r <= rows; r++) {
        sb_buf_adds(o, "|");
        for (size_t c = 0; c < t->ncols; c++) {
            sb_buf_adds(o, " ");
            md_text(o, r ? show_cell(sb_table_cell(t, r, c), num, sizeof(num))
                         : sb_table_cell(t, r, c));
            sb_buf_adds(o, " |");
        }
        sb_buf_adds(o, "\n");
        if (r == 0) {
            sb_buf_adds(o, "|");
            for (size_t c = 0; c < t->ncols; c++)
                sb_buf_adds(o, "---|");
            sb_buf_adds(o, "\n");
        }
    }
    if (rows < t->nrows)
        sb_buf_addf(o, "\n%zu more rows in the CSV.\n", t->nrows - rows);
    sb_buf_adds(o, "\n");
}

static void md_figure(struct sb_buf *o, const struct sb_figure *f, const char *fig_dir)
{
    (void)fig_dir;
    if (f->png || f->svg) {
        sb_buf_adds(o, "![");
        md_text(o, f->title);
        sb_buf_addf(o, "](figures/%s.%s)\n\n", f->stem, f->png ? "png" : "svg");
    } else if (f->has_plot) {
        sb_buf_addf(o, "*Figure not rendered: run `gnuplot %s.gp` in figures/ to make it.*\n\n",
                    f->stem);
    }
    sb_buf_addf(o, "Data: [%s.csv](figures/%s.csv)", f->stem, f->stem);
    if (f->has_plot)
        sb_buf_addf(o, ", script: [%s.gp](figures/%s.gp)", f->stem, f->stem);
    if (f->svg)
        sb_buf_addf(o, ", vector: [%s.svg](figures/%s.svg)", f->stem, f->stem);
    sb_buf_adds(o, "\n\n");
}

static void md_end(struct sb_buf *o)
{
    (void)o;
}

/* HTML */

static void html_text(struct sb_buf *o, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&':
            sb_buf_adds(o, "&amp;");
            break;
        case '<':
            sb_buf_adds(o, "&lt;");
            break;
        case '>':
            sb_buf_adds(o, "&gt;");
            break;
        case '"':
            sb_buf_adds(o, "&quot;");
            break;
        case '\'':
            sb_buf_adds(o, "&#39;");
            break;
        default:
            sb_buf_add(o, s, 1);
        }
    }
}

static void html_begin(struct sb_buf *o, const char *title)
{
    sb_buf_adds(o, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                   "<title>");
    html_text(o, title);
    sb_buf_adds(o,
                "</title>\n<style>\n"
                "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;"
                "padding:0 1em;color:#222;line-height:1.4}\n"
                "h1,h2,h3{line-height:1.2}h2{border-bottom:1px solid #ccc;padding-bottom:.2em}\n"
                ".scroll{overflow-x:auto}\n"
                "table{border-collapse:collapse;font-size:12px;margin:.5em 0 1em}\n"
                "th,td{border:1px solid #ccc;padding:2px 6px;text-align:right;white-space:nowrap}\n"
                "th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}\n"
                "pre{background:#f6f6f6;padding:.6em;overflow-x:auto}\n"
                "figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #ddd}\n"
                "figcaption{font-size:13px;color:#555}\n"
                "td.long{white-space:normal;text-align:left;min-width:24em}\n"
                ".PASS{color:#17702a;font-weight:bold}.FAIL{color:#b00020;font-weight:bold}"
                ".N-A{color:#777}\n"
                "</style>\n</head>\n<body>\n");
}

static void html_heading(struct sb_buf *o, int level, const char *text)
{
    sb_buf_addf(o, "<h%d>", level);
    html_text(o, text);
    sb_buf_addf(o, "</h%d>\n", level);
}

static void html_para(struct sb_buf *o, const char *text)
{
    sb_buf_adds(o, "<p>");
    html_text(o, text);
    sb_buf_adds(o, "</p>\n");
}

static void html_code(struct sb_buf *o, const char *text)
{
    sb_buf_adds(o, "<pre><code>");
    html_text(o, text);
    sb_buf_adds(o, "</code></pre>\n");
}

static void html_list(struct sb_buf *o, const char *items)
{
    sb_buf_adds(o, "<ul>\n");
    const char *p = items;
    while (*p) {
        size_t len = strcspn(p, "\n");
        char item[2048];
        snprintf(item, sizeof(item), "%.*s", (int)len, p);
        sb_buf_adds(o, "<li>");
        html_text(o, item);
        sb_buf_adds(o, "</li>\n");
        p += len;
        if (*p)
            p++;
    }
    sb_buf_adds(o, "</ul>\n");
}

static bool is_verdict(const char *s)
{
    return strcmp(s, "PASS") == 0 || strcmp(s, "FAIL") == 0 || strcmp(s, "N-A") == 0;
}

static void html_table(struct sb_buf *o, const struct sb_table *t)
{
    char num[64];
    size_t rows = shown_rows(t);
    sb_buf_adds(o, "<div class=\"scroll\"><table>\n<tr>");
    for (size_t c = 0; c < t->ncols; c++) {
        sb_buf_adds(o, "<th>");
        html_text(o, sb_table_cell(t, 0, c));
        sb_buf_adds(o, "</th>");
    }
    sb_buf_adds(o, "</tr>\n");
    for (size_t r = 1; r <= rows; r++) {
        sb_buf_adds(o, "<tr>");
        for (size_t c = 0; c < t->ncols; c++) {
            const char *s = sb_table_cell(t, r, c);
            if (is_verdict(s))
                sb_buf_addf(o, "<td class=\"%s\">", s);
            else if (strlen(s) > 40)
                sb_buf_adds(o, "<td class=\"long\">");
            else
                sb_buf_adds(o, "<td>");
            html_text(o, show_cell(s, num, sizeof(num)));
            sb_buf_adds(o, "</td>");
        }
        sb_buf_adds(o, "</tr>\n");
    }
    sb_buf_adds(o, "</table></div>\n");
    if (rows < t->nrows)
        sb_buf_addf(o, "<p>%zu more rows in the CSV.</p>\n", t->nrows - rows);
}

static void base64(struct sb_buf *o, const unsigned char *p, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char q[4];
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        q[0] = tab[(v >> 18) & 63];
        q[1] = tab[(v >> 12) & 63];
        q[2] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        q[3] = i + 2 < n ? tab[v & 63] : '=';
        sb_buf_add(o, q, 4);
    }
}

static void html_figure(struct sb_buf *o, const struct sb_figure *f, const char *fig_dir)
{
    const char *ext = f->svg ? "svg" : f->png ? "png" : NULL;
    struct sb_buf img;
    sb_buf_init(&img, FIG_MAX);
    char path[4400];
    if (ext) {
        snprintf(path, sizeof(path), "%s/%s.%s", fig_dir, f->stem, ext);
        if (sb_buf_add_file(&img, path) != 0 || img.len == 0)
            ext = NULL;
    }
    if (ext) {
        sb_buf_adds(o, "<figure id=\"");
        html_text(o, f->stem);
        sb_buf_adds(o, "\">\n<img alt=\"");
        html_text(o, f->title);
        sb_buf_addf(o, "\" src=\"data:image/%s;base64,", f->svg ? "svg+xml" : "png");
        base64(o, (const unsigned char *)img.data, img.len);
        sb_buf_adds(o, "\">\n<figcaption>");
        html_text(o, f->title);
        sb_buf_adds(o, " (data: figures/");
        html_text(o, f->stem);
        sb_buf_adds(o, ".csv)</figcaption>\n</figure>\n");
    } else {
        sb_buf_adds(o, "<p><em>");
        if (f->has_plot) {
            html_text(o, "Figure not rendered: run `gnuplot ");
            html_text(o, f->stem);
            html_text(o, ".gp` in figures/ to make it. ");
        }
        sb_buf_adds(o, "Data: figures/");
        html_text(o, f->stem);
        sb_buf_adds(o, ".csv</em></p>\n");
    }
    sb_buf_release(&img);
}

static void html_end(struct sb_buf *o)
{
    sb_buf_adds(o, "</body>\n</html>\n");
}

static const struct renderer renderers[] = {
    {.ext = "md",
     .begin = md_begin,
     .heading = md_heading,
     .para = md_para,
     .code = md_code,
     .list = md_list,
     .table = md_table,
     .figure = md_figure,
     .end = md_end},
    {.ext = "html",
     .begin = html_begin,
     .heading = html_heading,
     .para = html_para,
     .code = html_code,
     .list = html_list,
     .table = html_table,
     .figure = html_figure,
     .end = html_end},
};

static void render_doc(const struct doc *d, const struct renderer *rn, struct sb_buf *o,
                       const char *fig_dir)
{
    rn->begin(o, "sparkbench analysis report");
    for (size_t i = 0; i < d->n; i++) {
        const struct blk *b = &d->b[i];
        switch (b->type) {
        case BLK_H1:
        case BLK_H2:
        case BLK_H3:
            rn->heading(o, 1 + (int)(b->type - BLK_H1), b->text);
            break;
        case BLK_PARA:
            rn->para(o, b->text);
            break;
        case BLK_CODE:
            rn->code(o, b->text);
            break;
        case BLK_LIST:
            rn->list(o, b->text);
            break;
        case BLK_TABLE:
            rn->table(o, b->table);
            break;
        case BLK_FIGURE:
            rn->figure(o, b->fig, fig_dir);
            break;
        }
    }
    rn->end(o);
}

/* ---- content ---- */

static const char *str_or(const char *s, const char *dflt)
{
    return s && s[0] ? s : dflt;
}

/* argv as a shell command line, quoting what the shell would split or expand. */
static void command_line(const struct sb_analyze_opts *o, struct sb_buf *b)
{
    if (!o->argv || o->argc <= 0) {
        sb_buf_adds(b, "sparkbench analyze");
        return;
    }
    for (int i = 0; i < o->argc && o->argv[i]; i++) {
        const char *a = o->argv[i];
        if (i)
            sb_buf_adds(b, " ");
        if (a[0] && strspn(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                              "-_./=:,+@%") == strlen(a)) {
            sb_buf_adds(b, a);
            continue;
        }
        sb_buf_adds(b, "'");
        for (; *a; a++)
            *a == '\'' ? sb_buf_adds(b, "'\\''") : sb_buf_add(b, a, 1);
        sb_buf_adds(b, "'");
    }
}

static void add_runs(struct doc *d, const struct sb_analysis *an)
{
    static const char *const header[] = {"run_id",      "hypothesis", "stack",       "phase",
                                         "samples",     "errors",     "ttft_p50_ms", "ttft_p95_ms",
                                         "ttft_p99_ms", "e2e_p50_ms", "e2e_p95_ms",  "e2e_p99_ms",
                                         "flags"};
    struct sb_table *t = new_table(header, SB_ARRAY_SIZE(header));
    if (!t) {
        d->failed = true;
        return;
    }
    char hyp[16];
    for (size_t i = 0; i < an->nruns; i++) {
        const struct sb_run *r = &an->runs[i];
        sb_table_row(t);
        sb_table_str(t, str_or(r->run_id, r->dir));
        sb_table_str(t, sb_run_hypothesis(r, hyp, sizeof(hyp)));
        sb_table_str(t, r->stack);
        sb_table_str(t, r->phase);
        sb_table_int(t, (long long)r->measured);
        sb_table_int(t, (long long)r->errors);
        for (int m = SB_LAT_TTFT; m <= SB_LAT_E2E; m++) {
            sb_table_fixed(t, r->lat[m].p50, 2);
            sb_table_fixed(t, r->lat[m].p95, 2);
            sb_table_fixed(t, r->lat[m].p99, 2);
        }
        char flags[320];
        sb_table_str(t, sb_run_flags(r, flags, sizeof(flags))); /* "sigint", client lag, ... */
    }
    doc_addf(d, BLK_H2, "Runs");
    doc_addf(d, BLK_PARA,
             "%zu run%s. Latencies in ms over each run's measurement window (warm-up left out); "
             "samples = measured requests.",
             an->nruns, an->nruns == 1 ? "" : "s");
    doc_table_owned(d, t);
}

/* Runs whose server told its own side: its prefill time (the client-side overhead is TTFT minus
   it) or a prompt count far below what was sent. Left out when no run has either. */
static void add_server_view(struct doc *d, const struct sb_analysis *an)
{
    size_t shown = 0;
    for (size_t i = 0; i < an->nruns; i++)
        shown += an->runs[i].client_overhead.n > 0 || an->runs[i].server_truncated;
    if (!shown)
        return;
    static const char *const header[] = {
        "run_id",     "ttft_p50_ms",  "overhead_p50_ms",       "overhead_p99_ms",
        "overhead_n", "context_sent", "context_tokens_server", "server_truncated"};
    struct sb_table *t = new_table(header, SB_ARRAY_SIZE(header));
    if (!t) {
        d->failed = true;
        return;
    }
    for (size_t i = 0; i < an->nruns; i++) {
        const struct sb_run *r = &an->runs[i];
        if (!(r->client_overhead.n > 0 || r->server_truncated))
            continue;
        sb_table_row(t);
        sb_table_str(t, str_or(r->run_id, r->dir));
        sb_table_fixed(t, r->lat[SB_LAT_TTFT].p50, 2);
        sb_table_fixed(t, r->client_overhead.p50, 2);
        sb_table_fixed(t, r->client_overhead.p99, 2);
        sb_table_int(t, (long long)r->client_overhead.n);
        sb_table_fixed(t, r->prompt_est_tokens, 0);
        sb_table_fixed(t, r->context_tokens_server, 0);
        sb_table_str(t, r->server_truncated ? "yes" : "no");
    }
    doc_addf(d, BLK_H2, "Server-side view");
    doc_addf(d, BLK_PARA,
             "Client-side overhead = client TTFT - the server's own prefill time (llama.cpp "
             "timings.prompt_ms), per record, over the ok measured records that carry both: what "
             "the client, the network and the server's HTTP front end add to the prefill. "
             "context_sent is the prompt estimate (bytes / 4); a server count below half of it "
             "means the server cut the prompt silently, and such a run is plotted at the "
             "server's count.");
    doc_table_owned(d, t);
}

static void add_uwork(struct doc *d, const struct sb_analysis *an)
{
    if (!an->nuwork)
        return;
    char text[512];
    doc_addf(d, BLK_H2, "U_work");
    sb_uwork_rule(an, text, sizeof(text));
    doc_addf(d, BLK_PARA, "Rule (Test Plan §2): %s.", text);
    sb_saturation_rule(text, sizeof(text));
    doc_addf(d, BLK_PARA, "Beside it, the %s.", text);
    if (an->uwork_pick != SIZE_MAX) {
        const struct sb_uwork *w = &an->uwork[an->uwork_pick];
        const char *path = an->opts->uwork_path;
        if (isnan(w->knee.uwork))
            doc_addf(d, BLK_PARA, "U_work is undefined for '%s' (the newest H0 series)%s%s%s.",
                     w->series->label, path ? "; " : "", path ? path : "",
                     path ? " was not written" : "");
        else
            doc_addf(d, BLK_PARA, "U_work = %.0f (series '%s', the newest H0 series)%s%s.",
                     w->knee.uwork, w->series->label, path ? ", written to " : "",
                     path ? path : "");
    }
    static const char *const header[] = {"concurrency", "p50_ms", "p99_ms", "p99/p50",
                                         "req_s",       "over",   "step"};
    for (size_t u = 0; u < an->nuwork; u++) {
        const struct sb_uwork *w = &an->uwork[u];
        doc_addf(d, BLK_H3, "%s", w->series->label);
        sb_uwork_note(w, text, sizeof(text));
        doc_addf(d, BLK_PARA, "%s.", text);
        sb_saturation_note(w, text, sizeof(text));
        doc_addf(d, BLK_PARA, "%s%s.", sb_uwork_disagrees(w) ? "Warning: " : "", text);
        struct sb_table *t = new_table(header, SB_ARRAY_SIZE(header));
        if (!t) {
            d->failed = true;
            return;
        }
        for (size_t k = 0; k < w->nsteps; k++) {
            const struct sb_knee_step *s = &w->steps[k];
            sb_table_row(t);
            sb_table_num(t, s->x);
            sb_table_fixed(t, s->p50, 2);
            sb_table_fixed(t, s->p99, 2);
            sb_table_fixed(t, s->ratio, 2);
            sb_table_fixed(t, s->rps, 2);
            sb_table_str(t, s->over < 0 ? "" : s->over ? "yes" : "no");
            sb_table_fmt(t, "%s%s%s",
                         k == w->knee.knee_idx    ? "knee"
                         : k == w->knee.uwork_idx ? "U_work"
                         : s->saturated           ? ""
                                                  : "-",
                         s->saturated && (k == w->knee.knee_idx || k == w->knee.uwork_idx) ? ", "
                                                                                           : "",
                         s->saturated ? "saturation" : "");
        }
        doc_table_owned(d, t);
    }
}

static void fmt_val(char *buf, size_t cap, double v)
{
    if (isfinite(v))
        snprintf(buf, cap, "%.4g", v);
    else
        snprintf(buf, cap, "%s", "");
}

static void add_gates(struct doc *d, const struct sb_analysis *an)
{
    static const char *const header[] = {"gate", "verdict", "value", "threshold", "reason",
                                         "pass", "fail",    "n/a",   "rule"};
    doc_addf(d, BLK_H2, "Quality gates");
    doc_addf(d, BLK_PARA,
             "Test Plan §10; every check with its numbers is in "
             "figures/verdicts.json.");
    struct sb_table *t = new_table(header, SB_ARRAY_SIZE(header));
    if (!t) {
        d->failed = true;
        return;
    }
    char v[32];
    for (size_t i = 0; i < SB_GATE_N; i++) {
        const struct sb_gate *g = &an->gates[i];
        size_t count[3] = {0};
        for (size_t k = 0; k < g->nchecks; k++)
            count[g->checks[k].verdict]++;
        sb_table_row(t);
        sb_table_str(t, g->name);
        sb_table_str(t, sb_verdict_name(g->verdict));
        fmt_val(v, sizeof(v), g->value);
        sb_table_str(t, v);
        fmt_val(v, sizeof(v), g->threshold);
        sb_table_str(t, v);
        sb_table_str(t, g->reason);
        sb_table_int(t, (long long)count[SB_VERDICT_PASS]);
        sb_table_int(t, (long long)count[SB_VERDICT_FAIL]);
        sb_table_int(t, (long long)count[SB_VERDICT_NA]);
        sb_table_str(t, g->rule);
    }
    doc_table_owned(d, t);
    static const char *const cheader[] = {"subject", "verdict", "reason", "value", "detail"};
    for (size_t i = 0; i < SB_GATE_N; i++) {
        const struct sb_gate *g = &an->gates[i];
        if (g->verdict != SB_VERDICT_FAIL)
            continue;
        doc_addf(d, BLK_H3, "%s: failing checks", g->name);
        struct sb_table *c = new_table(cheader, SB_ARRAY_SIZE(cheader));
        if (!c) {
            d->failed = true;
            return;
        }
        for (size_t k = 0; k < g->nchecks; k++) {
            const struct sb_gate_check *ck = &g->checks[k];
            if (ck->verdict != SB_VERDICT_FAIL)
                continue;
            sb_table_row(c);
            sb_table_str(c, ck->subject);
            sb_table_str(c, sb_verdict_name(ck->verdict));
            sb_table_str(c, ck->reason);
            fmt_val(v, sizeof(v), ck->value);
            sb_table_str(c, v);
            sb_table_str(c, ck->detail);
        }
        doc_table_owned(d, c);
    }
}

/* The report's per-hypothesis sections, in the Test Plan's order. */
static const struct section {
    const char *id;
    const char *title;
    const char *text;
} sections[] = {
    {"H0", "H0: queue knee and U_work",
     "Queue saturation defines the usable concurrency U_work: p99 should stay within a fixed "
     "multiple of p50 until the knee."},
    {"H1", "H1: cold vs warm LoRA",
     "LoRA loads are a weight-storage story: cold vs warm should change TTFT but not the "
     "KV-driven tails. Runs made with --lora-list are split by adapter: each adapter's first use "
     "(cold, adapter_use 1) beside its later uses (warm, measured phase)."},
    {"H2", "H2A vs H2B: KV behaviour",
     "Stack A should show no KV storage traffic as context grows (NVMe flat); Stack B should "
     "show RAM-tier overflow turn into tier-2 fetches and a storage knee."},
    {"H3", "H3: OS counters, UMA vs tiered KV",
     "OS counters (iowait, NVMe reads, MemAvailable, PSI io) of the H2A and H2B runs side by "
     "side: informative for Stack A, insufficient for Stack B."},
    {"H4", "H4A / H4B: storage QoS",
     "p99 against the NVMe read latency that fio contention causes: flat for Stack A, rising "
     "for Stack B. The neighbour's own read/write MB/s and completion p99 come from each run's "
     "fio.json (the fio_* columns)."},
    {"H5", "H5: KV working-set scaling",
     "Larger KV working sets should worsen p95/p99 at fixed compute."},
    {"H6", "H6: tier sizing and eviction",
     "Larger RAM tiers or another eviction policy should move the knee. The knee of a tier "
     "setting is the knee rule over the sweep inside it; p99 is taken at its highest load."},
    {"H7", "H7: KV telemetry to storage",
     "NVMe reads predicted from the KV telemetry (tier-2 bytes out per tick) against the reads "
     "the disk saw, over every H7, H2B and H4B tick; and p99 against the tier-2 fetch p95 per "
     "run."},
    {"SESS", "KV reuse: sessions and traces",
     "Runs whose records carry the client's oracle (sessioned_chat, trace replay): TTFT per turn "
     "and against reuse distance (the tokens other requests sent since a session's previous "
     "turn; log2 bins, tier capacities from the config as vertical lines), and the prefix-hit "
     "ratio an unbounded cache would give (oracle: reusable / prompt tokens) beside the one the "
     "server gave (realized: cached / prompt tokens)."},
    {"H8", "H8A / H8B: CPU iowait",
     "iowait against p99 (from the H8A/H8B runs and the H2A/H2B sweeps): flat for a queue-bound "
     "Stack A, tracking tier-2 activity for Stack B."},
};

static void add_fit_para(struct doc *d, const char *what, const struct sb_fit *f)
{
    if (f->n < 2 || isnan(f->b)) {
        doc_addf(d, BLK_PARA, "%s: not enough points for a fit (%zu).", what, f->n);
        return;
    }
    char r[32];
    if (isfinite(f->r))
        snprintf(r, sizeof(r), "%.4f", f->r);
    else
        snprintf(r, sizeof(r), "n/a");
    doc_addf(d, BLK_PARA, "%s: Pearson r = %s, least-squares fit y = %.6g + %.6g x, n = %zu.", what,
             r, f->a, f->b, f->n);
}

static void add_sections(struct doc *d, const struct sb_analysis *an)
{
    for (size_t s = 0; s < SB_ARRAY_SIZE(sections); s++) {
        bool any = false;
        for (size_t f = 0; f < an->nfigs; f++)
            any |= strcmp(an->figs[f].section, sections[s].id) == 0;
        if (!any)
            continue;
        doc_addf(d, BLK_H2, "%s", sections[s].title);
        doc_addf(d, BLK_PARA, "%s", sections[s].text);
        if (strcmp(sections[s].id, "H7") == 0) {
            add_fit_para(d, "Observed vs predicted NVMe read MB/s", &an->h7_fit);
            add_fit_para(d, "p99 vs tier-2 fetch p95", &an->h7_fetch_fit);
        }
        for (size_t f = 0; f < an->nfigs; f++) {
            const struct sb_figure *fig = &an->figs[f];
            if (strcmp(fig->section, sections[s].id) != 0)
                continue;
            doc_addf(d, BLK_H3, "%s", fig->title);
            struct blk *b = doc_add(d, BLK_FIGURE, NULL);
            if (b)
                b->fig = fig;
            b = doc_add(d, BLK_TABLE, NULL);
            if (b)
                b->table = &fig->table;
        }
    }
}

static void add_criteria(struct doc *d, const struct sb_analysis *an)
{
    struct sb_buf items;
    sb_buf_init(&items, 1u << 16);
    const struct sb_gate *flat = &an->gates[SB_GATE_H2A_NVME_FLAT];
    const struct sb_gate *t2 = &an->gates[SB_GATE_H2B_TIER2_HITS];
    char r1[32] = "n/a", r2[32] = "n/a";
    if (isfinite(an->h7_fit.r))
        snprintf(r1, sizeof(r1), "%.3f", an->h7_fit.r);
    if (isfinite(an->h7_fetch_fit.r))
        snprintf(r2, sizeof(r2), "%.3f", an->h7_fetch_fit.r);
    sb_buf_addf(&items,
                "Stack A, NVMe flat in H2A/H4A, p99 growth from queue/GPU: gate h2a_nvme_flat "
                "%s (%s); see the H2 and H4 tables.\n",
                sb_verdict_name(flat->verdict), flat->reason);
    sb_buf_addf(&items,
                "Stack B, tier-2 hits and NVMe r_await explain p95/p99 in H2B/H4B: gate "
                "h2b_tier2_hits %s (%s); p99 vs tier-2 fetch p95 r = %s.\n",
                sb_verdict_name(t2->verdict), t2->reason, r2);
    sb_buf_adds(&items, "H6, tier sizing shifts the knee, policy affects hit rate: see the H6 "
                        "table (knee and tier-2 share per capacity and policy).\n");
    sb_buf_addf(&items,
                "H7, KV telemetry maps to NVMe and p99: predicted vs observed NVMe read r = %s "
                "over %zu ticks.",
                r1, an->h7_fit.n);
    doc_addf(d, BLK_H2, "Success criteria (Test Plan §15)");
    doc_add(d, BLK_LIST, items.data ? items.data : "");
    sb_buf_release(&items);
}

static void add_warnings(struct doc *d, const struct sb_analysis *an)
{
    struct sb_buf items;
    sb_buf_init(&items, 1u << 20);
    size_t shown = 0, total = 0;
    /* Grouping warnings first: they change what the tables mean. */
    for (size_t k = 0; k < an->nwarnings; k++, total++)
        if (shown < 200) {
            sb_buf_addf(&items, "grouping: %s\n", an->warnings[k]);
            shown++;
        }
    for (size_t i = 0; i < an->nruns; i++) {
        const struct sb_run *r = &an->runs[i];
        for (size_t k = 0; k < r->nwarnings; k++, total++)
            if (shown < 200 && r->warnings[k]) {
                sb_buf_addf(&items, "%s: %s\n", str_or(r->run_id, r->dir), r->warnings[k]);
                shown++;
            }
    }
    if (total) {
        doc_addf(d, BLK_H2, "Warnings");
        if (total > shown)
            doc_addf(d, BLK_PARA, "The first %zu of %zu warnings.", shown, total);
        if (items.len && items.data[items.len - 1] == '\n')
            items.data[--items.len] = '\0';
        doc_add(d, BLK_LIST, items.data ? items.data : "");
    }
    sb_buf_release(&items);
}

static int build_doc(const struct sb_analysis *an, struct doc *d)
{
    char when[64] = "";
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm))
        strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm);
    struct sb_buf cmd;
    sb_buf_init(&cmd, 1u << 20);
    command_line(an->opts, &cmd);

    doc_addf(d, BLK_H1, "sparkbench analysis report");
    doc_addf(d, BLK_PARA, "Generated %s by sparkbench %s (git %s); figures by %s.", when,
             SB_VERSION, SB_GIT_REV,
             an->gnuplot_version[0] ? an->gnuplot_version : "no gnuplot (not rendered)");
    doc_addf(d, BLK_H2, "Command");
    doc_add(d, BLK_CODE, cmd.data ? cmd.data : "");
    sb_buf_release(&cmd);
    /* The findings first; the runs table, which grows with the campaign, after them. */
    add_uwork(d, an);
    add_gates(d, an);
    add_sections(d, an);
    add_criteria(d, an);
    add_runs(d, an);
    add_server_view(d, an);
    add_warnings(d, an);
    return d->failed ? -1 : 0;
}

int sb_report_write(const struct sb_analysis *an, struct sb_err *err)
{
    struct doc d = {0};
    struct sb_buf o;
    sb_buf_init(&o, REPORT_MAX);
    int rc = -1;
    if (build_doc(an, &d) != 0) {
        sb_err_set(err, "out of memory building the report");
        goto out;
    }
    for (size_t i = 0; i < SB_ARRAY_SIZE(renderers); i++) {
        char path[4200];
        snprintf(path, sizeof(path), "%s/report.%s", an->opts->out_dir, renderers[i].ext);
        sb_buf_reset(&o);
        render_doc(&d, &renderers[i], &o, an->fig_dir);
        if (o.len >= o.max || !o.data) {
            sb_err_set(err, "cannot write '%s': report too large", path);
            goto out;
        }
        if (sb_write_file_atomic(path, o.data, o.len, err) != 0)
            goto out;
    }
    rc = 0;
out:
    sb_buf_release(&o);
    doc_release(&d);
    return rc;
}

/* Table order: by run id up to its sweep step (the runner's stamp groups a sweep), then by the
   sweep variables, so a sweep reads top to bottom. */
static int run_row_cmp(const void *pa, const void *pb)
{
    const struct sb_run *a = *(const struct sb_run *const *)pa,
                        *b = *(const struct sb_run *const *)pb;
    int c = strncmp(a->run_id ? a->run_id : "", b->run_id ? b->run_id : "", 15);
    if (c)
        return c;
    c = strcmp(a->hypothesis ? a->hypothesis : "", b->hypothesis ? b->hypothesis : "");
    if (c)
        return c;
    c = strcmp(a->stack ? a->stack : "", b->stack ? b->stack : "");
    if (c)
        return c;
    if (a->context_tokens != b->context_tokens)
        return a->context_tokens < b->context_tokens ? -1 : 1;
    if (a->concurrency != b->concurrency)
        return a->concurrency < b->concurrency ? -1 : 1;
    return strcmp(a->run_id ? a->run_id : "", b->run_id ? b->run_id : "");
}

/* The per-run summary table on stdout (the CSV has every column; this is what a person scans). */
static void print_runs_table(const struct sb_run *runs, size_t n)
{
    enum { MAX_ROWS = 60 };
    const struct sb_run **rows = malloc(n * sizeof(*rows));
    if (!rows)
        return;
    for (size_t i = 0; i < n; i++)
        rows[i] = &runs[i];
    qsort(rows, n, sizeof(*rows), run_row_cmp);
    printf("%-16s %-4s %-10s %-5s %5s %6s %5s %4s %9s %9s %9s %9s %9s %6s\n", "run (stamp)", "hyp",
           "phase", "stack", "conc", "ctx", "n", "err", "ttft_p50", "ttft_p95", "ttft_p99",
           "e2e_p50", "e2e_p99", "req/s");
    for (size_t i = 0; i < n && i < MAX_ROWS; i++) {
        const struct sb_run *r = rows[i];
        const struct sb_summary *t = &r->lat[SB_LAT_TTFT], *e = &r->lat[SB_LAT_E2E];
        printf("%-16.15s %-4s %-10.10s %-5s %5lld %6lld %5zu %4zu %9.1f %9.1f %9.1f %9.1f %9.1f "
               "%6.2f\n",
               r->run_id ? r->run_id : "", r->hypothesis ? r->hypothesis : "",
               r->phase ? r->phase : "", r->stack ? r->stack : "", r->concurrency,
               r->context_tokens, t->n, r->errors, t->p50, t->p95, t->p99, e->p50, e->p99,
               r->achieved_rps);
    }
    if (n > MAX_ROWS)
        printf("... %zu more runs (every run is in summary_v3.csv)\n", n - MAX_ROWS);
    free(rows);
}

int sb_analyze_outputs(struct sb_run *runs, size_t n, const struct sb_analyze_opts *opts,
                       struct sb_err *err)
{
    struct sb_analysis an;
    char path[4200];
    int rc = -1;
    if (sb_analysis_build(&an, runs, n, opts, err) != 0)
        goto out;
    for (size_t i = 0; i < an.nwarnings; i++)
        fprintf(stderr, "sparkbench analyze: warning: %s\n", an.warnings[i]);
    if (!opts->quiet && n > 0)
        print_runs_table(runs, n);
    if (sb_uwork_write(&an, err) != 0)
        goto out;
    if (sb_figures_write(&an, err) != 0)
        goto out;
    if (sb_gates_eval(&an, err) != 0)
        goto out;
    snprintf(path, sizeof(path), "%s/verdicts.json", an.fig_dir);
    if (sb_verdicts_write(&an, path, err) != 0)
        goto out;
    if (sb_report_write(&an, err) != 0)
        goto out;
    if (!opts->quiet) {
        size_t plots = 0, rendered = 0;
        for (size_t f = 0; f < an.nfigs; f++) {
            plots += an.figs[f].has_plot;
            rendered += an.figs[f].svg && an.figs[f].png;
        }
        printf("%zu CSV files, %zu figures (%zu rendered) in %s\n", an.nfigs, plots, rendered,
               an.fig_dir);
        for (size_t f = 0; f < an.nfigs; f++)
            if (an.figs[f].svg && an.figs[f].png)
                printf("figure: %s/%s.svg (.png)\n", an.fig_dir, an.figs[f].stem);
        for (size_t i = 0; i < SB_GATE_N; i++) {
            char v[32];
            fmt_val(v, sizeof(v), an.gates[i].value);
            printf("gate %-15s %-4s %s%s%s\n", an.gates[i].name,
                   sb_verdict_name(an.gates[i].verdict), an.gates[i].reason, v[0] ? " " : "", v);
        }
        printf("report: %s/report.md, %s/report.html\n", opts->out_dir, opts->out_dir);
    }
    rc = 0;
out:
    sb_analysis_release(&an);
    return rc;
}
