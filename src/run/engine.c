/*
 * The load generator's event loops (see sb/engine.h). Each loop owns an epoll set, a timerfd for
 * libcurl's timeout, a timerfd for the next intended send, a one-second tick and an eventfd the
 * main thread uses to say "stop". Latency is measured from the intended send time (wrk2's lesson):
 * an open-loop request that has to wait for a free slot, or a closed-loop user whose loop is late,
 * carries that wait in its latency and in lat_sched_delay_ms.
 *
 * Open loop, the loops share one arrival schedule and one in-flight limit: every loop draws the
 * same sequence from the seed and sends the arrivals whose index falls to it (k mod threads), so
 * the schedule does not depend on the thread count; a due arrival takes a slot from the shared
 * count or waits in the shared backlog, which whichever loop frees a slot serves, oldest first.
 */
#include "sb/engine.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "sb/arrival.h"
#include "sb/buf.h"
#include "sb/sessions.h"
#include "sb/sse.h"
#include "sb/stats.h"
#include "sb/tls.h"
#include "sb/util.h"

#define MAX_ITL_SAMPLES  (1u << 20)
#define PROGRESS_BUCKETS 400 /* TTFT histogram for the progress line: 1/8 octave of µs */

struct loop;

struct user {
    long long id;
    long long next_req;
    int connect_fails; /* consecutive connect failures: the backoff's exponent */
    bool done;         /* will send no more */
};

struct req {
    struct loop *loop;
    CURL *easy;
    struct curl_slist *hdrs;
    struct sb_buf body; /* this request's JSON body (when not shared) */
    struct sb_prompt prompt;
    struct sb_sse sse;
    struct sb_buf resp; /* non-SSE body or error body, bounded */
    struct sb_record rec;
    uint32_t *itl_us;
    size_t n_itl, cap_itl;
    uint64_t last_chunk_ns;
    uint64_t resp_bytes;
    long status;
    bool is_sse, saw_done, saw_usage, too_large, bad_sse, bad_json, stream_err;
    bool retried; /* already sent again on a fresh connection by the engine */
    int sends;    /* times the request left (on_prereq): over 1 when libcurl or we re-sent it */
    char err_msg[256];
    char curl_err[CURL_ERROR_SIZE]; /* libcurl's own words for a failed transfer */
    struct user *user;
    long long ready_k;       /* a prepared request: the arrival it is for */
    struct req *prev, *next; /* in-flight list, or free or ready list (next only) */
    struct sb_turn turn;     /* a stateful workload's session and turn (slot -1: none) */
    struct sb_buf reply;     /* the streamed reply text, when turn.want_reply (bounded) */
    const char *send_body;   /* the body this request sends: its own or a shared one */
    size_t send_len;
};

/* A pending send: a closed-loop user after think time, kept in a binary min-heap. */
struct pending {
    uint64_t t;
    struct user *user;
    bool wake; /* waits for a ready session: also due when any turn ends (wake_waiting) */
};

struct loop {
    const struct sb_engine_params *p;
    struct shared *sh;
    int index;
    pthread_t thread;
    int epfd, curl_tfd, sched_tfd, tick_tfd, wake_fd;
    uint64_t curl_due_ns;   /* when libcurl wants its timeout action (0: never) */
    uint64_t curl_armed_ns; /* what curl_tfd is armed for (0: disarmed) */
    uint64_t sched_due_ns;  /* what sched_tfd is armed for (0: nothing due) */
    CURLM *multi;
    int still_running;

    struct user *users;
    long long nusers;
    struct pending *heap;
    size_t nheap, capheap;

    /* open loop: this loop's share of the one schedule */
    bool open_loop;
    bool was_open_loop;        /* an open loop that sends the --prime stage as a closed one */
    long long nwaiting;        /* heap entries with wake set */
    struct sb_arrival arrival; /* the whole schedule's process, drawn in full by every loop */
    uint64_t op_ns;            /* operational time of the next arrival drawn (before the ramp) */
    long long arrival_idx;     /* index of the next arrival drawn */
    uint64_t next_arrival_ns;  /* this loop's next arrival; 0: no more */
    long long next_arrival_k;  /* its index in the schedule (the trace line it sends) */
    /* A workload schedule's next arrivals, prepared (prompt and body built) while the loop is
       idle, so a burst of arrivals at one instant is not sent one body build after another. */
    struct req *ready, *ready_tail;
    int n_ready;
    long long prep_k; /* the next arrival to prepare */

    struct req *inflight;
    long long ninflight;
    struct req *free_reqs;
    bool stopping;
    uint64_t drain_deadline_ns;
    bool fatal;

    struct sb_buf line; /* scratch for one JSON line */
    struct sb_jsonl_batch batch;

    /* results, merged after join */
    long long sent, ok, warmup, not_sent, late_sends, output_tokens, retried;
    uint64_t last_sched_ns; /* latest intended send */
    uint64_t last_send_ns;  /* latest actual send (on_prereq) */
    long long errors[SB_ERRK_COUNT];
    double max_sched_delay_ms;
    uint64_t last_done_ns;
    struct sb_hist ttft, e2e; /* measured ok requests' latencies, ms (fixed size: sb/hist.h) */
    struct sb_recstats rs;    /* in-flight intervals, completions, the server's prompt counts */
    size_t fold_at;           /* spans held in rs before the next sb_recstats_fold */

    /* progress, read by the main thread */
    _Atomic long long a_done, a_errors, a_inflight;
    _Atomic uint32_t a_ttft_hist[PROGRESS_BUCKETS];
    _Atomic bool a_finished; /* loop_main has returned: join it */
};

/* An open-loop arrival waiting for a slot: its intended time and its index in the schedule. */
struct arrival {
    uint64_t t;
    long long k;
};

struct shared {
    const struct sb_engine_params *p;
    int nloops;
    uint64_t t0_ns, t_warm_end_ns, t_end_ns; /* t_end 0: no duration limit */
    uint64_t ramp_ns;                        /* --ramp-up-s */
    long long req_limit; /* requests may start while issued < req_limit (0: no limit); --requests
                            counts from the end of --prime */
    bool priming_done;   /* the --prime stage ran (set while no loop runs) */
    /* Sends waiting for a ready session (all loops) and turns ended so far: a turn's end wakes
       the waiters at once instead of their polling (pick_turn, finish_request). */
    _Atomic long long sess_waiters;
    _Atomic uint64_t turns_ended;
    uint64_t saved_ramp_ns;
    _Atomic uint64_t t_stop_ns; /* when a signal or fatal error stopped sending */
    _Atomic bool abort_drain;   /* a second signal: cancel what is in flight now */
    /* open loop: one in-flight limit and one backlog of arrivals waiting for a slot */
    pthread_mutex_t ol_lock;
    long long ol_inflight, ol_max;
    struct arrival *backlog; /* a ring */
    size_t backlog_cap, backlog_head, backlog_len;
    uint64_t anchor_mono_ns, anchor_real_ns; /* one instant on both clocks, for "ts" */
    _Atomic long long issued;                /* requests started, all loops */
    _Atomic bool answered; /* some request got a response status line: the endpoint answers */
    _Atomic bool not_only_refusals; /* some answer was not a refusal (see note_refusal) */
    _Atomic long long refusals;     /* refusals while every answer was one */
    _Atomic bool refused_stop;      /* SB_REFUSED_STOP of them: stopped (refused_msg says why) */
    char refused_msg[SB_ERR_MSG_MAX];
    struct loop *loops;        /* every loop, to wake them all */
    _Atomic bool unreach_seen; /* some request failed to connect (unreach_msg says how) */
    char unreach_msg[SB_ERR_MSG_MAX / 2]; /* the first connect failure, under fatal_lock */
    _Atomic bool tls_refused; /* a certificate failed verification: no later request can pass */
    _Atomic bool stop;
    _Atomic int fatal;
    char fatal_msg[SB_ERR_MSG_MAX];
    pthread_mutex_t fatal_lock;
    const char *shared_body; /* one body for every request, when possible */
    size_t shared_body_len;
    struct sb_buf *lora_bodies; /* with a shared body and a LoRA list: one body per adapter */
    char shared_hash[20];
    char auth_header[1024];
    int main_wake_fd; /* eventfd: a loop has finished */
};

static const char *const exit_names[] = {"completed", "duration",    "sigint", "sigterm",
                                         "fatal",     "unreachable", "refused"};

const char *sb_exit_reason_name(enum sb_exit_reason r)
{
    return (r >= 0 && r <= SB_EXIT_REFUSED) ? exit_names[r] : "unknown";
}

/* ---- small helpers ---- */

static void arm_abs(int tfd, uint64_t t_ns)
{
    struct itimerspec its = {0};
    if (t_ns) {
        its.it_value.tv_sec = (time_t)(t_ns / 1000000000ull);
        its.it_value.tv_nsec = (long)(t_ns % 1000000000ull);
    }
    timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

static void drain_fd(int fd)
{
    uint64_t v;
    ssize_t r = read(fd, &v, sizeof(v));
    (void)r;
}

/*
 * Folds the spans of finished requests that lie before the measurement window's end into running
 * sums (sb/recstats.h), so a run of any length holds only the last seconds of them. The end
 * (measure_end) is known only once sending stops, but it is never before this loop's latest send,
 * unless a signal or fatal error stops the run first: then nothing more is folded. FOLD_LAG_NS
 * covers a stop stamped just before this loop reads t_stop_ns as still 0 (the stamping thread
 * preempted between its clock read and its store). Spans are folded when their count doubles, so
 * the cost is amortised.
 */
#define FOLD_LAG_NS 10000000000ull
static void maybe_fold(struct loop *l, uint64_t now)
{
    struct shared *sh = l->sh;
    if (l->rs.n_span < l->fold_at || !sh->t_warm_end_ns || atomic_load(&sh->t_stop_ns) ||
        now < FOLD_LAG_NS)
        return;
    uint64_t horizon = now - FOLD_LAG_NS;
    if (l->last_send_ns < horizon)
        horizon = l->last_send_ns;
    size_t left = sb_recstats_fold(&l->rs, sh->t_warm_end_ns, horizon);
    l->fold_at = left * 2 > 4096 ? left * 2 : 4096;
}

static void set_fatal(struct loop *l, const char *msg)
{
    struct shared *sh = l->sh;
    pthread_mutex_lock(&sh->fatal_lock);
    if (!atomic_load(&sh->fatal)) {
        snprintf(sh->fatal_msg, sizeof(sh->fatal_msg), "%s", msg);
        atomic_store(&sh->fatal, 1);
    }
    pthread_mutex_unlock(&sh->fatal_lock);
    uint64_t zero = 0;
    atomic_compare_exchange_strong(&sh->t_stop_ns, &zero, sb_mono_ns());
    atomic_store(&sh->stop, true);
    l->fatal = true;
}

/* Wakes the first n loops (all but except, NULL: none) out of their epoll_wait. */
static void wake_loops(struct shared *sh, int n, const struct loop *except)
{
    for (int i = 0; i < n; i++) {
        if (&sh->loops[i] == except)
            continue;
        uint64_t one = 1;
        ssize_t w = write(sh->loops[i].wake_fd, &one, sizeof(one));
        (void)w;
    }
}

/* Stops sending: the first stop's time is kept, and the first n loops are woken so that none
   waits for its next timer to notice. */
static void stop_sending(struct shared *sh, int n)
{
    uint64_t zero = 0;
    atomic_compare_exchange_strong(&sh->t_stop_ns, &zero, sb_mono_ns());
    atomic_store(&sh->stop, true);
    wake_loops(sh, n, NULL);
}

static int progress_bucket(double ms)
{
    double us = ms * 1000.0;
    if (us < 1)
        return 0;
    int b = (int)(log2(us) * 8.0);
    return b < 0 ? 0 : (b >= PROGRESS_BUCKETS ? PROGRESS_BUCKETS - 1 : b);
}

/* ---- heap of closed-loop users waiting out their think time ---- */

static int heap_push_w(struct loop *l, uint64_t t, struct user *u, bool wake)
{
    if (l->nheap == l->capheap) {
        size_t nc = l->capheap ? l->capheap * 2 : 64;
        struct pending *nh = realloc(l->heap, nc * sizeof(*nh));
        if (!nh)
            return -1;
        l->heap = nh;
        l->capheap = nc;
    }
    size_t i = l->nheap++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (l->heap[parent].t <= t)
            break;
        l->heap[i] = l->heap[parent];
        i = parent;
    }
    l->heap[i] = (struct pending){t, u, wake};
    return 0;
}

