/*
 * sessioned_chat (see sb/sessions.h).
 *
 * Text: every message is a run of three-letter words, each word one token with a leading space
 * (checked against --tokenizer at open, kept to those that are) and 4 bytes with its separator, so
 * a run of n words is exactly n tokens with the tokenizer and 4n - 1 bytes, which with the newline
 * the mock puts after each message is n tokens by its bytes/4 estimate too. Word i of a message is
 * chosen by a hash of (seed, salt, session id, turn, role, i); the shared system prompt by a hash
 * of (seed, salt) alone, so it is one prompt for every session of a run but another in the next
 * run: the salt is at the start of every request and a new run never hits the previous run's cache,
 * not even its system prompt. So nothing but lengths is stored, except the real replies of
 * --history server.
 *
 * Units: the oracle sums message sizes in "units", tokens with a tokenizer, else bytes as the mock
 * hashes them (content + '\n'), divided by 4 on output; the chat template's own tokens are not
 * counted (they are a few per message and the client cannot run the server's template).
 */
#include "sb/sessions.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sb/record.h"
#include "sb/tokenizer.h"
#include "sb/util.h"
#include "sb/workload.h"

/* ---- random numbers ---- */

static uint64_t rng_next(uint64_t *s)
{
    *s += 0x9e3779b97f4a7c15ull;
    return sb_mix64(*s);
}

static double rng_unit(uint64_t *s)
{
    return (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0); /* [0, 1) */
}

/* ---- distributions ---- */

static int parse_num(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

int sb_dist_parse(const char *opt, const char *text, struct sb_dist *d, struct sb_err *err)
{
    const char *syn = "a number >= 0, uniform:A:B or lognormal:MEAN:SD";
    memset(d, 0, sizeof(*d));
    if (!text || !*text)
        return sb_err_set(err, "%s '': expected %s", opt, syn);
    char buf[128];
    if (strlen(text) >= sizeof(buf))
        return sb_err_set(err, "%s '%.60s...': expected %s", opt, text, syn);
    snprintf(buf, sizeof(buf), "%s", text);
    char *c1 = strchr(buf, ':');
    if (!c1) {
        if (parse_num(buf, &d->a) != 0 || d->a < 0)
            return sb_err_set(err, "%s '%s': expected %s", opt, text, syn);
        d->kind = SB_DIST_CONST;
        return 0;
    }
    *c1 = '\0';
    char *c2 = strchr(c1 + 1, ':');
    if (!c2)
        return sb_err_set(err, "%s '%s': expected %s", opt, text, syn);
    *c2 = '\0';
    double a, b;
    if (parse_num(c1 + 1, &a) != 0 || parse_num(c2 + 1, &b) != 0)
        return sb_err_set(err, "%s '%s': expected %s", opt, text, syn);
    if (strcmp(buf, "uniform") == 0) {
        if (a < 0 || b < a)
            return sb_err_set(err, "%s '%s': uniform:A:B needs 0 <= A <= B", opt, text);
        d->kind = SB_DIST_UNIFORM;
    } else if (strcmp(buf, "lognormal") == 0) {
        if (!(a > 0) || b < 0)
            return sb_err_set(err, "%s '%s': lognormal:MEAN:SD needs MEAN > 0 and SD >= 0", opt,
                              text);
        d->kind = SB_DIST_LOGNORMAL;
    } else {
        return sb_err_set(err, "%s '%s': unknown distribution '%s' (expected %s)", opt, text, buf,
                          syn);
    }
    d->a = a;
    d->b = b;
    return 0;
}

double sb_dist_draw(const struct sb_dist *d, uint64_t *rng)
{
    switch (d->kind) {
    case SB_DIST_UNIFORM:
        return d->a + (d->b - d->a) * rng_unit(rng);
    case SB_DIST_LOGNORMAL: {
        /* mu and sigma of the log from the value's mean and sd. */
        double s2 = log1p((d->b * d->b) / (d->a * d->a));
        double mu = log(d->a) - s2 / 2;
        double u1 = rng_unit(rng), u2 = rng_unit(rng);
        double z = sqrt(-2.0 * log(1.0 - u1)) * cos(2 * M_PI * u2);
        return exp(mu + sqrt(s2) * z);
    }
    default:
        return d->a;
    }
}

/* ---- the session picker ---- */

int sb_order_parse(const char *text, enum sb_order_kind *kind, double *s, struct sb_err *err)
{
    *s = 0;
    if (text && strcmp(text, "round_robin") == 0) {
        *kind = SB_ORDER_ROUND_ROBIN;
        return 0;
    }
    if (text && strcmp(text, "uniform") == 0) {
        *kind = SB_ORDER_UNIFORM;
        return 0;
    }
    if (text && strncmp(text, "zipf:", 5) == 0 && parse_num(text + 5, s) == 0 && *s > 0 &&
        *s <= 100) {
        *kind = SB_ORDER_ZIPF;
        return 0;
    }
    return sb_err_set(err,
                      "--session-order '%s': expected round_robin, uniform or zipf:S (0 < S "
                      "<= 100)",
                      text ? text : "");
}

int sb_picker_init(struct sb_picker *p, enum sb_order_kind kind, double s, size_t n, uint64_t seed,
                   struct sb_err *err)
{
    memset(p, 0, sizeof(*p));
    p->kind = kind;
    p->s = s;
    p->n = n;
    p->rng = sb_mix64(seed ^ 0x7069636bull);
    if (kind == SB_ORDER_ZIPF) {
        p->cdf = malloc((n ? n : 1) * sizeof(double));
        if (!p->cdf)
            return sb_err_set(err, "out of memory");
        double acc = 0;
        for (size_t i = 0; i < n; i++)
            p->cdf[i] = acc += pow((double)(i + 1), -s);
        for (size_t i = 0; i < n; i++)
            p->cdf[i] /= acc;
    }
    return 0;
}

static size_t draw_slot(struct sb_picker *p)
{
    if (p->kind == SB_ORDER_UNIFORM)
        return (size_t)(rng_unit(&p->rng) * (double)p->n);
    double u = rng_unit(&p->rng);
    return sb_cdf_index(p->cdf, p->n, u); /* the first slot whose cdf exceeds u */
}

size_t sb_picker_pick(struct sb_picker *p, bool (*ok)(size_t i, void *arg), void *arg)
{
    if (p->n == 0)
        return SIZE_MAX;
    if (p->kind == SB_ORDER_ROUND_ROBIN) {
        for (size_t k = 0; k < p->n; k++) {
            size_t i = (p->cursor + k) % p->n;
            if (ok(i, arg)) {
                p->cursor = (i + 1) % p->n;
                return i;
            }
        }
        return SIZE_MAX;
    }
    for (int tries = 0; tries < 32; tries++) {
        size_t i = draw_slot(p);
        if (i < p->n && ok(i, arg))
            return i;
    }
    size_t start = p->kind == SB_ORDER_UNIFORM ? (size_t)(rng_unit(&p->rng) * (double)p->n) : 0;
    for (size_t k = 0; k < p->n; k++) {
        size_t i = (start + k) % p->n;
        if (ok(i, arg))
            return i;
    }
    return SIZE_MAX;
}

void sb_picker_release(struct sb_picker *p)
{
    free(p->cdf);
    p->cdf = NULL;
}

/* ---- reply text ---- */

int sb_chat_reply_text(const char *json, size_t len, struct sb_buf *out)
{
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root)
        return 0;
    int rc = 0;
    const cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(root, "choices"), 0);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(ch, "delta");
    if (!m)
        m = cJSON_GetObjectItemCaseSensitive(ch, "message");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(m, "content");
    if (cJSON_IsString(c) && c->valuestring[0])
        rc = sb_buf_adds(out, c->valuestring);
    cJSON_Delete(root);
    return rc;
}

