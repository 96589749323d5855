/*
 * cache.h - the worker's response cache (SPEC §4.6 with DESIGN §2.7).
 *
 * Only requests the session marks cacheable reach this module: GET, not a
 * WebSocket, and a cache_routes regex matching the upstream path
 * (lk_route_is_cacheable). They are keyed by the session name and the whole
 * upstream URL (proxy.c, cache_key()), so entries are scoped to the session
 * and the service.
 *
 * A hit is answered from memory with the CORS headers added where the stored
 * response has none (DESIGN §2.7: hits get them too). A miss fetches the
 * whole response with libcurl on the loop (curl multi driven by libevent),
 * because the streaming engine has no way to copy a body it forwards; the
 * answer goes to the client from memory and is stored when it may be:
 * status 200, 203, 204, 300, 301, 308, 404, 405, 410 or 414, no
 * Cache-Control no-store, private or no-cache, no max-age=0, no Set-Cookie;
 * its lifetime is s-maxage, else max-age, else WORKER_CACHE_DEFAULT_TTL_MS.
 * Conditional and range requests (If-* or Range) bypass the cache. The fetch
 * waits as long as the engine would (its connect, first-byte and body idle
 * timeouts). It falls back to the streaming engine (lk_exchange_proxy with
 * the same request) only when the request cannot have reached the upstream
 * (resolve, connect or TLS failed without a timeout) or the response is
 * larger than WORKER_CACHE_MAX_ENTRY; other failures are the 502 "Failed to
 * fetch from target service: {e}" of SPEC §4.5. The cache holds at most
 * max_bytes (keys, headers and bodies), evicting the least recently used
 * entries.
 *
 * Loop thread only.
 */
#ifndef LK_WORKER_CACHE_H
#define LK_WORKER_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "net/http_server.h"

#define WORKER_CACHE_MAX_BYTES      (64u * 1024u * 1024u)
#define WORKER_CACHE_MAX_ENTRY      (8u * 1024u * 1024u)
#define WORKER_CACHE_DEFAULT_TTL_MS (300u * 1000u)

struct event_base;
struct worker_cache;

/* A cache of at most max_bytes on base (borrowed; must outlive the cache)
 * whose fetches use the upstream timeouts of so (connect_timeout_ms,
 * first_byte_timeout_ms, upstream_idle_timeout_ms; read during the call).
 * Free with worker_cache_free(). */
struct worker_cache *worker_cache_new(struct event_base *base, size_t max_bytes,
                                      const struct lk_http_server_opts *so);

/* Cancels pending fetches (see worker_cache_cancel_all) and frees
 * everything. NULL is a no-op. */
void worker_cache_free(struct worker_cache *c);

/*
 * Answers ex from the cache or fetches, stores and answers it (see the top
 * of this file). key (the cache key) and spec (the request the engine would
 * send; everything in it is copied) are borrowed during the call. Completes
 * ex, now or later.
 */
void worker_cache_handle(struct worker_cache *c, struct lk_exchange *ex, const char *key,
                         const struct lk_proxy_req *spec);

/* Hands every pending fetch to the streaming engine at once (graceful
 * shutdown: the engine finishes them while draining). */
void worker_cache_cancel_all(struct worker_cache *c);

/* Number of entries and bytes held (tests, logs). */
size_t worker_cache_n_entries(const struct worker_cache *c);
size_t worker_cache_n_bytes(const struct worker_cache *c);

#endif