static int heap_push(struct loop *l, uint64_t t, struct user *u)
{
    return heap_push_w(l, t, u, false);
}

/* Restores the heap order of the whole heap (after times were lowered in place). */
static void heap_rebuild(struct loop *l)
{
    size_t n = l->nheap;
    for (size_t k = n / 2; k-- > 0;) {
        size_t i = k;
        struct pending v = l->heap[i];
        for (;;) {
            size_t c = 2 * i + 1;
            if (c >= n)
                break;
            if (c + 1 < n && l->heap[c + 1].t < l->heap[c].t)
                c++;
            if (v.t <= l->heap[c].t)
                break;
            l->heap[i] = l->heap[c];
            i = c;
        }
        l->heap[i] = v;
    }
}

static struct pending heap_pop(struct loop *l)
{
    struct pending top = l->heap[0];
    struct pending last = l->heap[--l->nheap];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= l->nheap)
            break;
        if (c + 1 < l->nheap && l->heap[c + 1].t < l->heap[c].t)
            c++;
        if (last.t <= l->heap[c].t)
            break;
        l->heap[i] = l->heap[c];
        i = c;
    }
    if (l->nheap)
        l->heap[i] = last;
    return top;
}

static void arm_sched(struct loop *l)
{
    uint64_t t = 0;
    if (l->nheap)
        t = l->heap[0].t;
    if (l->open_loop && l->next_arrival_ns && (!t || l->next_arrival_ns < t))
        t = l->next_arrival_ns;
    l->sched_due_ns = t;
    arm_abs(l->sched_tfd, t);
}

/* ---- libcurl callbacks ---- */

static int on_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct loop *l = userp;
    (void)e;
    struct epoll_event ev = {0};
    ev.data.fd = s;
    if (what == CURL_POLL_REMOVE) {
        if (socketp) {
            epoll_ctl(l->epfd, EPOLL_CTL_DEL, s, NULL);
            curl_multi_assign(l->multi, s, NULL);
        }
        return 0;
    }
    ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
    /* socketp remembers the registered mask (+0x100 so it is never NULL): skip no-op MODs. */
    uintptr_t want = (uintptr_t)ev.events | 0x100;
    if (socketp) {
        if ((uintptr_t)socketp == want)
            return 0;
        epoll_ctl(l->epfd, EPOLL_CTL_MOD, s, &ev);
    } else {
        epoll_ctl(l->epfd, EPOLL_CTL_ADD, s, &ev);
    }
    curl_multi_assign(l->multi, s, (void *)want);
    return 0;
}

/*
 * libcurl's timer: only remembered here. The loop acts on a due timeout itself and arms the timerfd
 * only when it must wake earlier than it already will; curl moves its timer on nearly every call,
 * and a timerfd_settime per call cost a third of the client's CPU.
 */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    struct loop *l = userp;
    (void)multi;
    if (timeout_ms < 0)
        l->curl_due_ns = 0;
    else /* 0 means "act soon", not "disarm" */
        l->curl_due_ns = sb_mono_ns() + (uint64_t)timeout_ms * 1000000ull;
    return 0;
}

static void check_multi_info(struct loop *l);

/* Runs libcurl's timeout action while it is due, then makes sure the timerfd fires in time. */
static void service_curl_timer(struct loop *l)
{
    for (int i = 0; i < 16 && l->curl_due_ns && l->curl_due_ns <= sb_mono_ns(); i++) {
        l->curl_due_ns = 0;
        curl_multi_socket_action(l->multi, CURL_SOCKET_TIMEOUT, 0, &l->still_running);
        check_multi_info(l);
    }
    if (l->curl_due_ns && (!l->curl_armed_ns || l->curl_due_ns < l->curl_armed_ns)) {
        arm_abs(l->curl_tfd, l->curl_due_ns);
        l->curl_armed_ns = l->curl_due_ns;
    }
}

/*
 * Header lines, one per call, status lines included. TTFB is stamped at the status line of the
 * final response: an interim 1xx (103 Early Hints, 100 Continue) and its header lines are not the
 * answer, and the final status line is its first byte.
 */
static size_t on_header(char *buf, size_t size, size_t n, void *arg)
{
    struct req *r = arg;
    size_t len = size * n;
    if (len > 5 && memcmp(buf, "HTTP/", 5) == 0) {
        const char *sp = memchr(buf, ' ', len);
        long code = 0;
        if (sp && (size_t)(sp - buf) + 4 <= len)
            code = strtol(sp + 1, NULL, 10);
        if (code > 0) {
            r->status = code;
            if (!atomic_load_explicit(&r->loop->sh->answered, memory_order_relaxed))
                atomic_store(&r->loop->sh->answered, true);
        }
        if (!(code >= 100 && code < 200) && !r->rec.t_first_byte_ns)
            r->rec.t_first_byte_ns = sb_mono_ns();
        r->is_sse = false;
    } else if (len > 13 && strncasecmp(buf, "content-type:", 13) == 0) {
        const char *v = buf + 13;
        size_t vl = len - 13;
        while (vl && (*v == ' ' || *v == '\t'))
            v++, vl--;
        r->is_sse = vl >= 17 && strncasecmp(v, "text/event-stream", 17) == 0;
    }
    return len;
}

static void note_error(struct req *r, const char *msg, size_t len)
{
    if (!r->err_msg[0]) /* the server's bytes, cut on a character boundary */
        sb_utf8_copy(r->err_msg, sizeof(r->err_msg), msg, len);
}

static int on_event(const struct sb_sse_event *ev, void *arg)
{
    struct req *r = arg;
    uint64_t now = sb_mono_ns();
    if (!r->rec.t_first_event_ns)
        r->rec.t_first_event_ns = now;
    if (ev->error) {
        /* llama.cpp: `error: {"code":400,"message":...}` inside a 200 stream, then [DONE]. */
        char msg[256];
        r->stream_err = true;
        sb_openai_error_message(ev->error, ev->error_len, msg, sizeof(msg));
        note_error(r, msg, strlen(msg));
        if (!ev->has_data)
            return 0;
    }
    if (ev->type_len == 5 && memcmp(ev->type, "error", 5) == 0) {
        /* Dynamo: `event: error` with the message in a comment and no data line. */
        r->stream_err = true;
        if (ev->has_data && ev->data_len)
            note_error(r, ev->data, ev->data_len);
        else if (ev->comment)
            note_error(r, ev->comment, ev->comment_len);
        else
            note_error(r, "event: error", 12);
        return 0;
    }
    if (!ev->has_data)
        return 0;
    const char *d = ev->data;
    size_t dl = ev->data_len;
    while (dl && (d[dl - 1] == ' ' || d[dl - 1] == '\r' || d[dl - 1] == '\n'))
        dl--;
    if (dl == 6 && memcmp(d, "[DONE]", 6) == 0) {
        r->saw_done = true;
        return 0;
    }
    struct sb_chunk c;
    struct sb_err e;
    if (sb_openai_decode_chunk(d, dl, &c, &e) != 0) {
        r->bad_json = true;
        note_error(r, e.msg, strlen(e.msg));
        return 0;
    }
    if (c.is_error) {
        r->stream_err = true;
        note_error(r, c.error_msg, strlen(c.error_msg));
        return 0;
    }
    if (r->turn.want_reply && c.content_len > 0) {
        size_t before = r->reply.len;
        if (sb_chat_reply_text(d, dl, &r->reply) != 0)
            r->turn.want_reply = false; /* over the cap: sessions.c ends the session */
        else if (r->reply.len > before) /* the last token's text (one token a chunk) */
            r->turn.reply_last_len = r->reply.len - before;
    }
    if (c.content_len + c.reasoning_len > 0) { /* reasoning tokens are tokens too */
        if (!r->rec.t_first_token_ns) {
            r->rec.t_first_token_ns = now;
        } else if (r->n_itl < MAX_ITL_SAMPLES) {
            if (r->n_itl == r->cap_itl) {
                size_t nc = r->cap_itl ? r->cap_itl * 2 : 32;
                uint32_t *ni = realloc(r->itl_us, nc * sizeof(*ni));
                if (ni) {
                    r->itl_us = ni;
                    r->cap_itl = nc;
                }
            }
            if (r->n_itl < r->cap_itl) {
                uint64_t gap = (now - r->last_chunk_ns) / 1000;
                r->itl_us[r->n_itl++] = gap > UINT32_MAX ? UINT32_MAX : (uint32_t)gap;
            }
        }
        r->last_chunk_ns = now;
        r->rec.content_chunks++;
    }
    if (c.finish_reason[0])
        snprintf(r->rec.finish_reason, sizeof(r->rec.finish_reason), "%s", c.finish_reason);
    if (c.has_usage) {
        r->saw_usage = true;
        if (c.completion_tokens >= 0) {
            r->rec.output_tokens = c.completion_tokens;
            r->rec.tokens_from_usage = true;
        }
        if (c.prompt_tokens >= 0)
            r->rec.prompt_tokens = c.prompt_tokens;
        if (c.cached_tokens >= 0)
            r->rec.cached_tokens = c.cached_tokens;
    }
    sb_record_add_timings(&r->rec, &c);
    if (c.server_recv_ns && !r->rec.server_recv_ns)
        r->rec.server_recv_ns = c.server_recv_ns;
    if (c.server_first_token_ns && !r->rec.server_first_token_ns)
        r->rec.server_first_token_ns = c.server_first_token_ns;
    return 0;
}

static size_t take_bytes(struct req *r, char *buf, size_t len)
{
    r->resp_bytes += len;
    if (r->resp_bytes > r->loop->p->cfg->max_response_bytes) {
        r->too_large = true;
        return 0; /* aborts the transfer: no allocation storm */
    }
    if (r->is_sse && r->status >= 200 && r->status < 300) {
        int rc = sb_sse_feed(&r->sse, buf, len);
        if (rc != 0) {
            r->bad_sse = true;
            const char *why = rc == SB_SSE_E2BIG ? "SSE event larger than --max-response-bytes"
                                                 : "out of memory decoding the SSE stream";
            note_error(r, why, strlen(why));
            return 0;
        }
        return len;
    }
    if (sb_buf_add(&r->resp, buf, len) != 0) {
        r->too_large = true;
        return 0;
    }
    return len;
}

/*
 * The response body as libcurl hands it over. The last byte is stamped once these bytes are
 * parsed, in this one place: an event parsed from them (the first token, say) is stamped during
 * the parse, so stamping before it would put the "last byte" ahead of a token it carried.
 */
static size_t on_write(char *buf, size_t size, size_t n, void *arg)
{
    struct req *r = arg;
    size_t taken = take_bytes(r, buf, size * n);
    r->rec.t_last_byte_ns = sb_mono_ns();
    return taken;
}

