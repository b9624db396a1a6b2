/*
 * Integration tests for the mock's side of multi-turn KV reuse (issue 13): a chat's second turn
 * that carries the first turn's real reply reuses the prompt's and the reply's blocks (decode-block
 * caching, on by default, off with --no-cache-decode), by the byte estimate and with the real
 * tokenizer; the x-mock-tier-hits header names the tier that served each turn, and the modelled
 * fetch time grows from tier 0 to 1 to 2 as the reuse distance grows past each tier; usage's
 * cached_tokens agrees with the header on chat and completions, streamed or not; a LoRA adapter
 * named in a chat request's model is loaded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proc.h"

static const char *bin;
static const char *srcdir;
static char tok[600];

#define BT 4 /* --kv-block-tokens of every mock here: 16 bytes a block by the byte estimate */

struct hits {
    long t0, t1, t2, miss, cached;
};

/* The x-mock-tier-hits header of a raw header block. */
static struct hits tier_header(const char *headers)
{
    struct hits h = {-1, -1, -1, -1, -1};
    const char *p = strcasestr(headers, "x-mock-tier-hits: ");
    if (!p)
        fail_msg("no x-mock-tier-hits header in:\n%s", headers);
    if (sscanf(p + strlen("x-mock-tier-hits: "), "t0=%ld,t1=%ld,t2=%ld,miss=%ld,cached_tokens=%ld",
               &h.t0, &h.t1, &h.t2, &h.miss, &h.cached) != 5)
        fail_msg("malformed x-mock-tier-hits header: %.120s", p);
    return h;
}

struct reply {
    struct hits h;
    long prompt_tokens, completion_tokens, cached_tokens; /* usage */
    char *text;                                           /* the reply's text; owned */
};

/* The usage object of a response body: the JSON's, or a stream's last chunk that has one. */
static void read_body(const char *body, bool stream, bool chat, struct reply *out)
{
    cJSON *usage_owner = NULL;
    char *text = calloc(1, 1);
    size_t text_len = 0;
    if (!stream) {
        usage_owner = cJSON_Parse(body);
        assert_non_null(usage_owner);
        const cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(usage_owner, "choices"), 0);
        const cJSON *t = chat ? cJSON_GetObjectItem(cJSON_GetObjectItem(c0, "message"), "content")
                              : cJSON_GetObjectItem(c0, "text");
        assert_true(cJSON_IsString(t));
        free(text);
        text = strdup(t->valuestring);
    } else {
        char **ev;
        int n = sb_test_split_sse(body, &ev);
        for (int i = 0; i < n; i++) {
            if (strncmp(ev[i], "data: {", 7) != 0)
                continue;
            cJSON *j = cJSON_Parse(ev[i] + 6);
            assert_non_null(j);
            const cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
            const cJSON *t = chat ? cJSON_GetObjectItem(cJSON_GetObjectItem(c0, "delta"), "content")
                                  : cJSON_GetObjectItem(c0, "text");
            if (cJSON_IsString(t)) {
                size_t l = strlen(t->valuestring);
                text = realloc(text, text_len + l + 1);
                memcpy(text + text_len, t->valuestring, l + 1);
                text_len += l;
            }
            if (cJSON_IsObject(cJSON_GetObjectItem(j, "usage"))) {
                cJSON_Delete(usage_owner);
                usage_owner = j;
            } else {
                cJSON_Delete(j);
            }
        }
        sb_strv_free(ev, n);
    }
    const cJSON *u = cJSON_GetObjectItem(usage_owner, "usage");
    assert_true(cJSON_IsObject(u));
    out->prompt_tokens = (long)cJSON_GetObjectItem(u, "prompt_tokens")->valuedouble;
    out->completion_tokens = (long)cJSON_GetObjectItem(u, "completion_tokens")->valuedouble;
    const cJSON *ct =
        cJSON_GetObjectItem(cJSON_GetObjectItem(u, "prompt_tokens_details"), "cached_tokens");
    assert_true(cJSON_IsNumber(ct));
    out->cached_tokens = (long)ct->valuedouble;
    out->text = text;
    cJSON_Delete(usage_owner);
}

