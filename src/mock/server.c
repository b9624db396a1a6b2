/*
 * The mock server: evhttp routes, request parsing, the engine clock (one libevent timer per engine
 * iteration), SSE writing exactly as vLLM/TensorRT-LLM stream (or as llama.cpp's llama-server with
 * --quirks llamacpp: its in-stream context error, Keep-Alive then close, timings, slots and
 * metrics), injected faults, fidelity stamps, the cache-reset endpoints, the per-request log and
 * clean shutdown.
 *
 * Request lifetime: a struct mreq is reference-counted. The HTTP side holds one reference until
 * libevent reports the reply written (on_complete) or the connection gone (on_conn_close); the
 * engine holds one while the sequence is queued or in the batch; a pending stall/slow-headers
 * timer holds one. The last put writes the log line, counts the outcome and frees.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/http_struct.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sb/buf.h"
#include "sb/mock_faults.h"
#include "sb/mock_metrics.h"
#include "sb/mock_metrics_port.h"
#include "sb/mock_model.h"
#include "sb/mock_server.h"
#include "sb/mock_slots.h"
#include "sb/mock_storage.h"
#include "sb/mock_text.h"
#include "sb/mock_wire.h"
#include "sb/tokenizer.h"
#include "sb/util.h"

#define MAX_BODY_BYTES    SB_MOCK_MAX_BODY_BYTES
#define SHUTDOWN_GRACE_NS 2000000000ull
#define TRTLLM_RING       1000 /* iteration stats kept for the next GET /metrics */
#define SB_MOCK_MAX_STOPS 4    /* OpenAI allows up to 4 stop sequences */

struct mock_server;

struct mreq {
    struct mock_server *srv;
    struct evhttp_request *req; /* NULL once libevent has let go of it */
    struct sb_mock_seq seq;
    struct mreq *prev, *next; /* the server's list of live requests */
    int refs;
    bool in_engine;

    uint64_t req_no;
    char id[48];
    char xreqid[128];
    const char *path;
    bool chat, stream, include_usage, ignore_eos;
    char *model_esc; /* JSON-escaped model name echoed in responses */
    char *prompt;    /* prompt text (echo mode); owned */
    size_t prompt_len;
    struct sb_ids ids; /* --tokenizer: the prompt's token ids as the server sees them (BOS, chat
                          wrapper): the KV blocks are hashed over these */
    char *tmpl;        /* --tokenizer chat with decode caching: the templated prompt text; owned */
    size_t tmpl_len;
    size_t last_tok_len; /* bytes of the last generated token's text */
    long long prompt_tokens, max_tokens, min_tokens, emitted;
    long long created;
    struct sb_mock_textgen text;
    struct sb_rng rng;
    struct sb_fault fault;

    uint64_t recv_ns, admit_ns, first_token_ns, last_token_ns, last_byte_ns;
    uint64_t first_token_sent_ns; /* the first content chunk left the output buffer */
    bool headers_sent, reply_ended, stalled, end_after_stall;
    struct evbuffer *pending; /* bytes held back while stalled */
    struct event *timer;
    struct sb_buf text_acc; /* the raw output text: non-stream, or a stream with stop strings */
    size_t text_sent;       /* bytes of text_acc already streamed */
    char *stops[SB_MOCK_MAX_STOPS]; /* the request's `stop` strings; owned */
    size_t nstops, stop_hold;       /* stop_hold: bytes held back (longest stop - 1) */
    const char *stop_hit;           /* the stop string that ended the sequence */
    const char *finish_reason;
    enum sb_mock_outcome outcome;
    int status;
    struct sb_mock_kvplan kv; /* KV blocks, cache hits and adapter of this request */
    int slot;                 /* llamacpp: the slot serving it, -1 none */
    bool ctx_exceeded;        /* llamacpp: prompt tokens >= the context, no context shift */
    long long n_prompt_sent;  /* llamacpp: prompt tokens before a context-shift truncation */
};

/* One engine iteration as TensorRT-LLM's /metrics reports it (--metrics-format trtllm). */
struct trtllm_iter {
    uint64_t iter, real_ns;
    double latency_ms;
    size_t active, queued, completed, context;
    long long ctx_tokens;
    uint64_t kv_used, reused, missed, alloc_total, alloc_new;
};

/* Tier-0 block counts in TensorRT-LLM's terms, kept at admission and release (all cumulative
   but `used`). */
struct kv_totals {
    uint64_t used;           /* blocks held by admitted sequences now */
    uint64_t reused, missed; /* prompt blocks served from a cache / computed */
    uint64_t alloc_total;    /* blocks every admission needed */
    uint64_t alloc_new;      /* of which newly computed (missed + generation blocks) */
};

struct mock_server {
    const struct sb_mock_config *cfg;
    struct sb_tokenizer *tok; /* --tokenizer: exact prompt counts; NULL: bytes / 4 */
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *listener;
    struct event *iter_ev, *sigint_ev, *sigterm_ev, *drain_ev;
    struct evbuffer *scratch;
    struct sb_mock_engine eng;
    struct sb_mock_metrics metrics;
    struct sb_fault_plan faults;
    uint64_t start_ns;
    uint64_t next_req_no;
    uint64_t id_salt; /* differs per process: response ids never repeat across restarts */
    bool iter_pending;
    bool draining;
    uint64_t drain_start_ns;
    struct mreq *live;
    size_t nlive;
    int log_fd;
    struct sb_buf scratch_buf;
    char **models;
    size_t nmodels;
    struct sb_mock_storage *storage;
    struct sb_metrics_port *mport; /* --metrics-port, on its own thread */
    struct sb_histo in_tokens, out_tokens, cached_tokens;
    /* --metrics-format trtllm: a ring of the iterations not yet drained by a GET /metrics */
    struct trtllm_iter *iters;
    size_t iters_head, iters_len;
    uint64_t iters_dropped; /* overwritten before any GET drained them */
    uint64_t iter_start_ns;
    struct kv_totals kvt;
    unsigned quirks; /* enum sb_mock_quirk bits */
    bool llamacpp;
    struct sb_mock_slots slots; /* llamacpp */
    /* llamacpp: llama.cpp's server_metrics totals */
    uint64_t lc_prompt_n, lc_busy_slots;
    double lc_prompt_ms, lc_predicted_ms;
};

static void kick_engine(struct mock_server *s);

/* ---- small helpers ---- */

static bool startup_pending(const struct mock_server *s)
{
    return s->cfg->startup_ms > 0 &&
           sb_mono_ns() - s->start_ns < (uint64_t)s->cfg->startup_ms * 1000000ull;
}

/* Turns Nagle off on the request's connection. A stream writes small chunks with pauses between
   them; with Nagle on, a chunk written while the previous one is unacknowledged waits for the
   client's delayed ACK (40 ms on Linux), so every first token would arrive late by that much. The
   real servers' stacks (uvicorn, hyper) set TCP_NODELAY on every connection too. */
static void set_nodelay(struct evhttp_request *req)
{
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    struct bufferevent *bev = conn ? evhttp_connection_get_bufferevent(conn) : NULL;
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* An HTTP/1.0 request (libevent 2.1 has no getter for the version; the struct is its public
   compatibility layout). */
static bool http10(const struct evhttp_request *req)
{
    return req->major == 1 && req->minor == 0;
}

static void add_header(struct evhttp_request *req, const char *k, const char *v)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), k, v);
}

/* Sends an error reply with an OpenAI-style body (nested) or TensorRT-LLM's flat one; param names
   the offending request field (NULL: null). */
static void send_error_param(struct evhttp_request *req, int status, const char *type,
                             const char *msg, const char *param, bool flat)
{
    struct evbuffer *b = evbuffer_new();
    char esc[1024], pesc[128] = "null";
    sb_json_escape(esc, sizeof(esc), msg, strlen(msg));
    if (param) {
        pesc[0] = '"';
        size_t n = sb_json_escape(pesc + 1, sizeof(pesc) - 2, param, strlen(param));
        if (n > sizeof(pesc) - 3)
            n = sizeof(pesc) - 3;
        pesc[n + 1] = '"';
        pesc[n + 2] = '\0';
    }
    if (flat)
        evbuffer_add_printf(b,
                            "{\"object\":\"error\",\"message\":\"%s\",\"type\":\"%s\","
                            "\"param\":%s,\"code\":%d}",
                            esc, type, pesc, status);
    else
        evbuffer_add_printf(b,
                            "{\"error\":{\"message\":\"%s\",\"type\":\"%s\",\"param\":%s,"
                            "\"code\":%d}}",
                            esc, type, pesc, status);
    add_header(req, "Content-Type", "application/json");
    const char *reason = status == 400   ? "Bad Request"
                         : status == 404 ? "Not Found"
                         : status == 405 ? "Method Not Allowed"
                         : status == 413 ? "Payload Too Large"
                         : status == 429 ? "Too Many Requests"
                         : status == 503 ? "Service Unavailable"
                                         : "Internal Server Error";
    evhttp_send_reply(req, status, reason, b);
    evbuffer_free(b);
}

static void send_error(struct evhttp_request *req, int status, const char *type, const char *msg,
                       bool flat)
{
    send_error_param(req, status, type, msg, NULL, flat);
}

/* llama.cpp's error object (format_error_response, plus n_prompt_tokens and n_ctx for
   exceed_context_size_error: server_task_result_error::to_json); n_ctx < 0 leaves them out. */
static void add_llamacpp_error(struct evbuffer *b, int code, const char *type, const char *msg,
                               long long n_prompt, long long n_ctx)
{
    char esc[1024];
    sb_json_escape(esc, sizeof(esc), msg, strlen(msg));
    evbuffer_add_printf(b, "{\"code\":%d,\"message\":\"%s\",\"type\":\"%s\"", code, esc, type);
    if (n_ctx >= 0)
        evbuffer_add_printf(b, ",\"n_prompt_tokens\":%lld,\"n_ctx\":%lld", n_prompt, n_ctx);
    evbuffer_add(b, "}", 1);
}

/* An error reply as llama-server sends it: {"error":{...}} with the code as the status. */
static void send_llamacpp_error(struct evhttp_request *req, int status, const char *type,
                                const char *msg, long long n_prompt, long long n_ctx)
{
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, "{\"error\":", 9);
    add_llamacpp_error(b, status, type, msg, n_prompt, n_ctx);
    evbuffer_add(b, "}", 1);
    add_header(req, "Content-Type", "application/json; charset=utf-8");
    evhttp_send_reply(req, status, status == 503 ? "Service Unavailable" : "Error", b);
    evbuffer_free(b);
}

/* The 503 every endpoint answers while llama-server loads its model (middleware_server_state). */
static void send_loading(const struct mock_server *s, struct evhttp_request *req, bool draining)
{
    if (s->llamacpp && !draining)
        send_llamacpp_error(req, 503, "unavailable_error", "Loading model", 0, -1);
    else
        send_error(req, 503, "service_unavailable",
                   draining ? "server is shutting down" : "model is still loading", false);
}

/* ---- request lifetime ---- */

/* Unpins the request's KV blocks (once; later calls do nothing). */
static void kv_release(struct mock_server *s, struct mreq *m)
{
    if (m->kv.admitted) {
        uint64_t b = (uint64_t)(m->kv.nblocks + m->kv.extra_blocks);
        s->kvt.used -= b < s->kvt.used ? b : s->kvt.used;
    }
    sb_mock_storage_release(s->storage, m->req_no, &m->kv);
}

static void log_request(struct mock_server *s, struct mreq *m)
{
    if (s->log_fd < 0)
        return;
    struct sb_buf *b = &s->scratch_buf;
    sb_buf_reset(b);
    sb_buf_addf(b, "{\"req_no\":%" PRIu64 ",\"id\":\"%s\",\"x_request_id\":\"", m->req_no, m->id);
    sb_buf_add_json_escaped(b, m->xreqid, strlen(m->xreqid));
    sb_buf_addf(b,
                "\",\"path\":\"%s\",\"stream\":%s,\"status\":%d,\"outcome\":\"%s\","
                "\"fault\":\"%s\",\"prompt_tokens\":%lld,\"completion_tokens\":%lld",
                m->path, m->stream ? "true" : "false", m->status, sb_mock_outcome_name(m->outcome),
                sb_fault_name(m->fault.kind), m->prompt_tokens, m->emitted);
    const struct {
        const char *name;
        uint64_t v;
    } stamps[] = {{"recv_ns", m->recv_ns},
                  {"admit_ns", m->admit_ns},
                  {"first_token_ns", m->first_token_ns},
                  {"first_token_sent_ns", m->first_token_sent_ns},
                  {"last_token_ns", m->last_token_ns},
                  {"last_byte_ns", m->last_byte_ns}};
    for (size_t i = 0; i < SB_ARRAY_SIZE(stamps); i++) {
        if (stamps[i].v)
            sb_buf_addf(b, ",\"%s\":%" PRIu64, stamps[i].name, stamps[i].v);
        else
            sb_buf_addf(b, ",\"%s\":null", stamps[i].name);
    }
    if (m->kv.hashes || m->kv.lora >= 0)
        sb_buf_addf(b,
                    ",\"kv_blocks\":%zu,\"kv_hit_t0\":%zu,\"kv_hit_t1\":%zu,\"kv_hit_t2\":%zu,"
                    "\"kv_miss\":%zu,\"cached_tokens\":%lld,\"disk_read_bytes\":%" PRIu64
                    ",\"fetch_ns\":%" PRIu64
                    ",\"lora\":%d,\"lora_cold\":%s,\"lora_load_ns\":%" PRId64,
                    m->kv.nblocks, m->kv.hit[0], m->kv.hit[1], m->kv.hit[2], m->kv.miss,
                    m->kv.cached_tokens, m->kv.disk_read_bytes, m->kv.fetch_ns, m->kv.lora,
                    m->kv.lora_cold ? "true" : "false", m->kv.lora_ns);
    sb_buf_adds(b, "}\n");
    /* One write per line on an O_APPEND descriptor: lines never interleave or tear. */
    ssize_t w = write(s->log_fd, b->data, b->len);
    (void)w;
}

