/*
 * Unit tests for sb/openai.h. Request bodies are parsed back with cJSON and compared member by
 * member; prompts round-trip byte for byte. Chunk and response fixtures follow
 * shared/reference/server-facts.md (vLLM, TensorRT-LLM, Dynamo, llama.cpp, the mock); every one
 * goes through the public call, the scanner alone and cJSON alone, and the two decoders must
 * agree field for field (or the scanner must decline exactly the fixtures marked so).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <cmocka.h>

#include <cjson/cJSON.h>

#include "sb/buf.h"
#include "sb/openai.h"
#include "sb/util.h"

/* ---- URLs ---- */

static void test_api_from_url(void **state)
{
    (void)state;
    static const struct {
        const char *url;
        int rc;
        enum sb_api api;
    } cases[] = {
        {"http://127.0.0.1:8000/v1/completions", 0, SB_API_COMPLETIONS},
        {"http://spark:8355/v1/chat/completions", 0, SB_API_CHAT},
        {"https://gw.example/openai/v1/chat/completions?api-version=2", 0, SB_API_CHAT},
        {"http://h/v1/completions#frag", 0, SB_API_COMPLETIONS},
        {"http://h/v1/completions?x=/v1/chat/completions", 0, SB_API_COMPLETIONS},
        {"/v1/completions", 0, SB_API_COMPLETIONS},
        {"http://h/v1/completions/", -1, 0},
        {"http://h:9000", -1, 0},
        {"http://h:9000/", -1, 0},
        {"http://h/v1/models", -1, 0},
        {"http://h/v1/chat", -1, 0},
        {"http://h/xv1/completions", -1, 0},
        {"http://h/x?next=/v1/completions", -1, 0},
        {"http://h/V1/Completions", -1, 0},
        {"", -1, 0},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        enum sb_api api = (enum sb_api)77;
        int rc = sb_openai_api_from_url(cases[i].url, &api);
        if (rc != cases[i].rc)
            fail_msg("'%s': rc %d, want %d", cases[i].url, rc, cases[i].rc);
        if (rc == 0)
            assert_int_equal(api, cases[i].api);
        else
            assert_int_equal(api, 77); /* untouched */
    }
    enum sb_api api;
    assert_int_equal(sb_openai_api_from_url(NULL, &api), -1);
}

/* ---- request bodies ---- */

/* Fails when an object (at any depth) holds a key twice: cJSON keeps both. */
static void assert_no_duplicate_keys(const cJSON *o)
{
    for (const cJSON *a = o ? o->child : NULL; a; a = a->next) {
        if (cJSON_IsObject(o))
            for (const cJSON *b = a->next; b; b = b->next)
                if (strcmp(a->string, b->string) == 0)
                    fail_msg("key '%s' appears twice", a->string);
        assert_no_duplicate_keys(a);
    }
}

/* Parses body and checks it equals want (a JSON text) exactly: same members, same values. */
static void assert_body_is(const struct sb_buf *b, const char *want, const char *name)
{
    const char *end = NULL;
    cJSON *got = cJSON_ParseWithLengthOpts(b->data, b->len, &end, false);
    if (!got || end != b->data + b->len)
        fail_msg("%s: body is not one JSON value: %s", name, b->data);
    cJSON *w = cJSON_Parse(want);
    assert_non_null(w);
    assert_no_duplicate_keys(got);
    if (!cJSON_Compare(got, w, true) || cJSON_GetArraySize(got) != cJSON_GetArraySize(w))
        fail_msg("%s:\n got  %s\n want %s", name, b->data, want);
    cJSON_Delete(got);
    cJSON_Delete(w);
}

#define PROMPT(s) .prompt = (s), .prompt_len = sizeof(s) - 1