/* ---- options ---- */

static bool is_sessioned(const struct sb_run_config *cfg)
{
    return cfg->workload && strcmp(cfg->workload, "sessioned_chat") == 0;
}

static int random_salt(char *out, size_t cap)
{
    uint64_t v = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, &v, sizeof(v)) != (ssize_t)sizeof(v))
        v = sb_mix64(sb_real_ns() ^ ((uint64_t)getpid() << 32));
    if (fd >= 0)
        close(fd);
    snprintf(out, cap, "%016" PRIx64, v);
    return 0;
}

int sb_sessions_check_config(struct sb_run_config *cfg, struct sb_err *err)
{
    struct sb_dist d;
    if (sb_dist_parse("--think-ms", cfg->think_ms_spec ? cfg->think_ms_spec : "0", &d, err) != 0)
        return -1;
    if (!is_sessioned(cfg)) {
        if (d.kind != SB_DIST_CONST)
            return sb_err_set(err,
                              "--think-ms '%s': a distribution needs --workload "
                              "sessioned_chat (a user's think time is a number)",
                              cfg->think_ms_spec);
        if (d.a > 1e9)
            return sb_err_set(err, "--think-ms '%s': at most 1e9", cfg->think_ms_spec);
        cfg->think_ms = d.a;
        return 0;
    }
    cfg->think_ms = 0; /* the session thinks, not the user (sessions.c) */
    if (sb_dist_parse("--turns", cfg->turns, &d, err) != 0)
        return -1;
    if (d.kind == SB_DIST_CONST && d.a < 1)
        return sb_err_set(err, "--turns '%s': a session needs at least 1 turn", cfg->turns);
    if (sb_dist_parse("--idle-s", cfg->idle_s, &d, err) != 0)
        return -1;
    enum sb_order_kind k;
    double s;
    if (sb_order_parse(cfg->session_order, &k, &s, err) != 0)
        return -1;
    if (cfg->salt && *cfg->salt) {
        size_t n = strlen(cfg->salt);
        if (n > 32 || strspn(cfg->salt, "0123456789abcdefABCDEF") != n)
            return sb_err_set(err, "--salt '%s': expected 1 to 32 hex digits", cfg->salt);
    } else {
        char hex[40];
        random_salt(hex, sizeof(hex));
        free(cfg->salt);
        cfg->salt = strdup(hex);
        if (!cfg->salt)
            return sb_err_set(err, "out of memory");
    }
    long long first = cfg->system_tokens + cfg->session_context_tokens + cfg->turn_tokens;
    if (cfg->max_context > 0 && first > cfg->max_context)
        return sb_err_set(err,
                          "--max-context %lld: a session's first turn alone is %lld tokens "
                          "(--system-tokens %lld + --session-context-tokens %lld + --turn-tokens "
                          "%lld)",
                          cfg->max_context, first, cfg->system_tokens, cfg->session_context_tokens,
                          cfg->turn_tokens);
    if (cfg->api == SB_API_CHOICE_COMPLETIONS)
        return sb_err_set(err, "--workload sessioned_chat sends chat messages: --api completions "
                               "does not fit (use chat or auto)");
    cfg->api = SB_API_CHOICE_CHAT;
    /* A session has one turn in flight at a time: more users than sessions would leave some
       always waiting (polling for a reply) and the load would not be what --concurrency says. */
    if (cfg->rate <= 0 && cfg->concurrency > cfg->sessions)
        return sb_err_set(err,
                          "--concurrency %lld > --sessions %lld: a session has one turn in flight "
                          "at a time, so some users would never send; give --sessions >= "
                          "--concurrency",
                          cfg->concurrency, cfg->sessions);
    if (cfg->nonce_per_user || cfg->nonce_per_request)
        return sb_err_set(err, "--workload sessioned_chat: nonces do not apply (every session's "
                               "text is its own; --salt separates runs)");
    return 0;
}