static void mreq_free(struct mreq *m)
{
    struct mock_server *s = m->srv;
    s->metrics.requests[m->outcome]++;
    if (m->outcome == SB_OUT_OK && m->last_token_ns) {
        sb_histo_observe(&s->metrics.e2e, (double)(m->last_token_ns - m->recv_ns) / 1e9);
        sb_histo_observe(&s->in_tokens, (double)m->prompt_tokens);
        sb_histo_observe(&s->out_tokens, (double)m->emitted);
        sb_histo_observe(&s->cached_tokens, (double)m->kv.cached_tokens);
    }
    log_request(s, m);
    if (m->prev)
        m->prev->next = m->next;
    else
        s->live = m->next;
    if (m->next)
        m->next->prev = m->prev;
    s->nlive--;
    if (m->timer)
        event_free(m->timer);
    if (m->pending)
        evbuffer_free(m->pending);
    sb_buf_release(&m->text_acc);
    for (size_t i = 0; i < m->nstops; i++)
        free(m->stops[i]);
    kv_release(s, m);
    sb_mock_kvplan_release(&m->kv);
    free(m->model_esc);
    free(m->prompt);
    free(m->tmpl);
    sb_ids_release(&m->ids);
    free(m);
}

static void mreq_get(struct mreq *m)
{
    m->refs++;
}

static void mreq_put(struct mreq *m)
{
    if (--m->refs == 0)
        mreq_free(m);
}

/* Whether a finished reply's blocks are worth keeping: the text is accumulated only then. */
static bool caches_reply(const struct mock_server *s)
{
    return s->cfg->cache_decode && sb_mock_storage_kv_enabled(s->storage);
}

/*
 * Decode-block caching: the blocks of the sequence as the next turn's prompt will carry it — the
 * chat prompt, the reply and the message's terminator ("\n" between contents, <|eot_id|> with the
 * template), or a completion's prompt and reply — cut to the tokens whose KV was computed: the
 * last sampled token is never fed back (vLLM caches min(computed + new, num_tokens) tokens per
 * step), so an EOS-ended reply keeps prompt + reply and a length-ended one loses its last token.
 */
static void cache_reply(struct mock_server *s, struct mreq *m)
{
    if (!caches_reply(s) || !m->kv.admitted || !m->finish_reason || m->emitted == 0)
        return;
    if (m->prompt_len == 0 && m->ids.n == 0)
        return; /* a prompt of token ids: its blocks were never hashed, the reply's mean nothing */
    bool by_length = strcmp(m->finish_reason, "length") == 0;
    const char *reply = m->text_acc.data ? m->text_acc.data : "";
    size_t rlen = m->text_acc.len;
    struct sb_err err = {0};
    int rc = 0;
    if (s->tok && m->ids.n) {
        struct sb_ids ids = {0};
        struct sb_buf t;
        sb_buf_init(&t, (size_t)-1);
        if (m->chat && m->tmpl) {
            rc |= sb_buf_add(&t, m->tmpl, m->tmpl_len);
            rc |= sb_buf_add(&t, reply, rlen);
            rc |= sb_buf_adds(&t, "<|eot_id|>");
        } else {
            rc |= sb_buf_add(&t, m->prompt, m->prompt_len);
            rc |= sb_buf_add(&t, reply, rlen);
        }
        if (rc == 0 && t.len)
            rc = sb_tokenizer_encode(s->tok, t.data, t.len, !m->chat, &ids, &err);
        size_t n = ids.n, cut = (m->chat ? 1 : 0) + (by_length ? 1 : 0);
        n = n > cut ? n - cut : 0;
        if (rc == 0)
            rc = sb_mock_storage_extend(s->storage, m->req_no, &m->kv, NULL, 0,
                                        (const uint32_t *)ids.v, n, &err);
        sb_ids_release(&ids);
        sb_buf_release(&t);
    } else {
        struct sb_buf t;
        sb_buf_init(&t, (size_t)-1);
        rc |= sb_buf_add(&t, m->prompt ? m->prompt : "", m->prompt_len);
        rc |= sb_buf_add(&t, reply, rlen);
        size_t n = t.len;
        if (by_length)
            n = n > m->last_tok_len ? n - m->last_tok_len : 0;
        if (rc == 0)
            rc = sb_mock_storage_extend(s->storage, m->req_no, &m->kv, t.data, n, NULL, 0, &err);
        sb_buf_release(&t);
    }
    if (rc != 0)
        fprintf(stderr, "sparkbench mock: caching the reply's blocks failed: %s\n",
                err.msg[0] ? err.msg : "out of memory");
}

/* The sequence leaves the engine (finished, dropped or cancelled): its KV blocks are unpinned. */
static void leave_batch(struct mreq *m)
{
    struct mock_server *s = m->srv;
    cache_reply(s, m);
    if (m->slot >= 0) {
        sb_mock_slots_put(&s->slots, m->slot, m->emitted);
        m->slot = -1;
        if (m->emitted > 0)
            s->lc_predicted_ms += (double)(m->last_token_ns - m->first_token_ns) / 1e6;
    }
    m->in_engine = false;
    kv_release(m->srv, m);
    mreq_put(m);
}

static void set_outcome(struct mreq *m, enum sb_mock_outcome o, int status)
{
    /* The first verdict stands: a fault stays a fault even when the client then goes away. */
    if (m->outcome == SB_OUT_OK && m->status == 0) {
        m->outcome = o;
        m->status = status;
    }
}

static void on_complete(struct evhttp_request *req, void *arg)
{
    struct mreq *m = arg;
    m->last_byte_ns = sb_mono_ns();
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    if (conn)
        evhttp_connection_set_closecb(conn, NULL, NULL);
    m->req = NULL;
    mreq_put(m);
}

/* Leaves the engine when the client is gone. */
static void leave_engine(struct mreq *m)
{
    if (m->in_engine && sb_mock_engine_cancel(&m->srv->eng, &m->seq)) {
        leave_batch(m);
    }
}

static void on_conn_close(struct evhttp_connection *conn, void *arg)
{
    struct mreq *m = arg;
    (void)conn;
    if (!m->req)
        return;
    mreq_get(m);
    set_outcome(m, SB_OUT_CANCELLED, 499);
    struct evhttp_request *req = m->req;
    m->req = NULL;
    if (!m->reply_ended && !evhttp_request_get_connection(req)) {
        /* libevent detached the half-sent request and leaves its freeing to us. */
        m->reply_ended = true;
        evhttp_send_reply_end(req);
    }
    /* Otherwise libevent frees the request right after this callback. */
    leave_engine(m);
    mreq_put(m); /* the HTTP reference */
    mreq_put(m);
}

/* Hands bytes to the connection, or holds them while a stall fault is in force. */
static void emit(struct mreq *m, struct evbuffer *data)
{
    if (m->stalled) {
        evbuffer_add_buffer(m->pending, data);
        return;
    }
    if (m->req)
        evhttp_send_reply_chunk(m->req, data);
    else
        evbuffer_drain(data, evbuffer_get_length(data));
}

static void end_stream(struct mreq *m)
{
    if (m->stalled) {
        m->end_after_stall = true;
        return;
    }
    if (m->req && !m->reply_ended) {
        m->reply_ended = true;
        mreq_get(m);
        if (m->srv->llamacpp) {
            /* The headers (Keep-Alive: timeout=5, max=100) are gone already; this header only
               makes evhttp close the connection once the last chunk is written, as
               cpp-httplib does when llama.cpp's chunked content provider returns false. */
            evhttp_add_header(evhttp_request_get_output_headers(m->req), "Connection", "close");
        }
        evhttp_send_reply_end(m->req); /* may run on_complete synchronously */
        mreq_put(m);
    }
}

/* Closes the client's connection at once (the 'close' fault). */
static void drop_connection(struct mreq *m)
{
    if (!m->req)
        return;
    struct evhttp_connection *conn = evhttp_request_get_connection(m->req);
    if (conn)
        evhttp_connection_free(conn); /* runs on_conn_close, which puts the HTTP reference */
}

/* ---- response bodies ---- */

static void add_usage(struct evbuffer *b, const struct mreq *m)
{
    evbuffer_add_printf(b,
                        "\"usage\":{\"prompt_tokens\":%lld,\"total_tokens\":%lld,"
                        "\"completion_tokens\":%lld,\"prompt_tokens_details\":{"
                        "\"cached_tokens\":%lld}}",
                        m->prompt_tokens, m->prompt_tokens + m->emitted, m->emitted,
                        m->kv.cached_tokens);
}

static void add_stamp(struct evbuffer *b, const struct mreq *m)
{
    evbuffer_add_printf(b, ",\"x_mock\":{\"recv_ns\":%" PRIu64 ",\"first_token_ns\":%" PRIu64,
                        m->recv_ns, m->first_token_ns);
    if (m->kv.admitted)
        evbuffer_add_printf(b,
                            ",\"tier_hits\":{\"t0\":%zu,\"t1\":%zu,\"t2\":%zu,\"miss\":%zu,"
                            "\"cached_tokens\":%lld},\"fetch_ns\":%" PRIu64,
                            m->kv.hit[0], m->kv.hit[1], m->kv.hit[2], m->kv.miss,
                            m->kv.cached_tokens, m->kv.fetch_ns);
    evbuffer_add(b, "}", 1);
}

/*
 * x-mock-tier-hits: the prompt's blocks by the tier that served them (KV model on). A plain
 * response has been admitted: the admission's own figures. A stream's headers leave when it is
 * queued, before its admission (as vLLM's do), so they carry what the tiers hold at that moment:
 * the admission's figures unless another admission changes the cache first. The first chunk's
 * x_mock.tier_hits and the --log line always have the admission's.
 */
static void add_tier_header(struct mock_server *s, struct mreq *m)
{
    if (!m->req || !sb_mock_storage_kv_enabled(s->storage))
        return;
    size_t hit[3], miss;
    long long cached;
    if (m->kv.admitted) {
        for (int t = 0; t < 3; t++)
            hit[t] = m->kv.hit[t];
        miss = m->kv.miss;
        cached = m->kv.cached_tokens;
    } else {
        sb_mock_storage_peek(s->storage, &m->kv, hit, &miss);
        cached = (long long)(hit[0] + hit[1] + hit[2]) * s->cfg->kv_block_tokens;
        if (cached > m->prompt_tokens)
            cached = m->prompt_tokens;
    }
    char v[160];
    snprintf(v, sizeof(v), "t0=%zu,t1=%zu,t2=%zu,miss=%zu,cached_tokens=%lld", hit[0], hit[1],
             hit[2], miss, cached);
    add_header(m->req, "x-mock-tier-hits", v);
}

static void add_chunk_head(struct evbuffer *b, const struct mreq *m)
{
    evbuffer_add_printf(
        b, "data: {\"id\":\"%s\",\"object\":\"%s\",\"created\":%lld,\"model\":\"%s\",", m->id,
        m->chat ? "chat.completion.chunk" : "text_completion", m->created, m->model_esc);
}

static void send_role_chunk(struct mreq *m)
{
    struct evbuffer *b = m->srv->scratch;
    add_chunk_head(b, m);
    /* llama.cpp's initial update carries "content":null (to_json_oaicompat_chat). */
    evbuffer_add_printf(b,
                        "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
                        "\"content\":%s},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
                        m->srv->llamacpp ? "null" : "\"\"");
    emit(m, b);
}

static void on_first_token_sent(struct evhttp_connection *conn, void *arg)
{
    struct mreq *m = arg;
    (void)conn;
    m->first_token_sent_ns = sb_mono_ns();
}