static void test_build_request_fields(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        struct sb_request_params p;
        const char *want;  /* the body, as JSON */
        const char *exact; /* when set, the body byte for byte */
    } cases[] = {
        {"completions, every field",
         {.api = SB_API_COMPLETIONS,
          .model = "m",
          PROMPT("Hello"),
          .max_tokens = 16,
          .temperature = 0.7,
          .top_p = 0.9,
          .stream = true,
          .include_usage = true},
         "{\"model\":\"m\",\"prompt\":\"Hello\",\"max_tokens\":16,\"temperature\":0.7,"
         "\"top_p\":0.9,\"stream\":true,\"stream_options\":{\"include_usage\":true,"
         "\"continuous_usage_stats\":false}}",
         "{\"model\":\"m\",\"prompt\":\"Hello\",\"max_tokens\":16,\"temperature\":0.7,"
         "\"top_p\":0.9,\"stream\":true,\"stream_options\":{\"include_usage\":true,"
         "\"continuous_usage_stats\":false}}"},
        {"chat, every field",
         {.api = SB_API_CHAT,
          .model = "meta-llama/Llama-3.1-8B-Instruct",
          PROMPT("Hi"),
          .max_tokens = 128,
          .temperature = 0,
          .top_p = 1,
          .stream = true,
          .include_usage = true},
         "{\"model\":\"meta-llama/Llama-3.1-8B-Instruct\",\"messages\":[{\"role\":\"user\","
         "\"content\":\"Hi\"}],\"max_tokens\":128,\"temperature\":0,\"top_p\":1,\"stream\":true,"
         "\"stream_options\":{\"include_usage\":true,\"continuous_usage_stats\":false}}",
         NULL},
        {"optional fields omitted; stream false drops stream_options",
         {.api = SB_API_COMPLETIONS,
          PROMPT("x"),
          .max_tokens = -1,
          .temperature = NAN,
          .top_p = NAN,
          .stream = false,
          .include_usage = true},
         "{\"prompt\":\"x\",\"stream\":false}",
         "{\"prompt\":\"x\",\"stream\":false}"},
        {"chat, NAN temperature omitted, top_p kept, no usage asked",
         {.api = SB_API_CHAT,
          PROMPT("x"),
          .max_tokens = 0,
          .temperature = NAN,
          .top_p = 0.95,
          .stream = true},
         "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":0,\"top_p\":0.95,"
         "\"stream\":true}",
         NULL},
        {"awkward double keeps its value",
         {.api = SB_API_COMPLETIONS,
          PROMPT(""),
          .max_tokens = -1,
          .temperature = 0.1 + 0.2,
          .top_p = NAN},
         "{\"prompt\":\"\",\"temperature\":0.30000000000000004,\"stream\":false}",
         NULL},
        {"extra adds ignore_eos, min_tokens, lora_request",
         {.api = SB_API_COMPLETIONS,
          .model = "base",
          PROMPT("p"),
          .max_tokens = 8,
          .temperature = NAN,
          .top_p = NAN,
          .stream = true,
          .include_usage = true,
          .extra_json = "{\"ignore_eos\":true,\"min_tokens\":8,\"lora_request\":{\"lora_name\":"
                        "\"sql\",\"lora_int_id\":1,\"lora_path\":\"/loras/sql\"}}"},
         "{\"model\":\"base\",\"prompt\":\"p\",\"max_tokens\":8,\"stream\":true,"
         "\"stream_options\":{\"include_usage\":true,\"continuous_usage_stats\":false},"
         "\"ignore_eos\":true,\"min_tokens\":8,\"lora_request\":{\"lora_name\":\"sql\","
         "\"lora_int_id\":1,\"lora_path\":\"/loras/sql\"}}",
         NULL},
        {"extra overrides max_tokens (no duplicate)",
         {.api = SB_API_CHAT,
          PROMPT("p"),
          .max_tokens = 16,
          .temperature = NAN,
          .top_p = NAN,
          .extra_json = "{\"max_tokens\": 5}"},
         "{\"messages\":[{\"role\":\"user\",\"content\":\"p\"}],\"stream\":false,"
         "\"max_tokens\":5}",
         NULL},
        {"extra overrides model, temperature, stream_options, messages",
         {.api = SB_API_CHAT,
          .model = "base",
          PROMPT("p"),
          .max_tokens = -1,
          .temperature = 1,
          .top_p = NAN,
          .stream = true,
          .include_usage = true,
          .extra_json = "{\"model\":\"adapter-1\",\"temperature\":null,\"stream_options\":"
                        "{\"include_usage\":false},\"messages\":[]}"},
         "{\"stream\":true,\"model\":\"adapter-1\",\"temperature\":null,"
         "\"stream_options\":{\"include_usage\":false},\"messages\":[]}",
         NULL},
        {"extra overrides stream and prompt",
         {.api = SB_API_COMPLETIONS,
          PROMPT("p"),
          .max_tokens = -1,
          .temperature = NAN,
          .top_p = NAN,
          .extra_json = "{\"stream\":true,\"prompt\":[1,2,3]}"},
         "{\"stream\":true,\"prompt\":[1,2,3]}",
         "{\"stream\":true,\"prompt\":[1,2,3]}"},
        {"extra {} adds nothing",
         {.api = SB_API_COMPLETIONS,
          PROMPT("p"),
          .max_tokens = -1,
          .temperature = NAN,
          .top_p = NAN,
          .extra_json = " { } "},
         "{\"prompt\":\"p\",\"stream\":false}",
         "{\"prompt\":\"p\",\"stream\":false}"},
        {"extra all whitespace adds nothing",
         {.api = SB_API_COMPLETIONS,
          PROMPT("p"),
          .max_tokens = -1,
          .temperature = NAN,
          .top_p = NAN,
          .extra_json = " \n\t"},
         "{\"prompt\":\"p\",\"stream\":false}",
         NULL},
        {"extra with whitespace and escaped key",
         {.api = SB_API_COMPLETIONS,
          PROMPT("p"),
          .max_tokens = 3,
          .temperature = NAN,
          .top_p = NAN,
          .extra_json = "\n{ \"seed\" : 7 ,\n \"max_\\u0074okens\" : 9 }\n"},
         "{\"prompt\":\"p\",\"stream\":false,\"seed\":7,\"max_tokens\":9}",
         NULL},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        struct sb_buf b;
        struct sb_err err;
        sb_buf_init(&b, 1 << 20);
        if (sb_openai_build_request(&cases[i].p, &b, &err) != 0)
            fail_msg("%s: %s", cases[i].name, err.msg);
        assert_body_is(&b, cases[i].want, cases[i].name);
        if (cases[i].exact)
            assert_string_equal(b.data, cases[i].exact);
        sb_buf_release(&b);
    }
}

static void test_build_request_errors(void **state)
{
    (void)state;
    static const struct {
        const char *extra;
        double temperature;
        const char *prompt;
        size_t prompt_len;
        const char *msg_has;
    } cases[] = {
        {"[1]", NAN, "p", 1, "must be a JSON object"},
        {"\"ignore_eos\"", NAN, "p", 1, "must be a JSON object"},
        {"1", NAN, "p", 1, "must be a JSON object"},
        {"{bad", NAN, "p", 1, "invalid JSON at byte 1 of extra_json"},
        {"{\"a\":1,}", NAN, "p", 1, "invalid JSON"},
        {"{\"a\":01}", NAN, "p", 1, "invalid JSON"},
        {"{\"a\":1} x", NAN, "p", 1, "data after the object"},
        {"{\"a\":\"x\x01\"}", NAN, "p", 1, "control character"},
        {"{\"a\":[1,2}", NAN, "p", 1, "invalid JSON"},
        {"{\"a\":1,\"a\":2}", NAN, "p", 1, "duplicate key 'a'"},
        {"{\"ignore_eos\":true,\"ignore\\u005feos\":false}", NAN, "p", 1,
         "duplicate key 'ignore_eos'"},
        {"[", NAN, "p", 1, "invalid JSON"},
        {"{\"s\":\"\\ud83d x\"}", NAN, "p", 1, "unpaired surrogate"},
        {"{\"s\":\"\\ude00\"}", NAN, "p", 1, "unpaired surrogate"},
        {NULL, INFINITY, "p", 1, "finite"},
        {NULL, NAN, NULL, 3, "prompt is NULL"},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        struct sb_request_params p = {.api = SB_API_COMPLETIONS,
                                      .prompt = cases[i].prompt,
                                      .prompt_len = cases[i].prompt_len,
                                      .max_tokens = 4,
                                      .temperature = cases[i].temperature,
                                      .top_p = NAN,
                                      .extra_json = cases[i].extra};
        struct sb_buf b;
        struct sb_err err = {0};
        sb_buf_init(&b, 1 << 20);
        assert_int_equal(sb_buf_adds(&b, "kept"), 0);
        assert_int_equal(sb_openai_build_request(&p, &b, &err), -1);
        if (!strstr(err.msg, cases[i].msg_has))
            fail_msg("case %zu: message '%s' lacks '%s'", i, err.msg, cases[i].msg_has);
        assert_int_equal(b.len, 4);
        assert_string_equal(b.data, "kept");
        sb_buf_release(&b);
    }
}

