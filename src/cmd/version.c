/* `sparkbench version`: what this binary is and which library versions it runs with. */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <event2/event.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <yaml.h>

#include "sb/build_info.h"
#include "sb/cmd.h"

/* jemalloc is linked into the binary only (not into sanitizer builds or tests): look it up weakly.
 */
extern int mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp, size_t newlen)
    __attribute__((weak));

int cmd_version(int argc, char **argv)
{
    (void)argv;
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        puts("usage: sparkbench version\n\nPrints the sparkbench version, git revision and the "
             "versions of libcurl, libyaml, cJSON, jemalloc and libevent in use.");
        return 0;
    }
    if (argc > 1)
        return sb_usage_error("version", "takes no arguments");
    const char *je = "not linked (sanitizer build)";
    size_t len = sizeof(je);
    if (mallctl && mallctl("version", &je, &len, NULL, 0) != 0)
        je = "unknown";
    printf("sparkbench %s (git %s)\n", SB_VERSION, SB_GIT_REV);
    printf("libcurl %s\n", curl_version_info(CURLVERSION_NOW)->version);
    printf("libyaml %s\n", yaml_get_version_string());
    printf("cJSON %s\n", cJSON_Version());
    printf("jemalloc %s\n", je);
    printf("libevent %s\n", event_get_version());
    return 0;
}