/* Appends s[0..len) to b as the body of a JSON string. */
static void add_json_text(struct evbuffer *b, const char *s, size_t len)
{
    char small[512];
    size_t need = sb_json_escape(NULL, 0, s, len);
    char *esc = need < sizeof(small) ? small : malloc(need + 1);
    if (!esc)
        return;
    sb_json_escape(esc, need + 1, s, len);
    evbuffer_add(b, esc, need);
    if (esc != small)
        free(esc);
}

/* vLLM's stop_reason: the stop string that ended the sequence, else null. */
static void add_stop_reason(struct evbuffer *b, const struct mreq *m)
{
    if (!m->stop_hit) {
        evbuffer_add_printf(b, "\"stop_reason\":null");
        return;
    }
    evbuffer_add_printf(b, "\"stop_reason\":\"");
    add_json_text(b, m->stop_hit, strlen(m->stop_hit));
    evbuffer_add(b, "\"", 1);
}

static void send_token_chunk(struct mreq *m, const char *text, size_t len, bool first)
{
    struct evbuffer *b = m->srv->scratch;
    char fin[32];
    if (m->finish_reason && !m->srv->llamacpp) /* llama.cpp ends in a chunk of its own */
        snprintf(fin, sizeof(fin), "\"%s\"", m->finish_reason);
    else
        snprintf(fin, sizeof(fin), "null");
    add_chunk_head(b, m);
    evbuffer_add_printf(b, m->chat ? "\"choices\":[{\"index\":0,\"delta\":{\"content\":\""
                                   : "\"choices\":[{\"index\":0,\"text\":\"");
    add_json_text(b, text, len);
    if (m->chat) {
        evbuffer_add_printf(b, "\"},\"logprobs\":null,\"finish_reason\":%s}]", fin);
    } else {
        evbuffer_add_printf(b, "\",\"logprobs\":null,\"finish_reason\":%s,", fin);
        add_stop_reason(b, m);
        evbuffer_add_printf(b, "}],\"usage\":null");
    }
    if (first)
        add_stamp(b, m);
    evbuffer_add(b, "}\n\n", 3);
    if (first && !m->stalled && m->req) {
        /* libevent calls back once the connection's output buffer has drained into the kernel:
           the stamp a client's first-token time is compared with. A later write on the same
           connection before the drain replaces the callback, and the stamp stays null. */
        evhttp_send_reply_chunk_with_cb(m->req, b, on_first_token_sent, m);
        return;
    }
    emit(m, b);
}

/* Appends "timings":{...} as llama.cpp's result_timings::to_json writes it, from the mock's own
   clock: prompt time from admission to the first token (what the slot spends before its first
   sample), decode time from the first token to the last, cache_n the prompt tokens reused. */
static void add_timings(struct evbuffer *b, const struct mreq *m)
{
    long long cache_n = m->kv.cached_tokens, prompt_n = m->prompt_tokens - cache_n;
    double prompt_ms =
        m->first_token_ns > m->admit_ns ? (double)(m->first_token_ns - m->admit_ns) / 1e6 : 0;
    double predicted_ms = m->last_token_ns > m->first_token_ns
                              ? (double)(m->last_token_ns - m->first_token_ns) / 1e6
                              : 0;
    evbuffer_add_printf(b,
                        "\"timings\":{\"cache_n\":%lld,\"prompt_n\":%lld,\"prompt_ms\":%.6f,"
                        "\"prompt_per_token_ms\":%.6f,\"prompt_per_second\":%.6f,"
                        "\"predicted_n\":%lld,\"predicted_ms\":%.6f,"
                        "\"predicted_per_token_ms\":%.6f,\"predicted_per_second\":%.6f}",
                        cache_n, prompt_n, prompt_ms,
                        prompt_n > 0 ? prompt_ms / (double)prompt_n : 0,
                        prompt_ms > 0 ? 1e3 * (double)prompt_n / prompt_ms : 0, m->emitted,
                        predicted_ms, m->emitted > 0 ? predicted_ms / (double)m->emitted : 0,
                        predicted_ms > 0 ? 1e3 * (double)m->emitted / predicted_ms : 0);
}

/* llama.cpp's end of a stream (to_json_oaicompat_chat_stream): a chunk with an empty delta and
   the finish_reason, a usage chunk with "choices":[] when asked, timings on the last of them. */
static void send_llamacpp_tail(struct mreq *m)
{
    struct evbuffer *b = m->srv->scratch;
    add_chunk_head(b, m);
    if (m->chat)
        evbuffer_add_printf(b, "\"choices\":[{\"finish_reason\":\"%s\",\"index\":0,\"delta\":{}}]",
                            m->finish_reason);
    else
        evbuffer_add_printf(b,
                            "\"choices\":[{\"text\":\"\",\"index\":0,\"logprobs\":null,"
                            "\"finish_reason\":\"%s\"}]",
                            m->finish_reason);
    if (m->include_usage) {
        evbuffer_add(b, "}\n\n", 3);
        add_chunk_head(b, m);
        evbuffer_add_printf(b, "\"choices\":[],");
        add_usage(b, m);
    }
    evbuffer_add(b, ",", 1);
    add_timings(b, m);
    evbuffer_add_printf(b, "}\n\ndata: [DONE]\n\n");
    emit(m, b);
    end_stream(m);
}

static void send_stream_tail(struct mreq *m)
{
    struct evbuffer *b = m->srv->scratch;
    if (m->srv->llamacpp) {
        send_llamacpp_tail(m);
        return;
    }
    if (m->include_usage) {
        add_chunk_head(b, m);
        evbuffer_add_printf(b, "\"choices\":[],");
        add_usage(b, m);
        evbuffer_add(b, "}\n\n", 3);
    }
    evbuffer_add_printf(b, "data: [DONE]\n\n");
    emit(m, b);
    end_stream(m);
}

static void send_full_response(struct mreq *m)
{
    if (!m->req || m->reply_ended)
        return;
    struct evbuffer *b = evbuffer_new();
    evbuffer_add_printf(b, "{\"id\":\"%s\",\"object\":\"%s\",\"created\":%lld,\"model\":\"%s\",",
                        m->id, m->chat ? "chat.completion" : "text_completion", m->created,
                        m->model_esc);
    evbuffer_add_printf(b, m->chat ? "\"choices\":[{\"index\":0,\"message\":{\"role\":"
                                     "\"assistant\",\"content\":\""
                                   : "\"choices\":[{\"index\":0,\"text\":\"");
    add_json_text(b, m->text_acc.data ? m->text_acc.data : "", m->text_acc.len);
    if (m->chat) {
        evbuffer_add_printf(b, "\"},\"logprobs\":null,\"finish_reason\":\"%s\"}],",
                            m->finish_reason);
    } else {
        evbuffer_add_printf(b, "\",\"logprobs\":null,\"finish_reason\":\"%s\",", m->finish_reason);
        add_stop_reason(b, m);
        evbuffer_add_printf(b, "}],");
    }
    add_usage(b, m);
    add_stamp(b, m);
    if (m->srv->llamacpp) {
        evbuffer_add(b, ",", 1);
        add_timings(b, m);
    }
    evbuffer_add(b, "}", 1);
    if (m->fault.kind == SB_FAULT_MALFORMED) {
        size_t len = evbuffer_get_length(b);
        evbuffer_drain(b, 0);
        struct evbuffer *cut = evbuffer_new();
        evbuffer_remove_buffer(b, cut, len / 2);
        evbuffer_free(b);
        b = cut;
    }
    add_header(m->req, "Content-Type", "application/json");
    add_tier_header(m->srv, m);
    m->reply_ended = true;
    evhttp_send_reply(m->req, 200, "OK", b);
    evbuffer_free(b);
}

/* ---- the engine clock ---- */

static void on_stall_end(evutil_socket_t fd, short what, void *arg);

static void start_timer(struct mreq *m, long long ms, event_callback_fn cb)
{
    if (!m->timer)
        m->timer = evtimer_new(m->srv->base, cb, m);
    else
        event_assign(m->timer, m->srv->base, -1, 0, cb, m);
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    mreq_get(m);
    evtimer_add(m->timer, &tv);
}

/*
 * Adds a token's text to the output and applies the request's stop strings as vLLM does: the
 * output ends before the first stop string (which is not included), and a stream holds back the
 * last (longest stop - 1) bytes until they cannot begin one. Stop strings count only after
 * min_tokens. Returns the text this token's chunk may carry (*out_len bytes).
 */
static const char *take_text(struct mreq *m, const char *tok, size_t len, size_t *out_len)
{
    struct sb_buf *acc = &m->text_acc;
    size_t before = acc->len;
    if (sb_buf_add(acc, tok, len) != 0) {
        *out_len = 0;
        return "";
    }
    if (m->nstops && m->emitted >= m->min_tokens) {
        size_t from = before > m->stop_hold ? before - m->stop_hold : 0;
        size_t hit = acc->len;
        for (size_t i = 0; i < m->nstops; i++) {
            const char *p =
                memmem(acc->data + from, acc->len - from, m->stops[i], strlen(m->stops[i]));
            if (p && (size_t)(p - acc->data) < hit) {
                hit = (size_t)(p - acc->data);
                m->stop_hit = m->stops[i];
            }
        }
        if (m->stop_hit) {
            acc->len = hit;
            m->finish_reason = "stop";
        }
    }
    size_t end = m->stop_hit                              ? acc->len
                 : acc->len > m->stop_hold + m->text_sent ? acc->len - m->stop_hold
                                                          : m->text_sent;
    if (end < m->text_sent)
        end = m->text_sent;
    const char *text = acc->data + m->text_sent;
    *out_len = end - m->text_sent;
    m->text_sent = end;
    return text;
}

/* One token for one sequence at the end of an iteration. Returns true when it is finished. */
static bool on_token(struct sb_mock_seq *seq, uint64_t now, void *arg)
{
    struct mock_server *s = arg;
    struct mreq *m = seq->owner;
    const struct sb_mock_config *cfg = s->cfg;
    if (!m->req) {
        /* The client is gone but the cancel raced the iteration: drop it here. */
        leave_batch(m);
        return true;
    }
    bool first = m->emitted == 0;
    if (first) {
        m->admit_ns = seq->admit_ns;
        m->first_token_ns = now;
        sb_histo_observe(&s->metrics.ttft, (double)(now - m->recv_ns) / 1e9);
        sb_histo_observe(&s->metrics.queue, (double)(seq->admit_ns - seq->enqueue_ns) / 1e9);
        s->lc_prompt_n += (uint64_t)(m->prompt_tokens - m->kv.cached_tokens);
        s->lc_prompt_ms += (double)(now - seq->admit_ns) / 1e6;
    } else {
        sb_histo_observe(&s->metrics.itl, (double)(now - m->last_token_ns) / 1e9);
    }
    m->last_token_ns = now;
    m->emitted++;
    s->metrics.generation_tokens++;

    char tok[64];
    size_t len = sb_mock_textgen_next(&m->text, tok, sizeof(tok));
    const char *text = tok; /* what this token's chunk carries */
    m->last_tok_len = len;
    if (m->nstops || !m->stream) {
        text = take_text(m, tok, len, &len);
    } else if (caches_reply(s)) {
        sb_buf_add(&m->text_acc, tok, len); /* the reply whose blocks stay cached */
    }
    if (m->finish_reason) {
        /* a stop string ended it */
    } else if (m->emitted >= m->max_tokens) {
        m->finish_reason = "length";
    } else if (!m->ignore_eos && cfg->eos_prob > 0 && m->emitted >= m->min_tokens &&
               sb_rng_uniform(&m->rng) < cfg->eos_prob) {
        m->finish_reason = "stop";
    }
    if (m->finish_reason && m->stream && m->nstops) {
        /* The end releases what was held back for a possible stop string. */
        text = m->text_acc.data + m->text_sent - len;
        len = m->text_acc.len - (m->text_sent - len);
        m->text_sent = m->text_acc.len;
    }
    bool at_fault = m->fault.kind != SB_FAULT_NONE && m->emitted == m->fault.at_token + 1;

    if (!m->stream) {
        if (at_fault && m->fault.kind == SB_FAULT_CLOSE) {
            set_outcome(m, SB_OUT_FAULT, 0);
            m->in_engine = false;
            kv_release(s, m);
            drop_connection(m);
            mreq_put(m);
            return true;
        }
        if (!m->finish_reason)
            return false;
        if (m->fault.kind == SB_FAULT_MALFORMED)
            set_outcome(m, SB_OUT_FAULT, 200);
        else
            set_outcome(m, SB_OUT_OK, 200);
        if (m->fault.kind == SB_FAULT_STALL) {
            set_outcome(m, SB_OUT_FAULT, 200);
            m->stalled = true;
            m->end_after_stall = true;
            start_timer(m, cfg->fault_stall_ms, on_stall_end);
        } else if (m->fault.kind == SB_FAULT_DYNAMO_ERROR) {
            set_outcome(m, SB_OUT_FAULT, 500);
            m->reply_ended = true;
            send_error(m->req, 500, "internal_error", "mock: injected engine error", false);
        } else {
            send_full_response(m);
        }
        leave_batch(m);
        return true;
    }

    /* vLLM and TensorRT-LLM send the role-only chunk with the first token (their first engine
       output), not at admission: sent earlier it would hide queueing and prefill from a client
       that times the first chunk. */
    if (first && m->chat)
        send_role_chunk(m);
    if (at_fault) {
        switch (m->fault.kind) {
        case SB_FAULT_CLOSE:
            set_outcome(m, SB_OUT_FAULT, 200);
            m->in_engine = false;
            kv_release(s, m);
            drop_connection(m);
            mreq_put(m);
            return true;
        case SB_FAULT_DYNAMO_ERROR: {
            set_outcome(m, SB_OUT_FAULT, 200);
            struct evbuffer *b = s->scratch;
            evbuffer_add_printf(b, "event: error\n: mock injected engine error\n\n");
            emit(m, b);
            end_stream(m);
            leave_batch(m);
            return true;
        }
        case SB_FAULT_MALFORMED: {
            set_outcome(m, SB_OUT_FAULT, 200);
            struct evbuffer *b = s->scratch;
            add_chunk_head(b, m);
            evbuffer_add_printf(b, "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"%.*s\n\n",
                                (int)len, tok);
            emit(m, b);
            break;
        }
        case SB_FAULT_STALL:
            set_outcome(m, SB_OUT_FAULT, 200);
            m->stalled = true;
            start_timer(m, cfg->fault_stall_ms, on_stall_end);
            break;
        default:
            break;
        }
    }
    if (!(at_fault && m->fault.kind == SB_FAULT_MALFORMED))
        send_token_chunk(m, text, len, first);
    if (!m->finish_reason)
        return false;
    set_outcome(m, SB_OUT_OK, 200);
    send_stream_tail(m);
    leave_batch(m);
    return true;
}