/* A body that does not fit the buffer's limit fails and leaves the buffer as it was. */
static void test_build_request_limit(void **state)
{
    (void)state;
    static const size_t limits[] = {8, 40, 60};
    for (size_t i = 0; i < SB_ARRAY_SIZE(limits); i++) {
        struct sb_request_params p = {.api = SB_API_CHAT,
                                      PROMPT("a prompt long enough to overflow the limit"),
                                      .max_tokens = -1,
                                      .temperature = NAN,
                                      .top_p = NAN,
                                      .extra_json = "{\"seed\":1}"};
        struct sb_buf b;
        struct sb_err err = {0};
        sb_buf_init(&b, limits[i]);
        assert_int_equal(sb_buf_adds(&b, "ab"), 0);
        assert_int_equal(sb_openai_build_request(&p, &b, &err), -1);
        assert_non_null(strstr(err.msg, "limit"));
        assert_int_equal(b.len, 2);
        assert_string_equal(b.data, "ab");
        sb_buf_release(&b);
    }
}

/* extra_json values are copied as written: big integers keep every digit. */
static void test_build_request_extra_verbatim(void **state)
{
    (void)state;
    static const char *const pieces[] = {
        "\"seed\":12345678901234567890",
        "\"scale\":1.0e+2",
        "\"name\":\"caf\\u00e9 \\\"q\\\"\"",
        "\"nested\":{\"a\":[true,false,null,{\"b\":-0.5}]}",
        "\"stop\":[\"\\u0000\"]",
    };
    struct sb_request_params p = {
        .api = SB_API_COMPLETIONS,
        PROMPT("p"),
        .max_tokens = -1,
        .temperature = NAN,
        .top_p = NAN,
        .extra_json = "{\"seed\":12345678901234567890, \"scale\":1.0e+2,\"name\":\"caf\\u00e9 "
                      "\\\"q\\\"\",\"nested\":{\"a\":[true,false,null,{\"b\":-0.5}]},"
                      "\"stop\":[\"\\u0000\"]}",
    };
    struct sb_buf b;
    struct sb_err err;
    sb_buf_init(&b, 1 << 16);
    assert_int_equal(sb_openai_build_request(&p, &b, &err), 0);
    for (size_t i = 0; i < SB_ARRAY_SIZE(pieces); i++)
        if (!strstr(b.data, pieces[i]))
            fail_msg("'%s' not in %s", pieces[i], b.data);
    cJSON *j = cJSON_Parse(b.data);
    assert_true(cJSON_IsObject(j));
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(j, "name")->valuestring,
                        "caf\xc3\xa9 \"q\"");
    cJSON_Delete(j);
    sb_buf_release(&b);
}

/* The prompt as a server reads it back: bytes equal to what was sent. */
static void test_build_request_prompt_roundtrip(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        size_t len;
    } prompts[] = {
#define P(x) {x, sizeof(x) - 1}
        P("say \"hi\" and 'bye'"),
        P("back\\slash \\\\ \\n not a newline"),
        P("line1\nline2\r\nline3\r"),
        P("tab\there\tand\fform\bfeed"),
        P("ctl \x01\x02\x1b\x1f del \x7f end"),
        P("caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x98\x80 \xe2\x80\xa8 sep"),
        P("</script><!-- {\"json\": [1, 2]} -->"),
        P(""),
#undef P
    };
    static const enum sb_api apis[] = {SB_API_COMPLETIONS, SB_API_CHAT};
    for (size_t i = 0; i < SB_ARRAY_SIZE(prompts); i++) {
        for (size_t a = 0; a < SB_ARRAY_SIZE(apis); a++) {
            struct sb_request_params p = {.api = apis[a],
                                          .model = "m\"odel",
                                          .prompt = prompts[i].s,
                                          .prompt_len = prompts[i].len,
                                          .max_tokens = 1,
                                          .temperature = NAN,
                                          .top_p = NAN};
            struct sb_buf b;
            struct sb_err err;
            sb_buf_init(&b, 1 << 16);
            assert_int_equal(sb_openai_build_request(&p, &b, &err), 0);
            cJSON *j = cJSON_ParseWithLength(b.data, b.len);
            assert_non_null(j);
            const cJSON *got =
                apis[a] == SB_API_CHAT
                    ? cJSON_GetObjectItemCaseSensitive(
                          cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "messages"), 0),
                          "content")
                    : cJSON_GetObjectItemCaseSensitive(j, "prompt");
            assert_true(cJSON_IsString(got));
            if (strlen(got->valuestring) != prompts[i].len ||
                memcmp(got->valuestring, prompts[i].s, prompts[i].len) != 0)
                fail_msg("prompt %zu api %zu did not round-trip: %s", i, a, b.data);
            assert_string_equal(cJSON_GetObjectItemCaseSensitive(j, "model")->valuestring,
                                "m\"odel");
            cJSON_Delete(j);
            sb_buf_release(&b);
        }
    }
    /* A NUL byte cannot pass through cJSON's C strings; check its escape in the text instead. */
    struct sb_request_params p = {.api = SB_API_COMPLETIONS,
                                  .prompt = "a\0b",
                                  .prompt_len = 3,
                                  .max_tokens = -1,
                                  .temperature = NAN,
                                  .top_p = NAN};
    struct sb_buf b;
    struct sb_err err;
    sb_buf_init(&b, 1024);
    assert_int_equal(sb_openai_build_request(&p, &b, &err), 0);
    assert_string_equal(b.data, "{\"prompt\":\"a\\u0000b\",\"stream\":false}");
    sb_buf_release(&b);
}

/* ---- chunk and response fixtures ---- */

struct fixture {
    const char *name;
    const char *json;
    size_t len;          /* 0: strlen(json) */
    bool response;       /* public call is sb_openai_decode_response() */
    int rc;              /* of the public call */
    bool scan_declines;  /* the scanner hands this one to cJSON */
    const char *err_has; /* rc -1: part of the message */
    bool is_error;
    const char *error_msg, *error_type;
    int error_code;
    bool role_only;
    size_t content_len, reasoning_len;
    const char *finish;
    bool has_choices, has_usage;
    long long pt, ct, cached;
    uint64_t recv_ns, first_ns;
    bool has_timings;
    long long t_pn, t_cn, t_dn;
    double t_pms, t_dms;
};

#define USAGE(p, c, k) .has_usage = true, .pt = (p), .ct = (c), .cached = (k)
#define ERR(m, t, c)   .is_error = true, .error_msg = (m), .error_type = (t), .error_code = (c)
#define TIMINGS(pn, pms, dn, dms, cn)                                                              \
    .has_timings = true, .t_pn = (pn), .t_pms = (pms), .t_dn = (dn), .t_dms = (dms), .t_cn = (cn)
