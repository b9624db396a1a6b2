/*
 * Exact-length prompts. The prose is operations notes written for this project: paragraphs headed
 * by a shift line, each of four to eight sentences drawn from about twenty templates whose slots
 * (components, symptoms, metrics with numbers and units, hosts, tools, operator actions, causes,
 * lessons) come from word lists through a seeded xoshiro generator. Numbers, hosts and times make
 * almost every sentence distinct, so a long prompt is not one paragraph repeated (which a prefix
 * cache would see through).
 *
 * Hitting N exactly: paragraphs are counted one by one as they are added (the tokenizer's pre-token
 * cache makes that cheap) until the running estimate passes N with a margin; the whole text is
 * then counted once and more is added if it is still short. The cut is a binary search over word
 * boundaries (the positions before a space) for the longest prefix whose text, closed with ".\n",
 * counts at most N; in a byte-level BPE a space starts a new pre-token, so counts rise with the
 * cut point and the search lands a word or two short of N. Short words are then inserted before
 * the closing ".\n" one token at a time, each try counted, until the count is N. About twenty
 * whole-text counts per prompt: a 65536-token prompt takes well under a second.
 */
#include "sb/prompts.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "sb/util.h"

#define L(a) (sizeof(a) / sizeof(a[0]))

static const char *const components[] = {
    "the prefill worker",
    "the decode worker",
    "the KV cache tier",
    "the NVMe namespace",
    "the storage array",
    "the inference gateway",
    "the batch scheduler",
    "the block manager",
    "the metrics collector",
    "the router",
    "the LoRA adapter cache",
    "the host memory pool",
    "the RAID controller",
    "the object store",
    "the tokenizer service",
    "the load balancer",
    "the speculative decoding draft model",
    "the health checker",
    "the offload daemon",
    "the page cache",
    "the telemetry exporter",
    "the model loader",
    "the admission controller",
    "the autoscaler",
};
static const char *const symptoms[] = {
    "reported rising read latency",
    "dropped below its service level",
    "started evicting hot blocks",
    "queued requests well past the knee",
    "recovered after a controller reset",
    "doubled its p99 time to first token",
    "flushed dirty pages in long bursts",
    "moved cold blocks from host memory to disk",
    "was throttled by thermal limits",
    "served a burst of cold adapters",
    "returned a handful of 503 responses",
    "lost its heartbeat for a few seconds",
    "fell behind on its scrape interval",
    "logged checksum warnings",
    "stalled while compacting its index",
    "ran out of free blocks",
    "retried writes against a degraded volume",
    "reported a fragmented free list",
    "pinned one CPU core at one hundred percent",
    "refused new connections for a moment",
};
static const char *const progressive[] = {
    "was warming its cache",       "was replaying the trace",      "was rebuilding a mirror",
    "was draining its queue",      "was loading a new checkpoint", "was serving the nightly batch",
    "was spilling blocks to disk", "was swapping adapters",        "was running the soak test",
    "was restarting its workers",
};
static const char *const whens[] = {
    "during the nightly batch window",
    "while the fio job ran at queue depth 32",
    "after the context length grew past eight thousand tokens",
    "when concurrency passed sixteen users",
    "under a mixed read and write load",
    "while iowait climbed above ten percent",
    "as the first cache tier filled up",
    "shortly after the model server restarted",
    "before anyone paged the storage team",
    "with no change to the request rate",
    "right after the firmware update",
    "in the middle of a rolling deploy",
    "as soon as the warm pass began",
    "while the backup job copied snapshots",
    "during the cold pass of the benchmark",
};
static const struct {
    const char *name, *unit;
    int lo, hi;
} metrics[] = {
    {"p99 time to first token", "milliseconds", 80, 4000},
    {"median inter-token latency", "milliseconds", 8, 90},
    {"read throughput", "megabytes per second", 200, 7000},
    {"write throughput", "megabytes per second", 100, 5000},
    {"queue depth", "requests", 2, 256},
    {"GPU memory use", "gigabytes", 20, 140},
    {"prefix cache hit rate", "percent", 5, 98},
    {"iowait", "percent", 1, 45},
    {"power draw", "watts", 150, 700},
    {"NVMe temperature", "degrees", 35, 82},
    {"request rate", "requests per second", 1, 400},
    {"output rate", "tokens per second", 300, 9000},
    {"KV block usage", "percent", 10, 100},
    {"swap activity", "pages per second", 0, 9000},
};
static const char *const actions[] = {
    "capture iostat for ten minutes",
    "pin the benchmark to one NUMA node",
    "rerun the cold and the warm pass",
    "lower the batch size by half",
    "move the cache tier to the faster drives",
    "compare the run with last week's baseline",
    "collect a flame graph of the decode loop",
    "check the firmware version on every drive",
    "raise the scrape interval to one second",
    "restart the gateway in a quiet hour",
    "open a ticket with the vendor",
    "rebuild the degraded mirror",
    "disable prefix caching and measure again",
    "read the kernel log for resets",
    "drain the node and run the soak test",
    "update the runbook with the new steps",
};
static const char *const done[] = {
    "captured iostat and the server logs",
    "attached the latency histograms",
    "rolled the configuration back",
    "drained the node",
    "replaced a failing drive",
    "raised the queue limit",
    "cleared the stale adapters",
    "moved the job to another host",
    "restarted the telemetry exporter",
    "reset the controller",
    "trimmed the free blocks",
    "turned on verbose request logging",
};
static const char *const causes[] = {
    "a noisy neighbour on the shared array",
    "a firmware bug in the drive controller",
    "a cache that was too small for the working set",
    "a scheduler setting left from a test",
    "clock drift between the hosts",
    "a leaked file descriptor in the gateway",
    "a prompt mix that changed overnight",
    "memory pressure from the backup job",
    "a slow path in the block allocator",
    "an adapter that was evicted and reloaded in a loop",
    "a retry storm from one client",
    "a half-failed network link",
};
static const char *const tools[] = {
    "iostat",
    "the Grafana board",
    "nvidia-smi",
    "the sysmon trace",
    "perf",
    "the server's metrics endpoint",
    "the request log",
    "blktrace",
    "the benchmark report",
    "dmesg",
};
static const char *const people[] = {
    "The on-call engineer",
    "The storage lead",
    "Our SRE",
    "The night shift",
    "The platform team",
    "The model owner",
    "A developer from the serving team",
    "The capacity planner",
    "The incident commander",
    "The vendor's support engineer",
};
static const char *const alerts[] = {
    "HighTTFT",      "DiskLatency",  "QueueBacklog",    "GPUThrottle",
    "CacheMissRate", "NodeNotReady", "ErrorBudgetBurn", "ScrapeFailed",
};
static const char *const days[] = {"Monday", "Tuesday",  "Wednesday", "Thursday",
                                   "Friday", "Saturday", "Sunday"};