static void on_stall_end(evutil_socket_t fd, short what, void *arg)
{
    struct mreq *m = arg;
    (void)fd;
    (void)what;
    m->stalled = false;
    if (m->req && !m->reply_ended && evbuffer_get_length(m->pending))
        evhttp_send_reply_chunk(m->req, m->pending);
    if (m->end_after_stall) {
        if (m->stream)
            end_stream(m);
        else
            send_full_response(m);
    }
    mreq_put(m);
}

static void on_drop(struct sb_mock_seq *seq, void *arg)
{
    struct mreq *m = seq->owner;
    (void)arg;
    leave_batch(m);
}

/* Keeps one iteration's stats for TensorRT-LLM's /metrics; the oldest goes when the ring is
   full. */
static void record_iteration(struct mock_server *s, const struct trtllm_iter *it)
{
    if (s->iters_len < TRTLLM_RING) {
        s->iters[(s->iters_head + s->iters_len++) % TRTLLM_RING] = *it;
    } else {
        s->iters[s->iters_head] = *it;
        s->iters_head = (s->iters_head + 1) % TRTLLM_RING;
        s->iters_dropped++;
    }
}

static void on_iteration(evutil_socket_t fd, short what, void *arg)
{
    struct mock_server *s = arg;
    (void)fd;
    (void)what;
    s->iter_pending = false;
    struct trtllm_iter it = {.iter = s->eng.iterations, .active = s->eng.nbatch};
    for (size_t i = 0; s->iters && i < s->eng.nbatch; i++) {
        if (s->eng.batch[i]->prefilling) {
            it.context++;
            it.ctx_tokens += s->eng.batch[i]->chunk_tokens;
        }
    }
    uint64_t now = sb_mono_ns();
    sb_mock_engine_end(&s->eng, now, on_token, on_drop, s);
    if (s->iters) {
        it.real_ns = sb_real_ns();
        it.latency_ms = (double)(now - s->iter_start_ns) / 1e6;
        it.queued = s->eng.nwaiting;
        it.completed = it.active - s->eng.nbatch;
        it.kv_used = s->kvt.used;
        it.reused = s->kvt.reused;
        it.missed = s->kvt.missed;
        it.alloc_total = s->kvt.alloc_total;
        it.alloc_new = s->kvt.alloc_new;
        record_iteration(s, &it);
    }
    kick_engine(s);
}

/* Admission hook: KV onboarding and adapter loading really happen here, and cost their time. */
static int64_t on_admit(struct sb_mock_seq *seq, void *arg)
{
    struct mock_server *s = arg;
    struct mreq *m = seq->owner;
    long long uncached = seq->uncached_tokens;
    int64_t cost = 0;
    if (s->storage && (cost = sb_mock_storage_admit(s->storage, m->req_no, &m->kv, m->prompt_tokens,
                                                    &uncached)) < 0)
        return SB_MOCK_ADMIT_WAIT;
    seq->uncached_tokens = uncached;
    if (s->llamacpp) {
        /* llama.cpp reuses its slot's KV, not a shared block cache: the slot decides. There are
           as many slots as batch places, so an admitted sequence always finds an idle one. */
        long long cached = 0;
        m->slot = sb_mock_slots_take(&s->slots, m->prompt, m->prompt_len, m->prompt_tokens,
                                     (long long)m->req_no, &cached);
        seq->uncached_tokens = m->prompt_tokens - cached;
        m->kv.cached_tokens = cached;
    }
    if (m->kv.admitted) {
        uint64_t need = (uint64_t)(m->kv.nblocks + m->kv.extra_blocks);
        uint64_t hits = (uint64_t)(m->kv.hit[0] + m->kv.hit[1] + m->kv.hit[2]);
        s->kvt.used += need;
        s->kvt.reused += hits;
        s->kvt.missed += m->kv.miss;
        s->kvt.alloc_total += need;
        s->kvt.alloc_new += (uint64_t)(m->kv.miss + m->kv.extra_blocks);
    }
    return cost;
}

static void kick_engine(struct mock_server *s)
{
    if (s->iter_pending || !sb_mock_engine_has_work(&s->eng))
        return;
    uint64_t t0 = sb_mono_ns();
    s->iter_start_ns = t0;
    uint64_t d = s->storage || s->llamacpp ? sb_mock_engine_begin_with(&s->eng, t0, on_admit, s)
                                           : sb_mock_engine_begin(&s->eng, t0);
    s->lc_busy_slots += s->eng.nbatch;
    /* The iteration ends at t0 + d: onboarding I/O done during admission already took its
       share of that time, so it is counted once. */
    if (s->eng.nbatch == 0 && s->eng.wait_head) {
        /* Nothing runs and the head still does not fit: it never will. Refuse it. */
        struct mreq *m = s->eng.wait_head->owner;
        if (sb_mock_engine_cancel(&s->eng, &m->seq)) {
            int status = s->cfg->kv_full_status == 0 ? 503 : 429;
            set_outcome(m, SB_OUT_REJECTED, status);
            if (m->req && !m->reply_ended && !m->headers_sent) {
                m->reply_ended = true;
                send_error(m->req, status, "kv_cache_full",
                           "mock: KV cache cannot hold this request", false);
            } else if (m->req) {
                end_stream(m);
            }
            leave_batch(m);
        }
    }
    /* libevent measures timeouts from the time it cached when this loop pass began; refresh it
       so the time spent here (onboarding reads, adapter loads) is not counted twice. */
    event_base_update_cache_time(s->base);
    uint64_t now = sb_mono_ns(), end = t0 + d;
    uint64_t left = end > now ? end - now : 0;
    struct timeval tv = {(time_t)(left / 1000000000ull),
                         (suseconds_t)((left % 1000000000ull) / 1000)};
    s->iter_pending = true;
    evtimer_add(s->iter_ev, &tv);
}

/* ---- inference requests ---- */

static bool model_served(const struct mock_server *s, const char *name)
{
    for (size_t i = 0; i < s->nmodels; i++)
        if (strcmp(s->models[i], name) == 0)
            return true;
    return false;
}

/* Appends the text of a chat message's content (string or list of text parts). */
static int add_content(struct sb_buf *b, const cJSON *content)
{
    if (cJSON_IsString(content))
        return sb_buf_adds(b, content->valuestring);
    if (cJSON_IsArray(content)) {
        const cJSON *part;
        cJSON_ArrayForEach(part, content)
        {
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(part, "text");
            if (cJSON_IsString(t) && sb_buf_adds(b, t->valuestring) != 0)
                return -1;
        }
        return 0;
    }
    return cJSON_IsNull(content) ? 0 : -1;
}

/* True when a request field asks for something: present and not null, false, 0 or `dflt`. */
static bool field_asks(const cJSON *v, double dflt)
{
    if (!v || cJSON_IsNull(v) || cJSON_IsFalse(v))
        return false;
    return !(cJSON_IsNumber(v) && (v->valuedouble == 0 || v->valuedouble == dflt));
}

/* Reads `stop` (a string or a list of up to 4) into m->stops. 0, or 400 with a message. */
static int parse_stop(struct mreq *m, const cJSON *stop, char *msg, size_t msgcap)
{
    if (!stop || cJSON_IsNull(stop))
        return 0;
    if (!cJSON_IsString(stop) &&
        !(cJSON_IsArray(stop) && cJSON_GetArraySize(stop) <= SB_MOCK_MAX_STOPS)) {
        snprintf(msg, msgcap, "'stop' must be a string or a list of at most %d strings",
                 SB_MOCK_MAX_STOPS);
        return 400;
    }
    const cJSON *one = stop;
    for (int i = 0; cJSON_IsString(stop) ? i < 1 : i < cJSON_GetArraySize(stop); i++) {
        if (cJSON_IsArray(stop))
            one = cJSON_GetArrayItem(stop, i);
        if (!cJSON_IsString(one)) {
            snprintf(msg, msgcap, "'stop' must be a string or a list of at most %d strings",
                     SB_MOCK_MAX_STOPS);
            return 400;
        }
        size_t len = strlen(one->valuestring);
        if (len == 0)
            continue; /* an empty stop string stops nothing */
        if (!(m->stops[m->nstops] = strdup(one->valuestring))) {
            snprintf(msg, msgcap, "out of memory");
            return 500;
        }
        m->nstops++;
        if (len - 1 > m->stop_hold)
            m->stop_hold = len - 1;
    }
    return 0;
}

/* Whether a JSON number is an integer. No cast: a double beyond long long's range (1e300, or 44
   digits, which JSON allows) makes the cast undefined behaviour (found by tests/fuzz/fuzz_mock). */
static bool is_whole(double v)
{
    return isfinite(v) && v == floor(v);
}

/* Refuses, naming the field, what the mock does not implement: a client that asked for several
   choices, log probabilities or an echo must not get a plain answer it takes for one. */
static int refuse_unsupported(const cJSON *root, char *msg, size_t msgcap, const char **param)
{
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(root, "n");
    if (n && !cJSON_IsNull(n) &&
        (!cJSON_IsNumber(n) || n->valuedouble < 1 || !is_whole(n->valuedouble))) {
        *param = "n";
        snprintf(msg, msgcap, "'n' must be an integer >= 1");
        return 400;
    }
    if (n && cJSON_IsNumber(n) && n->valuedouble > 1) {
        *param = "n";
        snprintf(msg, msgcap, "'n' > 1 is not supported by the sparkbench mock");
        return 400;
    }
    static const struct {
        const char *field;
        double dflt; /* a number that asks for nothing (besides 0) */
    } unsupported[] = {
        {"logprobs", 0}, {"top_logprobs", 0}, {"echo", 0}, {"best_of", 1}, {"suffix", 0},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(unsupported); i++) {
        if (field_asks(cJSON_GetObjectItemCaseSensitive(root, unsupported[i].field),
                       unsupported[i].dflt)) {
            *param = unsupported[i].field;
            snprintf(msg, msgcap, "'%s' is not supported by the sparkbench mock",
                     unsupported[i].field);
            return 400;
        }
    }
    return 0;
}

/*
 * The exact prompt count with --tokenizer: a completion prompt with BOS (the post-processor's); a
 * chat request wrapped as Llama 3's template does it, <|begin_of_text|>, then per message
 * <|start_header_id|>ROLE<|end_header_id|>\n\nCONTENT<|eot_id|>, then the generation prompt
 * <|start_header_id|>assistant<|end_header_id|>\n\n (its special tokens are matched as such).
 */
