/* `sparkbench mock`: parse the mock's options, serve until a signal, pick the exit code. */
#include <stdio.h>
#include <stdlib.h>

#include "sb/cmd.h"
#include "sb/mock_server.h"

static void usage(FILE *f)
{
    fputs(
        "usage: sparkbench mock [--profile FILE] [options]\n\n"
        "A simulated OpenAI-compatible LLM server: /v1/completions, /v1/chat/completions (stream\n"
        "and non-stream), /v1/models, /health, /metrics. Latency follows a continuous-batching\n"
        "model: prefill = prefill_base_ms + prefill_per_token_us x prompt tokens, decode step =\n"
        "decode_base_ms + decode_per_seq_us x sequences in the batch, max_num_seqs slots and a\n"
        "FIFO waiting queue. With --port 0 the chosen port is the first line on stdout.\n\n"
        "options:\n",
        f);
    sb_opt_print_help(sb_mock_options, sb_mock_noptions, f);
}

int cmd_mock(int argc, char **argv)
{
    struct sb_mock_config cfg = {0};
    struct sb_opt_result res;
    struct sb_err err;
    sb_err_clear(&err);
    int rc;
    if (sb_cmd_parse("mock", sb_mock_options, sb_mock_noptions, &cfg, argc, argv, usage, &res,
                     &rc) != 0)
        goto out;
    if (sb_mock_serve(&cfg, stdout, &err) != 0) {
        fprintf(stderr, "sparkbench mock: %s\n", err.msg);
        rc = 1;
        goto out;
    }
    rc = 0;
out:
    free(res.positional);
    sb_opt_release(sb_mock_options, sb_mock_noptions, &cfg);
    return rc;
}
