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
 * cache.c (cache.h, SPEC §4.6), store*.c (store.h), tunnels.c (tunnels.h),
 * relay.c (the built-in tunnel: endpoint, routing, registry of holders).
 * Everything runs on the loop thread.
 */
#ifndef LK_WORKER_WORKER_H
#define LK_WORKER_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/rng.h"
#include "core/route.h"
#include "core/session_auth.h"
#include "core/store.h"
#include "net/http_server.h"
#include "worker/cache.h"
#include "worker/store.h"
#include "worker/tunnels.h"

struct event;
struct event_base;
struct lk_tunnel_hub;

/* Session JSON bodies are capped at this size by default (DESIGN §9; 413
 * past it; LINKUP_MAX_JSON_BODY overrides it, limits.h). */
#define WORKER_MAX_JSON_BODY (100u * 1024u * 1024u)

/* Parsed sessions kept in memory (lk_session_cache). */
#define WORKER_SESSION_CACHE_ENTRIES 4096

/* Interval of the cleanup of stale tunnels and expired sessions. */
#define WORKER_CLEANUP_INTERVAL_MS (3600u * 1000u)

/* Grace period for in-flight requests after SIGINT/SIGTERM. */
#define WORKER_DRAIN_MS 10000u

/* Registry of tunnel holders (DESIGN §8, several workers on one Redis): key
 * prefix (followed by the session name in lower case: one key per tunnel
 * hostname), expiry of an entry, and how often the holder refreshes it. */
#define WORKER_HOLDER_PREFIX     "tunnel-holder:"
#define WORKER_HOLDER_TTL_MS     15000u
#define WORKER_HOLDER_REFRESH_MS 5000u

/* Session auth (auth.c, DESIGN §7): how long a sign-in lasts, the sign-in
 * endpoint (served only when --session-auth is set; without it the path is
 * proxied like any other, SPEC §4.2) and the largest sign-in form body. */
#define WORKER_AUTH_TTL_S    (7u * 24u * 3600u)
#define WORKER_AUTH_PATH     "/linkup/session-auth"
#define WORKER_AUTH_FORM_MAX (64u * 1024u)

/* Header carrying --peer-secret on requests one worker forwards to the
 * worker holding the tunnel (compared in constant time). */
#define WORKER_PEER_HEADER "x-linkup-peer-secret"

struct worker {
    struct lk_http_server *srv;      /* owned; NULL once draining started */
    struct worker_store *store;      /* owned */
    struct lk_session_cache *cache;  /* owned; parsed sessions by name */
    struct worker_cache *responses;  /* owned; SPEC §4.6 response cache */
    struct lk_rng rng;               /* lk_rng_os(): ChaCha20, no syscall per use */
    unsigned char token_digest[32];  /* SHA-256 of the token (never the token) */
    struct worker_tunnel_cfg tunnel; /* strings borrowed from the options */
    char bound[64];                  /* "A:P" the server listens on */
    size_t max_json_body;            /* session JSON cap (WORKER_MAX_JSON_BODY) */
    /* The built-in tunnel (relay.c). */
    struct lk_tunnel_hub *hub; /* owned; live tunnels by session */
    struct event *holder_ev;   /* owned; registry refresh timer */
    const char *peer_url;      /* --peer-url or peer_url_own; NULL: no registry */
    const char *peer_secret;   /* --peer-secret or the token; NULL: no forwarding */
    char peer_url_own[80];     /* "http://" bound, the default --peer-url */
    char peer_secret_own[65];  /* derived from the token, the default --peer-secret */
    char **held;               /* owned; sessions whose tunnel this worker holds */
    size_t n_held, cap_held;
    /* Requests waiting to retry a store write refused as busy (api.c). */
    struct event_base *base;          /* borrowed; the loop */
    struct worker_store_try *tries;   /* owned list; worker_api_cancel() */
    struct worker_store_try *cur_try; /* the one being run, or NULL */
    struct lk_route_slot route;       /* worker_proxy()'s reused route result */
    /* Session auth (auth.c): off unless --session-auth is set. */
    bool auth_on;
    bool auth_urls_only;         /* --session-auth-scope urls */
    struct lk_auth_key auth_key; /* from the secret; the secret is not kept */
};

/* The lk_http_handler_cb of the worker (api.c): tunnel hostnames, the seven
 * /linkup endpoints (SPEC §4.2), everything else to worker_proxy(). data is
 * the struct worker. */
void worker_handle(struct lk_exchange *ex, void *data);

/* Drops the requests still waiting to retry a busy store write (their
 * exchanges are the server's to free): at teardown, after the loop ended. */
void worker_api_cancel(struct worker *w);

/* Answers what no part of the worker may serve (proxy.c): CONNECT with 405
 * and Allow: LK_HTTP_PROXY_ALLOW (the worker opens no raw tunnels), and an HTTP/1.1
 * request without Host with 400 (RFC 9112 §3.2). Returns true when ex was
 * answered (completed), false when it is left untouched. */
