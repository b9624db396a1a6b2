/*
 * The mock's second /metrics port (KVBM's 6880) on its own thread. The engine's event loop blocks
 * while an iteration reads its KV prefix from the disk tier (real preads; seconds under fio), and
 * a scrape that waited for it was lost, so KV telemetry went missing exactly when the disk tier was
 * busiest. A real KVBM serves its metrics from its own HTTP server, apart from the I/O. Here each
 * scrape asks the engine's loop for a fresh page and takes it when the loop answers within
 * SB_METRICS_PORT_FRESH_MS, else the last page the loop rendered (counters as of before the
 * current block, as a real exporter's are while the onboarding is in flight).
 */
#ifndef SB_MOCK_METRICS_PORT_H
#define SB_MOCK_METRICS_PORT_H

#include <event2/event.h>

#include "sb/buf.h"
#include "sb/err.h"
#include "sb/util.h"

#define SB_METRICS_PORT_FRESH_MS 50

struct sb_metrics_port;

/* Renders the whole /metrics page into out; called on the engine's loop only. */
typedef void (*sb_metrics_render_fn)(void *ctx, struct sb_buf *out);

/* Serves GET /metrics on the listening socket fd from a new thread; render runs on main_base's
 * loop (the engine's), once now and once per scrape. Takes fd (closed on failure too). */
int sb_metrics_port_start(struct sb_metrics_port **out, struct event_base *main_base, int fd,
                          sb_metrics_render_fn render, void *ctx, struct sb_err *err);

/* Stops and joins the thread and frees p; before main_base is freed. NULL is a no-op. */
void sb_metrics_port_stop(struct sb_metrics_port *p);

#endif