static int exact_tokens(struct mock_server *s, struct mreq *m, const cJSON *root, long long *out)
{
    struct sb_err err;
    if (!m->chat) {
        if (sb_tokenizer_encode(s->tok, m->prompt, m->prompt_len, true, &m->ids, &err) != 0)
            return -1;
        *out = (long long)m->ids.n;
        return 0;
    }
    struct sb_buf t;
    sb_buf_init(&t, MAX_BODY_BYTES * 2);
    int rc = sb_buf_adds(&t, "<|begin_of_text|>");
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(root, "messages"))
    {
        rc |= sb_buf_adds(&t, "<|start_header_id|>");
        rc |= sb_buf_adds(&t, cJSON_GetObjectItemCaseSensitive(it, "role")->valuestring);
        rc |= sb_buf_adds(&t, "<|end_header_id|>\n\n");
        rc |= add_content(&t, cJSON_GetObjectItemCaseSensitive(it, "content"));
        rc |= sb_buf_adds(&t, "<|eot_id|>");
    }
    rc |= sb_buf_adds(&t, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    if (rc == 0)
        rc = sb_tokenizer_encode(s->tok, t.data, t.len, false, &m->ids, &err);
    if (rc == 0 && caches_reply(s)) {
        m->tmpl_len = t.len;
        m->tmpl = sb_buf_detach(&t, NULL);
    }
    sb_buf_release(&t);
    *out = (long long)m->ids.n;
    return rc;
}

/* Fills m from the JSON body; on a client error writes a message (and the field at fault in
 *param) and returns the HTTP status. */
static int parse_body(struct mock_server *s, struct mreq *m, const cJSON *root, char *msg,
                      size_t msgcap, const char **param)
{
    const struct sb_mock_config *cfg = s->cfg;
    if (!cJSON_IsObject(root)) {
        snprintf(msg, msgcap, "request body must be a JSON object");
        return 400;
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const char *model_name = s->models[0];
    if (model && !cJSON_IsNull(model)) {
        if (!cJSON_IsString(model)) {
            snprintf(msg, msgcap, "'model' must be a string");
            return 400;
        }
        model_name = model->valuestring;
        /* vLLM style: the model field names an adapter. */
        m->kv.lora = sb_mock_storage_lora_find(s->storage, model_name);
        if (m->kv.lora < 0 && !model_served(s, model_name)) {
            snprintf(msg, msgcap, "The model `%.200s` does not exist.", model_name);
            return 404;
        }
    }
    /* TensorRT-LLM style: the model stays the base, lora_request names the adapter. */
    const cJSON *lr = cJSON_GetObjectItemCaseSensitive(root, "lora_request");
    if (cJSON_IsObject(lr)) {
        const cJSON *ln = cJSON_GetObjectItemCaseSensitive(lr, "lora_name");
        if (!cJSON_IsString(ln) ||
            (m->kv.lora = sb_mock_storage_lora_find(s->storage, ln->valuestring)) < 0) {
            snprintf(msg, msgcap, "lora_request names no loaded adapter ('%.200s')",
                     cJSON_IsString(ln) ? ln->valuestring : "");
            return 400;
        }
    }
    size_t ml = strlen(model_name);
    size_t need = sb_json_escape(NULL, 0, model_name, ml);
    m->model_esc = malloc(need + 1);
    if (!m->model_esc) {
        snprintf(msg, msgcap, "out of memory");
        return 500;
    }
    sb_json_escape(m->model_esc, need + 1, model_name, ml);

    struct sb_buf prompt;
    sb_buf_init(&prompt, MAX_BODY_BYTES);
    long long token_ids = -1;
    if (m->chat) {
        const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(root, "messages");
        if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0) {
            snprintf(msg, msgcap, "'messages' must be a non-empty array");
            return 400;
        }
        const cJSON *it;
        cJSON_ArrayForEach(it, msgs)
        {
            const cJSON *content = cJSON_GetObjectItemCaseSensitive(it, "content");
            if (!cJSON_IsObject(it) ||
                !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(it, "role")) ||
                add_content(&prompt, content) != 0) {
                sb_buf_release(&prompt);
                snprintf(msg, msgcap, "each message needs a string 'role' and text 'content'");
                return 400;
            }
            sb_buf_adds(&prompt, "\n");
        }
    } else {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "prompt");
        if (cJSON_IsString(p)) {
            sb_buf_adds(&prompt, p->valuestring);
        } else if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1 &&
                   cJSON_IsString(cJSON_GetArrayItem(p, 0))) {
            sb_buf_adds(&prompt, cJSON_GetArrayItem(p, 0)->valuestring);
        } else if (cJSON_IsArray(p) && cJSON_GetArraySize(p) > 0 &&
                   cJSON_IsNumber(cJSON_GetArrayItem(p, 0))) {
            token_ids = cJSON_GetArraySize(p);
        } else {
            snprintf(msg, msgcap,
                     "'prompt' must be a string, a one-string list or a list of token ids");
            return 400;
        }
    }
    m->prompt_len = prompt.len;
    m->prompt = sb_buf_detach(&prompt, NULL);
    if (token_ids >= 0)
        m->prompt_tokens = token_ids;
    else if (s->tok) {
        if (exact_tokens(s, m, root, &m->prompt_tokens) != 0) {
            snprintf(msg, msgcap, "out of memory");
            return 500;
        }
    } else
        m->prompt_tokens = sb_mock_estimate_tokens(m->prompt_len);
    if (m->prompt_tokens < 1)
        m->prompt_tokens = 1;

    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "max_tokens");
    if (!mt || cJSON_IsNull(mt))
        mt = cJSON_GetObjectItemCaseSensitive(root, "max_completion_tokens");
    m->max_tokens = cfg->default_max_tokens;
    if (mt && !cJSON_IsNull(mt)) {
        if (!cJSON_IsNumber(mt) || mt->valuedouble < 1 || mt->valuedouble > 1e9 ||
            !is_whole(mt->valuedouble)) {
            *param = "max_tokens";
            snprintf(msg, msgcap, "'max_tokens' must be an integer in [1, 1e9]");
            return 400;
        }
        m->max_tokens = (long long)mt->valuedouble;
    }
    /* vLLM's SamplingParams._verify_args refuses min_tokens < 0 and min_tokens > max_tokens with
       a 400 naming the parameter. A client that set no max_tokens gets vLLM's default, the
       context left, as the bound; min_tokens is then cut to the mock's shorter default. */
    const cJSON *mn = cJSON_GetObjectItemCaseSensitive(root, "min_tokens");
    if (mn && !cJSON_IsNull(mn)) {
        long long bound = m->max_tokens;
        if (!mt || cJSON_IsNull(mt))
            bound =
                cfg->max_model_len > m->prompt_tokens ? cfg->max_model_len - m->prompt_tokens : 1;
        if (!cJSON_IsNumber(mn) || mn->valuedouble < 0 || !is_whole(mn->valuedouble) ||
            mn->valuedouble > (double)bound) {
            *param = "min_tokens";
            snprintf(msg, msgcap, "'min_tokens' must be an integer in [0, %lld]", bound);
            return 400;
        }
        m->min_tokens =
            mn->valuedouble > (double)m->max_tokens ? m->max_tokens : (long long)mn->valuedouble;
    }
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(root, "stream");
    if (st && !cJSON_IsNull(st) && !cJSON_IsBool(st)) {
        snprintf(msg, msgcap, "'stream' must be a boolean");
        return 400;
    }
    m->stream = cJSON_IsTrue(st);
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(root, "stream_options");
    if (so && !cJSON_IsNull(so)) {
        if (!m->stream) {
            snprintf(msg, msgcap, "Stream options can only be defined when `stream=True`.");
            return 400;
        }
        m->include_usage = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(so, "include_usage"));
    }
    m->ignore_eos = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "ignore_eos"));
    int st_status = refuse_unsupported(root, msg, msgcap, param);
    if (st_status)
        return st_status;
    if ((st_status = parse_stop(m, cJSON_GetObjectItemCaseSensitive(root, "stop"), msg, msgcap))) {
        *param = "stop";
        return st_status;
    }
    m->n_prompt_sent = m->prompt_tokens;
    if (s->llamacpp) {
        /* llama.cpp checks the prompt alone against the slot's context (n_tokens >= n_ctx) and
           stops generating at the context's end; with context shift it used to cut the prompt
           to n_keep (0) tokens and the tail after dropping whole blocks of (n_ctx - n_keep) / 2
           (tools/server/server.cpp, update_slots, "input truncated"). */
        long long n_ctx = cfg->max_model_len;
        if (m->prompt_tokens >= n_ctx && !cfg->context_shift) {
            m->ctx_exceeded = true;
            return 0;
        }
        if (m->prompt_tokens >= n_ctx) {
            long long n_block = n_ctx / 2 > 0 ? n_ctx / 2 : 1;
            long long erased = (m->prompt_tokens - n_block) / n_block;
            m->prompt_tokens -= erased * n_block;
        }
        if (!cfg->context_shift && m->prompt_tokens + m->max_tokens > n_ctx)
            m->max_tokens = n_ctx - m->prompt_tokens;
    } else if (m->prompt_tokens + m->max_tokens > cfg->max_model_len) {
        /* The context limit first, as vLLM checks it when it builds the request: a prompt too
           long for the model is a client error (400, not retried) whatever the KV cache could
           hold. */
        snprintf(msg, msgcap,
                 "This model's maximum context length is %lld tokens. However, you requested %lld "
                 "tokens (%lld in the prompt, %lld in the completion). Please reduce the length "
                 "of the prompt or completion.",
                 cfg->max_model_len, m->prompt_tokens + m->max_tokens, m->prompt_tokens,
                 m->max_tokens);
        return 400;
    }
    if (s->storage) {
        struct sb_err err;
        int lora = m->kv.lora;
        int fit = sb_mock_storage_plan(s->storage, m->prompt, m->prompt_len,
                                       m->ids.n ? (const uint32_t *)m->ids.v : NULL, m->ids.n,
                                       m->prompt_tokens, m->max_tokens, lora, &m->kv, &err);
        if (fit < 0) {
            snprintf(msg, msgcap, "%s", err.msg);
            return 500;
        }
        if (fit > 0) {
            snprintf(msg, msgcap,
                     "KV cache too small: %zu blocks needed, the cache holds %lld (prompt %lld + "
                     "max_tokens %lld tokens)",
                     m->kv.nblocks + m->kv.extra_blocks, s->cfg->tier0_blocks, m->prompt_tokens,
                     m->max_tokens);
            return s->cfg->kv_full_status == 0 ? 503 : 429;
        }
    }
    return 0;
}

/* Queues the request in the engine and opens the stream. */
static void admit(struct mreq *m)
{
    struct mock_server *s = m->srv;
    if (!m->req)
        return;
    if (s->draining) {
        set_outcome(m, SB_OUT_SHUTDOWN, 503);
        m->reply_ended = true;
        send_error(m->req, 503, "service_unavailable", "server is shutting down", false);
        return;
    }
    m->seq.owner = m;
    m->seq.uncached_tokens = m->prompt_tokens;
    if (sb_mock_engine_submit(&s->eng, &m->seq, sb_mono_ns()) == SB_SUBMIT_REJECTED) {
        int status = s->cfg->queue_full_status == 0 ? 429 : 503;
        set_outcome(m, SB_OUT_REJECTED, status);
        m->reply_ended = true;
        send_error(m->req, status, status == 429 ? "rate_limit_exceeded" : "service_unavailable",
                   "mock: waiting queue is full", false);
        return;
    }
    s->metrics.prompt_tokens += (uint64_t)m->prompt_tokens;
    m->in_engine = true;
    mreq_get(m);
    if (m->stream) {
        struct evkeyvalq *h = evhttp_request_get_output_headers(m->req);
        evhttp_add_header(h, "Content-Type", "text/event-stream");
        evhttp_add_header(h, "Cache-Control", "no-cache");
        if (http10(m->req)) {
            /* HTTP/1.0 has no chunked encoding: the close ends the stream. Without this,
               libevent answers a keep-alive 1.0 request "Content-Length: 0" and streams anyway. */
            evhttp_remove_header(evhttp_request_get_input_headers(m->req), "Connection");
            evhttp_add_header(h, "Connection", "close");
        }
        add_tier_header(s, m);
        evhttp_send_reply_start(m->req, 200, "OK");
        m->headers_sent = true;
    }
    kick_engine(s);
}

/*
 * llama.cpp's answer to a prompt that does not fit its slot, context shift off. The build issue 11
 * ran started the stream before the slot looked at the prompt, so the error arrives inside a 200
 * stream as an SSE `error:` event, followed by "data: [DONE]", then the connection closes
 * (handle_completions_impl: server_sent_event(sink, "error", ...)); a plain request gets it as
 * the JSON error with its code as the status.
 */