bool worker_reject_unproxyable(struct lk_exchange *ex);

/* ---- session auth (auth.c; DESIGN §7, docs/worker.md) ---- */

/* WORKER_AUTH_PATH: GET/HEAD the sign-in page, POST the form (secret, next,
 * or signout); other methods 405. Completes ex. Only with w->auth_on. */
void worker_auth_endpoint(struct worker *w, struct lk_exchange *ex);

/* The gate in front of a request for a session (by_url: the session is the
 * one its URL or x-forwarded-host names, or a tunnel hostname's). Returns
 * true when ex may go on: auth is off, it is out of scope, a CORS preflight,
 * or it carries a credential. Otherwise answers 401 (the sign-in page for
 * a browser's GET) and returns false. */
bool worker_auth_allow(struct worker *w, struct lk_exchange *ex, bool by_url);

/* h[0..*n) without the credentials when auth is on (lk_auth_strip), in ex's
 * arena; h itself otherwise. */
const struct lk_http_header *worker_auth_strip(struct worker *w, struct lk_exchange *ex,
                                               const struct lk_http_header *h, size_t *n);

/* The decoded value of the x-www-form-urlencoded field key in query (NULL
 * when absent; in ex's arena), and how often key occurs (api.c). */
const char *worker_query_field(struct lk_exchange *ex, struct lk_str query, const char *key,
                               size_t *n_found);

/* Answers one request through the proxy path (proxy.c, SPEC §4.4). */
void worker_proxy(struct worker *w, struct lk_exchange *ex);

/* The full request URL as received (SPEC §4.4 step 1): an absolute-form
 * target, else http(s)://{Host}{target}. NUL-terminated, in ex's arena. */
const char *worker_request_url(struct worker *w, struct lk_exchange *ex);

/* ---- the built-in tunnel (relay.c; docs/internals/tunnel.md) ---- */

/* Creates the tunnel hub and the registry refresh timer on base. */
void worker_relay_start(struct worker *w, struct event_base *base);

/* Shutdown: every tunnel sends GOAWAY and leaves the registry, so the local
 * servers reconnect at once (to another worker, if one is behind the same
 * address), while the requests in flight in it finish during the drain. */
void worker_relay_go_away(struct worker *w);

/* Closes every tunnel, deletes this worker's registry entries and frees
 * the hub and the timer. Called once the HTTP server has drained (the
 * tunnels use no engine). Safe to call twice. */
void worker_relay_stop(struct worker *w);

/* Refreshes last_started of the tunnel records of the tunnels this worker
 * holds (run before the cleanup, so a live tunnel is never stale). */
void worker_relay_touch(struct worker *w);

/* GET /linkup/v2/tunnel (authenticated by the session's tunnel secret, not
 * the worker token); other methods 405 with Allow: GET. Completes ex. */
void worker_tunnel_endpoint(struct worker *w, struct lk_exchange *ex);

/* Sends the request described by spec (spec->url: the target on the tunnel
 * hostname of session) through session's tunnel when this worker holds it;
 * else, unless ex came from a peer, to the worker the registry names as the
 * holder (same path, Host = the tunnel hostname, WORKER_PEER_HEADER added);
 * else answers worker_tunnel_not_connected(). spec's other fields (headers,
 * CORS, websocket, on_error) are used as given; its header list is
 * replaced by a copy in ex's arena. Completes ex. */
void worker_tunnel_forward(struct worker *w, struct lk_exchange *ex, struct lk_str session,
                           struct lk_proxy_req *spec);

/* DESIGN §8: a request whose own Host is the tunnel hostname of session goes
 * to that tunnel unchanged, whatever its path (the target's path, which
 * session auth lets through when it is /linkup/check). Completes ex. */
void worker_tunnel_host_request(struct worker *w, struct lk_exchange *ex, struct lk_str session,
                                struct lk_str path);

/* Answers the 502 "Failed to fetch from target service: tunnel for session
 * '<name>' is not connected" of DESIGN §8 (proxy.c). */
void worker_tunnel_not_connected(struct lk_exchange *ex, struct lk_str session);

/* Responds with an HttpError of the original (SPEC §4.2): body as given,
 * Content-Type: text/plain, Cache-Control: no-store. */
void worker_respond_error(struct lk_exchange *ex, int status, const char *body);

/* Responds with a text/plain; charset=utf-8 body (no Cache-Control). */
void worker_respond_text(struct lk_exchange *ex, int status, const char *body);

/* For an lk_exchange_read_body() callback: when err is set, answers it in
 * the original's words (413 past the limit, else 400) and returns true. */
bool worker_body_failed(struct lk_exchange *ex, int err);

/* Current time in epoch milliseconds. */
uint64_t worker_now_ms(void);

#endif
