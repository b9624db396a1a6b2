/*
 * sb_http_request (sb/http.h): a libcurl easy request for the server's own routes.
 */
#include "sb/http.h"
#include "sb/tls.h"

#include <curl/curl.h>
#include <stdio.h>
#include <string.h>

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
    return sb_buf_add(arg, p, size * n) == 0 ? size * n : 0;
}

long sb_http_request(const char *method, const char *url, double timeout_s, struct sb_buf *out,
                     char *why, size_t why_cap)
{
    CURL *c = curl_easy_init();
    if (!c) {
        snprintf(why, why_cap, "out of memory");
        return 0;
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    sb_tls_apply(c);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(timeout_s * 1000));
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    struct curl_slist *h = NULL;
    if (strcmp(method, "POST") == 0) {
        h = curl_slist_append(NULL, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, "{}");
    }
    long status = 0;
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    else
        snprintf(why, why_cap, "%s", curl_easy_strerror(rc));
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return status;
}