/* POSTs a chat (messages: n of role/content pairs) or completion and reads the reply. */
static void post(int port, const char *model, const char *const *msgs, int n, bool chat,
                 bool stream, int max_tokens, struct reply *out)
{
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "model", model ? model : "sparkbench-mock");
    if (chat) {
        cJSON *arr = cJSON_AddArrayToObject(b, "messages");
        for (int i = 0; i < n; i++) {
            cJSON *m = cJSON_CreateObject();
            cJSON_AddStringToObject(m, "role", msgs[2 * i]);
            cJSON_AddStringToObject(m, "content", msgs[2 * i + 1]);
            cJSON_AddItemToArray(arr, m);
        }
    } else {
        cJSON_AddStringToObject(b, "prompt", msgs[0]);
    }
    cJSON_AddNumberToObject(b, "max_tokens", max_tokens);
    if (stream) {
        cJSON_AddTrueToObject(b, "stream");
        cJSON_AddTrueToObject(cJSON_AddObjectToObject(b, "stream_options"), "include_usage");
    }
    char *body = cJSON_PrintUnformatted(b);
    cJSON_Delete(b);
    char url[128];
    struct sb_http_resp r;
    sb_http("POST",
            sb_url(url, sizeof(url), port, chat ? "/v1/chat/completions" : "/v1/completions"), body,
            &r);
    free(body);
    if (r.status != 200)
        fail_msg("status %ld: %s", r.status, r.body);
    out->h = tier_header(r.headers);
    read_body(r.body, stream, chat, out);
    sb_http_resp_release(&r);
}

/* One --log line's fields, by request number. The line is written when the mock frees the
   request, which may come a moment after the client read the last byte: wait for it (10 s). */
static cJSON *log_line(const char *path, int req_no)
{
    for (int tries = 0; tries < 1000; tries++) {
        char *text = sb_test_read_file(path);
        char key[40];
        snprintf(key, sizeof(key), "{\"req_no\":%d,", req_no);
        bool there = text && strstr(text, key);
        free(text);
        if (there)
            break;
        usleep(10000);
    }
    char *text = sb_test_read_file(path);
    assert_non_null(text);
    cJSON *found = NULL;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line && !found;
         line = strtok_r(NULL, "\n", &save)) {
        cJSON *j = cJSON_Parse(line);
        assert_non_null(j);
        if ((int)cJSON_GetObjectItem(j, "req_no")->valuedouble == req_no)
            found = j;
        else
            cJSON_Delete(j);
    }
    free(text);
    if (!found)
        fail_msg("no log line for request %d in %s", req_no, path);
    return found;
}

static long long num(const cJSON *j, const char *k)
{
    const cJSON *v = cJSON_GetObjectItem(j, k);
    if (!cJSON_IsNumber(v))
        fail_msg("log field '%s' is not a number", k);
    return (long long)v->valuedouble;
}

static const char sys_text[] = "you are a helpful storage assistant, answer briefly";
static const char user1[] = "tell me about the caches of a server that keeps many sessions";
static const char user2[] = "and what happens when they are evicted";

/* Without a tokenizer the chat prompt is the contents joined by "\n" and hashed 16 bytes a block;
   the reply ends by length, so its last token (the last word with its space) was never fed
   back: turn 2 reuses floor((prompt + reply - last word) / 16) blocks with decode caching, the
   prompt's floor(prompt / 16) without. */