static const char *const teams[] = {"storage", "serving", "platform", "network", "capacity"};
static const char *const lessons[] = {
    "measure the cold pass before trusting the warm one",
    "a single slow drive can set the tail latency for the whole cluster",
    "the prefix cache hides storage problems until the prompts change",
    "dashboards averaged over a minute miss short stalls",
    "a benchmark without a baseline proves very little",
    "alerts should name the request rate they were tuned for",
    "host memory is faster than disk only when it is not already swapping",
    "the knee of the latency curve moves when the context grows",
    "every configuration change deserves a line in the log",
    "retries make an overloaded server slower, not faster",
};
static const char *const configs[] = {
    "the block size",
    "the scheduler policy",
    "the readahead setting",
    "the batch size",
    "the maximum number of sequences",
    "the cache eviction policy",
    "the network MTU",
    "the NUMA binding",
};
static const char *const services[] = {"the gateway", "the model server", "the cache daemon",
                                       "the exporter", "the router"};

#define PICK(r, a) ((a)[sb_rng_below((r), L(a))])

static int num(struct sb_rng *r, int lo, int hi)
{
    return lo + (int)sb_rng_below(r, (uint64_t)((long long)hi - lo) + 1);
}

/* Appends one sentence (with a leading space) to b. */
static int add_sentence(struct sb_rng *r, struct sb_buf *b)
{
    int m = (int)sb_rng_below(r, L(metrics));
    int x = num(r, metrics[m].lo, metrics[m].hi), y = num(r, metrics[m].lo, metrics[m].hi);
    int host = num(r, 1, 48);
    const char *hostkind = sb_rng_below(r, 2) ? "gpu" : "stor";
    switch (sb_rng_below(r, 20)) {
    case 0:
        return sb_buf_addf(b, " %c%s %s %s.", 'T', PICK(r, components) + 1, PICK(r, symptoms),
                           PICK(r, whens));
    case 1:
        return sb_buf_addf(b, " %s noticed that %s on %s-%02d moved from %d to %d %s %s.",
                           PICK(r, people), metrics[m].name, hostkind, host, x, y, metrics[m].unit,
                           PICK(r, whens));
    case 2:
        return sb_buf_addf(b, " After the team %s, %s %s.", PICK(r, done), PICK(r, components),
                           PICK(r, symptoms));
    case 3:
        return sb_buf_addf(b, " The runbook says to %s before touching %s.", PICK(r, actions),
                           PICK(r, components));
    case 4:
        return sb_buf_addf(b, " A reading from %s showed %s at %d %s while %s %s.", PICK(r, tools),
                           metrics[m].name, x, metrics[m].unit, PICK(r, components),
                           PICK(r, progressive));
    case 5:
        return sb_buf_addf(b, " We suspect %s, because %s %s.", PICK(r, causes),
                           PICK(r, components), PICK(r, symptoms));
    case 6:
        return sb_buf_addf(b,
                           " Host %s-%02d was drained, the team %s, and it went back into the "
                           "pool %s.",
                           hostkind, host, PICK(r, done), PICK(r, whens));
    case 7:
        return sb_buf_addf(b, " Nobody changed %s this week, yet %s drifted by %d percent.",
                           PICK(r, configs), metrics[m].name, num(r, 2, 60));
    case 8:
        return sb_buf_addf(b, " At %02d:%02d UTC the %s alert fired for %s-%02d.", num(r, 0, 23),
                           num(r, 0, 59), PICK(r, alerts), hostkind, host);
    case 9:
        return sb_buf_addf(b, " Follow-up: %s will %s and report back on %s.", PICK(r, people),
                           PICK(r, actions), PICK(r, days));
    case 10:
        return sb_buf_addf(b, " Lesson learned: %s.", PICK(r, lessons));
    case 11:
        return sb_buf_addf(b, " Question for the vendor: why does %s slow down %s?",
                           PICK(r, components), PICK(r, whens));
    case 12:
        return sb_buf_addf(b, " %s for %s-%02d stayed flat, so %s is probably not the cause.",
                           sb_rng_below(r, 2) ? "The sysmon trace" : "The Grafana board", hostkind,
                           host, PICK(r, components));
    case 13:
        return sb_buf_addf(b,
                           " %s rolled %s back to version %d.%d.%d, and %s recovered within %d "
                           "minutes.",
                           PICK(r, people), PICK(r, services), num(r, 0, 4), num(r, 0, 19),
                           num(r, 0, 9), metrics[m].name, num(r, 2, 55));
    case 14:
        return sb_buf_addf(b,
                           " Capacity note: %s-%02d has %d GPUs, %d GiB of host memory and %d "
                           "NVMe drives.",
                           hostkind, host, 1 << num(r, 1, 3), 128 << num(r, 0, 3), num(r, 2, 24));
    case 15:
        return sb_buf_addf(b, " According to %s, %s peaked at %d %s.", PICK(r, tools),
                           metrics[m].name, y, metrics[m].unit);
    case 16:
        return sb_buf_addf(b, " %s asked whether %s could explain why %s %s.", PICK(r, people),
                           PICK(r, causes), PICK(r, components), PICK(r, symptoms));
    case 17:
        return sb_buf_addf(b, " The next step is to %s, then to %s.", PICK(r, actions),
                           PICK(r, actions));
    case 18:
        return sb_buf_addf(b, " Ticket %d-%04d tracks the %s problem on %s-%02d.",
                           num(r, 2024, 2026), num(r, 1, 9999), metrics[m].name, hostkind, host);
    default:
        return sb_buf_addf(b,
                           " In short, %s was the most likely cause and %s was the first place "
                           "it showed.",
                           PICK(r, causes), PICK(r, components));
    }
}