/*
 * libcurl calls this once the connection is made (or taken from the pool) and right before it
 * writes the request: the moment the request leaves, which is what t_send_ns stamps. Connecting,
 * a full accept queue on the server or a busy loop all show in lat_sched_delay_ms.
 */
static int on_prereq(void *arg, char *conn_primary_ip, char *conn_local_ip, int conn_primary_port,
                     int conn_local_port)
{
    struct req *r = arg;
    (void)conn_primary_ip, (void)conn_local_ip, (void)conn_primary_port, (void)conn_local_port;
    /* The first departure: a request sent again (libcurl's retry of a dead reused connection,
       or ours) keeps it, so its client lag is not the dead connection's cost; that cost is in
       the latencies, which run from the intended send time. */
    uint64_t now = sb_mono_ns();
    if (!r->rec.t_send_ns)
        r->rec.t_send_ns = now;
    if (now > r->loop->last_send_ns)
        r->loop->last_send_ns = now;
    r->sends++;
    return CURL_PREREQFUNC_OK;
}

/* ---- requests ---- */

static struct req *req_new(struct loop *l)
{
    struct req *r = l->free_reqs;
    if (r) {
        l->free_reqs = r->next;
        return r;
    }
    r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    const struct sb_run_config *cfg = l->p->cfg;
    r->loop = l;
    r->easy = curl_easy_init();
    if (!r->easy) {
        free(r);
        return NULL;
    }
    sb_buf_init(&r->body, 1u << 30);
    sb_buf_init(&r->resp, (size_t)cfg->max_response_bytes);
    sb_prompt_init(&r->prompt);
    sb_buf_init(&r->reply, SB_SESSION_REPLY_CAP);
    r->turn.slot = -1;
    sb_sse_init(&r->sse, (size_t)cfg->max_response_bytes, on_event, r);
    CURL *e = r->easy;
    curl_easy_setopt(e, CURLOPT_URL, l->p->url);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    /* Small receive buffers: SSE chunks are a few hundred bytes, and 10,000 streams add up. */
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 1024L); /* libcurl's minimum */
    /* No proxy: libcurl would otherwise read the *_proxy variables on every transfer. */
    curl_easy_setopt(e, CURLOPT_PROXY, "");
    sb_tls_apply(e);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(cfg->timeout_s * 1000));
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(cfg->connect_timeout_s * 1000));
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, on_prereq);
    curl_easy_setopt(e, CURLOPT_PREREQDATA, r);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->curl_err);
    if (cfg->new_connection) {
        curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
        curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
    }
    return r;
}

static void req_free(struct req *r)
{
    curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->hdrs);
    sb_buf_release(&r->body);
    sb_buf_release(&r->resp);
    sb_prompt_release(&r->prompt);
    sb_buf_release(&r->reply);
    sb_sse_release(&r->sse);
    free(r->itl_us);
    free(r);
}

static void fill_labels(struct loop *l, struct sb_record *rec)
{
    const struct sb_run_config *cfg = l->p->cfg;
    /* Labels longer than their fields are cut on a character boundary. */
#define COPY_LABEL(field, s) sb_utf8_copy(rec->field, sizeof(rec->field), (s), strlen(s))
    COPY_LABEL(run_id, l->p->run_id);
    COPY_LABEL(stack, cfg->stack ? cfg->stack : "");
    COPY_LABEL(model, cfg->model ? cfg->model : "");
    COPY_LABEL(workload, cfg->workload);
    COPY_LABEL(hypothesis, cfg->hypothesis ? cfg->hypothesis : "");
    COPY_LABEL(phase_label, cfg->phase ? cfg->phase : "");
#undef COPY_LABEL
    rec->repetition = cfg->repetition;
    rec->context_tokens = rec->context_tokens_nominal = cfg->context_tokens;
    rec->concurrency = l->open_loop ? -1 : cfg->concurrency;
    rec->max_inflight = l->open_loop ? cfg->max_inflight : -1;
    rec->rate = cfg->rate > 0 ? cfg->rate : NAN;
}

/* The request body for one prompt, from the run's options. */
static int build_body(const struct sb_engine_params *p, const struct sb_prompt *pr,
                      long long lora_idx, struct sb_buf *out, struct sb_err *err)
{
    const struct sb_run_config *cfg = p->cfg;
    struct sb_request_params rp = {
        .api = p->api,
        .model = p->model_sent,
        .prompt = pr->text.data,
        .prompt_len = pr->text.len,
        .max_tokens = pr->max_tokens >= 0 ? pr->max_tokens : cfg->max_tokens,
        .temperature = cfg->temperature,
        .top_p = cfg->top_p,
        .stream = cfg->stream,
        .include_usage = cfg->stream,
        .extra_json = pr->extra.len ? pr->extra.data : cfg->extra_body,
        .messages_json = pr->messages ? pr->text.data : NULL,
        .messages_len = pr->messages ? pr->text.len : 0,
    };
    if (lora_idx >= 0) /* the adapter of this request (LoRA suite) */
        sb_lora_apply(p->lora_list, (enum sb_lora_mode)p->lora_mode, (size_t)lora_idx, &rp);
    return sb_openai_build_request(&rp, out, err);
}

static int heap_push(struct loop *l, uint64_t t, struct user *u);
static void arm_sched(struct loop *l);

/* The sends of this loop that wait for a ready session are due now (a turn ended). */
static void wake_waiting(struct loop *l)
{
    if (!l->nwaiting)
        return;
    uint64_t now = sb_mono_ns();
    long long n = 0;
    for (size_t i = 0; i < l->nheap; i++)
        if (l->heap[i].wake) {
            if (l->heap[i].t > now)
                l->heap[i].t = now;
            l->heap[i].wake = false;
            n++;
        }
    l->nwaiting -= n;
    atomic_fetch_sub(&l->sh->sess_waiters, n);
    heap_rebuild(l);
    arm_sched(l);
}

/* The oracle of a stateful workload's turn, into its record (sb/sessions.h). */
static void sb_turn_to_record(const struct sb_turn *t, struct sb_record *rec)
{
    rec->session = t->session;
    rec->turn = t->turn;
    rec->history_tokens = t->history_tokens;
    rec->new_tokens = t->new_tokens;
    rec->reusable_tokens = t->reusable_tokens;
    rec->reuse_distance_tokens = t->reuse_distance_tokens;
    rec->idle_ms = t->idle_ms;
    rec->parked = t->parked ? 1 : 0;
    if (t->prime) /* priming builds the working set: not measured */
        rec->prime = rec->warmup = true;
}

/*
 * A stateful workload's next turn, into a fresh *rp. 0 when built; when no session is ready the
 * send waits for the one that will be (closed loop: the user; open loop: the arrival, holding its
 * slot, with its intended time moved there) and 2 is returned, which callers treat as started;
 * 1 when --requests is used up; -1 on a fatal error.
 */
static int pick_turn(struct loop *l, struct user *u, uint64_t t_sched, struct req **rp)
{
    const struct sb_workload *w = l->p->workload;
    struct sb_err err;
    if (l->sh->req_limit > 0 &&
        atomic_load_explicit(&l->sh->issued, memory_order_relaxed) >= l->sh->req_limit)
        return 1;
    struct req *r = req_new(l);
    if (!r) {
        set_fatal(l, "out of memory starting a request");
        return -1;
    }
    uint64_t ready = 0;
    uint64_t now = sb_mono_ns();
    uint64_t ended = atomic_load(&l->sh->turns_ended); /* before next() looks at the sessions */
    int nrc = w->ops->next(w, now > t_sched ? now : t_sched, &r->prompt, &r->turn, &ready, &err);
    if (nrc == 0) {
        sb_buf_reset(&r->reply);
        *rp = r;
        return 0;
    }
    r->turn.slot = -1;
    r->next = l->free_reqs;
    l->free_reqs = r;
    if (nrc == 3) /* the prime is handed out: this user's part of it is over */
        return 1;
    if (nrc < 0) {
        set_fatal(l, err.msg);
        return -1;
    }
    /* Wait for the earliest session's think or idle time (ready), or for any turn to end, which
       may free a session sooner: no polling. ready 0: every session is in flight. */
    if (heap_push_w(l, ready ? ready : UINT64_MAX, u, true) != 0) {
        set_fatal(l, "out of memory scheduling a turn");
        return -1;
    }
    l->nwaiting++;
    atomic_fetch_add(&l->sh->sess_waiters, 1);
    /* A turn that ended after next() looked may have seen no waiter yet: then look again now
       (finish_request counts the end, then reads sess_waiters; here the other way round). */
    if (atomic_load(&l->sh->turns_ended) != ended)
        wake_waiting(l);
    arm_sched(l);
    return 2;
}

static void recycle(struct loop *l, struct req *r)
{
    r->next = l->free_reqs;
    l->free_reqs = r;
}

/*
 * Builds request req_idx's record labels, prompt and body into r (a stateful workload's turn is
 * already in r->prompt and r->turn). seq picks the LoRA adapter; -1 when it is not known yet (a
 * prepared arrival, which is only prepared without a LoRA list). -1 (reported through set_fatal,
 * r recycled) on failure.
 */
static int build_request(struct loop *l, struct req *r, struct user *u, long long user_id,
                         long long req_idx, long long seq)
{
    struct shared *sh = l->sh;
    const struct sb_engine_params *p = l->p;
    const struct sb_workload *w = p->workload;
    struct sb_err err;
    r->user = u;
    r->status = 0;
    r->is_sse = r->saw_done = r->saw_usage = r->too_large = r->bad_sse = r->bad_json =
        r->stream_err = false;
    if (r->retried) /* the last request on this handle was sent again on a fresh connection */
        curl_easy_setopt(r->easy, CURLOPT_FRESH_CONNECT, p->cfg->new_connection ? 1L : 0L);
    r->retried = false;
    r->err_msg[0] = '\0';
    r->curl_err[0] = '\0';
    r->resp_bytes = 0;
    r->n_itl = 0;
    r->last_chunk_ns = 0;
    sb_buf_reset(&r->resp);
    sb_sse_reset(&r->sse);
    sb_record_init(&r->rec);
    fill_labels(l, &r->rec);
    r->rec.user = user_id;
    r->rec.req_idx = req_idx;
    long long lora_idx = -1;
    if (p->lora && seq >= 0) { /* by seq, whichever loop sends it */
        size_t ai;
        sb_lora_selector_take(p->lora, seq, &ai, &r->rec.adapter_use);
        lora_idx = (long long)ai;
        const char *an = p->lora_list->a[ai].name;
        sb_utf8_copy(r->rec.adapter, sizeof(r->rec.adapter), an, strlen(an));
    }

    r->send_body = sh->shared_body;
    r->send_len = sh->shared_body_len;
    if (w->ops->next) {
        memcpy(r->rec.prompt_hash, r->prompt.hash, sizeof(r->rec.prompt_hash));
        r->rec.prompt_tokens_client = r->turn.prompt_tokens;
        r->rec.context_tokens = r->rec.context_tokens_nominal = r->turn.est_tokens;
        sb_buf_reset(&r->body);
        if (build_body(p, &r->prompt, lora_idx, &r->body, &err) != 0) {
            w->ops->done(w, &r->turn, NULL, NULL, 0, sb_mono_ns());
            set_fatal(l, err.msg);
            recycle(l, r);
            return -1;
        }
        r->send_body = r->body.data;
        r->send_len = r->body.len;
    } else if (sh->shared_body) {
        /* One prompt for everybody: its hash was taken once. */
        memcpy(r->rec.prompt_hash, sh->shared_hash, sizeof(r->rec.prompt_hash));
        r->rec.prompt_tokens_client = w->exact_tokens;
        if (lora_idx >= 0) {
            r->send_body = sh->lora_bodies[lora_idx].data;
            r->send_len = sh->lora_bodies[lora_idx].len;
        }
    } else {
        if (w->ops->prompt(w, user_id, req_idx, &r->prompt, &err) != 0 ||
            sb_workload_count(w, &r->prompt, &r->rec.prompt_tokens_client, &err) != 0) {
            set_fatal(l, err.msg);
            recycle(l, r);
            return -1;
        }
        snprintf(r->rec.nonce, sizeof(r->rec.nonce), "%s", r->prompt.nonce);
        snprintf(r->rec.prompt_hash, sizeof(r->rec.prompt_hash), "%s", r->prompt.hash);
        if (w->ops->annotate)
            w->ops->annotate(w, req_idx, &r->rec);
        sb_buf_reset(&r->body);
        if (build_body(p, &r->prompt, lora_idx, &r->body, &err) != 0) {
            set_fatal(l, err.msg);
            recycle(l, r);
            return -1;
        }
        r->send_body = r->body.data;
        r->send_len = r->body.len;
    }
    if (r->rec.prompt_tokens_client >= 0 && !w->ops->next)
        r->rec.context_tokens = r->rec.prompt_tokens_client; /* exact: what was sent */
    return 0;
}