static void send_context_exceeded(struct mreq *m)
{
    static const char msg[] = "the request exceeds the available context size, try increasing it";
    long long n_ctx = m->srv->cfg->max_model_len;
    m->reply_ended = !m->stream;
    if (!m->stream) {
        set_outcome(m, SB_OUT_INVALID, 400);
        send_llamacpp_error(m->req, 400, "exceed_context_size_error", msg, m->prompt_tokens, n_ctx);
        return;
    }
    set_outcome(m, SB_OUT_INVALID, 200);
    struct evkeyvalq *h = evhttp_request_get_output_headers(m->req);
    evhttp_add_header(h, "Content-Type", "text/event-stream");
    evhttp_send_reply_start(m->req, 200, "OK");
    m->headers_sent = true;
    struct evbuffer *b = m->srv->scratch;
    evbuffer_add(b, "error: ", 7);
    add_llamacpp_error(b, 400, "exceed_context_size_error", msg, m->prompt_tokens, n_ctx);
    evbuffer_add_printf(b, "\n\ndata: [DONE]\n\n");
    emit(m, b);
    end_stream(m);
}

static void on_slow_headers_end(evutil_socket_t fd, short what, void *arg)
{
    struct mreq *m = arg;
    (void)fd;
    (void)what;
    admit(m);
    mreq_put(m);
}

static void handle_inference(struct mock_server *s, struct evhttp_request *req, const char *path,
                             bool chat)
{
    struct mreq *m = calloc(1, sizeof(*m));
    if (m) {
        m->kv.lora = -1;
        m->slot = -1;
    }
    if (!m) {
        send_error(req, 500, "internal_error", "out of memory", false);
        return;
    }
    m->srv = s;
    m->req = req;
    m->refs = 1; /* the HTTP reference */
    m->recv_ns = sb_mono_ns();
    m->created = (long long)time(NULL);
    m->req_no = s->next_req_no++;
    m->chat = chat;
    m->path = path;
    snprintf(m->id, sizeof(m->id), "%s-%016" PRIx64, chat ? "chatcmpl" : "cmpl",
             sb_mix64(s->id_salt ^ m->req_no));
    sb_buf_init(&m->text_acc, MAX_BODY_BYTES);
    m->next = s->live;
    if (s->live)
        s->live->prev = m;
    s->live = m;
    s->nlive++;
    const char *xid = evhttp_find_header(evhttp_request_get_input_headers(req), "X-Request-Id");
    snprintf(m->xreqid, sizeof(m->xreqid), "%s", xid ? xid : "");

    char stamp[32];
    snprintf(stamp, sizeof(stamp), "%" PRIu64, m->recv_ns);
    add_header(req, "x-mock-recv-ns", stamp);
    if (xid)
        add_header(req, "X-Request-Id", m->xreqid);
    evhttp_request_set_on_complete_cb(req, on_complete, m);
    evhttp_connection_set_closecb(evhttp_request_get_connection(req), on_conn_close, m);

    if (s->draining || startup_pending(s)) {
        set_outcome(m, s->draining ? SB_OUT_SHUTDOWN : SB_OUT_UNAVAILABLE, 503);
        m->reply_ended = true;
        send_loading(s, req, s->draining);
        return;
    }

    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t blen = evbuffer_get_length(in);
    const char *body = (const char *)evbuffer_pullup(in, -1);
    cJSON *root = body ? cJSON_ParseWithLength(body, blen) : NULL;
    char msg[512];
    const char *param = NULL;
    int status;
    if (!root) {
        status = 400;
        snprintf(msg, sizeof(msg), "malformed JSON in request body");
    } else {
        status = parse_body(s, m, root, msg, sizeof(msg), &param);
        cJSON_Delete(root);
    }
    if (status) {
        set_outcome(m, status == 503 || status == 429 ? SB_OUT_REJECTED : SB_OUT_INVALID, status);
        m->reply_ended = true;
        send_error_param(req, status,
                         param           ? "invalid_request_error"
                         : status == 404 ? "NotFoundError"
                         : status == 400 ? "BadRequestError"
                         : status == 503 ? "service_unavailable"
                         : status == 429 ? "rate_limit_exceeded"
                                         : "internal_error",
                         msg, param, false);
        return;
    }
    if (m->ctx_exceeded) {
        send_context_exceeded(m);
        return;
    }
    sb_mock_textgen_init(&m->text, (enum sb_mock_mode)s->cfg->mode, (uint64_t)s->cfg->seed,
                         m->prompt, m->prompt_len);
    sb_rng_seed(&m->rng, (uint64_t)s->cfg->seed ^ sb_mix64(m->req_no));
    m->fault = sb_fault_pick(&s->faults, m->req_no, m->max_tokens);
    m->pending = m->fault.kind == SB_FAULT_STALL ? evbuffer_new() : NULL;

    switch (m->fault.kind) {
    case SB_FAULT_429:
    case SB_FAULT_500:
    case SB_FAULT_503: {
        int code = m->fault.kind == SB_FAULT_429 ? 429 : m->fault.kind == SB_FAULT_500 ? 500 : 503;
        set_outcome(m, SB_OUT_FAULT, code);
        m->reply_ended = true;
        send_error(req, code, code == 429 ? "rate_limit_exceeded" : "internal_error",
                   "mock: injected fault", false);
        return;
    }
    case SB_FAULT_TRTLLM_ERROR:
        set_outcome(m, SB_OUT_FAULT, 400);
        m->reply_ended = true;
        send_error(req, 400, "BadRequestError", "mock: injected TensorRT-LLM error", true);
        return;
    case SB_FAULT_SLOW_HEADERS:
        set_outcome(m, SB_OUT_FAULT, 200);
        start_timer(m, s->cfg->fault_slow_headers_ms, on_slow_headers_end);
        return;
    default:
        admit(m);
    }
}

/* ---- other routes ---- */

static void send_json(struct evhttp_request *req, int status, struct evbuffer *b)
{
    add_header(req, "Content-Type", "application/json");
    evhttp_send_reply(req, status, status == 200 ? "OK" : "Error", b);
}

static void handle_models(struct mock_server *s, struct evhttp_request *req)
{
    struct evbuffer *b = evbuffer_new();
    long long now = (long long)time(NULL);
    evbuffer_add_printf(b, "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; i < s->nmodels; i++) {
        char esc[512];
        sb_json_escape(esc, sizeof(esc), s->models[i], strlen(s->models[i]));
        evbuffer_add_printf(b,
                            "%s{\"id\":\"%s\",\"object\":\"model\",\"created\":%lld,"
                            "\"owned_by\":\"sparkbench-mock\",\"root\":\"%s\",\"parent\":null,"
                            "\"max_model_len\":%lld}",
                            i ? "," : "", esc, now, esc, s->cfg->max_model_len);
    }
    /* Adapters are listed like vLLM does, with the base model as parent. */
    char base[512];
    sb_json_escape(base, sizeof(base), s->models[0], strlen(s->models[0]));
    for (size_t i = 0; i < sb_mock_storage_lora_count(s->storage); i++) {
        const char *name = sb_mock_storage_lora_name(s->storage, i);
        char esc[512];
        sb_json_escape(esc, sizeof(esc), name, strlen(name));
        evbuffer_add_printf(b,
                            ",{\"id\":\"%s\",\"object\":\"model\",\"created\":%lld,"
                            "\"owned_by\":\"sparkbench-mock\",\"root\":\"%s\",\"parent\":\"%s\","
                            "\"max_model_len\":%lld}",
                            esc, now, esc, base, s->cfg->max_model_len);
    }
    evbuffer_add_printf(b, "]}");
    send_json(req, 200, b);
    evbuffer_free(b);
}

/* Dynamo frontend series with their real names (lib/llm/src/http/service/metrics.rs). */
static void render_dynamo(const struct mock_server *s, struct sb_buf *out)
{
    uint64_t total = 0;
    for (int o = 0; o < SB_OUT_COUNT; o++)
        total += s->metrics.requests[o];
    sb_buf_addf(out,
                "# HELP dynamo_frontend_inflight_requests Requests in flight.\n"
                "# TYPE dynamo_frontend_inflight_requests gauge\n"
                "dynamo_frontend_inflight_requests %zu\n"
                "# HELP dynamo_frontend_queued_requests Requests waiting for a batch slot.\n"
                "# TYPE dynamo_frontend_queued_requests gauge\n"
                "dynamo_frontend_queued_requests %zu\n"
                "# HELP dynamo_frontend_requests_total Requests finished.\n"
                "# TYPE dynamo_frontend_requests_total counter\n"
                "dynamo_frontend_requests_total %llu\n"
                "# HELP dynamo_frontend_output_tokens_total Tokens generated.\n"
                "# TYPE dynamo_frontend_output_tokens_total counter\n"
                "dynamo_frontend_output_tokens_total %llu\n",
                s->nlive, s->eng.nwaiting, (unsigned long long)total,
                (unsigned long long)s->metrics.generation_tokens);
    sb_histo_render(&s->metrics.ttft, "dynamo_frontend_time_to_first_token_seconds",
                    "Time to first token, seconds.", out);
    sb_histo_render(&s->metrics.itl, "dynamo_frontend_inter_token_latency_seconds",
                    "Inter-token latency, seconds.", out);
    sb_histo_render(&s->metrics.e2e, "dynamo_frontend_request_duration_seconds",
                    "Request duration, seconds.", out);
    sb_histo_render(&s->in_tokens, "dynamo_frontend_input_sequence_tokens",
                    "Prompt tokens per request.", out);
    sb_histo_render(&s->out_tokens, "dynamo_frontend_output_sequence_tokens",
                    "Output tokens per request.", out);
    sb_histo_render(&s->cached_tokens, "dynamo_frontend_cached_tokens",
                    "Prompt tokens served from the KV cache per request.", out);
}

/*
 * llama-server's /metrics in the build issue 11 ran (twelve series: six counters, six gauges;
 * tools/server/server.cpp, SERVER_TASK_TYPE_METRICS and the /metrics handler), from the mock's
 * own counts: tokens prefilled (cache excluded) and their time, tokens generated and their time,
 * engine iterations as llama_decode() calls, KV held by the slots against their total context.
 */
static void render_llamacpp(const struct mock_server *s, struct sb_buf *out)
{
    double n_decode = (double)s->eng.iterations;
    double kv_tokens = (double)sb_mock_slots_tokens(&s->slots);
    for (size_t i = 0; i < s->eng.nbatch; i++) {
        /* running sequences hold their prompt and what they generated so far */
        const struct mreq *m = s->eng.batch[i]->owner;
        const struct sb_mock_slot *sl = m->slot >= 0 ? &s->slots.v[m->slot] : NULL;
        kv_tokens += (double)(sl ? m->emitted : 0);
    }
    double n_ctx = (double)s->cfg->max_model_len * (double)s->slots.n;
    double gen = (double)s->metrics.generation_tokens;
    const struct {
        const char *name, *help;
        double value;
        bool gauge;
    } items[] = {
        {"prompt_tokens_total", "Number of prompt tokens processed.", (double)s->lc_prompt_n, 0},
        {"prompt_seconds_total", "Prompt process time", s->lc_prompt_ms / 1e3, 0},
        {"tokens_predicted_total", "Number of generation tokens processed.", gen, 0},
        {"tokens_predicted_seconds_total", "Predict process time", s->lc_predicted_ms / 1e3, 0},
        {"n_decode_total", "Total number of llama_decode() calls", n_decode, 0},
        {"n_busy_slots_per_decode", "Average number of busy slots per llama_decode() call",
         (double)s->lc_busy_slots / (n_decode > 1 ? n_decode : 1), 0},
        {"prompt_tokens_seconds", "Average prompt throughput in tokens/s.",
         s->lc_prompt_ms > 0 ? 1e3 * (double)s->lc_prompt_n / s->lc_prompt_ms : 0, 1},
        {"predicted_tokens_seconds", "Average generation throughput in tokens/s.",
         s->lc_predicted_ms > 0 ? 1e3 * gen / s->lc_predicted_ms : 0, 1},
        {"kv_cache_usage_ratio", "KV-cache usage. 1 means 100 percent usage.",
         n_ctx > 0 ? kv_tokens / n_ctx : 0, 1},
        {"kv_cache_tokens", "KV-cache tokens.", kv_tokens, 1},
        {"requests_processing", "Number of requests processing.", (double)s->eng.nbatch, 1},
        {"requests_deferred", "Number of requests deferred.", (double)s->eng.nwaiting, 1},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(items); i++)
        sb_buf_addf(out, "# HELP llamacpp:%s %s\n# TYPE llamacpp:%s %s\nllamacpp:%s %.10g\n",
                    items[i].name, items[i].help, items[i].name,
                    items[i].gauge ? "gauge" : "counter", items[i].name, items[i].value);
}

