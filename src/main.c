/* sparkbench entry point: dispatches to the command table and nothing else. */
#include <stdio.h>
#include <string.h>

#include "sb/cmd.h"

int main(int argc, char **argv)
{
    if (argc < 2) {
        sb_print_usage(stderr);
        return 2;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        sb_print_usage(stdout);
        return 0;
    }
    if (strcmp(name, "--version") == 0 || strcmp(name, "-V") == 0)
        name = "version";
    for (const struct sb_command *c = sb_commands; c->name; c++)
        if (strcmp(c->name, name) == 0)
            return c->fn(argc - 1, argv + 1);
    char msg[256];
    if (name[0] == '-')
        snprintf(msg, sizeof(msg), "unknown option '%s'", name);
    else
        snprintf(msg, sizeof(msg), "unknown command '%s'", name);
    return sb_usage_error(NULL, msg);
}
