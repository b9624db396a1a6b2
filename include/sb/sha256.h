/*
 * SHA-256 (FIPS 180-4), for naming the exact file a result depends on (the tokenizer.json behind a
 * prompt set's MANIFEST.json). Small and dependency-free; not constant-time, not for secrets.
 */
#ifndef SB_SHA256_H
#define SB_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "sb/err.h"

/* The digest of data[0..len) into out. */
void sb_sha256(const void *data, size_t len, uint8_t out[32]);

/* The digest of the file at path as 64 lowercase hex digits and a NUL. Returns 0, or -1 with err
   naming the file. */
int sb_sha256_file(const char *path, char hex[65], struct sb_err *err);

#endif
