/*
 * `sparkbench sysmon`: telemetry on an absolute time grid. Sources are const ops tables (one file
 * each: source_cpu.c, source_mem.c, ...); the sampler wakes at wall-clock multiples of the interval
 * with clock_nanosleep(TIMER_ABSTIME), asks every source for its fields, and writes one JSON line
 * per tick with the scheduled and the actual time. A missed tick is written as missed, never
 * merged into the next; a source that failed a tick is absent from that line, never zero-filled.
 * Remote sources (HTTP scrapes) run concurrently on one shared libcurl multi handle and are
 * bounded by the tick's deadline on the grid, so a slow endpoint neither delays the other sources
 * nor moves the grid; one that misses the deadline is named in the line's "late_sources".
 */
#ifndef SB_SYSMON_H
#define SB_SYSMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sb/buf.h"
#include "sb/err.h"

struct sb_sysmon_config {
    char *out_dir;
    double duration_s; /* 0: until SIGINT/SIGTERM */
    long long interval_ms;
    char *disks; /* comma list; NULL: the devices holding out_dir (and tier2 dirs) */
    bool per_cpu;
    bool no_disk;    /* skip the disk source */
    char *proc_root; /* "/proc" (tests point it at fixtures) */
    char *sys_root;  /* "/sys" */
    /* gpu (source_gpu.c) */
    bool no_gpu;
    char *nvml_lib; /* NULL: "libnvidia-ml.so.1" (tests point it at a fake) */
    /* proc (source_proc.c): comma lists */
    char *pids;   /* process ids */
    char *pid_of; /* process names (comm, or argv[0]'s base name) */
    /* prom (source_prom.c): comma list of Prometheus /metrics URLs, scraped every tick */
    char *prom_urls;
    bool dynkv;                   /* write dynkv.jsonl even before any KV series shows up */
    uint64_t kv_block_size_bytes; /* bytes of one KV block, for dynkv bytes_in/bytes_out */
    /* trtllm (source_trtllm.c): TensorRT-LLM's JSON /metrics URL, drained into trtllm.jsonl */
    char *trtllm_url;
    bool insecure; /* --insecure: https scrapes skip certificate checks (sb/tls.h) */
};

/* The moment of one tick, passed to every source. */
struct sb_sysmon_tick {
    uint64_t mono_ns;       /* CLOCK_MONOTONIC when the tick woke */
    uint64_t sched_real_ns; /* the grid time it was scheduled for (the line's "ts") */
    uint64_t real_ns;       /* CLOCK_REALTIME when it woke ("ts_actual") */
};

struct sb_sysmon_source;
struct sb_scrape_pool;

struct sb_sysmon_source_ops {
    const char *name; /* the JSON key of its object, e.g. "cpu" */
    /* Prepares the source; returns 0, 1 when it is not available here (said once, then skipped),
       or -1 with err. */
    int (*open)(struct sb_sysmon_source *src, const struct sb_sysmon_config *cfg,
                struct sb_err *err);
    /* Appends `"name":{...}` (no leading comma) for this tick; returns 0, -1 when it has
       nothing valid this tick (the line then lacks it), or 1 when it adds nothing to the
       sysmon.jsonl line by design (a source that writes a file of its own, like dynkv.jsonl). */
    int (*sample)(struct sb_sysmon_source *src, const struct sb_sysmon_tick *tick,
                  struct sb_buf *out);
    void (*close)(struct sb_sysmon_source *src);
    /* Remote sources only (NULL for local ones): starts this tick's GETs on src->pool. The
       sampler then reads the local sources, runs the pool until every GET is done or the tick's
       scrape deadline passes, and calls sample(), which sets src->late when a GET missed it. */
    void (*start)(struct sb_sysmon_source *src, const struct sb_sysmon_tick *tick);
};

struct sb_sysmon_source {
    const struct sb_sysmon_source_ops *ops;
    void *state; /* the source's own */
    bool enabled;
    char note[256];              /* why it is off, for the one notice */
    struct sb_scrape_pool *pool; /* the sampler's, for remote sources (borrowed) */
    bool late;                   /* set by sample(): a GET missed this tick's deadline */
};

extern const struct sb_sysmon_source_ops sb_source_cpu, sb_source_mem, sb_source_psi,
    sb_source_disk, sb_source_gpu, sb_source_proc, sb_source_prom, sb_source_trtllm;

/* Reads <root>/<rel> whole into out (reset first). Returns 0 or -1 (errno kept). */
int sb_sysmon_read_file(const char *root, const char *rel, struct sb_buf *out);

/* The first wall-clock multiple of interval_ns strictly after real_ns. */
uint64_t sb_sysmon_next_grid(uint64_t real_ns, uint64_t interval_ns);

/* How long after its grid time a tick's remote GETs may run: 0.8 x the interval, at most 2 s. */
uint64_t sb_sysmon_scrape_budget_ns(uint64_t interval_ns);

/*
 * Runs the sampler until duration_s or *stop becomes true (checked each tick), writing
 * <out_dir>/sysmon.jsonl. Tick k is due at first + k x interval (first: the grid time after the
 * start) whatever the earlier ticks took: a tick that wakes late says by how much ("late_ms",
 * with "ts_actual" the wall time it woke), the ticks it skipped entirely are written as
 * {"ts":..,"missed":true}, and no tick is due past start + duration_s. Returns 0, or -1 with err
 * (cannot create the file, ...).
 */
int sb_sysmon_run(const struct sb_sysmon_config *cfg, volatile bool *stop, struct sb_err *err);

/* ---- the prom source's named fields (source_prom.c) ---- */

struct sb_prom_snapshot;

/* One scraped URL as the prom source holds it at a tick. */
struct sb_prom_page {
    const struct sb_prom_snapshot *prev; /* the last good page before this tick; NULL: none */
    const struct sb_prom_snapshot *cur;  /* this tick's; NULL when its GET failed */
    uint64_t prev_ns, cur_ns;            /* CLOCK_MONOTONIC when each GET finished */
};

/*
 * Appends `"series":{...}` (a complete member) with the named fields of the known
 * servers (llama.cpp llamacpp:*, vLLM vllm:*, SGLang sglang:*, TensorRT-LLM trtllm*, Dynamo
 * frontend and worker, KVBM) found on pages[0..n): gauges as the current value (label sets
 * summed, or averaged for ratios), counters as a rate per second between a URL's last two good
 * pages (key + "_per_s"), histograms as their p50 and p99 over the observations between those
 * pages (key + "_p50" / "_p99", seconds as the server counts them). Each field comes from the
 * first page, in order, that carries it; null when that URL failed this tick, a counter has no
 * earlier page or went down, or a histogram saw nothing new; left out when no page carries it.
 * 0, or -1 when out refuses to grow.
 */
int sb_prom_series_render(const struct sb_prom_page *pages, size_t n, struct sb_buf *out);

#endif