/* The prepared request for arrival k, if there is one; prepared ones for earlier arrivals
   (started by another loop from the shared backlog) are recycled. */
static struct req *take_ready(struct loop *l, long long k)
{
    while (l->ready && l->ready->ready_k <= k) {
        struct req *r = l->ready;
        l->ready = r->next;
        if (!l->ready)
            l->ready_tail = NULL;
        l->n_ready--;
        if (r->ready_k == k)
            return r;
        recycle(l, r);
    }
    return NULL;
}

/*
 * Prepares the next arrival of the workload's own schedule ahead of its time, one per call so
 * that the loop's events are served in between. true when it prepared one and there is room for
 * more.
 */
static bool prepare_one(struct loop *l)
{
    struct shared *sh = l->sh;
    const struct sb_workload *w = l->p->workload;
    /* Not with a LoRA list: its adapter is picked by seq, known only when the request starts. */
    if (!l->open_loop || !w->ops->arrival_ns || l->p->lora || l->stopping || l->fatal ||
        !l->next_arrival_ns || l->n_ready >= 32 ||
        atomic_load_explicit(&sh->stop, memory_order_relaxed))
        return false;
    if (l->prep_k < l->next_arrival_k)
        l->prep_k = l->next_arrival_k;
    uint64_t u = w->ops->arrival_ns(w, l->prep_k);
    if (u == UINT64_MAX || (sh->t_end_ns && sh->t0_ns + u >= sh->t_end_ns))
        return false;
    struct req *r = req_new(l);
    if (!r) {
        set_fatal(l, "out of memory preparing a request");
        return false;
    }
    if (build_request(l, r, NULL, -1, l->prep_k, -1) != 0)
        return false;
    r->ready_k = l->prep_k;
    r->next = NULL;
    if (l->ready_tail)
        l->ready_tail->next = r;
    else
        l->ready = r;
    l->ready_tail = r;
    l->n_ready++;
    l->prep_k += sh->nloops;
    return l->n_ready < 32;
}

/*
 * Starts one request intended for t_sched; an open-loop one is arrival k of the schedule (its
 * req_idx), a closed-loop one has k -1. Returns 0; 1 when --requests is used up; -1 on a fatal
 * error (already reported through set_fatal); 2 when a stateful workload deferred it (pick_turn).
 */
static int start_request(struct loop *l, struct user *u, long long user_id, uint64_t t_sched,
                         long long k)
{
    struct shared *sh = l->sh;
    const struct sb_engine_params *p = l->p;
    const struct sb_workload *w = p->workload;
    struct req *r = NULL;
    if (w->ops->next) { /* a stateful workload picks its session and turn first */
        int nrc = pick_turn(l, u, t_sched, &r);
        if (nrc != 0)
            return nrc;
    }
    long long seq = atomic_fetch_add(&sh->issued, 1);
    struct req *ready = k >= 0 ? take_ready(l, k) : NULL;
    if (sh->req_limit > 0 && seq >= sh->req_limit) {
        if (r)
            w->ops->done(w, &r->turn, NULL, NULL, 0, sb_mono_ns());
        if (r)
            recycle(l, r);
        if (ready)
            recycle(l, ready);
        return 1; /* another loop took the last one */
    }
    if (ready) {
        r = ready; /* built while the loop was idle */
    } else {
        if (!r && !(r = req_new(l))) {
            set_fatal(l, "out of memory starting a request");
            return -1;
        }
        long long req_idx = u ? u->next_req++ : (k >= 0 ? k : seq);
        if (build_request(l, r, u, user_id, req_idx, seq) != 0)
            return -1;
    }
    r->rec.seq = seq;
    snprintf(r->rec.request_id, sizeof(r->rec.request_id), "%s-%lld", p->run_id, seq);
    const char *body = r->send_body;
    size_t body_len = r->send_len;
    curl_slist_free_all(r->hdrs);
    char idhdr[200];
    snprintf(idhdr, sizeof(idhdr), "X-Request-Id: %s", r->rec.request_id);
    r->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    r->hdrs = curl_slist_append(r->hdrs, "Expect:"); /* no 100-continue round trip */
    r->hdrs = curl_slist_append(r->hdrs, idhdr);
    if (sh->auth_header[0])
        r->hdrs = curl_slist_append(r->hdrs, sh->auth_header);
    curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->hdrs);
    curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);

    r->rec.t_sched_ns = t_sched;
    r->rec.t_send_ns = 0; /* on_prereq stamps it when the request leaves */
    r->sends = 0;
    r->rec.ramp = sh->ramp_ns && t_sched < sh->t0_ns + sh->ramp_ns;
    r->rec.warmup = t_sched < sh->t_warm_end_ns;
    if (r->turn.slot >= 0)
        sb_turn_to_record(&r->turn, &r->rec);
    if (t_sched > l->last_sched_ns)
        l->last_sched_ns = t_sched;
    r->prev = NULL;
    r->next = l->inflight;
    if (l->inflight)
        l->inflight->prev = r;
    l->inflight = r;
    l->ninflight++;
    l->sent++;
    atomic_store_explicit(&l->a_inflight, l->ninflight, memory_order_relaxed);
    curl_multi_add_handle(l->multi, r->easy);
    return 0;
}

/* May this loop start another request now (limits on count and time)? */
static bool may_start(struct loop *l, uint64_t t_sched)
{
    struct shared *sh = l->sh;
    if (l->stopping || atomic_load_explicit(&sh->stop, memory_order_relaxed))
        return false;
    if (sh->t_end_ns && t_sched >= sh->t_end_ns)
        return false;
    if (sh->req_limit > 0 &&
        atomic_load_explicit(&sh->issued, memory_order_relaxed) >= sh->req_limit)
        return false;
    return true;
}

static double ms_between(uint64_t from, uint64_t to)
{
    return (from && to && to >= from) ? (double)(to - from) / 1e6 : NAN;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_u32(const uint32_t *v, size_t n, double p)
{
    double pos = (double)(n - 1) * p / 100.0;
    size_t lo = (size_t)pos;
    size_t hi = lo + 1 < n ? lo + 1 : lo;
    return ((double)v[lo] + ((double)v[hi] - (double)v[lo]) * (pos - (double)lo)) / 1000.0;
}

static void classify(struct req *r, CURLcode rc, uint64_t now)
{
    struct sb_record *rec = &r->rec;
    rec->rc = (int)r->status;
    if (!rec->t_last_byte_ns)
        rec->t_last_byte_ns = now;
    enum sb_error_kind k = SB_ERRK_NONE;
    if (r->too_large) {
        k = SB_ERRK_TOO_LARGE;
        note_error(r, "response larger than --max-response-bytes", 41);
    } else if (r->bad_sse) {
        k = SB_ERRK_BAD_SSE;
    } else if (rc == CURLE_OPERATION_TIMEDOUT) {
        k = SB_ERRK_TIMEOUT;
    } else if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
               rc == CURLE_COULDNT_RESOLVE_PROXY) {
        k = SB_ERRK_CONNECT;
    } else if (rc != CURLE_OK) {
        if (r->stream_err)
            k = SB_ERRK_STREAM_ERROR;
        else if (r->status > 0)
            k = SB_ERRK_TRUNCATED;
        else
            k = SB_ERRK_TRANSPORT;
    } else if (r->status >= 400 || r->status < 200) {
        k = SB_ERRK_HTTP;
        char msg[256];
        sb_openai_error_message(r->resp.data ? r->resp.data : "", r->resp.len, msg, sizeof(msg));
        note_error(r, msg, strlen(msg));
    } else if (r->is_sse) {
        if (sb_sse_finish(&r->sse) && !r->saw_done && !r->stream_err)
            note_error(r, "stream ended inside an event", 28);
        if (r->stream_err)
            k = SB_ERRK_STREAM_ERROR;
        else if (r->bad_json)
            k = SB_ERRK_BAD_JSON;
        else if (!r->saw_done)
            k = SB_ERRK_TRUNCATED;
        else if (r->rec.content_chunks == 0 && !r->saw_usage) {
            k = SB_ERRK_EMPTY_STREAM;
            note_error(r, "the stream ended with no content and no usage", 45);
        }
    } else {
        struct sb_chunk c;
        struct sb_err e;
        if (sb_openai_decode_response(r->resp.data ? r->resp.data : "", r->resp.len, &c, &e) != 0) {
            k = SB_ERRK_BAD_JSON;
            note_error(r, e.msg, strlen(e.msg));
        } else if (c.is_error) {
            k = SB_ERRK_STREAM_ERROR;
            note_error(r, c.error_msg, strlen(c.error_msg));
        } else {
            rec->content_chunks = c.content_len > 0;
            snprintf(rec->finish_reason, sizeof(rec->finish_reason), "%s", c.finish_reason);
            if (c.has_usage) {
                rec->output_tokens = c.completion_tokens;
                rec->tokens_from_usage = c.completion_tokens >= 0;
                rec->prompt_tokens = c.prompt_tokens;
                rec->cached_tokens = c.cached_tokens;
            }
            rec->server_recv_ns = c.server_recv_ns;
            rec->server_first_token_ns = c.server_first_token_ns;
            sb_record_add_timings(rec, &c);
        }
    }
    if (k == SB_ERRK_NONE && rc != CURLE_OK)
        k = SB_ERRK_TRANSPORT;
    if (rc != CURLE_OK && !r->err_msg[0]) {
        const char *why = r->curl_err[0] ? r->curl_err : curl_easy_strerror(rc);
        note_error(r, why, strlen(why));
    }
    rec->error = k;
    rec->ok = k == SB_ERRK_NONE;
    snprintf(rec->error_msg, sizeof(rec->error_msg), "%s", rec->ok ? "" : r->err_msg);

    if (!rec->tokens_from_usage && r->is_sse)
        rec->output_tokens = rec->content_chunks;
    rec->lat_ttfb_ms = ms_between(rec->t_sched_ns, rec->t_first_byte_ns);
    rec->lat_first_chunk_ms = ms_between(rec->t_sched_ns, rec->t_first_event_ns);
    rec->lat_ttft_ms = ms_between(rec->t_sched_ns, rec->t_first_token_ns);
    rec->lat_e2e_ms = ms_between(rec->t_sched_ns, rec->t_last_byte_ns);
    rec->lat_sched_delay_ms = ms_between(rec->t_sched_ns, rec->t_send_ns);
    if (r->n_itl > 0) {
        double sum = 0;
        for (size_t i = 0; i < r->n_itl; i++)
            sum += r->itl_us[i];
        rec->itl_mean_ms = sum / (double)r->n_itl / 1000.0;
        qsort(r->itl_us, r->n_itl, sizeof(uint32_t), cmp_u32);
        rec->itl_p50_ms = pct_u32(r->itl_us, r->n_itl, 50);
        rec->itl_p99_ms = pct_u32(r->itl_us, r->n_itl, 99);
        rec->itl_max_ms = r->itl_us[r->n_itl - 1] / 1000.0;
    }
    if (rec->output_tokens > 1 && !isnan(rec->lat_ttft_ms) && !isnan(rec->lat_e2e_ms))
        rec->tpot_ms = (rec->lat_e2e_ms - rec->lat_ttft_ms) / (double)(rec->output_tokens - 1);
}