/* ---- the sessions ---- */

/* Three-letter words; those that are not one token (with and without a leading space) under the
   run's tokenizer are left out at open. */
static const char *const all_words[] = {
    "the", "and", "for", "are", "but", "not", "you", "all", "any", "can", "had", "her", "was",
    "one", "our", "out", "day", "get", "has", "him", "his", "how", "man", "new", "now", "old",
    "see", "two", "way", "who", "boy", "did", "its", "let", "put", "say", "she", "too", "use",
    "dog", "cat", "run", "big", "red", "sun", "sea", "top", "box", "cup", "eye", "far", "few",
    "fun", "hot", "job", "key", "law", "map", "oil", "own", "pay", "row", "set", "sky", "tea",
    "war", "yes", "age", "air", "art", "bed", "car", "end", "fly", "arm", "bag", "bus", "cut",
};

struct turnrec {
    uint32_t reply_n;   /* tokens of the reply (usage), the synthetic reply's word count */
    uint32_t reply_u;   /* units of the assistant message */
    uint32_t reuse_u;   /* units of it whose KV the server computed (--history server) */
    uint32_t reply_len; /* bytes of reply (--history server) */
    char *reply;
};

struct sess {
    long long id;
    uint64_t rng; /* the session's own draws: turns, think, idle */
    int turns_total;
    int done;       /* turns answered */
    int first;      /* first kept turn (0-based; --context-policy slide moves it) */
    int prev_first; /* first at the previous send; -1: none */
    bool inflight, parked, started, prime;
    uint64_t ready_ns, last_reply_ns;
    long long mark;          /* g_sent after this session's last send */
    long long prev_prompt_u; /* units of its last prompt */
    long long ctx_u;         /* units it holds in the working set */
    size_t reply_bytes;
    struct turnrec *t;
    int cap;
};

struct ws_sample {
    uint64_t t_ns; /* monotonic */
    long long sessions, tokens;
};

struct sb_sessions {
    const struct sb_run_config *cfg;
    struct sb_tokenizer *tok;
    pthread_mutex_t lock;
    struct sess *s;
    size_t n;
    struct sb_picker pick;
    struct sb_dist turns, think, idle;
    uint64_t seed, salt;
    long long next_id;
    long long scale; /* units per token: 4 (bytes) without a tokenizer, 1 with */
    long long sys_n, ctx_n, turn_n;
    bool server_history;
    bool sys_sent;
    long long g_sent; /* prompt tokens sent by all sessions */
    const char **words;
    size_t nwords;
    size_t prime_next;
    long long prime_inflight;
    bool measuring;       /* the measured run began (after the --prime stage) */
    uint64_t measure_ns;  /* its window's start: working_set's t_s counts from it */
    uint64_t now_scratch; /* the pick's clock, for ready_ok */
    long long ws_u, live;
    long long waits; /* sends that found no ready session and waited */
    struct ws_sample *samples;
    size_t nsamples, capsamples;
    pthread_t sampler;
    pthread_cond_t cv;
    bool sampler_on, stop;
    uint64_t t0_ns;
};