static void test_turn2_reuses_reply_bytes(void **state)
{
    (void)state;
    for (int on = 1; on >= 0; on--) {
        const char *args[] = {"--tier0-blocks",
                              "1024",
                              "--kv-block-tokens",
                              "4",
                              "--decode-base-ms",
                              "1",
                              on ? "--cache-decode" : "--no-cache-decode",
                              NULL};
        struct sb_proc p;
        assert_int_equal(sb_proc_start_mock(&p, bin, args), 0);
        const char *t1[] = {"system", sys_text, "user", user1};
        struct reply r1;
        post(p.port, NULL, t1, 2, true, false, 12, &r1);
        assert_int_equal(r1.cached_tokens, 0);
        assert_int_equal(r1.h.t0 + r1.h.t1 + r1.h.t2, 0);
        const char *t2[] = {"system", sys_text, "user", user1, "assistant", r1.text, "user", user2};
        struct reply r2;
        post(p.port, NULL, t2, 4, true, true, 12, &r2);
        size_t prompt1 = strlen(sys_text) + 1 + strlen(user1) + 1;
        const char *last = strrchr(r1.text, ' ');
        size_t last_word = last ? strlen(last) : strlen(r1.text);
        long want = on ? (long)((prompt1 + strlen(r1.text) - last_word) / 16) * BT
                       : (long)(prompt1 / 16) * BT;
        print_message("decode caching %s: turn 1 %ld prompt + %ld completion tokens (%zu + %zu "
                      "bytes), turn 2 of %ld tokens: cached %ld (want %ld), header t0=%ld\n",
                      on ? "on" : "off", r1.prompt_tokens, r1.completion_tokens, prompt1,
                      strlen(r1.text), r2.prompt_tokens, r2.cached_tokens, want, r2.h.t0);
        assert_int_equal(r2.cached_tokens, want);
        assert_int_equal(r2.h.cached, want);
        assert_int_equal(r2.h.t0, want / BT);
        if (on)
            assert_true(r2.cached_tokens > (long)(prompt1 / 16) * BT); /* the reply's blocks */
        free(r1.text);
        free(r2.text);
        assert_int_equal(sb_proc_stop(&p, SIGTERM), 0);
    }
}

