/*
 * worker.h - `linkup worker`, the self-hosted edge router (DESIGN §1, §3;
 * SPEC §4): the session API (v1 and v2), the proxy path, the store, the
 * tunnel hostnames and the cleanup of stale tunnels.
 *
 * One struct worker per process, owned by cmd_worker() (worker.c), which
 * parses the options, opens the store, creates the HTTP server with
 * worker_handle() as its handler, prints "Worker listening on A:P" and runs
 * the loop until SIGINT/SIGTERM drain it.
 *
 * Files: worker.c (options, lifecycle, signals, cleanup timer), api.c (the
 * seven /linkup endpoints, authentication, dispatch), proxy.c (SPEC §4.4),
 * cache.c (cache.h, SPEC §4.6), store*.c (store.h), tunnels.c (tunnels.h). Everything runs on the
 * loop thread.
 */
#ifndef LK_WORKER_WORKER_H
#define LK_WORKER_WORKER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/rng.h"
#include "core/store.h"
#include "net/http_server.h"
#include "worker/cache.h"
#include "worker/store.h"
#include "worker/tunnels.h"

/* Session JSON bodies are capped at this size (DESIGN §9; 413 past it). */
#define WORKER_MAX_JSON_BODY (100u * 1024u * 1024u)

/* Parsed sessions kept in memory (lk_session_cache). */
#define WORKER_SESSION_CACHE_ENTRIES 4096

/* Interval of the cleanup of stale tunnels and expired sessions. */
#define WORKER_CLEANUP_INTERVAL_MS (3600u * 1000u)

/* Grace period for in-flight requests after SIGINT/SIGTERM. */
#define WORKER_DRAIN_MS 10000u

struct worker {
    struct lk_http_server *srv;      /* owned; NULL once draining started */
    struct worker_store *store;      /* owned */
    struct lk_session_cache *cache;  /* owned; parsed sessions by name */
    struct worker_cache *responses;  /* owned; SPEC §4.6 response cache */
    struct lk_rng rng;               /* OpenSSL-backed */
    unsigned char token_digest[32];  /* SHA-256 of the token (never the token) */
    struct worker_tunnel_cfg tunnel; /* strings borrowed from the options */
    char bound[64];                  /* "A:P" the server listens on */
};

/* The lk_http_handler_cb of the worker (api.c): tunnel hostnames, the seven
 * /linkup endpoints (SPEC §4.2), everything else to worker_proxy(). data is
 * the struct worker. */
void worker_handle(struct lk_exchange *ex, void *data);

/* Answers one request through the proxy path (proxy.c, SPEC §4.4). */
void worker_proxy(struct worker *w, struct lk_exchange *ex);

/* Answers the 502 "Failed to fetch from target service: tunnel for session
 * '<name>' is not connected" of DESIGN §8 (proxy.c). */
void worker_tunnel_not_connected(struct lk_exchange *ex, struct lk_str session);

/* Responds with an HttpError of the original (SPEC §4.2): body as given,
 * Content-Type: text/plain, Cache-Control: no-store. */
void worker_respond_error(struct lk_exchange *ex, int status, const char *body);

/* Responds with a text/plain; charset=utf-8 body (no Cache-Control). */
void worker_respond_text(struct lk_exchange *ex, int status, const char *body);

/* Current time in epoch milliseconds. */
uint64_t worker_now_ms(void);

#endif
