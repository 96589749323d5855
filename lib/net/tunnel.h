/*
 * tunnel.h - the built-in reverse tunnel (DESIGN §8, issue 7): the local
 * server keeps one outbound connection to the worker, and the worker carries
 * requests for the session's tunnel hostname through it to the local server.
 *
 * Protocol (docs/internals/tunnel.md has the details):
 *   1. The local server dials the worker URL (TLS when https, verified against
 *      the system store) and sends
 *        GET /linkup/v2/tunnel HTTP/1.1
 *        Authorization: Bearer <tunnel secret>
 *        x-linkup-session: <session name>
 *        Connection: Upgrade
 *        Upgrade: linkup-tunnel
 *      The worker answers "101 Switching Protocols" (Upgrade: linkup-tunnel)
 *      when the secret matches the session's tunnel record, 401 otherwise
 *      (409 while a session differing only in case holds the hostname).
 *   2. The connection then carries HTTP/2 with the roles reversed: the worker
 *      is the HTTP/2 client (sends the preface, opens streams), the local
 *      server the HTTP/2 server. Both sides send PING every ping_interval_ms
 *      and drop a peer silent for dead_after_ms.
 *   3. Streams carry the proxied requests, kept open between them like
 *      keep-alive connections. A stream is a byte pipe: the worker
 *      opens it with HEADERS ":method POST", ":scheme http", ":authority
 *      linkup-tunnel", ":path /linkup/stream"; the local server answers
 *      ":status 200" at once. DATA frames then carry the raw HTTP/1.1
 *      exchange: request bytes worker -> local, response bytes local ->
 *      worker, and after a 101 the WebSocket bytes both ways. END_STREAM is
 *      a half-close; RST_STREAM aborts. HTTP/2 flow control (windows released
 *      only as the bytes are written on) gives per-stream backpressure.
 *
 * Each stream is joined to the HTTP/1.1 engine (http_server.h) through an
 * in-memory bufferevent pair: on the worker the engine dials the stream through the custom
 * connector lk_tunnel_connect(), on the local server the stream is served by
 * lk_http_server_adopt() with the peer NOT treated as loopback (requests
 * through the tunnel come from the internet; admin endpoints stay closed).
 *
 * Threading: everything is loop-thread only. No function calls a program
 * callback before returning unless said so.
 */
#ifndef LK_NET_TUNNEL_H
#define LK_NET_TUNNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/str.h"
#include "net/http_server.h"

struct bufferevent;
struct event_base;
struct lk_tunnel;
struct lk_tunnel_hub;
struct lk_tunnel_client;

/* The endpoint, upgrade token, session header and stream path of the
 * protocol above. */
#define LK_TUNNEL_PATH           "/linkup/v2/tunnel"
#define LK_TUNNEL_UPGRADE        "linkup-tunnel"
#define LK_TUNNEL_SESSION_HEADER "x-linkup-session"
#define LK_TUNNEL_STREAM_PATH    "/linkup/stream"

/* Tuning of one tunnel connection (both sides). Initialise with
 * lk_tunnel_opts_init(); durations in milliseconds. */
struct lk_tunnel_opts {
    unsigned ping_interval_ms; /* PING period: 15 000 */
    unsigned dead_after_ms;    /* a peer silent this long is dropped: 45 000 */
    uint32_t stream_window;    /* receive window per stream: 1 MiB */
    uint32_t conn_window;      /* receive window per connection: 16 MiB */
    uint32_t max_streams;      /* concurrent streams the local side accepts: 1024 */
    size_t out_buffer_max;     /* bytes queued on the tunnel socket before
                                  frame output pauses: 1 MiB */
};

/* Fills o with the defaults listed above. */
void lk_tunnel_opts_init(struct lk_tunnel_opts *o);

/* Constant-time comparison of two secrets (the time depends only on the
 * lengths). NULL compares equal only to NULL. */
bool lk_tunnel_secret_eq(const char *a, size_t a_len, const char *b, size_t b_len);

/* ---- one tunnel (worker side view) ------------------------------------ */

/* lk_proxy_connect_cb for lk_proxy_req.connect with connect_data = a struct
 * lk_tunnel * from lk_tunnel_hub_find(): opens a new stream on that tunnel
 * and returns the engine's end of it. Errors: LK_ECLOSED when the tunnel is
 * closing, LK_EIO when no stream can be opened (reason in errtext). */
int lk_tunnel_connect(void *tunnel, struct bufferevent **out, char *errtext, size_t errtext_len);

/* Streams currently open on t (for tests and status output). */
size_t lk_tunnel_n_streams(const struct lk_tunnel *t);

/* ---- the hub: the worker's live tunnels, by session ------------------- */

/* The hub keys its tunnels by tunnel hostname ({prefix}{session}.{domain}):
 * session names are compared ASCII case-insensitively wherever a tunnel is
 * looked up (the proxy path reads the name back from a host, which clients
 * and URL parsers lower-case), so "Big-Cow" and "big-cow" share one tunnel.
 * Authentication stays exact: auth gets the name the local server sent, and
 * on_change the name of the tunnel's own session. */