static void schedule_next(struct loop *l, struct req *r, uint64_t now);

/* The first request that could not connect, in words, for the run's "cannot connect" message. */
static void note_unreachable(struct loop *l, struct req *r)
{
    struct shared *sh = l->sh;
    if (atomic_load_explicit(&sh->unreach_seen, memory_order_relaxed))
        return;
    long os_errno = 0;
    curl_easy_getinfo(r->easy, CURLINFO_OS_ERRNO, &os_errno);
    pthread_mutex_lock(&sh->fatal_lock);
    if (!atomic_load(&sh->unreach_seen)) {
        if (r->rec.error == SB_ERRK_CONNECT && os_errno > 0)
            snprintf(sh->unreach_msg, sizeof(sh->unreach_msg), "%s", strerror((int)os_errno));
        else
            snprintf(sh->unreach_msg, sizeof(sh->unreach_msg), "%s", r->rec.error_msg);
        atomic_store(&sh->unreach_seen, true);
    }
    pthread_mutex_unlock(&sh->fatal_lock);
}

/*
 * A run whose every answer is a refusal (a 4xx other than 408 and 429: a wrong --model, path or
 * key, a body the server will never take) stops after SB_REFUSED_STOP of them with one line that
 * quotes the server, instead of sending the same refused request for the whole duration (a wrong
 * --model made 57,463 records of 404 in 5 s). One answer of any other kind, a success included,
 * turns the check off for the rest of the run: refusals among successes are the server's.
 */
static void note_refusal(struct loop *l, const struct req *r)
{
    struct shared *sh = l->sh;
    if (r->status <= 0 || atomic_load_explicit(&sh->not_only_refusals, memory_order_relaxed))
        return;
    const struct sb_record *rec = &r->rec;
    bool refused = !rec->ok && rec->error == SB_ERRK_HTTP && r->status >= 400 && r->status < 500 &&
                   r->status != 408 && r->status != 429;
    if (!refused) {
        atomic_store(&sh->not_only_refusals, true);
        return;
    }
    if (atomic_fetch_add(&sh->refusals, 1) + 1 != SB_REFUSED_STOP)
        return;
    pthread_mutex_lock(&sh->fatal_lock);
    snprintf(sh->refused_msg, sizeof(sh->refused_msg),
             "the server refused all of the first %d answered requests (HTTP %ld: %.200s); nothing "
             "was measured: check --model, the endpoint's path and the API key",
             SB_REFUSED_STOP, r->status, rec->error_msg);
    pthread_mutex_unlock(&sh->fatal_lock);
    atomic_store(&sh->refused_stop, true);
    stop_sending(sh, sh->nloops);
}

/* Records a finished (or cancelled) request and lets its user go on. */
static void finish_request(struct loop *l, struct req *r, CURLcode rc, bool cancelled)
{
    uint64_t now = sb_mono_ns();
    curl_multi_remove_handle(l->multi, r->easy);
    if (r->prev)
        r->prev->next = r->next;
    else
        l->inflight = r->next;
    if (r->next)
        r->next->prev = r->prev;
    l->ninflight--;
    atomic_store_explicit(&l->a_inflight, l->ninflight, memory_order_relaxed);
    classify(r, rc, now);
    struct sb_record *rec = &r->rec;
    /* An unverifiable certificate (unknown issuer, wrong host name, no CA bundle) fails every
       request the same way: stop at once instead of waiting out --connect-timeout-s. */
    if (!cancelled && (rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE))
        atomic_store(&l->sh->tls_refused, true);
    /* Every departure after the first is a re-send, libcurl's own (a dead reused connection,
       Curl_retry_request) or the engine's: marked and counted, since the server may have got the
       first one too. */
    if (r->sends > 1) {
        rec->retried = true;
        l->retried += r->sends - 1;
    }
    sb_record_derive_server(rec,
                            r->turn.slot >= 0 ? r->turn.est_tokens : l->p->workload->est_tokens);
    if (cancelled) {
        rec->ok = false;
        rec->error = SB_ERRK_CANCELLED;
        snprintf(rec->error_msg, sizeof(rec->error_msg), "still in flight when the run stopped");
    }
    struct shared *sh = l->sh;
    rec->ts =
        ((double)sh->anchor_real_ns + ((double)rec->t_sched_ns - (double)sh->anchor_mono_ns)) / 1e9;
    l->last_done_ns = now;
    if (rec->warmup)
        l->warmup++;
    if (rec->ok) {
        l->ok++;
        if (!rec->warmup) {
            if (!isnan(rec->lat_ttft_ms))
                sb_hist_add(&l->ttft, rec->lat_ttft_ms);
            if (!isnan(rec->lat_e2e_ms))
                sb_hist_add(&l->e2e, rec->lat_e2e_ms);
            if (rec->output_tokens > 0)
                l->output_tokens += rec->output_tokens;
        }
        if (!isnan(rec->lat_ttft_ms))
            atomic_fetch_add_explicit(&l->a_ttft_hist[progress_bucket(rec->lat_ttft_ms)], 1,
                                      memory_order_relaxed);
    } else {
        l->errors[rec->error]++;
        atomic_fetch_add_explicit(&l->a_errors, 1, memory_order_relaxed);
        if (!cancelled && !rec->t_first_byte_ns && r->status == 0)
            note_unreachable(l, r); /* no answer at all */
        if (l->p->cfg->verbose)
            fprintf(stderr, "sparkbench run: request %s failed: %s (rc %d): %s\n", rec->request_id,
                    sb_error_kind_name(rec->error), rec->rc, rec->error_msg);
    }
    if (!cancelled)
        note_refusal(l, r);
    sb_recstats_add(&l->rs, rec);
    maybe_fold(l, now);
    /* Client lag is counted where latency is reported: the measured requests (a start-up burst
       of warm-up or ramp sends waiting for their connections is not the measurement's). */
    if (!rec->warmup && rec->lat_sched_delay_ms > 1.0)
        l->late_sends++;
    if (!rec->warmup && rec->lat_sched_delay_ms > l->max_sched_delay_ms)
        l->max_sched_delay_ms = rec->lat_sched_delay_ms;
    atomic_fetch_add_explicit(&l->a_done, 1, memory_order_relaxed);

    sb_buf_reset(&l->line);
    struct sb_err err;
    if (sb_record_to_json(rec, &l->line) != 0) {
        set_fatal(l, "a metrics record exceeded the line limit");
    } else if (!l->fatal &&
               sb_jsonl_batch_add(&l->batch, l->line.data, l->line.len, now, &err) != 0) {
        set_fatal(l, err.msg);
    }
    if (r->turn.slot >= 0) {
        const struct sb_workload *w = l->p->workload;
        if (r->turn.want_reply && !r->is_sse && rec->ok &&
            sb_chat_reply_text(r->resp.data ? r->resp.data : "", r->resp.len, &r->reply) != 0)
            r->turn.want_reply = false;
        /* NULL: no reply text (synthetic history, or over the cap: the session ends) */
        const char *text = r->turn.want_reply ? (r->reply.data ? r->reply.data : "") : NULL;
        w->ops->done(w, &r->turn, rec, text, text ? r->reply.len : 0, now);
        r->turn.slot = -1;
        atomic_fetch_add(&l->sh->turns_ended, 1);
        if (atomic_load(&l->sh->sess_waiters) > 0) { /* a session may be ready: wake waiters */
            wake_waiting(l);
            wake_loops(l->sh, l->sh->nloops, l);
        }
    }
    schedule_next(l, r, now);
    r->next = l->free_reqs;
    r->prev = NULL;
    l->free_reqs = r;
}

/* Appends an intended time to the shared backlog (ol_lock held). -1 when out of memory. */
static int backlog_push(struct shared *sh, uint64_t t, long long k)
{
    if (sh->backlog_len == sh->backlog_cap) {
        size_t nc = sh->backlog_cap ? sh->backlog_cap * 2 : 1024;
        struct arrival *nb = malloc(nc * sizeof(*nb));
        if (!nb)
            return -1;
        for (size_t i = 0; i < sh->backlog_len; i++)
            nb[i] = sh->backlog[(sh->backlog_head + i) % sh->backlog_cap];
        free(sh->backlog);
        sh->backlog = nb;
        sh->backlog_cap = nc;
        sh->backlog_head = 0;
    }
    sh->backlog[(sh->backlog_head + sh->backlog_len) % sh->backlog_cap] = (struct arrival){t, k};
    sh->backlog_len++;
    return 0;
}

/* Starts an open-loop request that holds a slot of the shared limit; gives the slot back when
   it does not start. */
static void start_open(struct loop *l, uint64_t t, long long k)
{
    int rc = start_request(l, NULL, -1, t, k);
    if (rc == 0 || rc == 2) /* 2: deferred to when a session is ready, holding its slot */
        return;
    pthread_mutex_lock(&l->sh->ol_lock);
    l->sh->ol_inflight--;
    pthread_mutex_unlock(&l->sh->ol_lock);
}

/* An open-loop request ended: its slot goes to the oldest waiting arrival, if any. */
static void release_open_slot(struct loop *l)
{
    struct shared *sh = l->sh;
    bool sending = !l->stopping && !atomic_load(&sh->stop);
    pthread_mutex_lock(&sh->ol_lock);
    sh->ol_inflight--;
    uint64_t t = 0;
    long long k = -1;
    if (sending && sh->backlog_len > 0 && sh->ol_inflight < sh->ol_max) {
        t = sh->backlog[sh->backlog_head].t;
        k = sh->backlog[sh->backlog_head].k;
        sh->backlog_head = (sh->backlog_head + 1) % sh->backlog_cap;
        sh->backlog_len--;
        sh->ol_inflight++;
    }
    pthread_mutex_unlock(&sh->ol_lock);
    if (t)
        start_open(l, t, k);
}

/* A due arrival: a free slot of the shared limit, or a place in the shared backlog. */
static void arrive_open(struct loop *l, uint64_t t, long long k)
{
    struct shared *sh = l->sh;
    pthread_mutex_lock(&sh->ol_lock);
    bool now = sh->backlog_len == 0 && sh->ol_inflight < sh->ol_max;
    int rc = 0;
    if (now)
        sh->ol_inflight++;
    else /* no free slot: the arrival waits, and its wait counts in its latency */
        rc = backlog_push(sh, t, k);
    pthread_mutex_unlock(&sh->ol_lock);
    if (rc != 0)
        set_fatal(l, "out of memory queueing late arrivals");
    else if (now)
        start_open(l, t, k);
}

/* Operational time u (ns after t0 at the full rate) to real time after t0: the rate climbs
   linearly over the ramp T, so the expected arrivals by t are R t^2 / 2T until T, and t - T/2
   after; u = t^2 / 2T inverted is t = sqrt(2 T u). */
