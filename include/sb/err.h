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

/* Prefixes an existing message with more context ("while loading 'x': <old message>"). */
void sb_err_prefix(struct sb_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