/* Called when a session's tunnel connects (connected true) or goes away
 * (false; also when replaced by a newer connection for the same hostname, in
 * which case a true call, maybe with the other case of the name, follows at
 * once). session is borrowed during the
 * call. Use it to refresh the tunnel registry (DESIGN §8, several workers). */
typedef void lk_tunnel_hub_change_cb(const char *session, bool connected, void *data);

/* What an lk_tunnel_auth_cb decided. */
enum lk_tunnel_auth {
    LK_TUNNEL_AUTH_OK = 0,
    LK_TUNNEL_AUTH_DENIED,     /* unknown session or wrong secret */
    LK_TUNNEL_AUTH_UNAVAILABLE /* the secret could not be looked up (store down) */
};

/* Decides whether secret (secret_len bytes, borrowed during the call, never
 * to be logged) is the tunnel secret of session (NUL-terminated, borrowed).
 * Compare with lk_tunnel_secret_eq(). Called before lk_tunnel_hub_handle()
 * returns. */
typedef enum lk_tunnel_auth lk_tunnel_auth_cb(const char *session, const char *secret,
                                              size_t secret_len, void *data);

/* Creates an empty hub on base (borrowed; must outlive the hub). opts is
 * copied (NULL = defaults). on_change may be NULL; it and data are stored.
 * Returns the hub (owned by the caller: lk_tunnel_hub_free()); never NULL. */
struct lk_tunnel_hub *lk_tunnel_hub_new(struct event_base *base, const struct lk_tunnel_opts *opts,
                                        lk_tunnel_hub_change_cb *on_change, void *data);

/* Closes every tunnel (their streams end; the engine sees its upstreams
 * close) and frees the hub. on_change is not called. NULL is a no-op. Not
 * from inside a hub callback. */
void lk_tunnel_hub_free(struct lk_tunnel_hub *hub);

/* The whole worker endpoint GET /linkup/v2/tunnel for an exchange the
 * program's handler received: checks the Upgrade token (400 "Expected
 * Upgrade: linkup-tunnel"), the session header (400 "Missing x-linkup-session
 * header"), the bearer secret through auth (401 "Invalid tunnel secret",
 * logged with the session and peer, never the secret; 503 "Tunnel secret
 * cannot be checked now" when auth could not look it up, so the local server
 * retries and nobody reads a store outage as a wrong secret), then answers 101 and
 * keeps the connection as the session's tunnel (lk_tunnel_hub_accept()).
 * While another session whose name differs only in case holds the tunnel
 * hostname, an authenticated request is refused with 409 "Tunnel hostname in
 * use by another session" (logged with both names) instead: the first live
 * tunnel keeps the hostname, so two local servers never take it from each
 * other in turn. Always completes ex. auth is called before this returns. */
void lk_tunnel_hub_handle(struct lk_tunnel_hub *hub, struct lk_exchange *ex,
                          lk_tunnel_auth_cb *auth, void *data);

/* Makes bev (ownership taken; a connection that has just answered 101) the
 * tunnel of session (copied), replacing and closing an older one of the same
 * hostname (session compared case-insensitively; lk_tunnel_hub_handle()
 * refuses a different-case session before it gets here). Starts the
 * HTTP/2 client side. on_change(session, true) is called before this
 * returns. */
void lk_tunnel_hub_accept(struct lk_tunnel_hub *hub, const char *session, struct bufferevent *bev);

/* The live tunnel of session's hostname (session compared ASCII
 * case-insensitively), or NULL when none is connected. The pointer is
 * borrowed and valid until control returns to the loop: use it at once, as
 * lk_proxy_req.connect_data with lk_tunnel_connect. */
struct lk_tunnel *lk_tunnel_hub_find(struct lk_tunnel_hub *hub, struct lk_str session);

/* Sends spec's request through session's tunnel t (from lk_tunnel_hub_find)
 * on streams kept open between requests (HTTP/1.1 keep-alive inside them):
 * sets spec->connect to a connector, allocated in ex, that opens a stream on
 * whatever tunnel session has at each call (so a kept stream found dead is
 * retried even after the tunnel changed), and spec->connect_pool_key to a key
 * unique to t (a replaced tunnel's streams are never reused). The connector
 * fails with "tunnel for session '<name>' is not connected" when session has
 * no tunnel any more. */
void lk_tunnel_hub_target(struct lk_tunnel_hub *hub, struct lk_exchange *ex,
                          const struct lk_tunnel *t, struct lk_str session,
                          struct lk_proxy_req *spec);

/* True when session's hostname has a live tunnel (as lk_tunnel_hub_find). */
bool lk_tunnel_hub_is_connected(struct lk_tunnel_hub *hub, struct lk_str session);

/* Drops session's tunnel, if any (e.g. the session was deleted); session is
 * compared exactly, so the tunnel of a session differing only in case stays.
 * Its streams fail and on_change(session, false) is called from the loop. */