static uint64_t text_key(const struct sb_sessions *ss, long long id, long long turn, int role)
{
    uint64_t k = sb_mix64(ss->seed ^ sb_mix64(ss->salt ^ 0x73657373ull));
    k = sb_mix64(k ^ sb_mix64((uint64_t)id * 0x100000001b3ull + 17));
    return sb_mix64(k ^ sb_mix64((uint64_t)turn * 8 + (uint64_t)role));
}

static uint64_t system_key(const struct sb_sessions *ss)
{
    /* shared by the run's sessions, not across runs (the salt is at the start of every prompt) */
    return sb_mix64(ss->seed ^ sb_mix64(ss->salt ^ 0x73797374656dull));
}

/* Appends n words from key, separated by spaces (a space first when !first). */
static int add_words(const struct sb_sessions *ss, struct sb_buf *b, uint64_t key, long long n,
                     bool first)
{
    int rc = 0;
    for (long long i = 0; i < n; i++) {
        const char *w = ss->words[sb_mix64(key + (uint64_t)i) % ss->nwords];
        if (!first || i > 0)
            rc |= sb_buf_add(b, " ", 1);
        rc |= sb_buf_add(b, w, 3);
    }
    return rc;
}

/* Units of a generated message of n words (n >= 1). */
static long long gen_u(const struct sb_sessions *ss, long long n)
{
    return n * ss->scale;
}

static long long user_u(const struct sb_sessions *ss, int j)
{
    return gen_u(ss, j == 0 ? ss->ctx_n + ss->turn_n : ss->turn_n);
}

static long long sys_u(const struct sb_sessions *ss)
{
    return ss->sys_n > 0 ? gen_u(ss, ss->sys_n) : 0;
}

/* Units of the prompt for turn k (0-based) of s, from its first kept turn. */
static long long prompt_u(const struct sb_sessions *ss, const struct sess *s, int k)
{
    long long u = sys_u(ss);
    for (int j = s->first; j < k; j++)
        u += user_u(ss, j) + s->t[j].reply_u;
    return u + user_u(ss, k);
}

static void new_session(struct sb_sessions *ss, struct sess *s)
{
    s->id = ss->next_id++;
    s->rng = sb_mix64(ss->seed ^ sb_mix64((uint64_t)s->id + 0x7475726eull));
    double t = sb_dist_draw(&ss->turns, &s->rng);
    s->turns_total = t < 1 ? 1 : (t > 1e6 ? 1000000 : (int)llround(t));
    s->done = s->first = 0;
    s->prev_first = -1;
    s->inflight = s->parked = s->started = s->prime = false;
    s->ready_ns = 0;
    s->last_reply_ns = 0;
    s->mark = 0;
    s->prev_prompt_u = 0;
    s->ctx_u = 0;
    s->reply_bytes = 0;
}

/* The session ends: its memory goes, a fresh one with a new id takes the slot. */
static void end_session(struct sb_sessions *ss, struct sess *s)
{
    for (int j = 0; j < s->done; j++) {
        free(s->t[j].reply);
        s->t[j].reply = NULL;
    }
    if (s->started) {
        ss->ws_u -= s->ctx_u;
        ss->live--;
    }
    free(s->t);
    s->t = NULL;
    s->cap = 0;
    new_session(ss, s);
}

static bool ready_ok(size_t i, void *arg)
{
    struct sb_sessions *ss = arg;
    const struct sess *s = &ss->s[i];
    return !s->inflight && s->ready_ns <= ss->now_scratch;
}

static long long ws_tokens(const struct sb_sessions *ss)
{
    /* The system prompt is shared: held once, not once per session. */
    long long u = ss->ws_u - ss->live * sys_u(ss) + (ss->live > 0 ? sys_u(ss) : 0);
    return u / ss->scale;
}

static void *sampler_main(void *arg)
{
    struct sb_sessions *ss = arg;
    pthread_mutex_lock(&ss->lock);
    uint64_t next = ss->t0_ns;
    while (!ss->stop) {
        uint64_t now = sb_mono_ns();
        if (now >= next) {
            if (ss->nsamples == ss->capsamples) {
                size_t nc = ss->capsamples ? ss->capsamples * 2 : 256;
                struct ws_sample *ns = realloc(ss->samples, nc * sizeof(*ns));
                if (ns) {
                    ss->samples = ns;
                    ss->capsamples = nc;
                }
            }
            if (ss->nsamples < ss->capsamples)
                ss->samples[ss->nsamples++] = (struct ws_sample){now, ss->live, ws_tokens(ss)};
            next += 1000000000ull;
            continue;
        }
        /* The condition variable's clock is CLOCK_MONOTONIC (set at init). */
        struct timespec ts = {(time_t)(next / 1000000000ull), (long)(next % 1000000000ull)};
        pthread_cond_timedwait(&ss->cv, &ss->lock, &ts);
    }
    pthread_mutex_unlock(&ss->lock);
    return NULL;
}