/* The whole Prometheus page: the API port's /metrics and the metrics port's (metrics_port.c). */
static void render_metrics_page(struct mock_server *s, struct sb_buf *out)
{
    if (s->llamacpp) {
        render_llamacpp(s, out);
        return;
    }
    sb_mock_metrics_render(&s->metrics, s->eng.nbatch, s->eng.nwaiting, out);
    render_dynamo(s, out);
    sb_mock_storage_render(s->storage, out);
    sb_buf_addf(out,
                "# HELP mock:engine_iterations_total Engine iterations begun.\n"
                "# TYPE mock:engine_iterations_total counter\n"
                "mock:engine_iterations_total %llu\n",
                (unsigned long long)s->eng.iterations);
    /* The token budget at work: what the last iteration scheduled against the budget, and how
       often a prompt was cut short by it (chunked prefill). */
    sb_buf_addf(out,
                "# HELP mock:max_num_batched_tokens Token budget of one iteration (0: none).\n"
                "# TYPE mock:max_num_batched_tokens gauge\n"
                "mock:max_num_batched_tokens %lld\n"
                "# HELP mock:iteration_batched_tokens Tokens the last iteration scheduled.\n"
                "# TYPE mock:iteration_batched_tokens gauge\n"
                "mock:iteration_batched_tokens %lld\n"
                "# HELP mock:chunked_prefills_total Prompt chunks that left part of their prompt "
                "for a later iteration.\n"
                "# TYPE mock:chunked_prefills_total counter\n"
                "mock:chunked_prefills_total %llu\n",
                s->eng.max_batched_tokens, s->eng.batched_tokens,
                (unsigned long long)s->eng.chunked_prefills);
    if (s->iters)
        sb_buf_addf(out,
                    "# HELP mock:trtllm_iterations_dropped_total Iteration stats overwritten "
                    "before a GET /metrics drained them.\n"
                    "# TYPE mock:trtllm_iterations_dropped_total counter\n"
                    "mock:trtllm_iterations_dropped_total %llu\n",
                    (unsigned long long)s->iters_dropped);
}

static void render_metrics_cb(void *ctx, struct sb_buf *out)
{
    render_metrics_page(ctx, out);
}

static void handle_metrics(struct mock_server *s, struct evhttp_request *req)
{
    struct sb_buf out;
    sb_buf_init(&out, 4u << 20);
    render_metrics_page(s, &out);
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, out.data ? out.data : "", out.len);
    sb_buf_release(&out);
    add_header(req, "Content-Type",
               s->llamacpp ? "text/plain; version=0.0.4"
                           : "text/plain; version=0.0.4; charset=utf-8");
    evhttp_send_reply(req, 200, "OK", b);
    evbuffer_free(b);
}

/* TensorRT-LLM's /metrics: the iterations since the last GET, oldest first, then forgotten. The
   KV figures are tier 0's in TensorRT-LLM's terms: used = blocks held by admitted sequences (a
   prefix shared by two counts twice, capped at the pool), reused/missed = prompt blocks served
   from a cache or computed, since the start. */
static void handle_trtllm_metrics(struct mock_server *s, struct evhttp_request *req)
{
    const struct sb_mock_config *cfg = s->cfg;
    struct evbuffer *b = evbuffer_new();
    bool kv = sb_mock_storage_kv_enabled(s->storage);
    uint64_t pool = (uint64_t)cfg->tier0_blocks;
    evbuffer_add(b, "[", 1);
    for (size_t k = 0; k < s->iters_len; k++) {
        const struct trtllm_iter *it = &s->iters[(s->iters_head + k) % TRTLLM_RING];
        char stamp[32];
        time_t sec = (time_t)(it->real_ns / 1000000000ull);
        struct tm tm;
        localtime_r(&sec, &tm);
        strftime(stamp, sizeof(stamp), "%m-%d-%Y %H:%M:%S", &tm);
        uint64_t used = it->kv_used < pool ? it->kv_used : pool;
        evbuffer_add_printf(
            b,
            "%s{\"timestamp\":\"%s\",\"iter\":%" PRIu64 ",\"iterLatencyMS\":%.3f,"
            "\"newActiveRequestsQueueLatencyMS\":0,\"gpuMemUsage\":%" PRIu64 ","
            "\"cpuMemUsage\":0,\"pinnedMemUsage\":0,\"numActiveRequests\":%zu,"
            "\"numQueuedRequests\":%zu,\"numCompletedRequests\":%zu,"
            "\"maxNumActiveRequests\":%lld,\"inflightBatchingStats\":{"
            "\"numScheduledRequests\":%zu,\"numContextRequests\":%zu,\"numGenRequests\":%zu,"
            "\"numPausedRequests\":0,\"numCtxTokens\":%lld,\"microBatchId\":0,"
            "\"avgNumDecodedTokensPerIter\":1},\"kvCacheStats\":",
            k ? "," : "", stamp, it->iter, it->latency_ms, kv ? used * cfg->kv_block_bytes : 0,
            it->active, it->queued, it->completed, cfg->max_num_seqs, it->active, it->context,
            it->active - it->context, it->ctx_tokens);
        if (kv) {
            uint64_t looked = it->reused + it->missed;
            evbuffer_add_printf(b,
                                "{\"maxNumBlocks\":%" PRIu64 ",\"freeNumBlocks\":%" PRIu64
                                ",\"usedNumBlocks\":%" PRIu64 ",\"tokensPerBlock\":%lld,"
                                "\"allocTotalBlocks\":%" PRIu64 ",\"allocNewBlocks\":%" PRIu64
                                ",\"reusedBlocks\":%" PRIu64 ",\"missedBlocks\":%" PRIu64
                                ",\"cacheHitRate\":%.6g}}",
                                pool, pool - used, used, cfg->kv_block_tokens, it->alloc_total,
                                it->alloc_new, it->reused, it->missed,
                                looked ? (double)it->reused / (double)looked : 0.0);
        } else {
            evbuffer_add_printf(b, "null}");
        }
    }
    evbuffer_add(b, "]", 1);
    s->iters_len = 0; /* drained */
    s->iters_head = 0;
    send_json(req, 200, b);
    evbuffer_free(b);
}

/* GET /slots: llama.cpp's slot list (server_slot::to_json, the fields a client reads). */
static void handle_slots(struct mock_server *s, struct evhttp_request *req)
{
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, "[", 1);
    for (size_t i = 0; i < s->slots.n; i++) {
        const struct sb_mock_slot *sl = &s->slots.v[i];
        evbuffer_add_printf(b,
                            "%s{\"id\":%zu,\"id_task\":%lld,\"n_ctx\":%lld,\"speculative\":false,"
                            "\"is_processing\":%s,\"prompt\":\"",
                            i ? "," : "", i, sl->id_task, s->cfg->max_model_len,
                            sl->busy ? "true" : "false");
        add_json_text(b, sl->prompt ? sl->prompt : "", sl->len);
        evbuffer_add_printf(b,
                            "\",\"next_token\":{\"has_next_token\":%s,\"has_new_line\":false,"
                            "\"n_remain\":-1,\"n_decoded\":%lld,\"stopping_word\":\"\"},"
                            "\"x_mock\":{\"n_tokens\":%lld}}",
                            sl->busy ? "true" : "false", sl->n_decoded, sl->n_tokens);
    }
    evbuffer_add(b, "]", 1);
    add_header(req, "Content-Type", "application/json; charset=utf-8");
    evhttp_send_reply(req, 200, "OK", b);
    evbuffer_free(b);
}

/* POST /slots/<id>?action=erase: {"id_slot":N,"n_erased":M} (server_task_result_slot_erase).
   llama.cpp defers the erase of a busy slot until it is free; the mock refuses it with 503. */
static void handle_slot_action(struct mock_server *s, struct evhttp_request *req, const char *id)
{
    char *end;
    errno = 0;
    long slot = strtol(id, &end, 10);
    if (end == id || *end || errno || slot < 0 || (size_t)slot >= s->slots.n) {
        send_llamacpp_error(req, 400, "invalid_request_error", "Invalid slot ID", 0, -1);
        return;
    }
    struct evkeyvalq q;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
    bool parsed = query && evhttp_parse_query_str(query, &q) == 0;
    const char *action = parsed ? evhttp_find_header(&q, "action") : NULL;
    bool erase = action && strcmp(action, "erase") == 0;
    if (parsed)
        evhttp_clear_headers(&q);
    if (!erase) {
        /* save and restore need --slot-save-path, which the mock does not have */
        send_llamacpp_error(req, 400, "invalid_request_error", "Invalid action", 0, -1);
        return;
    }
    long long n = sb_mock_slots_erase(&s->slots, (size_t)slot);
    if (n < 0) {
        send_llamacpp_error(req, 503, "unavailable_error", "slot is busy", 0, -1);
        return;
    }
    struct evbuffer *b = evbuffer_new();
    evbuffer_add_printf(b, "{\"id_slot\":%ld,\"n_erased\":%lld}", slot, n);
    add_header(req, "Content-Type", "application/json; charset=utf-8");
    evhttp_send_reply(req, 200, "OK", b);
    evbuffer_free(b);
}

/* vLLM's POST /reset_prefix_cache (200, empty body) and SGLang's POST /flush_cache (200, a line
   of text): both drop every cached block no running request uses, and the llamacpp slots'. */
static void handle_cache_reset(struct mock_server *s, struct evhttp_request *req, bool sglang)
{
    sb_mock_storage_reset(s->storage);
    if (s->llamacpp)
        sb_mock_slots_erase_all(&s->slots);
    struct evbuffer *b = evbuffer_new();
    if (sglang) {
        evbuffer_add_printf(b, "Cache flushed.\nPlease check backend logs for more details. (When "
                               "there are running or waiting requests, the operation will not be "
                               "performed.)\n");
        add_header(req, "Content-Type", "text/plain; charset=utf-8");
    }
    evhttp_send_reply(req, 200, "OK", b);
    evbuffer_free(b);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct mock_server *s = arg;
    const char *uri = evhttp_request_get_uri(req);
    if (!uri)
        return; /* libevent's error path re-invokes us without a URI: nothing to answer */
    set_nodelay(req);
    char path[256];
    size_t plen = strcspn(uri, "?#");
    if (plen >= sizeof(path))
        plen = sizeof(path) - 1;
    memcpy(path, uri, plen);
    path[plen] = '\0';
    enum evhttp_cmd_type method = evhttp_request_get_command(req);
    if (s->llamacpp) {
        /* cpp-httplib on every reply it keeps the connection for (its defaults: 5 s, 100). */
        add_header(req, "Keep-Alive", "timeout=5, max=100");
        if (strncmp(path, "/slots/", 7) == 0 && method == EVHTTP_REQ_POST) {
            if (startup_pending(s))
                send_loading(s, req, false);
            else
                handle_slot_action(s, req, path + 7);
            return;
        }
    }

    static const struct {
        const char *path;
        enum evhttp_cmd_type method;
    } routes[] = {
        {"/health", EVHTTP_REQ_GET},
        {"/v1/models", EVHTTP_REQ_GET},
        {"/metrics", EVHTTP_REQ_GET},
        {"/version", EVHTTP_REQ_GET},
        {"/v1/completions", EVHTTP_REQ_POST},
        {"/v1/chat/completions", EVHTTP_REQ_POST},
        {"/reset_prefix_cache", EVHTTP_REQ_POST},
        {"/flush_cache", EVHTTP_REQ_POST},
        {"/slots", EVHTTP_REQ_GET},
    };
    size_t r;
    for (r = 0; r < SB_ARRAY_SIZE(routes); r++)
        if (strcmp(routes[r].path, path) == 0)
            break;
    if (r == SB_ARRAY_SIZE(routes) || (r == 8 && !s->llamacpp)) {
        send_error(req, 404, "NotFoundError", "no such route", false);
        return;
    }
    if (method != routes[r].method) {
        add_header(req, "Allow", routes[r].method == EVHTTP_REQ_GET ? "GET" : "POST");
        send_error(req, 405, "MethodNotAllowed", "method not allowed", false);
        return;
    }
    switch (r) {
    case 0:
        if (startup_pending(s) || s->draining) {
            send_loading(s, req, s->draining);
        } else {
            /* Empty like trtllm-serve's and vLLM's, with a type rather than libevent's text/html.
             */
            add_header(req, "Content-Type", "text/plain; charset=utf-8");
            evhttp_send_reply(req, 200, "OK", NULL);
        }
        return;
    case 1:
        handle_models(s, req);
        return;
    case 2:
        if (s->iters)
            handle_trtllm_metrics(s, req);
        else
            handle_metrics(s, req);
        return;
    case 3: {
        struct evbuffer *b = evbuffer_new();
        evbuffer_add_printf(b, "{\"version\":\"sparkbench-mock\"}");
        send_json(req, 200, b);
        evbuffer_free(b);
        return;
    }
    case 4:
        handle_inference(s, req, routes[r].path, false);
        return;
    case 5:
        handle_inference(s, req, routes[r].path, true);
        return;
    case 6:
    case 7:
        handle_cache_reset(s, req, r == 7);
        return;
    default:
        handle_slots(s, req);
        return;
    }
}

