/* `sparkbench analyze`: placeholder until the loader lands. */
#include <stdio.h>

#include "sb/cmd.h"

int cmd_analyze(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fputs("sparkbench analyze: not built yet\n", stderr);
    return 1;
}