/* Builds the messages of turn k of s into p. */
static int build_messages(const struct sb_sessions *ss, const struct sess *s, int k,
                          struct sb_prompt *p, struct sb_err *err)
{
    struct sb_buf *b = &p->text;
    sb_buf_reset(b);
    int rc = sb_buf_add(b, "[", 1);
    bool comma = false;
    if (ss->sys_n > 0) {
        rc |= sb_buf_adds(b, "{\"role\":\"system\",\"content\":\"");
        rc |= add_words(ss, b, system_key(ss), ss->sys_n, true);
        rc |= sb_buf_adds(b, "\"}");
        comma = true;
    }
    for (int j = s->first; j <= k; j++) {
        rc |= sb_buf_adds(b, comma ? ",{\"role\":\"user\",\"content\":\""
                                   : "{\"role\":\"user\",\"content\":\"");
        comma = true;
        if (j == 0) { /* the session's own context, then its first question */
            rc |= add_words(ss, b, text_key(ss, s->id, 0, 1), ss->ctx_n, true);
            rc |= add_words(ss, b, text_key(ss, s->id, 0, 2), ss->turn_n, ss->ctx_n == 0);
        } else {
            rc |= add_words(ss, b, text_key(ss, s->id, j, 2), ss->turn_n, true);
        }
        rc |= sb_buf_adds(b, "\"}");
        if (j == k)
            break;
        rc |= sb_buf_adds(b, ",{\"role\":\"assistant\",\"content\":\"");
        if (ss->server_history)
            rc |= sb_buf_add_json_escaped(b, s->t[j].reply ? s->t[j].reply : "", s->t[j].reply_len);
        else
            rc |= add_words(ss, b, text_key(ss, s->id, j, 3), s->t[j].reply_n, true);
        rc |= sb_buf_adds(b, "\"}");
    }
    rc |= sb_buf_add(b, "]", 1);
    if (rc)
        return sb_err_set(err, "session %lld turn %d: messages larger than the prompt buffer",
                          s->id, k + 1);
    p->messages = true;
    p->nonce[0] = '\0';
    snprintf(p->hash, sizeof(p->hash), "%016" PRIx64, sb_hash64(b->data, b->len, 0));
    return 0;
}

static int sess_next(const struct sb_workload *w, uint64_t now, struct sb_prompt *p,
                     struct sb_turn *t, uint64_t *ready_ns, struct sb_err *err)
{
    struct sb_sessions *ss = w->sess;
    const struct sb_run_config *cfg = ss->cfg;
    pthread_mutex_lock(&ss->lock);
    if (!ss->t0_ns) {
        ss->t0_ns = now;
        ss->sampler_on = pthread_create(&ss->sampler, NULL, sampler_main, ss) == 0;
    }
    size_t i;
    bool prime = false;
    if (cfg->prime && !ss->measuring) {
        /* The engine's prime stage: first turns only; it ends when all are answered and the
           measured run starts then, so the working set exists when measuring starts. */
        if (ss->prime_next >= ss->n) {
            pthread_mutex_unlock(&ss->lock);
            return 3;
        }
        i = ss->prime_next++;
        prime = true;
        ss->prime_inflight++;
    } else {
        ss->now_scratch = now;
        i = sb_picker_pick(&ss->pick, ready_ok, ss);
        if (i == SIZE_MAX) {
            /* Wait for the earliest ready session (0: all are in flight); the engine wakes the
               waiter sooner when any turn ends, so nothing polls. */
            uint64_t best = 0;
            for (size_t j = 0; j < ss->n; j++)
                if (!ss->s[j].inflight && (!best || ss->s[j].ready_ns < best))
                    best = ss->s[j].ready_ns;
            *ready_ns = best > now ? best : 0;
            ss->waits++;
            pthread_mutex_unlock(&ss->lock);
            return 1;
        }
    }
    struct sess *s = &ss->s[i];
    int k = s->done;
    if (cfg->max_context > 0 && prompt_u(ss, s, k) / ss->scale > cfg->max_context) {
        if (cfg->context_policy == SB_CTX_END) {
            end_session(ss, s);
            k = 0;
        } else {
            while (s->first < k && prompt_u(ss, s, k) / ss->scale > cfg->max_context)
                s->first++;
        }
    }
    if (build_messages(ss, s, k, p, err) != 0) {
        if (prime)
            ss->prime_inflight--;
        pthread_mutex_unlock(&ss->lock);
        return -1;
    }
    long long pu = prompt_u(ss, s, k);
    long long hist_u = k == 0 ? 0 : pu - user_u(ss, k);
    long long reuse_u, dist = -1;
    bool same_prefix = k > 0 && s->prev_first == s->first;
    if (same_prefix) {
        /* The reply's KV counts with --history server: vLLM caches every full block up to
           request.num_tokens, prompt and generated tokens alike (vllm/v1/core/kv_cache_manager.py,
           allocate_slots: num_tokens_to_cache = min(total_computed_tokens + num_new_tokens,
           request.num_tokens); cache_blocks), and the generation prompt the server appended is
           what the template writes before the assistant message re-sent here; but not the last
           sampled token, which is never fed back (reuse_u, sess_done). A synthetic reply was
           never computed by the server, so only the previous prompt is reusable. */
        reuse_u = s->prev_prompt_u + (ss->server_history ? s->t[k - 1].reuse_u : 0);
        dist = ss->g_sent - s->mark;
    } else {
        reuse_u = ss->sys_sent ? sys_u(ss) : 0;
        if (reuse_u > 0)
            dist = 0; /* the system prompt is in every request */
    }
    long long ptok = (pu + ss->scale - 1) / ss->scale; /* the mock's estimate: ceil(bytes / 4) */
    memset(t, 0, sizeof(*t));
    t->slot = (long long)i;
    t->session = s->id;
    t->turn = k + 1;
    t->history_tokens = hist_u / ss->scale;
    t->new_tokens = ptok - t->history_tokens;
    t->reusable_tokens = reuse_u / ss->scale;
    t->reuse_distance_tokens = t->reusable_tokens > 0 ? dist : -1;
    t->prompt_tokens = ss->tok ? ptok : -1;
    t->est_tokens = ptok;
    t->idle_ms = k > 0 && s->last_reply_ns ? (double)(now - s->last_reply_ns) / 1e6 : NAN;
    t->parked = s->parked;
    t->prime = prime;
    t->want_reply = ss->server_history;
    s->parked = false;
    s->inflight = true;
    s->prime = prime;
    if (!s->started) {
        s->started = true;
        ss->live++;
    }
    ss->ws_u += pu - s->ctx_u; /* the prompt is in the server's KV while it runs */
    s->ctx_u = pu;
    ss->g_sent += ptok;
    s->mark = ss->g_sent;
    s->prev_prompt_u = pu;
    s->prev_first = s->first;
    if (ss->sys_n > 0)
        ss->sys_sent = true;
    pthread_mutex_unlock(&ss->lock);
    return 0;
}

