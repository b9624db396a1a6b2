/*
 * fio.json -> struct sb_fio_stats (sb/analyze_fio.h). Bandwidths and IOPS add up over jobs (each
 * job is a separate neighbour on the same device); a p99 does not add, so the worst job's stands
 * for the neighbour (with group_reporting, as configs/fio/ use, there is one job anyway).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "sb/analyze.h"
#include "sb/analyze_fio.h"
#include "sb/buf.h"

void sb_fio_stats_init(struct sb_fio_stats *s)
{
    s->present = false;
    s->jobs = 0;
    s->read_mbs = s->write_mbs = NAN;
    s->read_iops = s->write_iops = NAN;
    s->read_p99_ms = s->write_p99_ms = NAN;
}

static double num_at(const cJSON *o, const char *key)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(x) ? x->valuedouble : NAN;
}

static double add(double sum, double v)
{
    if (isnan(v))
        return sum;
    return isnan(sum) ? v : sum + v;
}

/* One direction ("read"/"write") of one job into the sums. */
static int add_dir(const cJSON *job, const char *dir, double *mbs, double *iops, double *p99_ms,
                   size_t i, char *why, size_t cap)
{
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(job, dir);
    if (!cJSON_IsObject(d)) {
        snprintf(why, cap, "jobs[%zu] has no \"%s\" object", i, dir);
        return -1;
    }
    double bw = num_at(d, "bw_bytes");
    if (isnan(bw)) /* fio before 3.x: "bw" in KiB/s (HOWTO: 1024 bytes per second units) */
        bw = num_at(d, "bw") * 1024.0;
    if (isnan(bw)) {
        snprintf(why, cap, "jobs[%zu].%s has no bw_bytes", i, dir);
        return -1;
    }
    *mbs = add(*mbs, bw / 1e6);
    *iops = add(*iops, num_at(d, "iops"));
    const cJSON *clat = cJSON_GetObjectItemCaseSensitive(d, "clat_ns");
    const cJSON *pct = cJSON_GetObjectItemCaseSensitive(clat, "percentile");
    double p99 = num_at(pct, "99.000000");
    if (!isnan(p99) && num_at(clat, "N") != 0 && (isnan(*p99_ms) || p99 / 1e6 > *p99_ms))
        *p99_ms = p99 / 1e6;
    return 0;
}

int sb_fio_parse(const char *text, size_t len, struct sb_fio_stats *s, char *why, size_t cap)
{
    sb_fio_stats_init(s);
    why[0] = '\0';
    size_t off = 0;
    while (off < len && text[off] != '{') {
        const char *nl = memchr(text + off, '\n', len - off);
        off = nl ? (size_t)(nl - text) + 1 : len;
    }
    if (off >= len) {
        snprintf(why, cap, "no JSON object in it (fio wrote no results)");
        return -1;
    }
    cJSON *j = cJSON_ParseWithLength(text + off, len - off);
    if (!cJSON_IsObject(j)) {
        snprintf(why, cap, "not a JSON object (torn: fio stopped before it finished writing?)");
        cJSON_Delete(j);
        return -1;
    }
    const cJSON *jobs = cJSON_GetObjectItemCaseSensitive(j, "jobs");
    int n = cJSON_GetArraySize(jobs);
    if (!cJSON_IsArray(jobs) || n == 0) {
        snprintf(why, cap, "no \"jobs\" in it");
        cJSON_Delete(j);
        return -1;
    }
    struct sb_fio_stats t;
    sb_fio_stats_init(&t);
    for (int i = 0; i < n; i++) {
        const cJSON *job = cJSON_GetArrayItem(jobs, i);
        if (add_dir(job, "read", &t.read_mbs, &t.read_iops, &t.read_p99_ms, (size_t)i, why, cap) !=
                0 ||
            add_dir(job, "write", &t.write_mbs, &t.write_iops, &t.write_p99_ms, (size_t)i, why,
                    cap) != 0) {
            cJSON_Delete(j);
            return -1;
        }
    }
    cJSON_Delete(j);
    t.present = true;
    t.jobs = (size_t)n;
    *s = t;
    return 0;
}

/* fio's JSON for a few jobs is kilobytes; json+ with latency bins stays far below this. */
#define FIO_JSON_MAX (16u << 20)

void sb_run_read_fio(struct sb_run *r, const char *path)
{
    struct sb_buf text;
    sb_buf_init(&text, FIO_JSON_MAX);
    errno = 0;
    if (sb_buf_add_file(&text, path) != 0) {
        int eno = errno ? errno : EFBIG; /* no errno: over FIO_JSON_MAX */
        if (eno != ENOENT)
            sb_run_warn(r, "cannot read '%s': %s; the fio neighbour's numbers are unknown", path,
                        strerror(eno));
        else if (r->fio_profile && r->fio_profile[0])
            sb_run_warn(r, "no '%s' for fio profile '%s': the fio neighbour's numbers are unknown",
                        path, r->fio_profile);
        sb_buf_release(&text);
        return;
    }
    char why[160];
    if (sb_fio_parse(text.data ? text.data : "", text.len, &r->fio, why, sizeof(why)) != 0)
        sb_run_warn(r, "cannot parse '%s': %s; the fio neighbour's numbers are unknown", path, why);
    sb_buf_release(&text);
}
