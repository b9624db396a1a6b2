/*
 * Integration tests of `sparkbench smoke` as real bring-ups need it: --extra-body reaches the
 * requests (ignore_eos against a server that would stop at once), the long-prompt probe reports a
 * server that cannot hold the prompt (a warning naming the context, not a blocking problem), and a
 * model missing from /v1/models is a warning whose requests, when refused, block on their own
 * (it used to be both a warning and a blocking problem).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proc.h"

static const char *bin;

static int smoke(int port, const char *const *args, char **out)
{
    char url[100];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
    const char *argv[32] = {bin, "smoke", "--endpoint", url};
    int n = 4;
    for (int i = 0; args[i] && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    char *err = NULL;
    int rc = sb_proc_run_limit(argv, out, &err, 60);
    print_message("smoke exit %d:\n%s%s", rc, *out ? *out : "", err ? err : "");
    free(err);
    return rc;
}

static void test_smoke_probes(void **state)
{
    (void)state;
    /* Every token may end the stream (eos 1), and the context holds 2,048 tokens. */
    const char *margs[] = {"--max-model-len", "2048", "--eos-prob", "1", NULL};
    struct sb_proc mock;
    assert_int_equal(sb_proc_start_mock(&mock, bin, margs), 0);
    char *out = NULL;

    /* --extra-body reaches the requests: ignore_eos makes the server generate all 32 tokens. */
    const char *a1[] = {"--extra-body", "{\"ignore_eos\": true}", "--long-prompt-tokens", "0",
                        NULL};
    assert_int_equal(smoke(mock.port, a1, &out), 0);
    assert_int_equal(sb_test_count(out, "tokens 32 (usage)"), 2);
    free(out);

    /* The long prompt does not fit: said, as a warning; the server can still be benchmarked. */
    const char *a2[] = {"--long-prompt-tokens", "4096", NULL};
    assert_int_equal(smoke(mock.port, a2, &out), 0);
    assert_non_null(strstr(out, "long prompt  FAIL  HTTP 400"));
    assert_non_null(strstr(out, "WARNING: a prompt of about"));
    assert_non_null(strstr(out, "ready for benchmarking: 0 blocking problem(s), 1 warning(s)"));
    free(out);

    /* A model the server does not list: one warning, and the two refused requests block. */
    const char *a3[] = {"--model", "nope", "--long-prompt-tokens", "0", NULL};
    assert_int_equal(smoke(mock.port, a3, &out), 1);
    assert_non_null(strstr(out, "WARNING: model 'nope' is not among the served names"));
    assert_non_null(strstr(out, "NOT READY for benchmarking: 2 blocking problem(s), 1 warning(s)"));
    free(out);
    assert_int_equal(sb_proc_stop(&mock, SIGTERM), 0);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s SPARKBENCH_BINARY SOURCE_DIR\n", argv[0]);
        return 2;
    }
    bin = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_smoke_probes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