static int add_paragraph(struct sb_rng *r, struct sb_buf *b, int shift)
{
    if (sb_buf_addf(b, "\n\nShift %d, %s, %s on-call:", shift, PICK(r, days), PICK(r, teams)))
        return -1;
    int k = num(r, 4, 8);
    for (int i = 0; i < k; i++)
        if (add_sentence(r, b) != 0)
            return -1;
    return 0;
}

int sb_prompts_parse_size(const char *s, long long *n, bool *alias)
{
    if (!s || !*s)
        return -1;
    long long v = 0;
    size_t i = 0;
    for (; s[i] >= '0' && s[i] <= '9'; i++) {
        v = v * 10 + (s[i] - '0');
        if (v > (16ll << 20))
            return -1;
    }
    if (i == 0)
        return -1;
    *alias = false;
    if (s[i] == 'k' || s[i] == 'K') {
        v *= 1024;
        i++;
        *alias = true;
    }
    if (s[i] != '\0' || v < SB_PROMPTS_MIN_TOKENS || v > (16ll << 20))
        return -1;
    *n = v;
    return 0;
}

/* Tokens of text[0..len) closed by ".\n". */
static int count_closed(struct sb_tokenizer *tok, struct sb_buf *scratch, const char *text,
                        size_t len, const char *pad, size_t *count, struct sb_err *err)
{
    sb_buf_reset(scratch);
    if (sb_buf_add(scratch, text, len) || sb_buf_adds(scratch, pad) ||
        sb_buf_add(scratch, ".\n", 2))
        return sb_err_set(err, "out of memory");
    return sb_tokenizer_count(tok, scratch->data, scratch->len, false, count, err);
}

