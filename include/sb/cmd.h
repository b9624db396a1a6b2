/*
 * The subcommands. Each cmd_<name> parses its own options through the option table, calls library
 * code, prints, and returns the process exit code (0 ok, 1 failure, 2 usage error).
 */
#ifndef SB_CMD_H
#define SB_CMD_H

#include <stddef.h>
#include <stdio.h>

struct sb_command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
};

/* The command table, ending with a NULL name; main() dispatches through it. */
extern const struct sb_command sb_commands[];

int cmd_analyze(int argc, char **argv);
int cmd_mock(int argc, char **argv);
int cmd_prompts(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_smoke(int argc, char **argv);
int cmd_sysmon(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_trace_gen(int argc, char **argv);
int cmd_version(int argc, char **argv);

/* Prints the top-level usage with the command list. */
void sb_print_usage(FILE *f);

/* Prints "sparkbench <cmd>: <msg> (see 'sparkbench <cmd> --help')" on stderr; returns 2. */
int sb_usage_error(const char *cmd, const char *msg);

struct sb_opt;
struct sb_opt_result;

/*
 * The start every command shares: parse its options (defaults, config file, flags), print usage
 * for --help, refuse positional arguments. Returns 0 to go on, or -1 when the command must return
 * *rc now (0 after --help, 2 after a usage error, already printed). res->positional is always
 * allocated: free it.
 */
int sb_cmd_parse(const char *cmd, const struct sb_opt *opts, size_t n, void *obj, int argc,
                 char **argv, void (*usage)(FILE *), struct sb_opt_result *res, int *rc);

#endif