#define INVALID(why) .rc = -1, .scan_declines = true, .err_has = (why)

#define CHAT_HEAD                                                                                  \
    "{\"id\":\"chatcmpl-9f\",\"object\":\"chat.completion.chunk\",\"created\":1732000000,"         \
    "\"model\":\"meta-llama/Llama-3.1-8B-Instruct\","
#define CHAT_CHUNK(delta, finish)                                                                  \
    CHAT_HEAD "\"choices\":[{\"index\":0,\"delta\":" delta ",\"logprobs\":null,"                   \
              "\"finish_reason\":" finish "}]}"
#define X10(s)  s s s s s s s s s s
#define A254    X10(X10("a")) X10(X10("a")) X10("aaaaa") "aaaa"
#define OPEN70  X10("[[[[[[[")
#define CLOSE70 X10("]]]]]]]")

static const struct fixture fixtures[] = {
    /* vLLM chat stream */
    {.name = "vllm chat role chunk",
     .json = CHAT_CHUNK("{\"role\":\"assistant\",\"content\":\"\"}", "null"),
     .role_only = true,
     .has_choices = true},
    {.name = "chat role chunk without content",
     .json = CHAT_CHUNK("{\"role\":\"assistant\"}", "null"),
     .role_only = true,
     .has_choices = true},
    {.name = "vllm chat content chunk",
     .json = CHAT_CHUNK("{\"content\":\" Hello\"}", "null"),
     .content_len = 6,
     .has_choices = true},
    {.name = "vllm last content chunk with finish_reason",
     .json = CHAT_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"!\"},\"logprobs\":null,"
                       "\"finish_reason\":\"stop\",\"stop_reason\":null}]}",
     .content_len = 1,
     .finish = "stop",
     .has_choices = true},
    {.name = "finish chunk with empty delta",
     .json = CHAT_CHUNK("{}", "\"length\""),
     .finish = "length",
     .has_choices = true},
    {.name = "vllm usage chunk, choices []",
     .json = CHAT_HEAD "\"choices\":[],\"usage\":{\"prompt_tokens\":1024,\"total_tokens\":1152,"
                       "\"completion_tokens\":128,\"prompt_tokens_details\":{\"cached_tokens\":"
                       "896}}}",
     USAGE(1024, 128, 896)},
    {.name = "content chunk with usage null",
     .json = CHAT_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"abc\"},"
                       "\"finish_reason\":null}],\"usage\":null}",
     .content_len = 3,
     .has_choices = true},
    {.name = "empty content string is not a token",
     .json = CHAT_CHUNK("{\"content\":\"\"}", "null"),
     .has_choices = true},
    {.name = "content null",
     .json = CHAT_CHUNK("{\"content\":null,\"tool_calls\":[]}", "null"),
     .has_choices = true},
    {.name = "continuous usage stats: usage on a content chunk",
     .json = CHAT_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ok\"},"
                       "\"finish_reason\":null}],\"usage\":{\"prompt_tokens\":12,"
                       "\"total_tokens\":15,\"completion_tokens\":3}}",
     .content_len = 2,
     .has_choices = true,
     USAGE(12, 3, -1)},
    /* TensorRT-LLM */
    {.name = "trtllm completions chunk with null fields",
     .json = "{\"id\":\"cmpl-3\",\"object\":\"text_completion\",\"created\":1732000000,\"model\":"
             "\"m\",\"choices\":[{\"index\":0,\"text\":\" the\",\"logprobs\":null,"
             "\"context_logits\":null,\"finish_reason\":null,\"stop_reason\":null,"
             "\"disaggregated_params\":null,\"avg_decoded_tokens_per_iter\":null}],"
             "\"usage\":null}",
     .content_len = 4,
     .has_choices = true},
    {.name = "trtllm usage chunk on /v1/completions says chat.completion.chunk",
     .json = "{\"id\":\"cmpl-3\",\"object\":\"chat.completion.chunk\",\"created\":1732000000,"
             "\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"total_tokens\":17,"
             "\"completion_tokens\":10,\"prompt_tokens_details\":null}}",
     USAGE(7, 10, -1)},
    {.name = "trtllm first chat chunk with a trailing space",
     .json = CHAT_CHUNK("{\"role\":\"assistant\",\"content\":\"\"}", "null") " ",
     .role_only = true,
     .has_choices = true},
    {.name = "whitespace on both sides",
     .json = " \r\n\t" CHAT_CHUNK("{\"content\":\"x\"}", "null") "\r\n \t",
     .content_len = 1,
     .has_choices = true},
    /* errors */
    {.name = "nested error",
     .json = "{\"error\":{\"message\":\"The model `gpt-x` does not exist.\",\"type\":"
             "\"NotFoundError\",\"param\":\"model\",\"code\":404}}",
     ERR("The model `gpt-x` does not exist.", "NotFoundError", 404)},
    {.name = "flat trtllm error, code as a string",
     .json = "{\"object\":\"error\",\"message\":\"max_tokens must be at least 1, got 0.\","
             "\"type\":\"BadRequestError\",\"param\":null,\"code\":\"400\"}",
     ERR("max_tokens must be at least 1, got 0.", "BadRequestError", 400)},
    {.name = "nested error, code a word",
     .json = "{\"error\":{\"message\":\"Incorrect API key provided\",\"type\":"
             "\"invalid_request_error\",\"param\":null,\"code\":\"invalid_api_key\"}}",
     ERR("Incorrect API key provided", "invalid_request_error", -1)},
    {.name = "dynamo bare error",
     .json = "{\"message\":\"Model not found\",\"type\":\"Not Found\",\"code\":404}",
     ERR("Model not found", "Not Found", 404)},
    {.name = "error as a string",
     .json = "{\"error\":\"Stream ended before generation completed\"}",
     ERR("Stream ended before generation completed", "", -1)},
    {.name = "flat error with escapes in object and message",
     .json = "{\"object\":\"e\\u0072ror\",\"message\":\"bad \\\"x\\\"\\n\",\"type\":\"T\","
             "\"code\":500.0}",
     ERR("bad \"x\"\n", "T", 500)},
    {.name = "error code not an integer",
     .json = "{\"error\":{\"message\":\"m\",\"type\":\"t\",\"code\":400.5}}",
     ERR("m", "t", -1)},
    {.name = "error code out of int range",
     .json = "{\"error\":{\"message\":\"m\",\"code\":1e12}}",
     ERR("m", "", -1)},
    {.name = "error null in a normal chunk",
     .json = CHAT_HEAD "\"error\":null,\"choices\":[{\"delta\":{\"content\":\"a\"}}]}",
     .content_len = 1,
     .has_choices = true},
    {.name = "message with choices is not an error",
     .json = "{\"message\":\"hi\",\"choices\":[{\"text\":\"a\"}]}",
     .content_len = 1,
     .has_choices = true},
    {.name = "error message cut at a character boundary (raw)",
     .json = "{\"error\":{\"message\":\"" A254 "\xc3\xa9tail\"}}",
     ERR(A254, "", -1)},
    {.name = "error message cut at a character boundary (escaped)",
     .json = "{\"error\":{\"message\":\"" A254 "\\u00e9tail\"}}",
     ERR(A254, "", -1)},
    /* the mock and llama.cpp */
    {.name = "mock first token with x_mock stamps",
     .json = "{\"id\":\"mock-1\",\"object\":\"chat.completion.chunk\",\"created\":1732000000,"
             "\"model\":\"mock\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},"
             "\"logprobs\":null,\"finish_reason\":null}],\"x_mock\":{\"recv_ns\":"
             "123456789012345,\"first_token_ns\":123456801234567}}",
     .content_len = 2,
     .has_choices = true,
     .recv_ns = 123456789012345ull,
     .first_ns = 123456801234567ull},
    {.name = "mock completions token with usage null and x_mock",
     .json = "{\"id\":\"mock-2\",\"object\":\"text_completion\",\"created\":1,\"model\":\"mock\","
             "\"choices\":[{\"index\":0,\"text\":\" word\",\"logprobs\":null,\"finish_reason\":"
             "null,\"stop_reason\":null}],\"usage\":null,\"x_mock\":{\"recv_ns\":5,"
             "\"first_token_ns\":9007199254740992}}",
     .content_len = 5,
     .has_choices = true,
     .recv_ns = 5,
     .first_ns = 9007199254740992ull},
    {.name = "llama.cpp last chunk with timings",
     .json = "{\"choices\":[{\"finish_reason\":\"stop\",\"index\":0,\"delta\":{}}],\"created\":"
             "1732000000,\"id\":\"chatcmpl-x\",\"model\":\"gpt-3.5-turbo\",\"system_fingerprint\":"
             "\"b4500-abc\",\"object\":\"chat.completion.chunk\",\"usage\":{\"completion_tokens\":"
             "16,\"prompt_tokens\":9,\"total_tokens\":25},\"timings\":{\"prompt_n\":9,"
             "\"prompt_ms\":12.5,\"prompt_per_token_ms\":1.38,\"prompt_per_second\":720.0,"
             "\"predicted_n\":16,\"predicted_ms\":250.25,\"predicted_per_token_ms\":15.6,"
             "\"predicted_per_second\":63.9,\"cache_n\":3}}",
     .finish = "stop",
     .has_choices = true,
     USAGE(9, 16, -1),
     TIMINGS(9, 12.5, 16, 250.25, 3)},
    {.name = "timings with missing fields",
     .json = "{\"choices\":[],\"timings\":{\"prompt_n\":4,\"predicted_ms\":1e1}}",
     TIMINGS(4, NAN, -1, 10.0, -1)},
    /* reasoning models */
    {.name = "vllm reasoning delta",
     .json = CHAT_CHUNK("{\"reasoning\":\"Let me think\"}", "null"),
     .reasoning_len = 12,
     .has_choices = true},
    {.name = "role with reasoning_content is not role-only",
     .json = CHAT_CHUNK("{\"role\":\"assistant\",\"reasoning_content\":\"Hm\"}", "null"),
     .reasoning_len = 2,
     .has_choices = true},
    /* text encodings */
    {.name = "escaped unicode content",
     .json = CHAT_CHUNK("{\"content\":\"caf\\u00e9\"}", "null"),
     .content_len = 5,
     .has_choices = true},
    {.name = "raw UTF-8 content",
     .json = CHAT_CHUNK("{\"content\":\"caf\xc3\xa9\"}", "null"),
     .content_len = 5,
     .has_choices = true},
    {.name = "surrogate pair and euro sign",
     .json = CHAT_CHUNK("{\"content\":\"\\ud83d\\ude00\\u20AC!\"}", "null"),
     .content_len = 8,
     .has_choices = true},
    {.name = "short escapes",
     .json = "{\"choices\":[{\"text\":\"a\\\"b\\\\c\\nd\\/\\t\\b\\f\\r\"}]}",
     .content_len = 12,
     .has_choices = true},
    /* odd but valid shapes */
    {.name = "duplicate keys: the first one counts",
     .json = "{\"choices\":[{\"delta\":{\"content\":\"ab\",\"content\":\"abcd\"}}],\"choices\":[],"
             "\"usage\":null,\"usage\":{\"prompt_tokens\":1}}",
     .content_len = 2,
     .has_choices = true},
    {.name = "pretty-printed",
     .json = "{\n  \"choices\" : [\n    { \"text\" : \"xyz\" , \"finish_reason\" : \"length\" }\n"
             "  ] ,\n  \"usage\" : { \"prompt_tokens\" : 3 , \"completion_tokens\" : 0 }\n}\n",
     .content_len = 3,
     .finish = "length",
     .has_choices = true,
     USAGE(3, 0, -1)},
    {.name = "only choices[0] counts",
     .json = "{\"choices\":[null,{\"text\":\"abc\"}]}",
     .has_choices = true},
    {.name = "choices an object, usage a number",
     .json = "{\"choices\":{\"text\":\"abc\"},\"usage\":5}"},
    {.name = "counts must be non-negative integers",
     .json = "{\"choices\":[],\"usage\":{\"prompt_tokens\":1.2e1,\"completion_tokens\":2.5,"
             "\"prompt_tokens_details\":{\"cached_tokens\":-3}}}",
     USAGE(12, -1, -1)},
    {.name = "long finish_reason is cut to 23 bytes",
     .json =
         "{\"choices\":[{\"text\":\"\",\"finish_reason\":\"a_very_long_finish_reason_value\"}]}",
     .finish = "a_very_long_finish_reas",
     .has_choices = true},
    {.name = "empty object", .json = "{}"},
    /* valid input the scanner leaves to cJSON */
    {.name = "\\u0000 in content",
     .json = "{\"choices\":[{\"text\":\"a\\u0000b\"}]}",
     .scan_declines = true,
     .content_len = 1, /* cJSON's C string ends at the NUL */
     .has_choices = true},
    {.name = "escaped member name",
     .json = "{\"cho\\u0069ces\":[{\"text\":\"abc\"}]}",
     .scan_declines = true,
     .content_len = 3,
     .has_choices = true},
    {.name = "nesting deeper than the scanner goes",
     .json = "{\"x\":" OPEN70 CLOSE70 ",\"choices\":[{\"text\":\"ok\"}]}",
     .scan_declines = true,
     .content_len = 2,
     .has_choices = true},
    {.name = "number longer than 63 characters",
     .json = "{\"x\":" X10("1234567") ",\"choices\":[{\"text\":\"ok\"}]}",
     .scan_declines = true,
     .content_len = 2,
     .has_choices = true},
    {.name = "raw control character in a string",
     .json = "{\"choices\":[{\"text\":\"a\x01"
             "b\"}]}",
     .scan_declines = true,
     .content_len = 3,
     .has_choices = true},
    {.name = "byte order mark", .json = "\xef\xbb\xbf{\"choices\":[]}", .scan_declines = true},
    {.name = "form feed before the object", .json = "\f{\"choices\":[]}", .scan_declines = true},
    /* not JSON objects */
    {.name = "truncated",
     .json = "{\"choices\":[{\"delta\":{\"content\":\"x\"}}]",
     INVALID("invalid JSON")},
    {.name = "sse framing left in",
     .json = "data: {\"choices\":[]}",
     INVALID("invalid JSON at byte 0")},
    {.name = "empty payload", .json = "", INVALID("invalid JSON")},
    {.name = "array", .json = "[1]", INVALID("chunk is not a JSON object: '[1]'")},
    {.name = "string", .json = "\"hello\"", INVALID("not a JSON object")},
    {.name = "garbage after the object",
     .json = "{\"a\":1} x",
     INVALID("unexpected data at byte 8")},
    {.name = "two objects", .json = "{}{}", INVALID("unexpected data")},
    {.name = "trailing comma", .json = "{\"a\":1,}", INVALID("invalid JSON")},
    {.name = "unpaired surrogate",
     .json = "{\"choices\":[{\"text\":\"\\ud800\"}]}",
     INVALID("invalid JSON")},
    {.name = "NUL after the object", .json = "{}\0", .len = 3, INVALID("unexpected data")},
    /* whole responses */
    {.name = "vllm non-stream chat response",
     .json = "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"m\","
             "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":"
             "\"Hello there\",\"reasoning_content\":null,\"tool_calls\":[]},\"logprobs\":null,"
             "\"finish_reason\":\"length\",\"stop_reason\":null}],\"usage\":{\"prompt_tokens\":5,"
             "\"total_tokens\":7,\"completion_tokens\":2,\"prompt_tokens_details\":null},"
             "\"prompt_logprobs\":null}",
     .response = true,
     .content_len = 11,
     .finish = "length",
     .has_choices = true,
     USAGE(5, 2, -1)},
    {.name = "non-stream completions response",
     .json = "{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"model\":\"m\","
             "\"choices\":[{\"index\":0,\"text\":\" Paris.\",\"logprobs\":null,\"finish_reason\":"
             "\"stop\",\"stop_reason\":null,\"prompt_logprobs\":null}],\"usage\":{"
             "\"prompt_tokens\":6,\"total_tokens\":9,\"completion_tokens\":3,"
             "\"prompt_tokens_details\":{\"cached_tokens\":0}}}",
     .response = true,
     .content_len = 7,
     .finish = "stop",
     .has_choices = true,
     USAGE(6, 3, 0)},
    {.name = "mock non-stream chat response",
     .json = "{\"id\":\"mock-3\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"mock\","
             "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"a b c\"},"
             "\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":4,"
             "\"total_tokens\":7,\"completion_tokens\":3,\"prompt_tokens_details\":{"
             "\"cached_tokens\":0}},\"x_mock\":{\"recv_ns\":1000,\"first_token_ns\":2000}}",
     .response = true,
     .content_len = 5,
     .finish = "stop",
     .has_choices = true,
     USAGE(4, 3, 0),
     .recv_ns = 1000,
     .first_ns = 2000},
    {.name = "non-stream reasoning response",
     .json = "{\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":\"42\",\"reasoning\":"
             "\"think\"},\"finish_reason\":\"stop\"}]}",
     .response = true,
     .content_len = 2,
     .reasoning_len = 5,
     .finish = "stop",
     .has_choices = true},
    {.name = "response body that is not JSON",
     .json = "<html>502</html>",
     .response = true,
     INVALID("invalid JSON at byte 0 of response body '<html>502</html>'")},
};