/* gcc -fanalyzer: GCC 12 reports a leak of a string stored into a slot of a heap array at a
   variable index (it loses the pointer there); the array is freed by its owner (s->t[k].reply,
   freed with the session) */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wanalyzer-malloc-leak"
static void sess_done(const struct sb_workload *w, const struct sb_turn *t,
                      const struct sb_record *rec, const char *reply, size_t reply_len,
                      uint64_t now)
{
    struct sb_sessions *ss = w->sess;
    const struct sb_run_config *cfg = ss->cfg;
    if (t->slot < 0 || (size_t)t->slot >= ss->n)
        return;
    pthread_mutex_lock(&ss->lock);
    struct sess *s = &ss->s[t->slot];
    if (s->id != t->session || !s->inflight) {
        pthread_mutex_unlock(&ss->lock);
        return;
    }
    s->inflight = false;
    if (t->prime)
        ss->prime_inflight--;
    if (!rec || !rec->ok) {
        /* Not answered: the same turn goes again later; the prefix it sent may be cached. */
        s->ready_ns = now;
        pthread_mutex_unlock(&ss->lock);
        return;
    }
    int k = s->done;
    if (k >= s->cap) {
        int nc = s->cap ? s->cap * 2 : 4;
        struct turnrec *nt = realloc(s->t, (size_t)nc * sizeof(*nt));
        if (!nt) {
            s->ready_ns = now;
            pthread_mutex_unlock(&ss->lock);
            return;
        }
        s->t = nt;
        s->cap = nc;
    }
    struct turnrec *tr = &s->t[k];
    memset(tr, 0, sizeof(*tr));
    long long out = rec->output_tokens > 0 ? rec->output_tokens : 1;
    tr->reply_n = out > UINT32_MAX ? UINT32_MAX : (uint32_t)out;
    bool over = false;
    if (ss->server_history) {
        over = !reply || s->reply_bytes + reply_len > SB_SESSION_REPLY_CAP;
        if (!over && reply_len) {
            tr->reply = malloc(reply_len);
            if (tr->reply) {
                memcpy(tr->reply, reply, reply_len);
                tr->reply_len = (uint32_t)reply_len;
                s->reply_bytes += reply_len;
            }
        }
        size_t n = 0;
        struct sb_err e;
        if (ss->tok && tr->reply_len &&
            sb_tokenizer_count(ss->tok, tr->reply, tr->reply_len, false, &n, &e) == 0)
            tr->reply_u = (uint32_t)n;
        else if (ss->tok)
            tr->reply_u = 0;
        else
            tr->reply_u = tr->reply_len + 1; /* content and the mock's newline, in bytes */
        /*
         * The reusable part: the server computed the KV of every token it fed back, which is the
         * reply but its last sampled token (vLLM caches min(computed + new, num_tokens) tokens
         * a step, see sess_next; the sampled token that ended the reply is never computed). A
         * reply that ended by EOS or a stop string ends with a token that is not in its text, so
         * the whole text is reusable; one that ended by length loses its last token (the last
         * streamed chunk's bytes, or 1 token with a tokenizer). The end-of-message terminator
         * (the mock's newline, the template's end-of-turn) comes after and is not computed.
         */
        bool by_length = strcmp(rec->finish_reason, "length") == 0;
        if (ss->tok)
            tr->reuse_u = tr->reply_u - (by_length && tr->reply_u > 0 ? 1 : 0);
        else
            tr->reuse_u =
                tr->reply_len -
                (by_length && t->reply_last_len <= tr->reply_len ? (uint32_t)t->reply_last_len : 0);
    } else {
        tr->reply_u = (uint32_t)gen_u(ss, tr->reply_n);
    }
    s->done = k + 1;
    s->last_reply_ns = now;
    ss->ws_u += tr->reply_u;
    s->ctx_u += tr->reply_u;
    if (s->done >= s->turns_total || over) {
        end_session(ss, s);
        s->ready_ns = now;
    } else if (cfg->idle_prob > 0 && rng_unit(&s->rng) < cfg->idle_prob) {
        double idle = sb_dist_draw(&ss->idle, &s->rng);
        if (idle > cfg->idle_cap_s)
            idle = cfg->idle_cap_s;
        s->parked = true;
        s->ready_ns = now + (uint64_t)(idle * 1e9);
    } else {
        s->ready_ns = now + (uint64_t)(sb_dist_draw(&ss->think, &s->rng) * 1e6);
    }
    pthread_mutex_unlock(&ss->lock);
}
#pragma GCC diagnostic pop