static uint64_t ramp_warp(uint64_t u, uint64_t ramp)
{
    if (!ramp)
        return u;
    if (u >= ramp / 2)
        return u + ramp / 2;
    return (uint64_t)llround(sqrt(2.0 * (double)ramp * (double)u));
}

/* This loop's next arrival of the one schedule: every loop draws every gap, and keeps the
   arrivals with index = its own mod the loop count (l->next_arrival_k gets the index). A
   workload with a schedule of its own (trace replay) gives the times itself. */
static uint64_t next_own_arrival(struct loop *l)
{
    struct shared *sh = l->sh;
    const struct sb_workload *w = l->p->workload;
    for (;;) {
        long long k = l->arrival_idx++;
        uint64_t u;
        if (w->ops->arrival_ns) {
            if ((u = w->ops->arrival_ns(w, k)) == UINT64_MAX)
                return 0;
        } else {
            u = l->op_ns;
            l->op_ns += sb_arrival_next_gap_ns(&l->arrival);
        }
        if (k % sh->nloops != l->index)
            continue;
        l->next_arrival_k = k;
        uint64_t t = sh->t0_ns + ramp_warp(u, sh->ramp_ns);
        /* Past the duration: no more arrivals for this loop (waiting for one would keep the run
           alive long after its end, nloops / rate seconds at worst). */
        return sh->t_end_ns && t >= sh->t_end_ns ? 0 : t;
    }
}

/*
 * A closed-loop user whose request could not connect waits before its next one: 50 ms, doubling
 * per consecutive failure up to 2 s, each drawn uniformly from [d/2, d] (from the seed, the user
 * and the failure count, so a run is repeatable) so that users do not retry in step. Without it a
 * refused port turns every user into a tight loop of connect attempts (tens of thousands a
 * second, each a record).
 */
static uint64_t connect_backoff_ns(const struct sb_run_config *cfg, struct user *u)
{
    const uint64_t base = 50000000ull, cap = 2000000000ull;
    int n = u->connect_fails < 30 ? ++u->connect_fails : u->connect_fails;
    uint64_t d = n > 6 ? cap : base << (n - 1);
    if (d > cap)
        d = cap;
    uint64_t x =
        sb_mix64((uint64_t)cfg->seed ^ sb_mix64((uint64_t)u->id * 1000003ull + (uint64_t)n));
    double frac = (double)(x >> 11) / 9007199254740992.0; /* [0, 1) */
    return d / 2 + (uint64_t)(frac * (double)(d / 2));
}

static void schedule_next(struct loop *l, struct req *r, uint64_t now)
{
    if (l->open_loop) {
        release_open_slot(l);
        return;
    }
    struct user *u = r->user;
    const struct sb_run_config *cfg = l->p->cfg;
    uint64_t backoff = 0;
    if (!r->rec.ok && r->rec.error != SB_ERRK_CANCELLED && !r->rec.t_first_byte_ns &&
        r->status == 0)
        backoff = connect_backoff_ns(cfg, u); /* nothing answered: refused, reset, empty */
    else
        u->connect_fails = 0;
    /* The next intended send is after the backoff: waiting it out is not client lag. */
    uint64_t t = now + (uint64_t)(cfg->think_ms * 1e6) + backoff;
    if (!may_start(l, t)) {
        u->done = true;
        return;
    }
    if (cfg->think_ms > 0 || backoff) {
        heap_push(l, t, u);
        arm_sched(l);
        return;
    }
    int rc = start_request(l, u, u->id, now, -1);
    if (rc == 1 || rc < 0)
        u->done = true;
}

/*
 * A request that died with a reused connection before any byte of the response came back never
 * reached the server (llama.cpp's cpp-httplib advertises keep-alive but closes after every
 * stream, and a request sent on the connection meanwhile is reset). libcurl 7.88 sends such a
 * request again on a fresh connection itself (Curl_retry_request), but only 5 times in the life of
 * an easy handle (the count is never reset between transfers), then fails the 6th with
 * "Connection died, tried 5 times before giving up"; and it does not retry a send that fails
 * after the request's first write. So the engine sends it once more on a fresh connection,
 * keeping its intended send time: the retry's cost is in its latency. true when it was re-added.
 */
static bool retry_fresh(struct loop *l, struct req *r, CURLcode rc)
{
    if (r->retried || l->stopping || atomic_load_explicit(&l->sh->stop, memory_order_relaxed))
        return false;
    if (rc != CURLE_SEND_ERROR && rc != CURLE_RECV_ERROR && rc != CURLE_GOT_NOTHING)
        return false;
    if (r->status != 0 || r->resp_bytes != 0 || r->rec.t_first_byte_ns || r->too_large)
        return false;
    long connects = -1; /* 0: this transfer made no connection of its own, it reused one */
    if (curl_easy_getinfo(r->easy, CURLINFO_NUM_CONNECTS, &connects) != CURLE_OK || connects != 0)
        return false;
    curl_multi_remove_handle(l->multi, r->easy);
    r->retried = r->rec.retried = true; /* counted with libcurl's re-sends, from r->sends */
    r->err_msg[0] = r->curl_err[0] = '\0';
    r->is_sse = false;
    sb_sse_reset(&r->sse);
    sb_buf_reset(&r->resp);
    curl_easy_setopt(r->easy, CURLOPT_FRESH_CONNECT, 1L);
    if (curl_multi_add_handle(l->multi, r->easy) != CURLM_OK)
        return false;
    return true;
}

static void check_multi_info(struct loop *l)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(l->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        struct req *r;
        CURLcode rc = msg->data.result;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        if (rc != CURLE_OK && retry_fresh(l, r, rc))
            continue;
        finish_request(l, r, rc, false);
    }
}

/* Intended sends that are due: closed-loop users after think time, open-loop arrivals. */
static void on_sched(struct loop *l)
{
    uint64_t now = sb_mono_ns();
    while (l->nheap && l->heap[0].t <= now) {
        struct pending pd = heap_pop(l);
        if (pd.wake) { /* its time came before a turn ended */
            l->nwaiting--;
            atomic_fetch_sub(&l->sh->sess_waiters, 1);
        }
        if (!pd.user) { /* an open-loop arrival that waited for a ready session */
            if (may_start(l, pd.t)) {
                start_open(l, pd.t, -1);
            } else {
                pthread_mutex_lock(&l->sh->ol_lock);
                l->sh->ol_inflight--;
                pthread_mutex_unlock(&l->sh->ol_lock);
            }
            continue;
        }
        if (!may_start(l, pd.t)) {
            pd.user->done = true;
            continue;
        }
        int rc = start_request(l, pd.user, pd.user->id, pd.t, -1);
        if (rc == 1 || rc < 0)
            pd.user->done = true;
    }
    while (l->open_loop && l->next_arrival_ns && l->next_arrival_ns <= now) {
        uint64_t t = l->next_arrival_ns;
        long long k = l->next_arrival_k;
        if (!may_start(l, t)) {
            l->next_arrival_ns = 0;
            break;
        }
        l->next_arrival_ns = next_own_arrival(l);
        arrive_open(l, t, k);
        if (l->fatal)
            break;
        /* In a burst (a trace's requests at one timestamp), let this one leave before the next
           body is built: libcurl sends on a kept-alive connection, or starts connecting, now. */
        if (l->next_arrival_ns && l->next_arrival_ns <= now)
            service_curl_timer(l);
    }
    arm_sched(l);
}

static void begin_stop(struct loop *l)
{
    if (l->stopping)
        return;
    l->stopping = true;
    if (l->open_loop) { /* the waiting arrivals are never sent: counted once, by this loop */
        pthread_mutex_lock(&l->sh->ol_lock);
        l->not_sent += (long long)l->sh->backlog_len;
        l->sh->backlog_len = 0;
        pthread_mutex_unlock(&l->sh->ol_lock);
    }
    for (size_t i = 0; i < l->nheap; i++) /* arrivals that waited for a ready session */
        l->not_sent += l->heap[i].user == NULL;
    l->nheap = 0;
    atomic_fetch_sub(&l->sh->sess_waiters, l->nwaiting);
    l->nwaiting = 0;
    l->next_arrival_ns = 0;
    arm_sched(l);
    l->drain_deadline_ns = sb_mono_ns() + (uint64_t)(l->p->cfg->drain_s * 1e9);
}

static void cancel_inflight(struct loop *l)
{
    while (l->inflight)
        finish_request(l, l->inflight, CURLE_OK, true);
}

static bool loop_finished(struct loop *l)
{
    /* An open loop may end with arrivals still in the shared backlog: they wait for a slot that
       only a loop with requests in flight can free, and that loop serves them. */
    if (l->ninflight > 0)
        return false;
    if (l->stopping || l->fatal)
        return true;
    if (l->nheap > 0)
        return false;
    if (l->open_loop)
        return l->next_arrival_ns == 0;
    for (long long i = 0; i < l->nusers; i++)
        if (!l->users[i].done)
            return false;
    return true;
}

static void *loop_main(void *arg)
{
    struct loop *l = arg;
    struct shared *sh = l->sh;
    const struct sb_run_config *cfg = l->p->cfg;
    /* First sends, all intended at t0. */
    if (l->open_loop) {
        l->next_arrival_ns = next_own_arrival(l);
        arm_sched(l);
    } else {
        /* With --ramp-up-s, user i of N starts at i x ramp / N. */
        for (long long i = 0; i < l->nusers; i++) {
            uint64_t t = sh->t0_ns;
            if (sh->ramp_ns)
                t += (uint64_t)((unsigned __int128)sh->ramp_ns * (uint64_t)l->users[i].id /
                                (uint64_t)cfg->concurrency);
            if (!may_start(l, t)) {
                l->users[i].done = true;
                continue;
            }
            heap_push(l, t, &l->users[i]);
        }
        arm_sched(l);
    }
    struct epoll_event events[64];
    while (!loop_finished(l)) {
        service_curl_timer(l);
        /* Idle time prepares upcoming arrivals (no wait while there are more to prepare). */
        bool more = prepare_one(l);
        int n = epoll_wait(l->epfd, events, 64, more ? 0 : 1000);
        if (n < 0 && errno != EINTR)
            break;
        /* Due sends first, then sockets ready to write (a request leaving), then the rest: a
           batch of streams' reads (up to 64) would otherwise stand between the schedule's timer
           and the requests it is due to send. */
        int front = 0;
        for (int pass = 0; pass < 2; pass++)
            for (int i = front; i < n; i++) {
                bool first = pass == 0 ? events[i].data.fd == l->sched_tfd
                                       : (events[i].events & EPOLLOUT) != 0;
                if (first) {
                    struct epoll_event e = events[front];
                    events[front++] = events[i];
                    events[i] = e;
                }
            }
        bool sent_now = false;
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == l->curl_tfd) {
                drain_fd(fd);
                l->curl_armed_ns = 0; /* fired; service_curl_timer acts if curl is due */
            } else if (fd == l->sched_tfd) {
                drain_fd(fd);
                on_sched(l);
                sent_now = true;
            } else if (fd == l->tick_tfd) {
                drain_fd(fd);
                struct sb_err err;
                uint64_t now = sb_mono_ns();
                if (!l->fatal && now - l->batch.last_flush_ns >= 1000000000ull &&
                    sb_jsonl_batch_flush(&l->batch, now, &err) != 0)
                    set_fatal(l, err.msg);
            } else if (fd == l->wake_fd) {
                drain_fd(fd);
                wake_waiting(l); /* another loop's turn ended, or a signal */
            } else {
                uint32_t ev = events[i].events;
                int action = (ev & EPOLLIN ? CURL_CSELECT_IN : 0) |
                             (ev & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
                             (ev & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0);
                curl_multi_socket_action(l->multi, fd, action, &l->still_running);
            }
            check_multi_info(l);
            /* Serving a batch of stream reads can take milliseconds. When a send falls due
               meanwhile, or one was just started (its connection's writability comes in the
               next epoll_wait), the rest of the batch is left to the next epoll_wait, which
               reports it again (level-triggered) after the schedule's timer and writable
               sockets: sends keep to their schedule (bench/trace.sh). */
            if (i + 1 < n && (sent_now || (l->sched_due_ns && sb_mono_ns() >= l->sched_due_ns)))
                break;
        }
        if (atomic_load_explicit(&sh->stop, memory_order_relaxed))
            begin_stop(l);
        if (l->stopping && l->ninflight > 0 &&
            (atomic_load(&sh->abort_drain) || sb_mono_ns() >= l->drain_deadline_ns))
            cancel_inflight(l);
        if (l->stopping && l->ninflight > 0) {
            /* Wake up for the drain deadline even when the network is quiet. */
            struct itimerspec its = {0};
            its.it_value.tv_sec = (time_t)(l->drain_deadline_ns / 1000000000ull);
            its.it_value.tv_nsec = (long)(l->drain_deadline_ns % 1000000000ull);
            timerfd_settime(l->sched_tfd, TFD_TIMER_ABSTIME, &its, NULL);
        }
    }
    struct sb_err err;
    if (!l->fatal && sb_jsonl_batch_flush(&l->batch, sb_mono_ns(), &err) != 0)
        set_fatal(l, err.msg);
    atomic_store(&l->a_finished, true);
    uint64_t one = 1;
    ssize_t w = write(sh->main_wake_fd, &one, sizeof(one)); /* the main thread joins it now */
    (void)w;
    return NULL;
}