static bool same_double(double a, double b)
{
    return (isnan(a) && isnan(b)) || a == b;
}

/* Field-by-field comparison; reports the first difference. */
static const char *chunk_diff(const struct sb_chunk *a, const struct sb_chunk *b)
{
#define SAME(f)                                                                                    \
    do {                                                                                           \
        if (a->f != b->f)                                                                          \
            return #f;                                                                             \
    } while (0)
    SAME(is_error);
    SAME(error_code);
    SAME(role_only);
    SAME(content_len);
    SAME(reasoning_len);
    SAME(has_choices);
    SAME(has_usage);
    SAME(prompt_tokens);
    SAME(completion_tokens);
    SAME(cached_tokens);
    SAME(server_recv_ns);
    SAME(server_first_token_ns);
    SAME(has_timings);
    SAME(timings_prompt_n);
    SAME(timings_cache_n);
    SAME(timings_predicted_n);
#undef SAME
    if (strcmp(a->error_msg, b->error_msg) != 0)
        return "error_msg";
    if (strcmp(a->error_type, b->error_type) != 0)
        return "error_type";
    if (strcmp(a->finish_reason, b->finish_reason) != 0)
        return "finish_reason";
    if (!same_double(a->timings_prompt_ms, b->timings_prompt_ms))
        return "timings_prompt_ms";
    if (!same_double(a->timings_predicted_ms, b->timings_predicted_ms))
        return "timings_predicted_ms";
    return NULL;
}

