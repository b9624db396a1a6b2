/*
 * The YAML config loader (sb_opt_load_yaml over the option tables of `run` and `mock`). The first
 * byte picks the table; the rest is the config file. A file that loads is written back as the
 * resolved config.yaml (sb_opt_write_yaml), which must load again and write back the same bytes:
 * a run's config.yaml is what reproduces it.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "sb/mock_server.h"
#include "sb/opt.h"
#include "sb/run.h"

union cfg {
    struct sb_run_config run;
    struct sb_mock_config mock;
};

/* The resolved YAML of obj into a malloc'ed string (*len bytes). */
static char *resolved(const struct sb_opt *opts, size_t n, const void *obj, size_t *len)
{
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);
    if (!f)
        abort();
    if (sb_opt_write_yaml(opts, n, obj, f) != 0)
        sb_fuzz_fail("cannot write the resolved config");
    if (fclose(f) != 0)
        abort();
    return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const struct sb_opt *opts = data[0] & 1 ? sb_mock_options : sb_run_options;
    size_t n = data[0] & 1 ? sb_mock_noptions : sb_run_noptions;
    const char *path = sb_fuzz_file("config.yaml", data + 1, size - 1);

    static union cfg a, b;
    struct sb_err err = {0};
    memset(&a, 0, sizeof(a));
    if (sb_opt_defaults(opts, n, &a, &err) != 0)
        sb_fuzz_fail("defaults: %s", err.msg);
    if (sb_opt_load_yaml(opts, n, &a, path, &err) != 0) {
        if (err.msg[0] == '\0')
            sb_fuzz_fail("the loader failed without a message");
        sb_opt_release(opts, n, &a);
        return 0;
    }
    size_t len1, len2;
    char *y1 = resolved(opts, n, &a, &len1);
    const char *path2 = sb_fuzz_file("resolved.yaml", (const uint8_t *)y1, len1);
    memset(&b, 0, sizeof(b));
    if (sb_opt_defaults(opts, n, &b, &err) != 0)
        sb_fuzz_fail("defaults: %s", err.msg);
    if (sb_opt_load_yaml(opts, n, &b, path2, &err) != 0)
        sb_fuzz_fail("the resolved config does not load again: %s\n%s", err.msg, y1);
    char *y2 = resolved(opts, n, &b, &len2);
    if (len1 != len2 || memcmp(y1, y2, len1) != 0)
        sb_fuzz_fail("the resolved config changes on a reload:\n%s\n----\n%s", y1, y2);
    free(y1);
    free(y2);
    sb_opt_release(opts, n, &a);
    sb_opt_release(opts, n, &b);
    return 0;
}
