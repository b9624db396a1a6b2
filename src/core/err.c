/* Error values for library code: a message buffer the caller owns, filled where the failure is
 * seen. */
#include "sb/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* The analyzer-only macros of err.h would rename the definitions below. */
#undef sb_err_set
#undef sb_err_errno

void sb_err_clear(struct sb_err *err)
{
    if (err) {
        err->code = 0;
        err->msg[0] = '\0';
    }
}

int sb_err_set(struct sb_err *err, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
        err->code = -1;
    }
    return -1;
}

int sb_err_errno(struct sb_err *err, int errnum, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < sizeof(err->msg))
            snprintf(err->msg + n, sizeof(err->msg) - (size_t)n, ": %s", strerror(errnum));
        err->code = -1;
    }
    return -1;
}

void sb_err_prefix(struct sb_err *err, const char *fmt, ...)
{
    if (!err)
        return;
    char old[SB_ERR_MSG_MAX];
    snprintf(old, sizeof(old), "%s", err->msg);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof(err->msg))
        snprintf(err->msg + n, sizeof(err->msg) - (size_t)n, "%s", old);
    if (!err->code)
        err->code = -1;
}
