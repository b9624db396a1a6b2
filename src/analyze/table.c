/*
 * String tables for analyze's outputs. Each per-hypothesis CSV and the report's table of the same
 * data are one struct sb_table, so the file and the report cannot disagree; numbers are turned
 * into text once, here ("%.10g", NAN as an empty cell). The outputs are written with
 * sb_write_file_atomic (sb/util.h), so that a reader (a runner doing `$(cat uwork.txt)`) never
 * sees half a file.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sb/analyze_out.h"

#include <cjson/cJSON.h>

/* gcc -fanalyzer: GCC 12 reports a leak of a string stored into a slot of a heap array at a
   variable index (it loses the pointer there); the array is freed by its owner (t->cells,
   sb_table_release) */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wanalyzer-malloc-leak"
int sb_table_init(struct sb_table *t, const char *const *header, size_t ncols)
{
    memset(t, 0, sizeof(*t));
    t->ncols = ncols;
    t->cap = 16;
    t->cells = calloc(t->cap * ncols, sizeof(char *));
    if (!t->cells)
        return -1;
    for (size_t c = 0; c < ncols; c++)
        if (!(t->cells[c] = strdup(header[c]))) {
            sb_table_release(t);
            return -1;
        }
    t->cur = ncols;
    return 0;
}
#pragma GCC diagnostic pop

void sb_table_release(struct sb_table *t)
{
    if (t->cells)
        for (size_t i = 0; i < (t->nrows + 1) * t->ncols; i++)
            free(t->cells[i]);
    free(t->cells);
    memset(t, 0, sizeof(*t));
}

void sb_table_row(struct sb_table *t)
{
    if (t->failed || !t->cells)
        return;
    if (t->nrows + 2 > t->cap) {
        size_t cap = t->cap * 2;
        char **c = realloc(t->cells, cap * t->ncols * sizeof(char *));
        if (!c) {
            t->failed = true;
            return;
        }
        t->cells = c;
        t->cap = cap;
    }
    t->nrows++;
    for (size_t c = 0; c < t->ncols; c++)
        t->cells[t->nrows * t->ncols + c] = NULL;
    t->cur = 0;
}

/* gcc -fanalyzer: GCC 12 reports a leak of a string stored into a slot of a heap array at a
   variable index (it loses the pointer there); the array is freed by its owner (t->cells,
   sb_table_release) */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wanalyzer-malloc-leak"
void sb_table_str(struct sb_table *t, const char *s)
{
    if (t->failed || !t->cells)
        return;
    if (t->nrows == 0 || t->cur >= t->ncols) {
        t->failed = true;
        return;
    }
    char *copy = strdup(s ? s : "");
    if (!copy) {
        t->failed = true;
        return;
    }
    t->cells[t->nrows * t->ncols + t->cur++] = copy;
}
#pragma GCC diagnostic pop

void sb_table_num(struct sb_table *t, double v)
{
    char s[64] = "";
    if (isfinite(v))
        snprintf(s, sizeof(s), "%.10g", v == 0 ? 0.0 : v); /* no "-0" */
    sb_table_str(t, s);
}

void sb_table_fixed(struct sb_table *t, double v, int decimals)
{
    char s[64] = "";
    if (isfinite(v))
        snprintf(s, sizeof(s), "%.*f", decimals, v);
    sb_table_str(t, s);
}

void sb_table_int(struct sb_table *t, long long v)
{
    char s[32] = "";
    if (v >= 0)
        snprintf(s, sizeof(s), "%lld", v);
    sb_table_str(t, s);
}

void sb_table_fmt(struct sb_table *t, const char *fmt, ...)
{
    char s[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s, sizeof(s), fmt, ap);
    va_end(ap);
    sb_table_str(t, s);
}

bool sb_table_failed(const struct sb_table *t)
{
    return t->failed || !t->cells;
}

const char *sb_table_cell(const struct sb_table *t, size_t row, size_t col)
{
    if (!t->cells || row > t->nrows || col >= t->ncols)
        return "";
    const char *s = t->cells[row * t->ncols + col];
    return s ? s : "";
}

size_t sb_table_col(const struct sb_table *t, const char *name)
{
    for (size_t c = 0; c < t->ncols; c++)
        if (strcmp(sb_table_cell(t, 0, c), name) == 0)
            return c;
    return SIZE_MAX;
}

int sb_table_csv(const struct sb_table *t, struct sb_buf *b)
{
    int rc = 0;
    for (size_t r = 0; r <= t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            const char *s = sb_table_cell(t, r, c);
            if (c)
                rc |= sb_buf_adds(b, ",");
            if (!strpbrk(s, ",\"\r\n")) {
                rc |= sb_buf_adds(b, s);
                continue;
            }
            rc |= sb_buf_adds(b, "\"");
            for (const char *p = s; *p; p++)
                rc |= *p == '"' ? sb_buf_adds(b, "\"\"") : sb_buf_add(b, p, 1);
            rc |= sb_buf_adds(b, "\"");
        }
        rc |= sb_buf_adds(b, "\n");
    }
    return rc ? -1 : 0;
}

cJSON *sb_json_num_or_null(double v)
{
    return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull();
}
