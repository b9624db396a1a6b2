/*
 * The SSE push parser (sb/sse.h) over arbitrary bytes in arbitrary splits. The first byte picks
 * max_event_bytes (small limits reach the E2BIG paths), the next four bytes seed the split
 * points; the rest is the stream. The same stream is also fed whole and one byte at a time:
 * every way of splitting it must give the same events, feed result and finish result, as the
 * header promises ("split at any byte"). Each piece is fed from its own exact-size copy so ASan
 * sees any read past the bytes handed over.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "sb/sse.h"

struct digest {
    uint64_t events, h;
};

/* FNV-1a over every field of every event: two ways of feeding must produce equal digests. */
static void mix(struct digest *d, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        d->h ^= b[i];
        d->h *= 1099511628211ull;
    }
}

static int on_event(const struct sb_sse_event *ev, void *arg)
{
    struct digest *d = arg;
    d->events++;
    if (ev->type[ev->type_len] != '\0' || ev->data[ev->data_len] != '\0')
        sb_fuzz_fail("event strings not NUL-terminated at their length");
    mix(d, &ev->type_len, sizeof(ev->type_len));
    mix(d, ev->type, ev->type_len);
    mix(d, &ev->has_data, sizeof(ev->has_data));
    mix(d, &ev->data_len, sizeof(ev->data_len));
    mix(d, ev->data, ev->data_len);
    size_t cl = ev->comment ? ev->comment_len + 1 : 0, el = ev->error ? ev->error_len + 1 : 0;
    mix(d, &cl, sizeof(cl));
    if (ev->comment)
        mix(d, ev->comment, ev->comment_len);
    mix(d, &el, sizeof(el));
    if (ev->error)
        mix(d, ev->error, ev->error_len);
    return 0;
}

struct outcome {
    struct digest d;
    int feed_rc, finish_rc;
    uint64_t comments, bytes;
};

/* Feeds s[0..n) in pieces whose lengths come from next_len (0 means "the rest"). */
static void run(const char *s, size_t n, size_t max, uint32_t seed, int mode, struct outcome *o)
{
    struct sb_sse p;
    memset(o, 0, sizeof(*o));
    o->d.h = 1469598103934665603ull;
    sb_sse_init(&p, max, on_event, &o->d);
    size_t off = 0;
    uint32_t x = seed | 1;
    while (off < n || (mode == 2 && off == 0)) {
        size_t len;
        if (mode == 0)
            len = n - off;
        else if (mode == 1)
            len = 1;
        else {
            x ^= x << 13, x ^= x >> 17, x ^= x << 5; /* xorshift32 */
            len = x % 9 == 0 ? 0 : (x >> 8) % 17;    /* empty feeds too */
            if (len > n - off)
                len = n - off;
        }
        char *piece = malloc(len ? len : 1);
        if (!piece)
            abort();
        memcpy(piece, s + off, len);
        int rc = sb_sse_feed(&p, piece, len);
        free(piece);
        if (rc != 0 && o->feed_rc == 0)
            o->feed_rc = rc;
        off += len;
        if (n == 0)
            break;
    }
    o->finish_rc = sb_sse_finish(&p);
    o->comments = p.comments;
    o->bytes = p.bytes;
    if (p.events != o->d.events)
        sb_fuzz_fail("events counter %llu, callbacks %llu", (unsigned long long)p.events,
                     (unsigned long long)o->d.events);
    sb_sse_release(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 5)
        return 0;
    static const size_t maxes[] = {4, 16, 64, 1024, 64u << 10};
    size_t max = maxes[data[0] % 5];
    uint32_t seed = (uint32_t)data[1] | (uint32_t)data[2] << 8 | (uint32_t)data[3] << 16 |
                    (uint32_t)data[4] << 24;
    const char *s = (const char *)data + 5;
    size_t n = size - 5;
    struct outcome whole, bytes, split;
    run(s, n, max, seed, 0, &whole);
    run(s, n, max, seed, 1, &bytes);
    run(s, n, max, seed, 2, &split);
    const struct outcome *o[2] = {&bytes, &split};
    for (int i = 0; i < 2; i++) {
        /* A stop (E2BIG) happens at the same byte however the stream is cut, so even then the
           events before it and the results must match. */
        if (o[i]->feed_rc != whole.feed_rc)
            sb_fuzz_fail("split %d: feed rc %d, whole %d", i, o[i]->feed_rc, whole.feed_rc);
        if (o[i]->d.events != whole.d.events || o[i]->d.h != whole.d.h ||
            o[i]->finish_rc != whole.finish_rc ||
            (whole.feed_rc == 0 && o[i]->comments != whole.comments))
            sb_fuzz_fail("split %d: %llu events (digest %llx), whole %llu (%llx)", i,
                         (unsigned long long)o[i]->d.events, (unsigned long long)o[i]->d.h,
                         (unsigned long long)whole.d.events, (unsigned long long)whole.d.h);
    }
    return 0;
}