/* The chunk a fixture describes, with the "absent" values filled in. */
static void expected_chunk(const struct fixture *f, struct sb_chunk *c)
{
    sb_chunk_init(c);
    c->is_error = f->is_error;
    if (f->is_error) {
        snprintf(c->error_msg, sizeof(c->error_msg), "%s", f->error_msg);
        snprintf(c->error_type, sizeof(c->error_type), "%s", f->error_type);
        c->error_code = f->error_code;
    }
    c->role_only = f->role_only;
    c->content_len = f->content_len;
    c->reasoning_len = f->reasoning_len;
    snprintf(c->finish_reason, sizeof(c->finish_reason), "%s", f->finish ? f->finish : "");
    c->has_choices = f->has_choices;
    c->has_usage = f->has_usage;
    if (f->has_usage) {
        c->prompt_tokens = f->pt;
        c->completion_tokens = f->ct;
        c->cached_tokens = f->cached;
    }
    c->server_recv_ns = f->recv_ns;
    c->server_first_token_ns = f->first_ns;
    c->has_timings = f->has_timings;
    if (f->has_timings) {
        c->timings_prompt_n = f->t_pn;
        c->timings_cache_n = f->t_cn;
        c->timings_predicted_n = f->t_dn;
        c->timings_prompt_ms = f->t_pms;
        c->timings_predicted_ms = f->t_dms;
    }
}