static int loop_init(struct loop *l, struct shared *sh, int index, long long first_user,
                     long long nusers, struct sb_err *err)
{
    const struct sb_engine_params *p = sh->p;
    const struct sb_run_config *cfg = p->cfg;
    l->p = p;
    l->sh = sh;
    l->index = index;
    sb_hist_init(&l->ttft, 1e-3); /* milliseconds kept to the microsecond */
    sb_hist_init(&l->e2e, 1e-3);
    sb_recstats_init(&l->rs);
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->curl_tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    l->sched_tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    l->tick_tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    l->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    l->multi = curl_multi_init();
    if (l->epfd < 0 || l->curl_tfd < 0 || l->sched_tfd < 0 || l->tick_tfd < 0 || l->wake_fd < 0 ||
        !l->multi)
        return sb_err_errno(err, errno, "cannot create the event loop");
    int fds[] = {l->curl_tfd, l->sched_tfd, l->tick_tfd, l->wake_fd};
    for (size_t i = 0; i < SB_ARRAY_SIZE(fds); i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fds[i]};
        epoll_ctl(l->epfd, EPOLL_CTL_ADD, fds[i], &ev);
    }
    struct itimerspec tick = {{1, 0}, {1, 0}};
    timerfd_settime(l->tick_tfd, 0, &tick, NULL);
    curl_multi_setopt(l->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(l->multi, CURLMOPT_SOCKETDATA, l);
    curl_multi_setopt(l->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(l->multi, CURLMOPT_TIMERDATA, l);
    bool open = cfg->rate > 0 || p->workload->ops->arrival_ns;
    long conns = (long)(open ? cfg->max_inflight : nusers) + 16;
    curl_multi_setopt(l->multi, CURLMOPT_MAXCONNECTS, conns);
    sb_buf_init(&l->line, 1u << 20);
    sb_jsonl_batch_init(&l->batch, p->sink, sb_mono_ns());
    if (open && !(cfg->rate > 0)) {
        l->open_loop = true; /* the workload's own schedule */
    } else if (open) {
        l->open_loop = true;
        const struct sb_arrival_ops *ops =
            sb_arrival_find(cfg->arrival == SB_ARRIVAL_POISSON
                                ? "poisson"
                                : (cfg->arrival == SB_ARRIVAL_CONSTANT ? "constant" : "gamma"));
        /* Every loop draws the same schedule (same process, same seed) and keeps its share. */
        sb_arrival_init(&l->arrival, ops, cfg->rate, cfg->burstiness,
                        (uint64_t)cfg->seed ^ sb_mix64(77));
    } else {
        l->nusers = nusers;
        l->users = calloc((size_t)(nusers > 0 ? nusers : 1), sizeof(*l->users));
        if (!l->users)
            return sb_err_set(err, "out of memory");
        for (long long i = 0; i < nusers; i++)
            l->users[i].id = first_user + i;
    }
    return 0;
}

static void loop_release(struct loop *l)
{
    while (l->free_reqs) {
        struct req *r = l->free_reqs;
        l->free_reqs = r->next;
        req_free(r);
    }
    while (l->ready) {
        struct req *r = l->ready;
        l->ready = r->next;
        req_free(r);
    }
    if (l->multi)
        curl_multi_cleanup(l->multi);
    int fds[] = {l->epfd, l->curl_tfd, l->sched_tfd, l->tick_tfd, l->wake_fd};
    for (size_t i = 0; i < SB_ARRAY_SIZE(fds); i++)
        if (fds[i] > 0)
            close(fds[i]);
    sb_buf_release(&l->line);
    sb_jsonl_batch_release(&l->batch);
    free(l->users);
    free(l->heap);
    sb_hist_release(&l->ttft);
    sb_hist_release(&l->e2e);
    sb_recstats_release(&l->rs);
}

/* ---- progress and the driver ---- */

static void print_progress(struct loop *loops, int n, const struct shared *sh, bool final)
{
    long long done = 0, errs = 0, infl = 0;
    uint64_t hist[PROGRESS_BUCKETS] = {0}, total = 0;
    for (int i = 0; i < n; i++) {
        done += atomic_load_explicit(&loops[i].a_done, memory_order_relaxed);
        errs += atomic_load_explicit(&loops[i].a_errors, memory_order_relaxed);
        infl += atomic_load_explicit(&loops[i].a_inflight, memory_order_relaxed);
        for (int b = 0; b < PROGRESS_BUCKETS; b++) {
            uint32_t c = atomic_load_explicit(&loops[i].a_ttft_hist[b], memory_order_relaxed);
            hist[b] += c;
            total += c;
        }
    }
    double p50 = NAN;
    uint64_t acc = 0;
    for (int b = 0; b < PROGRESS_BUCKETS && total; b++) {
        acc += hist[b];
        if (acc * 2 >= total) {
            p50 = exp2((b + 0.5) / 8.0) / 1000.0;
            break;
        }
    }
    double elapsed = (double)(sb_mono_ns() - sh->t0_ns) / 1e9;
    char total_s[32] = "";
    if (sh->t_end_ns)
        snprintf(total_s, sizeof(total_s), "/%.0fs", (double)(sh->t_end_ns - sh->t0_ns) / 1e9);
    fprintf(
        stderr,
        "\r\033[K%6.1fs%s  in flight %lld  done %lld  errors %lld  %.1f req/s  p50 TTFT %.1f ms%s",
        elapsed, total_s, infl, done, errs, elapsed > 0 ? (double)done / elapsed : 0.0, p50,
        final ? "\n" : "");
}

/* Bytes of shared bodies kept, one per LoRA adapter. */
#define SB_LORA_BODIES_MAX (64u << 20)

/* The shared body of each adapter of the LoRA list, into sh->lora_bodies. 0 or -1 with err. */
static int build_lora_bodies(struct shared *sh, const struct sb_prompt *pr, struct sb_err *err)
{
    const struct sb_engine_params *p = sh->p;
    size_t n = p->lora_list->n;
    sh->lora_bodies = calloc(n, sizeof(*sh->lora_bodies));
    if (!sh->lora_bodies)
        return sb_err_set(err, "out of memory");
    for (size_t i = 0; i < n; i++) {
        sb_buf_init(&sh->lora_bodies[i], 1u << 30);
        if (build_body(p, pr, (long long)i, &sh->lora_bodies[i], err) != 0)
            return -1;
    }
    return 0;
}

/*
 * The end of the measured window: when sending stopped. That is the duration's end, or earlier
 * the signal or fatal error that stopped the run, or the last intended send when --requests ran
 * out (or, with no limit at all, the last send); what completes after it is the drain.
 */
static uint64_t measure_end(struct shared *sh, uint64_t last_send)
{
    bool used_up = sh->req_limit > 0 && atomic_load(&sh->issued) >= sh->req_limit;
    uint64_t end;
    if (used_up || !sh->t_end_ns)
        end = last_send; /* --requests: sending stopped with the last request that left */
    else /* the duration, or later while arrivals that waited for a slot were still leaving */
        end = last_send > sh->t_end_ns ? last_send : sh->t_end_ns;
    uint64_t stop = atomic_load(&sh->t_stop_ns);
    if (stop && stop < end)
        end = stop;
    if (end < sh->t_warm_end_ns)
        end = sh->t_warm_end_ns;
    return end;
}

/*
 * Starts every loop thread and waits until each has finished (a signal, a fatal error or nothing
 * answering stops them; *reason_io says which), then joins them. Returns how many threads ran
 * (fewer than n when one could not be created: the others carry the load).
 */
static int run_stage(struct shared *sh, struct loop *loops, int n, int sfd,
                     enum sb_exit_reason *reason_io)
{
    const struct sb_engine_params *p = sh->p;
    const struct sb_run_config *cfg = p->cfg;
    enum sb_exit_reason reason = *reason_io;
    int started = 0;
    for (int i = 0; i < n; i++) {
        atomic_store(&loops[i].a_finished, false);
        if (pthread_create(&loops[i].thread, NULL, loop_main, &loops[i]) != 0)
            break;
        started++;
    }
    int running = started;
    uint64_t next_progress = sb_mono_ns();
    while (running > 0) {
        struct pollfd pf[2] = {{.fd = sfd, .events = POLLIN},
                               {.fd = sh->main_wake_fd, .events = POLLIN}};
        int pn = poll(pf, 2, 250);
        struct signalfd_siginfo si;
        while (pn > 0 && read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
            int sig = (int)si.ssi_signo;
            if (reason == SB_EXIT_SIGINT || reason == SB_EXIT_SIGTERM)
                atomic_store(&sh->abort_drain, true); /* a second signal: stop waiting */
            else                                      /* the first signal says why the run ended */
                reason = sig == SIGINT ? SB_EXIT_SIGINT : SB_EXIT_SIGTERM;
            stop_sending(sh, started);
        }
        if (pn > 0 && (pf[1].revents & POLLIN))
            drain_fd(sh->main_wake_fd);
        /* Nothing ever answered for --connect-timeout-s (refused, or accepted and dropped):
           stop, say so once, record no more. */
        if (reason == SB_EXIT_COMPLETED && atomic_load(&sh->unreach_seen) &&
            !atomic_load(&sh->answered) &&
            (atomic_load(&sh->tls_refused) ||
             sb_mono_ns() >= sh->t0_ns + (uint64_t)(cfg->connect_timeout_s * 1e9))) {
            reason = SB_EXIT_UNREACHABLE;
            atomic_store(&sh->abort_drain, true);
            stop_sending(sh, started);
        }
        if (p->progress && sb_mono_ns() >= next_progress) {
            print_progress(loops, started, sh, false);
            next_progress = sb_mono_ns() + 250000000ull;
        }
        running = 0;
        for (int i = 0; i < started; i++)
            running += !atomic_load(&loops[i].a_finished);
    }
    /* Each loop thread is joined exactly once, after it has said it is finished. */
    for (int i = 0; i < started; i++)
        pthread_join(loops[i].thread, NULL);
    *reason_io = reason;
    return started;
}

/* gcc -fanalyzer: GCC 12 reports a leak of a string stored into a slot of a heap array at a
   variable index (it loses the pointer there); the array is freed by its owner (loops[i].users,
   freed with the loops) */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wanalyzer-malloc-leak"
/*
 * The --prime stage runs as a closed loop without a clock: the closed loop's users, or for an open
 * loop --max-inflight senders (its in-flight cap; the arrival schedule belongs to the measured
 * run), each sending first turns until the workload has handed them all out (next() returns 3).
 * No duration, ramp, warm-up or --requests limit applies; its records are phase "prime".
 */
static void prime_stage_begin(struct shared *sh, struct loop *loops, int n, uint64_t t0)
{
    const struct sb_run_config *cfg = sh->p->cfg;
    sh->t0_ns = t0;
    sh->t_warm_end_ns = sh->t_end_ns = 0;
    sh->req_limit = 0;
    sh->saved_ramp_ns = sh->ramp_ns;
    sh->ramp_ns = 0;
    long long total = cfg->rate > 0 ? (sh->ol_max > 0 ? sh->ol_max : 1) : 0;
    long long first = 0;
    for (int i = 0; i < n; i++) {
        struct loop *l = &loops[i];
        if (!l->open_loop)
            continue;
        long long nu = total / n + (i < total % n);
        l->open_loop = false;
        l->was_open_loop = true;
        l->nusers = nu;
        l->users = calloc((size_t)(nu > 0 ? nu : 1), sizeof(*l->users));
        if (!l->users)
            l->nusers = 0; /* this loop sends no prime turns; the others do */
        for (long long k = 0; k < l->nusers; k++)
            l->users[k].id = first + k;
        first += nu;
    }
}
#pragma GCC diagnostic pop

static void prime_stage_end(struct shared *sh, struct loop *loops, int n)
{
    sh->priming_done = true;
    sh->ramp_ns = sh->saved_ramp_ns;
    for (int i = 0; i < n; i++) {
        struct loop *l = &loops[i];
        if (l->was_open_loop) {
            free(l->users);
            l->users = NULL;
            l->nusers = 0;
            l->open_loop = true;
            l->was_open_loop = false;
        }
        for (long long k = 0; k < l->nusers; k++)
            l->users[k].done = false;
    }
}

int sb_engine_run(const struct sb_engine_params *p, struct sb_engine_result *res,
                  struct sb_err *err)
{
    const struct sb_run_config *cfg = p->cfg;
    memset(res, 0, sizeof(*res));
    sb_hist_init(&res->ttft_ms, 1e-3);
    sb_hist_init(&res->e2e_ms, 1e-3);
    sb_recstats_init(&res->rs);
    int nthreads = (int)cfg->threads;
    long long total_users = cfg->concurrency;
    if (cfg->rate <= 0 && !p->workload->ops->arrival_ns && total_users < nthreads)
        nthreads = (int)total_users;
    struct shared *sh = calloc(1, sizeof(*sh));
    struct loop *loops = calloc((size_t)nthreads, sizeof(*loops));
    struct sb_buf shared_body;
    sb_buf_init(&shared_body, 1u << 30);
    int rc = -1;
    if (!sh || !loops) {
        sb_err_set(err, "out of memory");
        goto out;
    }
    sh->p = p;
    sh->loops = loops;
    sh->nloops = nthreads;
    sh->main_wake_fd = -1;
    pthread_mutex_init(&sh->fatal_lock, NULL);
    pthread_mutex_init(&sh->ol_lock, NULL);
    sh->ol_max = cfg->max_inflight > 0 ? cfg->max_inflight : 1;
    sh->ramp_ns = (uint64_t)(cfg->ramp_up_s * 1e9);
    if (p->api_key && p->api_key[0])
        snprintf(sh->auth_header, sizeof(sh->auth_header), "Authorization: Bearer %s", p->api_key);
    /* Without a per-request nonce, and with the same prompt for everybody, one body serves all. */
    if (!cfg->nonce_per_user && !cfg->nonce_per_request && !p->workload->ops->next &&
        (!p->workload->ops->per_user_constant ||
         p->workload->ops->per_user_constant(p->workload))) {
        struct sb_prompt pr;
        sb_prompt_init(&pr);
        if (p->workload->ops->prompt(p->workload, 0, 0, &pr, err) != 0) {
            sb_prompt_release(&pr);
            goto out;
        }
        int brc = build_body(p, &pr, -1, &shared_body, err);
        memcpy(sh->shared_hash, pr.hash, sizeof(sh->shared_hash));
        /* The body names the adapter: one per adapter, unless a long list of long prompts
           would hold more than SB_LORA_BODIES_MAX of them (each request builds its own then). */
        bool per_request = false;
        if (brc == 0 && p->lora) {
            per_request = shared_body.len > SB_LORA_BODIES_MAX / p->lora_list->n;
            if (!per_request)
                brc = build_lora_bodies(sh, &pr, err);
        }
        sb_prompt_release(&pr);
        if (brc != 0)
            goto out;
        if (!per_request) {
            sh->shared_body = shared_body.data;
            sh->shared_body_len = shared_body.len;
        }
    }

    long long per = total_users / nthreads, extra = total_users % nthreads, first = 0;
    for (int i = 0; i < nthreads; i++) {
        long long nu = per + (i < extra);
        if (loop_init(&loops[i], sh, i, first, nu, err) != 0)
            goto out_loops;
        first += nu;
    }

    /* Signals are handled here, never in a loop thread: blocked everywhere and read from a
       signalfd, beside the eventfd on which finished loops say so. */
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    int sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    sh->main_wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (sfd < 0 || sh->main_wake_fd < 0) {
        sb_err_errno(err, errno, "cannot create the event loop");
        if (sfd >= 0)
            close(sfd);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        goto out_loops;
    }

    sh->anchor_mono_ns = sb_mono_ns();
    sh->anchor_real_ns = sb_real_ns();
    res->anchor_mono_ns = sh->anchor_mono_ns;
    res->anchor_real_ns = sh->anchor_real_ns;
    enum sb_exit_reason reason = SB_EXIT_COMPLETED;
    int started = 0;
    uint64_t t_first_ns = sb_mono_ns() + 1000000;
    if (cfg->prime && p->workload->ops->next) {
        /* --prime: every session's first turn, before the measured run and outside its clock */
        prime_stage_begin(sh, loops, nthreads, t_first_ns);
        started = run_stage(sh, loops, nthreads, sfd, &reason);
        prime_stage_end(sh, loops, nthreads);
        if (reason != SB_EXIT_COMPLETED || atomic_load(&sh->fatal))
            goto stages_done;
    }
    /* The measured run's clock: the duration, warm-up, ramp-up, the open loop's schedule and the
       --requests count start here, after the prime (t_first_ns otherwise). */
    sh->t0_ns = sh->priming_done ? sb_mono_ns() + 1000000 : t_first_ns;
    sh->t_warm_end_ns = sh->t0_ns + sh->ramp_ns + (uint64_t)(cfg->warmup_s * 1e9);
    sh->t_end_ns = cfg->duration_s > 0 ? sh->t0_ns + (uint64_t)(cfg->duration_s * 1e9) : 0;
    sh->req_limit = cfg->requests > 0 ? atomic_load(&sh->issued) + cfg->requests : 0;
    if (p->workload->ops->measure_begins)
        p->workload->ops->measure_begins(p->workload, sh->t_warm_end_ns);
    started = run_stage(sh, loops, nthreads, sfd, &reason);
stages_done:
    if (!sh->t_warm_end_ns) /* stopped during the prime: nothing was measured, an empty window */
        sh->t_warm_end_ns = sb_mono_ns();
    res->t_start_ns = t_first_ns;
    res->t_measure_start_ns = sh->t_warm_end_ns;
    close(sfd);
    if (p->progress)
        print_progress(loops, started, sh, true);
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    if (atomic_load(&sh->fatal)) {
        reason = SB_EXIT_FATAL;
        snprintf(res->fatal_msg, sizeof(res->fatal_msg), "%s", sh->fatal_msg);
    } else if (atomic_load(&sh->refused_stop) && reason == SB_EXIT_COMPLETED) {
        reason = SB_EXIT_REFUSED;
        snprintf(res->fatal_msg, sizeof(res->fatal_msg), "%s", sh->refused_msg);
    } else if (reason == SB_EXIT_UNREACHABLE && atomic_load(&sh->tls_refused)) {
        snprintf(res->fatal_msg, sizeof(res->fatal_msg),
                 "cannot verify the TLS certificate of %s: %s (--insecure skips the check); "
                 "nothing was measured",
                 p->url, sh->unreach_msg);
    } else if (reason == SB_EXIT_UNREACHABLE) {
        snprintf(res->fatal_msg, sizeof(res->fatal_msg),
                 "no answer from %s: %s for %g s; nothing was measured", p->url, sh->unreach_msg,
                 cfg->connect_timeout_s);
    } else if (reason == SB_EXIT_COMPLETED && sh->t_end_ns &&
               !(sh->req_limit > 0 && atomic_load(&sh->issued) >= sh->req_limit)) {
        reason = SB_EXIT_DURATION;
    }
    res->reason = reason;
    res->t_end_ns = sh->t0_ns;
    uint64_t last_send = 0;
    for (int i = 0; i < started; i++)
        if (loops[i].last_send_ns > last_send)
            last_send = loops[i].last_send_ns;
    res->t_measure_end_ns = measure_end(sh, last_send);
    for (int i = 0; i < started; i++) {
        struct loop *l = &loops[i];
        res->sent += l->sent;
        res->ok += l->ok;
        res->warmup += l->warmup;
        res->not_sent += l->not_sent;
        res->retried += l->retried;
        res->late_sends += l->late_sends;
        res->output_tokens += l->output_tokens;
        if (l->max_sched_delay_ms > res->max_sched_delay_ms)
            res->max_sched_delay_ms = l->max_sched_delay_ms;
        if (l->last_done_ns > res->t_end_ns)
            res->t_end_ns = l->last_done_ns;
        for (int k = 0; k < SB_ERRK_COUNT; k++)
            res->errors[k] += l->errors[k];
        sb_recstats_merge(&res->rs, &l->rs);
        if (sb_hist_merge(&res->ttft_ms, &l->ttft) != 0 ||
            sb_hist_merge(&res->e2e_ms, &l->e2e) != 0)
            res->rs.oom = true;
    }
    sb_tput_init(&res->tput, (double)sh->t_warm_end_ns / 1e9, (double)res->t_measure_end_ns / 1e9);
    sb_recstats_tput(&res->rs, &res->tput);
    rc = 0;
out_loops:
    for (int i = 0; i < nthreads; i++)
        loop_release(&loops[i]);
out:
    sb_buf_release(&shared_body);
    if (sh) {
        pthread_mutex_destroy(&sh->fatal_lock);
        pthread_mutex_destroy(&sh->ol_lock);
        if (sh->main_wake_fd >= 0)
            close(sh->main_wake_fd);
        free(sh->backlog);
        for (size_t i = 0; sh->lora_bodies && i < p->lora_list->n; i++)
            sb_buf_release(&sh->lora_bodies[i]);
        free(sh->lora_bodies);
    }
    free(sh);
    free(loops);
    return rc;
}

void sb_engine_result_release(struct sb_engine_result *res)
{
    sb_hist_release(&res->ttft_ms);
    sb_hist_release(&res->e2e_ms);
    sb_recstats_release(&res->rs);
}