/* ---- start-up and shutdown ---- */

static void on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
    struct mock_server *s = arg;
    (void)fd;
    (void)what;
    if (s->nlive == 0 || sb_mono_ns() - s->drain_start_ns > SHUTDOWN_GRACE_NS) {
        event_base_loopbreak(s->base);
        return;
    }
    struct timeval tv = {0, 20000};
    evtimer_add(s->drain_ev, &tv);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct mock_server *s = arg;
    (void)what;
    (void)sig;
    if (s->draining)
        return;
    s->draining = true;
    s->drain_start_ns = sb_mono_ns();
    if (s->listener) {
        evhttp_del_accept_socket(s->http, s->listener);
        s->listener = NULL;
    }
    /* End every open request: streams stop where they are, waiting replies get 503. */
    struct mreq *m = s->live;
    while (m) {
        mreq_get(m);
        set_outcome(m, SB_OUT_SHUTDOWN, m->headers_sent ? 200 : 503);
        leave_engine(m); /* a running sequence is dropped at the end of the iteration */
        if (m->timer && evtimer_pending(m->timer, NULL)) {
            evtimer_del(m->timer); /* the stall or slow-headers wait ends now */
            mreq_put(m);
        }
        if (m->stalled && m->req && evbuffer_get_length(m->pending))
            evhttp_send_reply_chunk(m->req, m->pending);
        m->stalled = false;
        if (m->req && !m->reply_ended) {
            if (m->headers_sent) {
                end_stream(m);
            } else {
                m->reply_ended = true;
                send_error(m->req, 503, "service_unavailable", "server is shutting down", false);
            }
        }
        /* Read after the work above: ending m can end (and unlink) the request after it. */
        struct mreq *next = m->next;
        mreq_put(m);
        m = next;
    }
    struct timeval tv = {0, 0};
    evtimer_add(s->drain_ev, &tv);
}

static int bind_listener(const char *host, long long port_in, int *port_out, struct sb_err *err)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%lld", port_in);
    int gai = getaddrinfo(host, portstr, &hints, &res);
    if (gai != 0)
        return sb_err_set(err, "cannot resolve host '%s': %s", host, gai_strerror(gai));
    int fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
    if (fd < 0) {
        freeaddrinfo(res);
        return sb_err_errno(err, errno, "cannot create a socket");
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, res->ai_addr, res->ai_addrlen) != 0) {
        int e = errno;
        freeaddrinfo(res);
        close(fd);
        return sb_err_errno(err, e, "cannot bind %s:%lld", host, port_in);
    }
    freeaddrinfo(res);
    /* A deep backlog: a thousand clients connecting at once must not hit SYN retries. */
    if (listen(fd, SOMAXCONN) != 0 || evutil_make_socket_nonblocking(fd) != 0) {
        int e = errno;
        close(fd);
        return sb_err_errno(err, e, "cannot listen on %s:%lld", host, port_in);
    }
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss)); /* clang's analyzer does not know getsockname() fills it */
    socklen_t sl = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
        int e = errno;
        close(fd);
        return sb_err_errno(err, e, "cannot read the bound address of %s:%lld", host, port_in);
    }
    *port_out = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                         : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

int sb_mock_quirks_parse(const char *list, unsigned *out, struct sb_err *err)
{
    static const struct {
        const char *name;
        unsigned bit;
    } known[] = {{"llamacpp", SB_MOCK_QUIRK_LLAMACPP}};
    *out = 0;
    for (const char *p = list ? list : ""; *p;) {
        size_t len = strcspn(p, ",");
        size_t k;
        for (k = 0; k < SB_ARRAY_SIZE(known); k++)
            if (strlen(known[k].name) == len && strncmp(known[k].name, p, len) == 0)
                break;
        if (len > 0 && k == SB_ARRAY_SIZE(known))
            return sb_err_set(err, "unknown quirk '%.*s' (known: llamacpp)", (int)len, p);
        if (len > 0)
            *out |= known[k].bit;
        p += len + (p[len] == ',');
    }
    return 0;
}

/* gcc -fanalyzer: GCC 12 reports a leak of a string stored into a slot of a heap array at a
   variable index (it loses the pointer there); the array is freed by its owner (s->models,
   server_release) */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wanalyzer-malloc-leak"
static int split_models(struct mock_server *s, const char *list, struct sb_err *err)
{
    const char *p = list && *list ? list : "sparkbench-mock";
    size_t n = 1;
    for (const char *c = p; *c; c++)
        n += *c == ',';
    s->models = calloc(n, sizeof(char *));
    if (!s->models)
        return sb_err_set(err, "out of memory");
    while (*p) {
        size_t len = strcspn(p, ",");
        if (len > 0 && !(s->models[s->nmodels++] = strndup(p, len)))
            return sb_err_set(err, "out of memory");
        p += len + (p[len] == ',');
    }
    if (s->nmodels == 0)
        return sb_err_set(err, "no served model name");
    return 0;
}
#pragma GCC diagnostic pop

static void server_release(struct mock_server *s)
{
    sb_metrics_port_stop(s->mport); /* its render event is on s->base */
    if (s->http)
        evhttp_free(s->http); /* closes the remaining connections (their close callbacks run) */
    sb_mock_wire_release();
    /* Requests whose connection outlived the grace period. next is read before m is freed
       rather than relying on mreq_free() moving s->live on (via m->srv, which clang's analyzer
       does not know is s). */
    for (struct mreq *m = s->live, *next; m; m = next) {
        next = m->next;
        m->req = NULL;
        m->refs = 1;
        mreq_put(m);
    }
    if (s->iter_ev)
        event_free(s->iter_ev);
    if (s->sigint_ev)
        event_free(s->sigint_ev);
    if (s->sigterm_ev)
        event_free(s->sigterm_ev);
    if (s->drain_ev)
        event_free(s->drain_ev);
    if (s->scratch)
        evbuffer_free(s->scratch);
    if (s->base)
        event_base_free(s->base);
    sb_mock_engine_release(&s->eng);
    if (s->slots.v)
        sb_mock_slots_release(&s->slots);
    free(s->iters);
    sb_mock_storage_close(s->storage); /* removes the tier-2 file unless --keep-tier2 */
    for (size_t i = 0; i < s->nmodels; i++)
        free(s->models[i]);
    free(s->models);
    sb_tokenizer_free(s->tok);
    sb_buf_release(&s->scratch_buf);
    if (s->log_fd >= 0)
        close(s->log_fd);
}

int sb_mock_serve(const struct sb_mock_config *cfg, FILE *announce, struct sb_err *err)
{
    struct mock_server srv = {0};
    struct mock_server *s = &srv;
    int rc = -1;
    s->cfg = cfg;
    s->log_fd = -1;
    s->start_ns = sb_mono_ns();
    if (cfg->tokenizer && *cfg->tokenizer && sb_tokenizer_load(cfg->tokenizer, &s->tok, err) != 0)
        return -1;
    /* Ids from the clock and the pid, not --seed: two runs must not hand out the same ids (faults
       and text stay fixed by --seed). */
    s->id_salt = sb_mix64(sb_real_ns() ^ ((uint64_t)getpid() << 40) ^ s->start_ns);
    sb_buf_init(&s->scratch_buf, 1u << 20);
    sb_mock_metrics_init(&s->metrics);
    static const double token_bounds[] = {16,   32,   64,   128,   256,   512,   1024,
                                          2048, 4096, 8192, 16384, 32768, 65536, 131072};
    sb_histo_init(&s->in_tokens, token_bounds, SB_ARRAY_SIZE(token_bounds));
    sb_histo_init(&s->out_tokens, token_bounds, SB_ARRAY_SIZE(token_bounds));
    sb_histo_init(&s->cached_tokens, token_bounds, SB_ARRAY_SIZE(token_bounds));
    signal(SIGPIPE, SIG_IGN);
    sb_raise_nofile();

    struct sb_mock_timing t = {cfg->prefill_base_ms, cfg->prefill_per_token_us,
                               cfg->decode_base_ms,  cfg->decode_per_seq_us,
                               cfg->prefill_sd_frac, cfg->decode_sd_frac};
    if (sb_mock_engine_init(&s->eng, &t, (size_t)cfg->max_num_seqs, (size_t)cfg->max_queue) != 0) {
        sb_err_set(err, "out of memory");
        goto out;
    }
    sb_mock_engine_set_budget(&s->eng, cfg->max_num_batched_tokens);
    /* Its own stream of --seed: the variation draws must not shift the text or the faults. */
    sb_mock_engine_seed(&s->eng, sb_mix64((uint64_t)cfg->seed ^ 0x656e67696e65ull));
    if (sb_fault_plan_init(&s->faults, cfg->fault_rate, cfg->fault_kinds, (uint64_t)cfg->seed,
                           err) != 0)
        goto out;
    if (split_models(s, cfg->served_model_names, err) != 0)
        goto out;
    if (sb_mock_quirks_parse(cfg->quirks, &s->quirks, err) != 0)
        goto out;
    s->llamacpp = (s->quirks & SB_MOCK_QUIRK_LLAMACPP) != 0;
    if (s->llamacpp && sb_mock_slots_init(&s->slots, (size_t)cfg->max_num_seqs) != 0) {
        sb_err_set(err, "out of memory");
        goto out;
    }
    if (cfg->metrics_format == SB_MOCK_METRICS_TRTLLM &&
        !(s->iters = calloc(TRTLLM_RING, sizeof(*s->iters)))) {
        sb_err_set(err, "out of memory");
        goto out;
    }
    if ((cfg->tier0_blocks > 0 || (cfg->lora_modules && *cfg->lora_modules)) &&
        sb_mock_storage_open(&s->storage, cfg, err) != 0)
        goto out;
    if (cfg->log_path) {
        s->log_fd = open(cfg->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (s->log_fd < 0) {
            sb_err_errno(err, errno, "cannot open log '%s'", cfg->log_path);
            goto out;
        }
    }

    struct event_config *ec = event_config_new();
    event_config_set_flag(ec, EVENT_BASE_FLAG_PRECISE_TIMER); /* timerfd: sub-ms engine steps */
    s->base = event_base_new_with_config(ec);
    event_config_free(ec);
    if (!s->base) {
        sb_err_set(err, "cannot create the event loop");
        goto out;
    }
    s->http = evhttp_new(s->base);
    s->scratch = evbuffer_new();
    s->iter_ev = evtimer_new(s->base, on_iteration, s);
    s->drain_ev = evtimer_new(s->base, on_drain_tick, s);
    s->sigint_ev = evsignal_new(s->base, SIGINT, on_signal, s);
    s->sigterm_ev = evsignal_new(s->base, SIGTERM, on_signal, s);
    if (!s->http || !s->scratch || !s->iter_ev || !s->drain_ev || !s->sigint_ev || !s->sigterm_ev) {
        sb_err_set(err, "out of memory");
        goto out;
    }
    evsignal_add(s->sigint_ev, NULL);
    evsignal_add(s->sigterm_ev, NULL);
    evhttp_set_max_body_size(s->http, MAX_BODY_BYTES);
    evhttp_set_timeout(s->http, 3600);
    evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                            EVHTTP_REQ_DELETE | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(s->http, on_request, s);
    evhttp_set_bevcb(s->http, sb_mock_wire_bev, NULL); /* JSON for evhttp's own errors */

    int port = 0;
    int fd = bind_listener(cfg->host, cfg->port, &port, err);
    if (fd < 0)
        goto out;
    s->listener = evhttp_accept_socket_with_handle(s->http, fd);
    if (!s->listener) {
        close(fd);
        sb_err_set(err, "cannot accept on %s:%d", cfg->host, port);
        goto out;
    }
    int mport = -1;
    if (cfg->metrics_port >= 0) {
        /* A second port serving /metrics alone, like KVBM's DYN_KVBM_METRICS_PORT (6880). */
        int mfd = bind_listener(cfg->host, cfg->metrics_port, &mport, err);
        if (mfd < 0)
            goto out;
        /* Served from its own thread: a scrape must not wait for an iteration's disk reads. */
        if (sb_metrics_port_start(&s->mport, s->base, mfd, render_metrics_cb, s, err) != 0)
            goto out;
    }
    if (announce) {
        fprintf(announce, "%d\n", port);
        if (mport >= 0)
            fprintf(announce, "%d\n", mport);
        fflush(announce);
    }
    fprintf(stderr, "sparkbench mock: listening on http://%s:%d (model %s, %lld slots)\n",
            cfg->host, port, s->models[0], cfg->max_num_seqs);
    event_base_dispatch(s->base);
    rc = 0;
out:
    server_release(s);
    return rc;
}