static void test_decode_fixtures(void **state)
{
    (void)state;
    for (size_t i = 0; i < SB_ARRAY_SIZE(fixtures); i++) {
        const struct fixture *f = &fixtures[i];
        size_t len = f->len ? f->len : strlen(f->json);
        struct sb_chunk want, pub, scan, cj;
        struct sb_err err = {0}, serr = {0}, cerr = {0};
        expected_chunk(f, &want);
        /* garbage first: every call must initialise its output */
        memset(&pub, 0xa5, sizeof(pub));
        memset(&scan, 0xa5, sizeof(scan));
        memset(&cj, 0xa5, sizeof(cj));

        int rc = f->response ? sb_openai_decode_response(f->json, len, &pub, &err)
                             : sb_openai_decode_chunk(f->json, len, &pub, &err);
        int src = sb_openai_decode_chunk_with(SB_OPENAI_DECODER_SCAN, f->json, len, &scan, &serr);
        int crc = sb_openai_decode_chunk_with(SB_OPENAI_DECODER_CJSON, f->json, len, &cj, &cerr);

        if (rc != f->rc)
            fail_msg("%s: rc %d, want %d (%s)", f->name, rc, f->rc, err.msg);
        if (crc != f->rc)
            fail_msg("%s: cJSON rc %d, want %d (%s)", f->name, crc, f->rc, cerr.msg);
        if (f->scan_declines && src != SB_OPENAI_DECLINED)
            fail_msg("%s: the scanner did not decline (rc %d)", f->name, src);
        if (!f->scan_declines && src != 0)
            fail_msg("%s: the scanner declined: %s", f->name, serr.msg);
        if (rc != 0) {
            if (!strstr(err.msg, f->err_has))
                fail_msg("%s: message '%s' lacks '%s'", f->name, err.msg, f->err_has);
            continue;
        }
        const char *d;
        if ((d = chunk_diff(&pub, &want)) != NULL)
            fail_msg("%s: field %s differs from the expectation", f->name, d);
        if ((d = chunk_diff(&cj, &want)) != NULL)
            fail_msg("%s: cJSON's %s differs from the expectation", f->name, d);
        if (src == 0 && (d = chunk_diff(&scan, &cj)) != NULL)
            fail_msg("%s: the decoders disagree on %s", f->name, d);
    }
}

/* Error messages quote at most the first 80 bytes of the payload. */
static void test_decode_error_quote(void **state)
{
    (void)state;
    char payload[300];
    memset(payload, 'x', sizeof(payload));
    struct sb_chunk c;
    struct sb_err err;
    assert_int_equal(sb_openai_decode_chunk(payload, sizeof(payload), &c, &err), -1);
    char want[100];
    memset(want, 'x', 80);
    snprintf(want + 80, sizeof(want) - 80, "...'");
    assert_non_null(strstr(err.msg, want));
    assert_null(strstr(err.msg,
                       "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                       "xxxxxxxxx")); /* 81 */
    /* control characters are not copied into the message */
    assert_int_equal(sb_openai_decode_chunk("{\n\x01", 3, &c, &err), -1);
    assert_null(strchr(err.msg, '\n'));
    assert_null(strchr(err.msg, '\x01'));
    /* NULL with length 0 is an empty payload, not a crash */
    assert_int_equal(sb_openai_decode_chunk(NULL, 0, &c, &err), -1);
}

/*
 * Stamps above 2^53 ns (a server up for more than 104 days): the scanner keeps every digit, the
 * cJSON path rounds through a double — the one place the decoders may differ.
 */
static void test_decode_large_stamps(void **state)
{
    (void)state;
    const char *j = "{\"x_mock\":{\"recv_ns\":18446744073709551615,\"first_token_ns\":"
                    "9007199254740993}}";
    struct sb_chunk c;
    struct sb_err err;
    assert_int_equal(sb_openai_decode_chunk(j, strlen(j), &c, &err), 0);
    assert_true(c.server_recv_ns == UINT64_MAX);
    assert_true(c.server_first_token_ns == 9007199254740993ull);
    assert_int_equal(sb_openai_decode_chunk_with(SB_OPENAI_DECODER_CJSON, j, strlen(j), &c, &err),
                     0);
    assert_true(c.server_recv_ns == 0); /* 2^64 after rounding: out of range */
    assert_true(c.server_first_token_ns == 9007199254740992ull);
}

/* ---- error bodies ---- */

static void test_error_message(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        size_t cap;
        const char *want;
    } cases[] = {
        {"{\"error\":{\"message\":\"The model `gpt-x` does not exist.\",\"type\":"
         "\"NotFoundError\",\"param\":null,\"code\":404}}",
         256, "The model `gpt-x` does not exist. (NotFoundError, code 404)"},
        {"{\"object\":\"error\",\"message\":\"max_tokens must be at least 1\",\"type\":"
         "\"BadRequestError\",\"param\":null,\"code\":\"400\"}",
         256, "max_tokens must be at least 1 (BadRequestError, code 400)"},
        {"{\"message\":\"Model not found\",\"type\":\"Not Found\",\"code\":404}", 256,
         "Model not found (Not Found, code 404)"},
        {"{\"error\":\"overloaded\"}", 256, "overloaded"},
        {"{\"error\":{\"message\":\"line1\\nline2\\ttab\",\"code\":500}}", 256,
         "line1 line2 tab (code 500)"},
        {"{\"error\":{\"message\":\"no type\",\"type\":\"T\"}}", 256, "no type (T)"},
        {"{\"error\":{\"type\":\"server_error\",\"code\":503}}", 256, "server_error, code 503"},
        {"{\"detail\":\"Not Found\"}", 256, "Not Found"},
        {"{\"detail\":[{\"loc\":[\"body\",\"max_tokens\"],\"msg\":\"Input should be a valid "
         "integer\",\"type\":\"int_parsing\"}]}",
         256, "Input should be a valid integer"},
        {"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad "
         "Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
         256,
         "<html> <head><title>502 Bad Gateway</title></head> <body> <center><h1>502 Bad "
         "Gateway</h1></center> <hr><center>nginx</center> </body> </html>"},
        {"upstream connect error or disconnect/reset before headers\n", 256,
         "upstream connect error or disconnect/reset before headers"},
        {"a\x01\x02"
         "b\x7f"
         "c",
         256, "a b c"},
        {"{\"foo\":1}", 256, "{\"foo\":1}"},
        {"{\"error\":", 256, "{\"error\":"},
        {"", 256, "empty body"},
        {" \r\n", 256, "empty body"},
        {"{\"error\":\"overloaded\"}", 6, "overl"},
        {"plain text", 5, "plai"},
        {"caf\xc3\xa9", 5, "caf"},
        {"{\"error\":\"caf\xc3\xa9\"}", 5, "caf"},
        {"anything", 1, ""},
    };
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        char msg[256];
        memset(msg, 'Z', sizeof(msg));
        sb_openai_error_message(cases[i].body, strlen(cases[i].body), msg, cases[i].cap);
        if (strcmp(msg, cases[i].want) != 0)
            fail_msg("case %zu: got '%s', want '%s'", i, msg, cases[i].want);
    }
    char msg[256];
    sb_openai_error_message(NULL, 0, msg, sizeof(msg));
    assert_string_equal(msg, "empty body");
    /* a long non-JSON body: 200 bytes at most */
    char body[1000];
    memset(body, 'x', sizeof(body));
    sb_openai_error_message(body, sizeof(body), msg, sizeof(msg));
    assert_int_equal(strlen(msg), 200);
    sb_openai_error_message("x", 1, NULL, 0); /* no output buffer: nothing happens */
}