/* The tokenizer's count of text (no BOS), through `sparkbench tokenize`. */
static long count_tokens(const char *text)
{
    char *dir = sb_test_tmpdir("/tmp", "tokc");
    char path[600];
    snprintf(path, sizeof(path), "%s/reply.txt", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    const char *argv[] = {bin, "tokenize", "--tokenizer", tok, "--no-bos", path, NULL};
    char *out = NULL, *err = NULL;
    assert_int_equal(sb_proc_run(argv, &out, &err), 0);
    long n = strtol(out, NULL, 10);
    free(out);
    free(err);
    sb_test_rm_rf(dir);
    free(dir);
    return n;
}

/* With the tokenizer the blocks are Llama 3's template over token ids: turn 2 carrying the real
   reply reuses floor((turn-1 prompt + reply - 1) / 4) blocks (the last generated token's KV is
   never computed), at least turn 1's prompt + completion tokens to block granularity. */
static void test_turn2_reuses_reply_tokens(void **state)
{
    (void)state;
    const char *args[] = {
        "--tokenizer", tok, "--tier0-blocks", "1024", "--kv-block-tokens", "4", "--decode-base-ms",
        "1",           NULL};
    struct sb_proc p;
    assert_int_equal(sb_proc_start_mock(&p, bin, args), 0);
    const char *t1[] = {"system", sys_text, "user", user1};
    struct reply r1;
    post(p.port, NULL, t1, 2, true, true, 12, &r1);
    const char *t2[] = {"system", sys_text, "user", user1, "assistant", r1.text, "user", user2};
    struct reply r2;
    post(p.port, NULL, t2, 4, true, false, 12, &r2);
    long reply_ids = count_tokens(r1.text);
    long want = (r1.prompt_tokens + reply_ids - 1) / BT * BT;
    print_message("tokenizer: turn 1 %ld prompt + %ld reply tokens, turn 2 of %ld tokens: cached "
                  "%ld (want %ld)\n",
                  r1.prompt_tokens, reply_ids, r2.prompt_tokens, r2.cached_tokens, want);
    assert_int_equal(r2.cached_tokens, want);
    assert_true(r2.cached_tokens >= (r1.prompt_tokens + r1.completion_tokens - 1) / BT * BT);
    assert_int_equal(r2.h.t0 * BT, want);
    free(r1.text);
    free(r2.text);
    assert_int_equal(sb_proc_stop(&p, SIGTERM), 0);
}

/* usage.prompt_tokens_details.cached_tokens and the header agree on both APIs, streamed or not:
   the same prompt twice, the second served from tier 0 by whole blocks. */
static void test_cached_tokens_everywhere(void **state)
{
    (void)state;
    const char *args[] = {"--tier0-blocks",   "1024", "--kv-block-tokens", "4",
                          "--decode-base-ms", "1",    "--no-cache-decode", NULL};
    struct sb_proc p;
    assert_int_equal(sb_proc_start_mock(&p, bin, args), 0);
    for (int chat = 0; chat <= 1; chat++) {
        for (int stream = 0; stream <= 1; stream++) {
            char text[200];
            snprintf(text, sizeof(text), "case %d %d: %s %s", chat, stream, user1, user2);
            const char *msgs[] = {chat ? "user" : text, text};
            struct reply a, b;
            post(p.port, NULL, chat ? msgs : &msgs[1], 1, chat, stream, 3, &a);
            post(p.port, NULL, chat ? msgs : &msgs[1], 1, chat, stream, 3, &b);
            size_t bytes = strlen(text) + (chat ? 1 : 0);
            long want = (long)(bytes / 16) * BT;
            assert_int_equal(a.cached_tokens, 0);
            assert_int_equal(a.h.miss, (long)(bytes / 16));
            assert_int_equal(b.cached_tokens, want);
            assert_int_equal(b.h.cached, want);
            assert_int_equal(b.h.t0, (long)(bytes / 16));
            assert_int_equal(b.h.miss, 0);
            free(a.text);
            free(b.text);
        }
    }
    assert_int_equal(sb_proc_stop(&p, SIGTERM), 0);
}

/* A session's first prompt: 10 blocks (163 bytes), distinct per session. */
static void session_text(int s, char *out, size_t cap)
{
    snprintf(out, cap,
             "session %02d context: the quick brown fox jumps over the lazy dog, then the dog "
             "wakes up and chases the fox around the yard until both are tired %02d",
             s, s);
}

/*
 * Ten sessions' first turns, then second turns at three reuse distances: right after its first
 * turn (tier 0), three sessions back (out of tier 0's 24 blocks, still in tier 1's 48), and ten
 * back (only on disk). The header names the tier; the modelled fetch (--log fetch_ns) is 0 from
 * tier 0, at least tier1_fetch_us a block from tier 1 and tier2_fetch_us a block from tier 2.
 */
static void test_tier_hits_by_reuse_distance(void **state)
{
    (void)state;
    char *dir = sb_test_tmpdir("/tmp", "sess");
    char logp[600];
    snprintf(logp, sizeof(logp), "%s/mock.log", dir);
    const char *args[] = {"--tier0-blocks",
                          "24",
                          "--tier1-blocks",
                          "48",
                          "--tier2-blocks",
                          "1000",
                          "--tier2-path",
                          dir,
                          "--kv-block-bytes",
                          "4096",
                          "--no-disk-offload-filter",
                          "--kv-block-tokens",
                          "4",
                          "--tier1-fetch-us",
                          "20",
                          "--tier2-fetch-us",
                          "5000",
                          "--decode-base-ms",
                          "1",
                          "--log",
                          logp,
                          NULL};
    struct sb_proc p;
    assert_int_equal(sb_proc_start_mock(&p, bin, args), 0);
    enum { NS = 10 };
    char ctx[NS][200];
    struct reply first[NS];
    for (int s = 0; s < NS; s++) {
        session_text(s, ctx[s], sizeof(ctx[s]));
        const char *t1[] = {"user", ctx[s]};
        post(p.port, NULL, t1, 1, true, false, 4, &first[s]);
    }
    static const struct {
        int session;
        int tier; /* the tier that must serve the reused prefix */
    } probes[] = {{9, 0}, {6, 1}, {0, 2}};
    long long fetch[3] = {0}, ttft[3] = {0};
    struct hits h[3];
    for (int i = 0; i < 3; i++) {
        int s = probes[i].session;
        const char *t2[] = {"user", ctx[s], "assistant", first[s].text, "user", user2};
        struct reply r;
        post(p.port, NULL, t2, 3, true, true, 4, &r);
        h[i] = r.h;
        cJSON *line = log_line(logp, NS + i);
        fetch[i] = num(line, "fetch_ns");
        ttft[i] = num(line, "first_token_ns") - num(line, "recv_ns");
        assert_int_equal(num(line, "kv_hit_t0"), r.h.t0); /* the header is the admission's */
        assert_int_equal(num(line, "kv_hit_t1"), r.h.t1);
        assert_int_equal(num(line, "kv_hit_t2"), r.h.t2);
        assert_int_equal(r.cached_tokens, r.h.cached);
        print_message("session %d (tier %d expected): t0=%ld t1=%ld t2=%ld miss=%ld cached %ld, "
                      "fetch %.3f ms, server TTFT %.3f ms\n",
                      s, probes[i].tier, r.h.t0, r.h.t1, r.h.t2, r.h.miss, r.h.cached,
                      (double)fetch[i] / 1e6, (double)ttft[i] / 1e6);
        cJSON_Delete(line);
        free(r.text);
    }
    assert_true(h[0].t0 >= 8 && h[0].t1 == 0 && h[0].t2 == 0);
    assert_true(h[1].t1 >= 8 && h[1].t2 == 0);
    assert_true(h[2].t2 >= 8 && h[2].t1 == 0 && h[2].t0 == 0);
    assert_int_equal(fetch[0], 0);
    assert_true(fetch[1] >= h[1].t1 * 20000);
    assert_true(fetch[2] >= h[2].t2 * 5000000LL);
    assert_true(fetch[2] > fetch[1] && fetch[1] > fetch[0]);
    for (int s = 0; s < NS; s++)
        free(first[s].text);
    assert_int_equal(sb_proc_stop(&p, SIGTERM), 0);
    sb_test_rm_rf(dir);
    free(dir);
}

/* A LoRA adapter's name as a chat request's model loads it: cold first, warm after. */
static void test_lora_by_model_on_chat(void **state)
{
    (void)state;
    char *dir = sb_test_tmpdir("/tmp", "slora");
    char mods[700], logp[600];
    snprintf(mods, sizeof(mods), "finance=%s/finance.bin,legal=%s/legal.bin", dir, dir);
    snprintf(logp, sizeof(logp), "%s/mock.log", dir);
    const char *args[] = {"--lora-modules",
                          mods,
                          "--lora-bytes",
                          "1MiB",
                          "--lora-load-ms",
                          "1",
                          "--tier0-blocks",
                          "256",
                          "--kv-block-tokens",
                          "4",
                          "--log",
                          logp,
                          NULL};
    struct sb_proc p;
    assert_int_equal(sb_proc_start_mock(&p, bin, args), 0);
    const char *t1[] = {"user", user1};
    const char *models[] = {"legal", "legal", "sparkbench-mock"};
    for (int i = 0; i < 3; i++) {
        struct reply r;
        post(p.port, models[i], t1, 1, true, i == 1, 2, &r);
        free(r.text);
    }
    static const struct {
        int lora;
        bool cold;
    } want[] = {{1, true}, {1, false}, {-1, false}};
    for (int i = 0; i < 3; i++) {
        cJSON *line = log_line(logp, i);
        assert_int_equal(num(line, "lora"), want[i].lora);
        assert_int_equal(cJSON_IsTrue(cJSON_GetObjectItem(line, "lora_cold")), want[i].cold);
        if (want[i].cold)
            assert_true(num(line, "lora_load_ns") >= 1000000);
        cJSON_Delete(line);
    }
    assert_int_equal(sb_proc_stop(&p, SIGTERM), 0);
    sb_test_rm_rf(dir);
    free(dir);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s SPARKBENCH_BINARY SOURCE_DIR\n", argv[0]);
        return 2;
    }
    bin = argv[1];
    srcdir = argv[2];
    snprintf(tok, sizeof(tok), "%s/tests/.cache/tokenizers/llama3_1/tokenizer.json", srcdir);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_turn2_reuses_reply_bytes),
        cmocka_unit_test(test_turn2_reuses_reply_tokens),
        cmocka_unit_test(test_cached_tokens_everywhere),
        cmocka_unit_test(test_tier_hits_by_reuse_distance),
        cmocka_unit_test(test_lora_by_model_on_chat),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