static void sess_measure_begins(const struct sb_workload *w, uint64_t measure_start_ns)
{
    struct sb_sessions *ss = w->sess;
    pthread_mutex_lock(&ss->lock);
    ss->measuring = true;
    ss->measure_ns = measure_start_ns;
    pthread_mutex_unlock(&ss->lock);
}

static void sess_state_json(const struct sb_workload *w, struct cJSON *run)
{
    struct sb_sessions *ss = w->sess;
    const struct sb_run_config *cfg = ss->cfg;
    pthread_mutex_lock(&ss->lock);
    cJSON *o = cJSON_AddObjectToObject(run, "workload_state");
    cJSON_AddNumberToObject(o, "sessions", (double)ss->n);
    cJSON_AddStringToObject(o, "salt", cfg->salt ? cfg->salt : "");
    cJSON_AddStringToObject(o, "history", ss->server_history ? "server" : "synthetic");
    cJSON_AddStringToObject(o, "session_order", cfg->session_order);
    cJSON_AddStringToObject(o, "tokens_src",
                            ss->tok ? "tokenizer (chat template not counted)"
                                    : "estimate bytes/4 (content + newline)");
    cJSON_AddNumberToObject(o, "sessions_created", (double)ss->next_id);
    cJSON_AddNumberToObject(o, "waits", (double)ss->waits);
    if (ss->t0_ns) { /* the end state too: a run shorter than a second still has one */
        uint64_t now = sb_mono_ns();
        if (ss->nsamples < ss->capsamples)
            ss->samples[ss->nsamples++] = (struct ws_sample){now, ss->live, ws_tokens(ss)};
    }
    /* t_s: seconds since run.json's measure_start_ts (negative while --prime, ramp-up and
       warm-up ran), so that a sample and the measured window compare without the run's start */
    uint64_t ref = ss->measuring ? ss->measure_ns : ss->t0_ns;
    cJSON_AddStringToObject(o, "working_set_t0", ss->measuring ? "measure_start_ts" : "start_ts");
    cJSON *a = cJSON_AddArrayToObject(o, "working_set");
    for (size_t i = 0; i < ss->nsamples; i++) {
        cJSON *e = cJSON_CreateObject();
        double t_s = ((double)ss->samples[i].t_ns - (double)ref) / 1e9;
        cJSON_AddNumberToObject(e, "t_s", round(t_s * 1000) / 1000);
        cJSON_AddNumberToObject(e, "sessions", (double)ss->samples[i].sessions);
        cJSON_AddNumberToObject(e, "tokens", (double)ss->samples[i].tokens);
        if (cfg->kv_bytes_per_token > 0)
            cJSON_AddNumberToObject(e, "bytes",
                                    (double)ss->samples[i].tokens * cfg->kv_bytes_per_token);
        else
            cJSON_AddNullToObject(e, "bytes");
        cJSON_AddItemToArray(a, e);
    }
    if (cfg->kv_bytes_per_token > 0)
        cJSON_AddNumberToObject(o, "kv_bytes_per_token", cfg->kv_bytes_per_token);
    else
        cJSON_AddNullToObject(o, "kv_bytes_per_token");
    pthread_mutex_unlock(&ss->lock);
}