/*
 * Dynamo's frontend puts NvExtResponse {"timing": TimingInfo} on the chunk that carries the
 * finish_reason when the request asked "nvext":{"extra_fields":["timing"]} (ai-dynamo/dynamo
 * lib/llm/src/protocols/openai/nvext.rs NvExtResponse, lib/llm/src/request_tracker.rs TimingInfo:
 * request_received_ms, prefill_wait_time_ms, prefill_time_ms, ttft_ms, total_time_ms, kv_hit_rate,
 * router_queue_depth, the Options skipped when None). Both decoders, the top-level "id" too.
 */
static void test_decode_dynamo_nvext_timing(void **state)
{
    (void)state;
    static const struct {
        const char *name, *json, *id;
        bool has;
        double wait, prefill, ttft, total;
    } cases[] = {
        {"full TimingInfo on the finish chunk",
         "{\"id\":\"chatcmpl-7c1e\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":"
         "\"stop\"}],\"created\":1,\"model\":\"m\",\"object\":\"chat.completion.chunk\","
         "\"nvext\":{\"worker_id\":{\"prefill_worker_id\":7587889,\"decode_worker_id\":7587889},"
         "\"timing\":{\"request_received_ms\":1764921600123,\"prefill_wait_time_ms\":1.25,"
         "\"prefill_time_ms\":40.5,\"ttft_ms\":41.75,\"total_time_ms\":241.75,\"kv_hit_rate\":0.5,"
         "\"router_queue_depth\":0}}}",
         "chatcmpl-7c1e", true, 1.25, 40.5, 41.75, 241.75},
        {"older TimingInfo: ttft and total only",
         "{\"id\":\"cmpl-1\",\"choices\":[{\"index\":0,\"text\":\"\",\"finish_reason\":\"length\"}]"
         ","
         "\"nvext\":{\"timing\":{\"request_received_ms\":1764921600123,\"ttft_ms\":12.0,"
         "\"total_time_ms\":112.0}}}",
         "cmpl-1", true, NAN, NAN, 12.0, 112.0},
        {"nvext without timing", "{\"choices\":[],\"nvext\":{\"worker_id\":{}}}", "", false, NAN,
         NAN, NAN, NAN},
    };
    static const enum sb_openai_decoder decs[] = {SB_OPENAI_DECODER_SCAN, SB_OPENAI_DECODER_CJSON};
    for (size_t i = 0; i < SB_ARRAY_SIZE(cases); i++) {
        for (size_t d = 0; d < SB_ARRAY_SIZE(decs); d++) {
            struct sb_chunk c;
            struct sb_err err = {0};
            int rc = sb_openai_decode_chunk_with(decs[d], cases[i].json, strlen(cases[i].json), &c,
                                                 &err);
            if (rc != 0)
                fail_msg("%s (decoder %zu): rc %d %s", cases[i].name, d, rc, err.msg);
            if (strcmp(c.response_id, cases[i].id) != 0)
                fail_msg("%s: id '%s', want '%s'", cases[i].name, c.response_id, cases[i].id);
            if (c.has_nvext_timing != cases[i].has)
                fail_msg("%s (decoder %zu): has_nvext_timing %d", cases[i].name, d,
                         c.has_nvext_timing);
            const double got[] = {c.nv_prefill_wait_ms, c.nv_prefill_ms, c.nv_ttft_ms,
                                  c.nv_total_ms};
            const double want[] = {cases[i].wait, cases[i].prefill, cases[i].ttft, cases[i].total};
            for (size_t k = 0; k < 4; k++)
                if (isnan(want[k]) ? !isnan(got[k]) : got[k] != want[k])
                    fail_msg("%s (decoder %zu): value %zu is %g, want %g", cases[i].name, d, k,
                             got[k], want[k]);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_api_from_url),
        cmocka_unit_test(test_build_request_fields),
        cmocka_unit_test(test_build_request_errors),
        cmocka_unit_test(test_build_request_limit),
        cmocka_unit_test(test_build_request_extra_verbatim),
        cmocka_unit_test(test_build_request_prompt_roundtrip),
        cmocka_unit_test(test_decode_fixtures),
        cmocka_unit_test(test_decode_dynamo_nvext_timing),
        cmocka_unit_test(test_decode_error_quote),
        cmocka_unit_test(test_decode_large_stamps),
        cmocka_unit_test(test_error_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
