/*
 * Shared bits of the libFuzzer harnesses (tests/fuzz/fuzz_*.c): a loud failure that libFuzzer
 * records as a crash, and a scratch file for the loaders that only take a path.
 */
#ifndef SB_FUZZ_UTIL_H
#define SB_FUZZ_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* A property the harness checks failed: say which, then abort so libFuzzer saves the input. */
__attribute__((format(printf, 1, 2), noreturn)) static inline void sb_fuzz_fail(const char *fmt,
                                                                                ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fuzz property failed: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

/*
 * Writes data to one scratch file per process and tag (the loaders under test open a path) and
 * returns its path, valid until the next call with the same tag. Aborts when it cannot write:
 * the harness would test nothing.
 */
static inline const char *sb_fuzz_file(const char *tag, const uint8_t *data, size_t size)
{
    static char path[256];
    const char *dir = getenv("TMPDIR");
    snprintf(path, sizeof(path), "%s/sbfuzz-%ld-%s", dir && *dir ? dir : "/tmp", (long)getpid(),
             tag);
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0)
        sb_fuzz_fail("cannot write scratch file '%s'", path);
    return path;
}

#endif
