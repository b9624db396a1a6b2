/*
 * sessioned_chat: multi-turn chat sessions whose KV working set the client controls and knows.
 * `--sessions N` sessions exist; users (closed loop) or arrivals (open loop) continue one of them
 * per request, picked by `--session-order`; each request carries the session's whole history as
 * chat messages. The state is shared by the loop threads under one mutex (rates are thousands of
 * turns a second at most) and stays small: text is regenerated from (seed, salt, session, turn,
 * lengths) on every send, and only `--history server` keeps reply texts (capped per session).
 *
 * The workload itself is sb_workload_sessioned_chat (sb/workload.h); this header has the parts
 * unit tests reach: the distribution syntax, the session picker, the reply text of a chunk and the
 * option check.
 */
#ifndef SB_SESSIONS_H
#define SB_SESSIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sb/buf.h"
#include "sb/err.h"
#include "sb/run.h"

/* Reply text kept per session with --history server; past it the session ends after the turn. */
#define SB_SESSION_REPLY_CAP (1u << 20)

enum sb_dist_kind {
    SB_DIST_CONST,
    SB_DIST_UNIFORM,   /* a..b */
    SB_DIST_LOGNORMAL, /* mean a, standard deviation b (of the value, not of its log) */
};

struct sb_dist {
    enum sb_dist_kind kind;
    double a, b;
};

/* "N", "uniform:A:B" or "lognormal:MEAN:SD", all >= 0 (A <= B, MEAN > 0). Errors name opt and
   the text. */
int sb_dist_parse(const char *opt, const char *text, struct sb_dist *d, struct sb_err *err);
/* One draw (>= 0); *rng is a splitmix64 state. */
double sb_dist_draw(const struct sb_dist *d, uint64_t *rng);

enum sb_order_kind {
    SB_ORDER_ROUND_ROBIN,
    SB_ORDER_UNIFORM,
    SB_ORDER_ZIPF,
};

/* "round_robin", "uniform" or "zipf:S" (S > 0). */
int sb_order_parse(const char *text, enum sb_order_kind *kind, double *s, struct sb_err *err);

/* Which session a user continues: slot i has rank i (zipf: probability ~ 1 / (i+1)^s). */
struct sb_picker {
    enum sb_order_kind kind;
    double s;
    size_t n;
    double *cdf; /* zipf only */
    size_t cursor;
    uint64_t rng;
};

int sb_picker_init(struct sb_picker *p, enum sb_order_kind kind, double s, size_t n, uint64_t seed,
                   struct sb_err *err);
/*
 * A slot for which ok(i, arg) holds (ready: not in flight, not thinking or parked): round robin
 * takes the next such slot after the last pick; uniform and zipf draw, skip a slot that is not
 * ok and draw again, and after 32 misses take the first ok slot from a random start (uniform) or
 * the best-ranked ok slot (zipf). SIZE_MAX when no slot is ok.
 */
size_t sb_picker_pick(struct sb_picker *p, bool (*ok)(size_t i, void *arg), void *arg);
void sb_picker_release(struct sb_picker *p);

/* Appends the reply text of one chat chunk or response (choices[0].delta.content or
   .message.content) to out. 0; -1 when out's limit is reached (nothing appended). */
int sb_chat_reply_text(const char *json, size_t len, struct sb_buf *out);

/*
 * Checks the sessioned_chat options and the --think-ms syntax for every workload (errors name the
 * option and its value): a distribution needs sessioned_chat; for sessioned_chat the think time
 * is the session's, so cfg->think_ms (the user's) is 0, the API is chat, and a missing --salt
 * gets a random one (kept in cfg so config.yaml and run.json record it).
 */
int sb_sessions_check_config(struct sb_run_config *cfg, struct sb_err *err);

#endif
