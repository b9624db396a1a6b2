/* Placeholder for the hypothesis/figure/gate/report half of analyze (replaced by hypo.c & co). */
#include "sb/analyze.h"

int sb_analyze_outputs(struct sb_run *runs, size_t n, const struct sb_analyze_opts *opts,
                       struct sb_err *err)
{
    (void)runs;
    (void)n;
    (void)opts;
    (void)err;
    return 0;
}
