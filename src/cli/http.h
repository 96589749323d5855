/*
 * http.h - the CLI's HTTP client (libcurl): the local server's admin API,
 * the worker API and health probes.
 *
 * The local server is reached at LINKUP_HTTP_ADDR (a 0.0.0.0 host means
 * 127.0.0.1) unless its port is 0, else at the address `linkup start`
 * recorded in $LINKUP_HOME/localserver-http (the one the server bound, read
 * from its "HTTP listening on A:P" line), else at LINKUP_HTTP_ADDR or the
 * default 127.0.0.1:80 - never a fixed port chosen here (DESIGN §3).
 *
 * Blocking calls; not thread-safe.
 */
#ifndef LK_CLI_HTTP_H
#define LK_CLI_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"

/* The outcome of one request. */
struct cli_http_resp {
    long status;        /* HTTP status, 0 when no response arrived */
    struct lk_buf body; /* owned response body (capped); release with cli_http_resp_release */
    char error[256];    /* transport error text when status == 0 */
};

/* Frees resp->body. */
void cli_http_resp_release(struct cli_http_resp *resp);

/*
 * Performs method url with the given extra header lines (NULL-terminated
 * array, may be NULL) and body (NULL: none; sent with Content-Type:
 * application/json). Redirects are not followed. Returns 0 when a response
 * arrived (any status) or LK_EIO / LK_ETIMEDOUT with resp->error set.
 * resp is initialised by this call.
 */
int cli_http_request(const char *method, const char *url, const char *const *headers,
                     const char *body, long timeout_ms, struct cli_http_resp *resp);

/* The address "host:port" the local server listens on, for a client
 * (0.0.0.0 -> 127.0.0.1, [::] -> [::1]), by the rules above. Computed once
 * and cached until cli_local_addr_reset(). Borrowed, static. */
const char *cli_local_addr(void);

/* Forgets what cli_local_addr() computed, so its next call reads
 * LINKUP_HTTP_ADDR and localserver-http again (after `start` recorded the
 * address its server bound). Invalidates earlier cli_local_addr() answers. */
void cli_local_addr_reset(void);

/* True when addr ("host:port", "[v6]:port") names port 0, an ephemeral port
 * the server picks when it binds (DESIGN §3). */
bool cli_addr_is_ephemeral(const char *addr);

/* The address to pass to `linkup server --http`: LINKUP_HTTP_ADDR or the
 * default 0.0.0.0:80. Borrowed. */
const char *cli_local_listen_addr(void);

/* Appends "http://{cli_local_addr()}{path}" to out. */
void cli_local_url(const char *path, struct lk_buf *out);

/* Appends s percent-encoded for a query value (RFC 3986 unreserved kept). */
void cli_add_query_value(struct lk_buf *b, const char *s);

/* True when GET /linkup/check on the local server answers 200 within
 * timeout_ms. */
bool cli_local_check(long timeout_ms);

/* One health probe for cli_http_probe_all. */
struct cli_probe {
    const char *url;            /* borrowed */
    const char *const *headers; /* borrowed, NULL-terminated, may be NULL */
    long status;                /* out: HTTP status, 0 on transport error */
};

/* Runs every probe in parallel (GET, redirects followed up to 10,
 * timeout_ms each) and fills their status. */
void cli_http_probe_all(struct cli_probe *probes, size_t n, long timeout_ms);

#endif