static void sess_release(struct sb_workload *w)
{
    struct sb_sessions *ss = w->sess;
    if (!ss)
        return;
    pthread_mutex_lock(&ss->lock);
    ss->stop = true;
    pthread_cond_broadcast(&ss->cv);
    pthread_mutex_unlock(&ss->lock);
    if (ss->sampler_on)
        pthread_join(ss->sampler, NULL);
    for (size_t i = 0; i < ss->n; i++) {
        struct sess *s = &ss->s[i];
        for (int j = 0; j < s->done; j++)
            free(s->t[j].reply);
        free(s->t);
    }
    free(ss->s);
    free(ss->words);
    free(ss->samples);
    sb_picker_release(&ss->pick);
    pthread_cond_destroy(&ss->cv);
    pthread_mutex_destroy(&ss->lock);
    free(ss);
    w->sess = NULL;
}

/* Keeps the words that are one token each, alone and after a space, and checks that a run of
   them counts one token a word. */
static int pick_words(struct sb_sessions *ss, struct sb_err *err)
{
    size_t n = SB_ARRAY_SIZE(all_words);
    ss->words = malloc(n * sizeof(char *));
    if (!ss->words)
        return sb_err_set(err, "out of memory");
    for (size_t i = 0; i < n; i++) {
        size_t a = 1, b = 1;
        if (ss->tok) {
            char sp[8];
            snprintf(sp, sizeof(sp), " %s", all_words[i]);
            if (sb_tokenizer_count(ss->tok, all_words[i], 3, false, &a, err) != 0 ||
                sb_tokenizer_count(ss->tok, sp, 4, false, &b, err) != 0)
                return -1;
        }
        if (a == 1 && b == 1)
            ss->words[ss->nwords++] = all_words[i];
    }
    if (ss->nwords < 16)
        return sb_err_set(err,
                          "--tokenizer: only %zu of sessioned_chat's %zu words are one token "
                          "each; exact lengths need 16",
                          ss->nwords, n);
    if (ss->tok) {
        struct sb_buf b;
        sb_buf_init(&b, 1u << 20);
        int rc = add_words(ss, &b, 12345, 500, true);
        size_t cnt = 0;
        if (rc == 0)
            rc = sb_tokenizer_count(ss->tok, b.data, b.len, false, &cnt, err);
        sb_buf_release(&b);
        if (rc != 0)
            return -1;
        if (cnt != 500)
            return sb_err_set(err,
                              "--tokenizer: 500 sessioned_chat words count %zu tokens: this "
                              "tokenizer merges words, exact lengths are not possible",
                              cnt);
    }
    return 0;
}

static int sess_init(struct sb_workload *w, struct sb_err *err)
{
    const struct sb_run_config *cfg = w->cfg;
    struct sb_sessions *ss = calloc(1, sizeof(*ss));
    if (!ss)
        return sb_err_set(err, "out of memory");
    w->sess = ss;
    pthread_mutex_init(&ss->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ss->cv, &ca);
    pthread_condattr_destroy(&ca);
    ss->cfg = cfg;
    ss->tok = w->tok;
    ss->scale = w->tok ? 1 : 4;
    ss->seed = (uint64_t)cfg->seed;
    ss->salt = sb_hash64(cfg->salt ? cfg->salt : "", cfg->salt ? strlen(cfg->salt) : 0, 0x5a17);
    ss->sys_n = cfg->system_tokens;
    ss->ctx_n = cfg->session_context_tokens;
    ss->turn_n = cfg->turn_tokens;
    ss->server_history = cfg->history == SB_HISTORY_SERVER;
    if (sb_dist_parse("--turns", cfg->turns, &ss->turns, err) != 0 ||
        sb_dist_parse("--think-ms", cfg->think_ms_spec ? cfg->think_ms_spec : "0", &ss->think,
                      err) != 0 ||
        sb_dist_parse("--idle-s", cfg->idle_s, &ss->idle, err) != 0)
        return -1;
    enum sb_order_kind k;
    double s;
    if (sb_order_parse(cfg->session_order, &k, &s, err) != 0)
        return -1;
    ss->n = (size_t)cfg->sessions;
    if (sb_picker_init(&ss->pick, k, s, ss->n, ss->seed, err) != 0 || pick_words(ss, err) != 0)
        return -1;
    ss->s = calloc(ss->n, sizeof(*ss->s));
    if (!ss->s)
        return sb_err_set(err, "out of memory for %zu sessions", ss->n);
    for (size_t i = 0; i < ss->n; i++)
        new_session(ss, &ss->s[i]);
    w->source = strdup("sessioned_chat");
    return 0;
}

static int sess_prompt(const struct sb_workload *w, long long user, long long req_idx,
                       struct sb_prompt *p, struct sb_err *err)
{
    (void)w, (void)user, (void)req_idx, (void)p;
    return sb_err_set(err, "sessioned_chat builds its prompts per turn");
}

static int sess_constant(const struct sb_workload *w)
{
    (void)w;
    return 0;
}

const struct sb_workload_ops sb_workload_sessioned_chat = {
    .name = "sessioned_chat",
    .init = sess_init,
    .prompt = sess_prompt,
    .per_user_constant = sess_constant,
    .next = sess_next,
    .done = sess_done,
    .measure_begins = sess_measure_begins,
    .state_json = sess_state_json,
    .release = sess_release,
};
