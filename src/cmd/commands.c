/* The command table (git.c's commands[]): adding a subcommand is a file in src/cmd and a line here.
 */
#include <stdio.h>

#include "sb/cmd.h"
#include "sb/opt.h"

const struct sb_command sb_commands[] = {
    {"run", cmd_run, "load generator: drive an OpenAI-compatible endpoint, write metrics.jsonl"},
    {"smoke", cmd_smoke, "bring-up check of an endpoint: health, models, one stream of each API"},
    {"sysmon", cmd_sysmon, "host telemetry on an absolute 200 ms grid into sysmon.jsonl"},
    {"analyze", cmd_analyze, "percentiles, knees, gates, summary_v3.csv, figures and a report"},
    {"mock", cmd_mock, "simulated OpenAI-compatible LLM server (Stack A/B stand-in, CI replay)"},
    {"prompts", cmd_prompts, "write prompt files of exactly N tokens under a tokenizer"},
    {"tokenize", cmd_tokenize,
     "count, list or decode the tokens of a text (native tokenizer.json BPE)"},
    {"trace-gen", cmd_trace_gen,
     "write a synthetic Mooncake-format trace for run --workload trace"},
    {"version", cmd_version, "print the version and the library versions"},
    {NULL, NULL, NULL},
};

void sb_print_usage(FILE *f)
{
    fputs("usage: sparkbench <command> [options]\n"
          "       sparkbench --version | --help\n\n"
          "Storage-aware benchmark harness for LLM inference servers.\n\ncommands:\n",
          f);
    for (const struct sb_command *c = sb_commands; c->name; c++)
        fprintf(f, "  %-10s %s\n", c->name, c->summary);
    fputs("\nRun 'sparkbench <command> --help' for the options of one command.\n", f);
}

int sb_usage_error(const char *cmd, const char *msg)
{
    if (cmd)
        fprintf(stderr, "sparkbench %s: %s (see 'sparkbench %s --help')\n", cmd, msg, cmd);
    else
        fprintf(stderr, "sparkbench: %s (see 'sparkbench --help')\n", msg);
    return 2;
}

int sb_cmd_parse(const char *cmd, const struct sb_opt *opts, size_t n, void *obj, int argc,
                 char **argv, void (*usage)(FILE *), struct sb_opt_result *res, int *rc)
{
    struct sb_err err;
    sb_err_clear(&err);
    if (sb_opt_parse(opts, n, obj, argc, argv, res, &err) != 0) {
        *rc = sb_usage_error(cmd, err.msg);
        return -1;
    }
    if (res->help) {
        usage(stdout);
        *rc = 0;
        return -1;
    }
    if (res->npositional > 0) {
        char msg[300];
        snprintf(msg, sizeof(msg), "unexpected argument '%.200s'", res->positional[0]);
        *rc = sb_usage_error(cmd, msg);
        return -1;
    }
    return 0;
}
