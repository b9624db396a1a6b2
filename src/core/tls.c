/*
 * The process-wide TLS policy (sb/tls.h). Verification is never turned off by default: the only
 * place that clears CURLOPT_SSL_VERIFYPEER / CURLOPT_SSL_VERIFYHOST is sb_tls_apply() under an
 * explicit --insecure.
 */
#include "sb/tls.h"

#include <curl/curl.h>
#include <stdatomic.h>

static atomic_bool insecure;

void sb_tls_set_insecure(bool on)
{
    atomic_store(&insecure, on);
}

bool sb_tls_insecure(void)
{
    return atomic_load(&insecure);
}

void sb_tls_apply(void *easy)
{
    if (!atomic_load(&insecure))
        return;
    curl_easy_setopt((CURL *)easy, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt((CURL *)easy, CURLOPT_SSL_VERIFYHOST, 0L);
}
