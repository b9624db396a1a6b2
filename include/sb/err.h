/*
 * Error reporting for library code. Functions return 0 on success or a negative value on failure
 * and describe the failure in a caller-owned struct sb_err; only cmd_* code prints it.
 */
#ifndef SB_ERR_H
#define SB_ERR_H

#include <stddef.h>

#define SB_ERR_MSG_MAX 512

struct sb_err {
    int code;                 /* negative errno-like value, 0 when nothing failed */
    char msg[SB_ERR_MSG_MAX]; /* lowercase, problem first, subject quoted */
};

/* Clears err (may be NULL). */
void sb_err_clear(struct sb_err *err);

/* Fills err (may be NULL) with a printf-style message and returns -1. */
int sb_err_set(struct sb_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Like sb_err_set() but appends ": strerror(errnum)". Returns -1. */
int sb_err_errno(struct sb_err *err, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#ifdef __clang_analyzer__
/* For clang-tidy's analyzer only (`make lint`), which sees one file at a time and does not step
   into variadic functions: without this, every `return sb_err_set(...)` was a path on which the
   caller's outputs were "unset" while the function reported success. */
#define sb_err_set(...)   (sb_err_set(__VA_ARGS__), -1)
#define sb_err_errno(...) (sb_err_errno(__VA_ARGS__), -1)
#endif

/* Prefixes an existing message with more context ("while loading 'x': <old message>"). */
void sb_err_prefix(struct sb_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