int sb_prompts_make(struct sb_tokenizer *tok, long long n, uint64_t seed, struct sb_buf *out,
                    struct sb_err *err)
{
    static const char *const pads[] = {" now", " again", " too", " today", " then", " here",
                                       " and", " so",    " ok",  ",",      "."};
    struct sb_rng r;
    struct sb_buf para, scratch;
    size_t *cuts = NULL, ncuts = 0, have = 0, c;
    int rc = -1, shift = 1;
    sb_rng_seed(&r, sb_mix64(seed * 0x9e3779b97f4a7c15ull + (uint64_t)n));
    sb_buf_init(&para, 1 << 20);
    sb_buf_init(&scratch, out->max);
    sb_buf_reset(out);
    if (n < SB_PROMPTS_MIN_TOKENS) {
        sb_err_set(err, "a prompt needs at least %d tokens, not %lld", SB_PROMPTS_MIN_TOKENS, n);
        goto done;
    }
    if (sb_buf_adds(out, "Operations notes (synthetic, written for sparkbench). Read them and "
                         "summarise what went wrong, what the team did and what is still open."))
        goto oom;
    size_t est = 0;
    if (sb_tokenizer_count(tok, out->data, out->len, false, &est, err))
        goto done;
    /* Grow until the whole text, closed, counts past n with some words to spare. */
    for (;;) {
        while (est < (size_t)n + 48) {
            sb_buf_reset(&para);
            if (add_paragraph(&r, &para, shift++) || sb_buf_add(out, para.data, para.len))
                goto oom;
            if (sb_tokenizer_count(tok, para.data, para.len, false, &c, err))
                goto done;
            est += c;
        }
        if (count_closed(tok, &scratch, out->data, out->len, "", &have, err))
            goto done;
        if (have > (size_t)n + 16)
            break;
        est = have;
    }
    /* Word boundaries: the positions of spaces. */
    for (size_t i = 1; i < out->len; i++)
        if (out->data[i] == ' ' && out->data[i - 1] != ' ')
            ncuts++;
    cuts = malloc((ncuts + 1) * sizeof(*cuts));
    if (!cuts)
        goto oom;
    ncuts = 0;
    for (size_t i = 1; i < out->len; i++)
        if (out->data[i] == ' ' && out->data[i - 1] != ' ')
            cuts[ncuts++] = i;
    cuts[ncuts] = out->len; /* the whole text: counts more than n */
    /* Binary search: f(lo) <= n < f(hi). Trailing punctuation before a cut is dropped so the
       closing ".\n" does not double it. */
    size_t lo = 0, hi = ncuts;
    if (count_closed(tok, &scratch, out->data, cuts[0], "", &c, err))
        goto done;
    if (c > (size_t)n) {
        sb_err_set(err, "cannot make a prompt of %lld tokens: the header alone has %zu", n, c);
        goto done;
    }
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (count_closed(tok, &scratch, out->data, cuts[mid], "", &c, err))
            goto done;
        if (c <= (size_t)n)
            lo = mid;
        else
            hi = mid;
    }
    size_t keep = cuts[lo];
    while (keep > 0 && strchr(",.;:", out->data[keep - 1]))
        keep--;
    out->len = keep;
    out->data[keep] = '\0';
    /* Pad one token at a time. */
    struct sb_buf padbuf;
    sb_buf_init(&padbuf, 4096);
    if (count_closed(tok, &scratch, out->data, out->len, "", &c, err)) {
        sb_buf_release(&padbuf);
        goto done;
    }
    for (int tries = 0; c < (size_t)n && tries < 256; tries++) {
        bool stepped = false;
        for (size_t p = 0; p < L(pads) && !stepped; p++) {
            size_t mark = padbuf.len, c2;
            if (sb_buf_adds(&padbuf, pads[(p + (size_t)tries) % L(pads)]))
                break;
            if (count_closed(tok, &scratch, out->data, out->len, padbuf.data, &c2, err)) {
                sb_buf_release(&padbuf);
                goto done;
            }
            if (c2 > c && c2 <= (size_t)n) {
                c = c2;
                stepped = true;
            } else {
                padbuf.len = mark;
                padbuf.data[mark] = '\0';
            }
        }
        if (!stepped)
            break;
    }
    int bad =
        sb_buf_add(out, padbuf.data ? padbuf.data : "", padbuf.len) || sb_buf_add(out, ".\n", 2);
    sb_buf_release(&padbuf);
    if (bad)
        goto oom;
    if (sb_tokenizer_count(tok, out->data, out->len, false, &c, err))
        goto done;
    if (c != (size_t)n) {
        sb_err_set(err, "could not hit %lld tokens exactly: the text counts %zu", n, c);
        goto done;
    }
    rc = 0;
    goto done;
oom:
    sb_err_set(err, "out of memory building a prompt of %lld tokens", n);
done:
    free(cuts);
    sb_buf_release(&para);
    sb_buf_release(&scratch);
    return rc;
}
