/*
 * TLS policy for every libcurl handle the process makes: verification stays on (libcurl's
 * defaults, CURLOPT_SSL_VERIFYPEER 1 and CURLOPT_SSL_VERIFYHOST 2) unless the command was given
 * --insecure. One process runs one command with one flag, so the policy is process-wide: the
 * engine, the server-route probes (sb_http_request) and sysmon's scrapes all follow it without
 * each call site carrying it.
 */
#ifndef SB_TLS_H
#define SB_TLS_H

#include <stdbool.h>

/* Turns verification off (on = true) for handles set up afterwards; call before any transfer. */
void sb_tls_set_insecure(bool on);
/* Whether --insecure is in force (recorded as run.json's tls_insecure). */
bool sb_tls_insecure(void);
/* Applies the policy to a CURL * easy handle: nothing at all while verification is on, so the
   handle keeps libcurl's verifying defaults. */
void sb_tls_apply(void *easy);

#endif
