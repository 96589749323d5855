/*
 * worker_client.h - the local server's non-blocking client of the worker API
 * (SPEC §5.2: POST /linkup/v2/sessions/preview and .../tunneled).
 *
 * Each call opens its own connection with libevent's evhttp client (not on
 * the proxy data path, so evhttp's whole-body buffering is fine here), over
 * TLS through bufferevent_openssl for https:// worker URLs, verifying the
 * worker's certificate against the system trust store and its host name.
 * Headers sent: Authorization: Bearer {token}, x-linkup-version: {LK_VERSION},
 * Content-Type: application/json. Every call is bounded by
 * LOCAL_WORKER_TIMEOUT_MS and its response body by LOCAL_WORKER_MAX_BODY.
 *
 * Results, including failures detected at once, reach the caller only
 * through the callback, always from the loop and never before
 * local_worker_post() returns. Loop thread only.
 */
#ifndef LK_SERVER_WORKER_CLIENT_H
#define LK_SERVER_WORKER_CLIENT_H

#include <stddef.h>

#include "core/buf.h"

struct event_base;
struct local_worker;

#define LOCAL_WORKER_TIMEOUT_MS 30000
#define LOCAL_WORKER_MAX_BODY   (16u * 1024u * 1024u)

/* The outcome of one call; every pointer is borrowed for the callback. */
struct local_worker_resp {
    int status;       /* HTTP status, 0 when no response arrived */
    const char *body; /* response body (NUL-terminated), "" when none */
    size_t body_len;
    /* when status is 0: what failed, in the form
     * "error sending request for url ({url}): {reason}" */
    const char *error;
};

typedef void local_worker_cb(const struct local_worker_resp *resp, void *data);

/*
 * Creates a client for the worker at base_url ("http(s)://host[:port][/path]";
 * a missing trailing slash is fine) with the given token (copied). base is
 * borrowed. Returns 0 and *out (local_worker_free), or LK_EINVAL with a
 * message appended to err when the URL is not an absolute http(s) URL, or
 * LK_EIO when the DNS resolver or the TLS context cannot be set up.
 */
int local_worker_new(struct event_base *base, const char *base_url, const char *token,
                     struct local_worker **out, struct lk_buf *err);

/* Cancels the calls in flight WITHOUT calling their callbacks and frees
 * everything. NULL is a no-op. Not from inside a callback of this client. */
void local_worker_free(struct local_worker *w);

/* Fails every call in flight now: each callback runs once, before this
 * returns, with status 0 and error text why (shutdown). */
void local_worker_cancel_all(struct local_worker *w, const char *why);

/*
 * POSTs json[0..len) (copied) to {base_url}{path}, path relative such as
 * "linkup/v2/sessions/tunneled". cb(resp, data) runs exactly once, later.
 */
void local_worker_post(struct local_worker *w, const char *path, const char *json, size_t len,
                       local_worker_cb *cb, void *data);

/* The worker base URL as given (borrowed). */
const char *local_worker_url(const struct local_worker *w);

#endif