void lk_tunnel_hub_close(struct lk_tunnel_hub *hub, struct lk_str session);

/* Number of live tunnels. */
size_t lk_tunnel_hub_n_tunnels(const struct lk_tunnel_hub *hub);

/* The worker is shutting down: every tunnel sends GOAWAY and leaves the map
 * at once (its session counts as not connected; on_change says so), opens
 * no new stream, and closes once the streams in it have ended (the engine's
 * drain lets their requests finish and closes its pooled ones). The local
 * servers reconnect at once: to another worker behind the same address
 * while this one drains, if there is one. */
void lk_tunnel_hub_go_away(struct lk_tunnel_hub *hub);

/* ---- the client: the local server's end ------------------------------- */

/* Called on every change of the connected state: connected true once the
 * worker answered 101; false when the connection dropped or an attempt
 * failed (why, borrowed during the call: e.g. "worker answered 401"). */
typedef void lk_tunnel_client_state_cb(struct lk_tunnel_client *c, bool connected, const char *why,
                                       void *data);

/* What lk_tunnel_client_start() connects to. Strings are copied. */
struct lk_tunnel_client_opts {
    const char *worker_url; /* http:// or https:// base URL of the worker */
    const char *session;    /* session name */
    const char *secret;     /* the session's tunnel secret (never logged) */
    struct lk_tunnel_opts tunnel;
    unsigned backoff_min_ms;             /* first retry delay after a drop: 100 */
    unsigned backoff_max_ms;             /* the delay doubles up to this: 2 000 */
    unsigned handshake_timeout_ms;       /* connected -> 101 received: 10 000 */
    lk_tunnel_client_state_cb *on_state; /* may be NULL */
    void *data;
};

/* Fills o with the defaults (strings NULL, on_state NULL). */
void lk_tunnel_client_opts_init(struct lk_tunnel_client_opts *o);

/* Starts keeping a tunnel up for opts->session: connects to the worker
 * through srv's upstream connector (its DNS, connect timeout and TLS client
 * context, which verifies against the system store plus srv's
 * upstream_ca_file), upgrades, and serves every stream the worker opens by
 * adopting it into srv (borrowed; must outlive the client) with the peer
 * label "tunnel" and peer_is_loopback false. Reconnects after any drop or
 * failed attempt with exponential backoff (backoff_min_ms doubling up to
 * backoff_max_ms; reset once a tunnel has held for backoff_max_ms); at once
 * when the worker sends GOAWAY (it is stopping), while the old connection
 * finishes the streams in it. The first attempt starts
 * from the loop. Returns 0 and *out (owned: lk_tunnel_client_free()), or
 * LK_EINVAL (bad or non-http(s) worker_url, missing session or secret). */
int lk_tunnel_client_start(struct lk_http_server *srv, const struct lk_tunnel_client_opts *opts,
                           struct lk_tunnel_client **out);

/* True while the tunnel is up (after the 101, until a drop). */
bool lk_tunnel_client_is_connected(const struct lk_tunnel_client *c);

/* Why the last attempt failed or the last connection dropped ("" when
 * none); borrowed, valid until the next loop iteration. */
const char *lk_tunnel_client_last_error(const struct lk_tunnel_client *c);

/* Response-body bytes the client's tunnels (this one and the ones before)
 * moved from plain origin sockets to the tunnel socket with splice(2),
 * without passing through the process's memory (docs/performance.md,
 * finding 27). For diagnostics and tests. */
uint64_t lk_tunnel_client_spliced_bytes(const struct lk_tunnel_client *c);

/* Called once when a lk_tunnel_client_shutdown() has finished: the tunnel
 * has closed, or there was none. From the loop; may free c. */
typedef void lk_tunnel_client_done_cb(struct lk_tunnel_client *c, void *data);

/* Graceful stop, for the local server's SIGTERM/SIGINT: no more attempts,
 * and a connected tunnel sends GOAWAY, so the worker routes no new request
 * to it while the streams in progress (srv's adopted connections) finish;
 * streams it still opens are refused. Once no stream is left and everything
 * is written, the tunnel closes and done(c, data) follows; at once (from the
 * loop) when no tunnel was up. Connections the worker sent GOAWAY on are
 * waited for too. Drain srv meanwhile: c never uses srv again,
 * so it may outlive it. Free c in done or at any time before (a deadline:
 * then no callback). A second call is a no-op. */
void lk_tunnel_client_shutdown(struct lk_tunnel_client *c, lk_tunnel_client_done_cb *done,
                               void *data);

/* Stops: closes the tunnel (streams in progress end; their adopted
 * connections see the close) and frees c. No callback is called. NULL is a
 * no-op. Free the client before draining or freeing srv, unless it was shut
 * down (lk_tunnel_client_shutdown()). Not from inside the client's own
 * on_state callback. */
void lk_tunnel_client_free(struct lk_tunnel_client *c);

#endif
