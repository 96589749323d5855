/*
 * http_server.h - Linkup's HTTP/1.1 engine: listeners, client connections,
 * request exchanges, and the streaming reverse proxy (plain HTTP and
 * WebSocket) that both `linkup server` and `linkup worker` are built on.
 *
 * The engine runs on one libevent event_base (single thread, DESIGN §4). A
 * program creates one struct lk_http_server with a handler callback, adds one
 * or more listeners ("A:P" strings; a TLS listener takes an SSL_CTX), and runs
 * the loop. For every request head the engine calls the handler once with a
 * struct lk_exchange. The handler inspects the request through the accessors
 * below and then, now or later from any loop callback, completes the exchange
 * with exactly one of:
 *
 *   lk_exchange_respond()    a complete response from memory;
 *   lk_exchange_read_body()  read the whole (bounded) request body first, then
 *                            lk_exchange_respond() from the body callback or
 *                            later (JSON admin endpoints);
 *   lk_exchange_proxy()      stream the request to an upstream URL and the
 *                            response back (HTTP or WebSocket upgrade).
 *
 * The engine enforces the limits and timeouts of DESIGN §9 (struct
 * lk_http_server_opts), answers malformed heads itself with 400/414/431 and
 * the parser's reason as a text/plain body, keeps client connections alive
 * and serves pipelined requests strictly in order, and logs one access-log
 * line per request (lib/net/log.h).
 *
 * Threading: everything here is loop-thread only. No function calls a
 * program callback before returning unless said so.
 *
 * Ownership summary:
 *   - struct lk_http_server is owned by the program: lk_http_server_new() /
 *     lk_http_server_free() (or lk_http_server_drain(), which frees it).
 *   - struct lk_exchange is owned by the engine. The pointer handed to the
 *     handler stays valid until the program completes it (respond, or the body
 *     callback of read_body followed by respond, or proxy followed by the end of
 *     the proxied exchange), even if the client goes away in the meantime.
 *     After the completing call the program must not touch it again, except
 *     inside the callbacks the engine invokes with it.
 *   - Every string returned by an accessor is borrowed from the exchange's
 *     request arena and valid until the exchange completes.
 */
#ifndef LK_NET_HTTP_SERVER_H
#define LK_NET_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/str.h"
#include "proto/http1.h"

struct bufferevent;
struct event_base;
struct evdns_base;
struct ssl_ctx_st;
struct lk_http_server;
struct lk_exchange;
struct lk_access_entry;

/* ---- server ------------------------------------------------------------ */

/* Options of a server. Initialise with lk_http_server_opts_init() (the DESIGN
 * §9 defaults), then change what you need. All durations are milliseconds;
 * 0 disables that timer. */
struct lk_http_server_opts {
    struct lk_http1_limits limits;  /* head parsing limits (400/414/431) */
    unsigned head_timeout_ms;       /* whole request head read: 30 000 */
    unsigned idle_timeout_ms;       /* keep-alive idle between requests: 60 000 */
    unsigned connect_timeout_ms;    /* upstream DNS + connect + TLS: 10 000 */
    unsigned first_byte_timeout_ms; /* request sent -> first response byte: 120 000 */
    size_t max_conns;               /* open client connections; 503 past it: 4096 */
    size_t stream_buffer_max;       /* bytes queued per direction while streaming
                                       bodies before reading pauses: 256 KiB */
    size_t ws_buffer_max;           /* same for WebSocket tunnels: 1 MiB */
    size_t pool_max_idle_per_host;  /* idle upstream connections per
                                       (scheme, host, port): 128 (above the
                                       usual client concurrency, so that
                                       connections are reused, not churned) */
    size_t pool_max_idle;           /* idle upstream connections in total: 512 */
    unsigned pool_idle_timeout_ms;  /* idle upstream connection lifetime: 30 000 */
    /* TLS to https:// and wss:// upstreams: when upstream_tls is NULL the
     * engine creates a client SSL_CTX that verifies against the system trust
     * store (plus upstream_ca_file when set, a PEM bundle; borrowed during
     * lk_http_server_new()). Without upstream_ca_file that context is only
     * created for the first https:// or wss:// upstream (loading the trust
     * store costs ~0.1 s and a few MiB); a failure then is reported as that
     * upstream's connect error. With upstream_ca_file it is created in
     * lk_http_server_new(), which fails with LK_EIO for a bad file. A
     * program-supplied upstream_tls is borrowed and must outlive the server;
     * the engine still sets SNI and the hostname check per connection. */
    struct ssl_ctx_st *upstream_tls;
    const char *upstream_ca_file;
    /* DNS for upstream names: borrowed evdns_base, or NULL to let the engine
     * create its own from /etc/resolv.conf and /etc/hosts. `localhost` and
     * names under `.localhost` always resolve to ::1 then 127.0.0.1 without
     * DNS (RFC 6761); every address is tried in order until one connects. */
    struct evdns_base *dns;
    bool access_log; /* one INFO access line per request (buffered, see
                        lk_log_access() in lib/net/log.h): true */
    /* Called with each request's access entry as it completes (whatever the
     * log level; the entry and its strings are borrowed during the call):
     * the local server's request inspector. NULL: none. */
    void (*on_access)(void *data, const struct lk_access_entry *e);
    void *access_data;
    /* While a response body is relayed: the longest time without a byte
     * from the upstream while it is being read (the timer stops while
     * reading pauses for a slow client); the client connection is then cut,
     * since the response already started: 60 000. Not for WebSocket tunnels
     * nor for custom connectors (built-in tunnel streams). */
    unsigned upstream_idle_timeout_ms;
    /* The longest a client socket may refuse every byte of pending output
     * (a response, a WebSocket's upstream bytes) before the connection is
     * closed: 60 000. Runs only while output waits for the client; an idle
     * connection or one that takes bytes at any pace is not cut. Not for
     * built-in tunnel streams (HTTP/2 flow control paces them). */
    unsigned send_timeout_ms;
};

/* Fills o with the defaults listed above. */
void lk_http_server_opts_init(struct lk_http_server_opts *o);

/* Called once per request head. ex is valid until the program completes it
 * (see the top of this file). The handler may complete ex before returning or
 * keep it and complete it later from another loop callback. */
typedef void lk_http_handler_cb(struct lk_exchange *ex, void *data);

/* Creates a server on base. opts is copied (NULL = defaults); base, and
 * opts->dns / opts->upstream_tls when given, are borrowed and must outlive the
 * server. handler and data are stored. Returns 0 and *out (owned by the
 * caller: lk_http_server_free() or lk_http_server_drain()), or LK_EIO when
 * the DNS base or the TLS client context cannot be set up (logged). Nothing
 * listens until lk_http_server_listen(). */
int lk_http_server_new(struct event_base *base, const struct lk_http_server_opts *opts,
                       lk_http_handler_cb *handler, void *data, struct lk_http_server **out);

/* Adds a listener on addr ("A:P", "[v6]:P", port 0 = ephemeral; parsed with
 * lk_addr_parse()). tls NULL gives a plain HTTP listener; a non-NULL SSL_CTX
 * (borrowed, must outlive the server) is reserved for TLS listeners: each
 * accepted connection then gets a server-side TLS bufferevent and
 * lk_exchange_is_tls() returns true. On success writes the bound address as
 * "A:P" ("[v6]:P" for IPv6) into bound (bound_len bytes, 64 are enough; may be
 * NULL) so the program can print "HTTP listening on A:P". Returns 0, LK_EINVAL
 * (bad address) or LK_EIO (bind/listen failed; logged with errno text). */
int lk_http_server_listen(struct lk_http_server *srv, const char *addr, struct ssl_ctx_st *tls,
                          char *bound, size_t bound_len);

/* Supplies the SSL_CTX of a lazy TLS listener (below): the context
 * (borrowed, must outlive the server) or NULL to refuse this connection. */
typedef struct ssl_ctx_st *lk_tls_ctx_cb(void *data);

/* lk_http_server_listen() for a TLS listener whose SSL_CTX is built on
 * first use, so that a program that gets no TLS connection never
 * initialises OpenSSL for it (~3 MiB of RSS; docs/performance.md, finding
 * 10). get(data) is called from on-accept, before the connection exists,
 * for each accepted connection until it returns a context; that context
 * then serves this listener like the tls argument of lk_http_server_listen()
 * and get is not called again. NULL closes that connection at once (the
 * client sees a failed handshake; the program logs why) and the next
 * connection calls get again. data is borrowed. Same results as
 * lk_http_server_listen(). */
int lk_http_server_listen_lazy_tls(struct lk_http_server *srv, const char *addr, lk_tls_ctx_cb *get,
                                   void *data, char *bound, size_t bound_len);

/* Called once when a drain has finished; the server has been freed. */
typedef void lk_http_server_drained_cb(void *data);

/* Graceful shutdown: stops accepting at once, closes idle keep-alive client
 * connections and pooled upstream connections, lets in-flight exchanges
 * finish (each connection closes after its current response), and after
 * deadline_ms at the latest aborts whatever is left. Then frees the server
 * and calls done(data) from the loop (never before returning). Exchanges the
 * program still holds (an async respond pending) are aborted at the deadline;
 * responding to them afterwards is not allowed. Call at most once; after it
 * the program must not use srv. */
void lk_http_server_drain(struct lk_http_server *srv, unsigned deadline_ms,
                          lk_http_server_drained_cb *done, void *data);

/* Closes every listener and connection at once and frees the server; the
 * program must not hold exchanges that it still intends to complete. NULL is
 * a no-op. Must not be called from inside a callback of this server; use
 * lk_http_server_drain() there. */
void lk_http_server_free(struct lk_http_server *srv);

/* Serves an already connected byte stream as if it were an accepted client
 * connection (the local end of a tunnel stream, lib/net/tunnel.h): requests
 * read from bev reach the server's handler like any other. Takes ownership of
 * bev (a socket-backed bufferevent, created with BEV_OPT_CLOSE_ON_FREE, whose
 * callbacks the engine replaces), also on error, when it is freed at once.
 * peer_label (copied; NULL = "adopted") is what lk_exchange_peer() returns;
 * peer_is_loopback is what lk_exchange_peer_is_loopback() returns. Tunnel
 * streams must pass false: their requests come from the internet through the
 * worker, so loopback-only admin endpoints must not be reachable through
 * them. The stream is not counted against max_conns, which bounds the
 * connections accepted on listeners (DESIGN §9): its own connection bounds
 * it (an HTTP/2 client's or a tunnel's SETTINGS_MAX_CONCURRENT_STREAMS). It
 * gets the usual head, idle and lingering timers; lk_exchange_is_tls() is false and
 * lk_exchange_local_port() is 0 for it. A TCP client's EOF cancels the
 * upstream request only until the response starts (lk_proxy_on_client_eof());
 * an adopted stream that reaches EOF at any point while its request is being
 * proxied (before a 101) is taken as gone: the tunnel's far end never
 * half-closes mid-request, it only closes when the stream was aborted.
 * Returns 0 or LK_ECLOSED (the server is draining). Loop thread only; calls no
 * program callback before returning. */
int lk_http_server_adopt(struct lk_http_server *srv, struct bufferevent *bev,
                         const char *peer_label, bool peer_is_loopback);

/* The methods both reverse proxies forward: every one but CONNECT, which
 * asks for a raw tunnel (RFC 9110 §9.3.6) and gets 405 with this Allow on
 * HTTP/1.1 and HTTP/2 alike (docs/reliability.md). */
#define LK_HTTP_PROXY_ALLOW "GET, POST, PUT, PATCH, DELETE, HEAD, TRACE, OPTIONS"

/* Room a relayed head gets past the server's limits: the worker adds up to
 * five fields to a request it passes through a tunnel (traceparent,
 * tracestate, linkup-destination, x-forwarded-host, SPEC §3.7; baggage,
 * DESIGN §7) and may lengthen an existing tracestate or baggage line, so a request it accepted
 * under the same limits must not be refused with a 431 by the local server. */
#define LK_HTTP_RELAY_EXTRA_HEADERS 8
#define LK_HTTP_RELAY_EXTRA_BYTES   2048

/* lk_http_server_adopt() for a tunnel stream (peer not loopback): its heads
 * are parsed with the limits widened by LK_HTTP_RELAY_EXTRA_HEADERS fields
 * and LK_HTTP_RELAY_EXTRA_BYTES bytes (line and head), and a WebSocket on it
 * whose upstream fails ends with an error joined to the EOF on bev's
 * partner (the tunnel pipe then resets the stream with CANCEL after the
 * last bytes, RFC 8441 §5). Unlike other connections it is adopted during a
 * drain too (a stream the worker opened before it saw the tunnel's GOAWAY
 * notice), and a drain leaves it open while idle: it ends with its tunnel's
 * final GOAWAY (lk_http_server_retire_adopted()) or the drain deadline. */
int lk_http_server_adopt_relayed(struct lk_http_server *srv, struct bufferevent *bev,
                                 const char *peer_label);

/* A tunnel whose GOAWAY notice is out may still hand srv streams the worker
 * opened before it saw the notice (lk_http_server_adopt_relayed()): srv's
 * drain does not finish while such a hold is on. ref is where the holder
 * keeps srv: when the drain's deadline frees srv anyway, *ref is set to
 * NULL. lk_http_server_release() ends the hold (a no-op when *ref is NULL
 * or the hold is not on). Loop thread only. */
void lk_http_server_hold(struct lk_http_server *srv, struct lk_http_server **ref);
void lk_http_server_release(struct lk_http_server **ref);

/* The connection adopted from bev is to end, as in a drain of its own: it
 * closes now when idle between requests, else after its current response
 * (which says Connection: close); a WebSocket on it runs on. For a tunnel
 * going away (its GOAWAY). No-op when bev is not the end of an engine
 * connection. Loop thread only; calls no program callback. */
void lk_http_server_retire_adopted(struct bufferevent *bev);

/* Runs the callbacks still queued on base after its loop ended (a few
 * rounds, as callbacks queue others). A bufferevent freed while one of its
 * deferred callbacks was queued (every tunnel stream end) is only released
 * when that callback runs: call this before event_base_free(). */
void lk_net_loop_settle(struct event_base *base);

/* Number of open client connections and adopted streams (for tests). */
size_t lk_http_server_n_conns(const struct lk_http_server *srv);
/* Times the heap was given back to the kernel after no request was in
 * flight for 2 s (lib/net/heap.h; for tests). */
size_t lk_http_server_n_heap_trims(const struct lk_http_server *srv);
/* Number of idle pooled upstream connections (for tests). */
size_t lk_http_server_n_idle_upstreams(const struct lk_http_server *srv);

/* ---- exchange: the request -------------------------------------------- */

/* Request line. The target is the raw request-target ("/p?q", or an absolute
 * URL in absolute-form). minor_version is 0 or 1 (HTTP/1.x). */
struct lk_str lk_exchange_method(const struct lk_exchange *ex);
struct lk_str lk_exchange_target(const struct lk_exchange *ex);
int lk_exchange_minor_version(const struct lk_exchange *ex);
/* "{http|https}://{host}{target}" (the scheme of the listener the request
 * came in on, the raw target) in the exchange's memory, NUL-terminated:
 * the request URL of an origin-form request (SPEC §4.4 step 1, §5.3 step
 * 1; the caller picks host). Built without printf (every proxied request). */
struct lk_str lk_exchange_url(struct lk_exchange *ex, struct lk_str host);

/* First header named name (ASCII case-insensitive). Returns true and sets
 * *value (borrowed, OWS-trimmed) when present; false otherwise. */
bool lk_exchange_header(const struct lk_exchange *ex, struct lk_str name, struct lk_str *value);
/* All request headers in received order (duplicates kept, names as sent).
 * Returns the array (borrowed) and sets *n. */
const struct lk_http_header *lk_exchange_headers(const struct lk_exchange *ex, size_t *n);

/* Framing of the request body as parsed: LK_HTTP1_BODY_NONE, _LENGTH (see
 * content_length) or _CHUNKED. */
enum lk_http1_body_kind lk_exchange_body_kind(const struct lk_exchange *ex);
uint64_t lk_exchange_content_length(const struct lk_exchange *ex);

/* True when the request is a WebSocket upgrade per SPEC §5.4
 * (lk_ws_is_upgrade_request()). */
bool lk_exchange_is_websocket(const struct lk_exchange *ex);

/* Peer address as "A:P" / "[v6]:P" (borrowed), whether it is a loopback
 * address (127.0.0.0/8, ::1, ::ffff:127.0.0.0/104), whether the request came
 * in over a TLS listener, the local port it arrived on, and the connection id
 * used in log lines ("conn N:"). */
const char *lk_exchange_peer(const struct lk_exchange *ex);
bool lk_exchange_peer_is_loopback(const struct lk_exchange *ex);
bool lk_exchange_is_tls(const struct lk_exchange *ex);
int lk_exchange_local_port(const struct lk_exchange *ex);
uint64_t lk_exchange_conn_id(const struct lk_exchange *ex);

/* True once the client connection has gone away (the exchange is still valid
 * and must still be completed; completing it then only frees it). */
bool lk_exchange_is_aborted(const struct lk_exchange *ex);

/* In a proxy error callback: true when the upstream took the request and did
 * not answer in time (errtext LK_ETEXT_NO_ANSWER, the first-byte timeout),
 * as opposed to being unreachable or failing. */
bool lk_exchange_upstream_no_answer(const struct lk_exchange *ex);

/* Request-scoped memory: n bytes (zeroed) / a NUL-terminated copy of (p, n)
 * from the exchange's arena, freed when the exchange completes. Never NULL
 * (abort on OOM). Use it for header values and URLs built per request. */
void *lk_exchange_alloc(struct lk_exchange *ex, size_t n);
char *lk_exchange_strndup(struct lk_exchange *ex, const char *p, size_t n);
/* printf into the arena. */
char *lk_exchange_printf(struct lk_exchange *ex, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Adds the session and service names to this request's access-log line
 * (copied; NULL leaves a field as "-"). */
void lk_exchange_set_log_fields(struct lk_exchange *ex, const char *session, const char *service);

/* ---- exchange: completing it ------------------------------------------ */

/* Sends a complete response: status line with the standard reason phrase
 * (lk_http1_reason()), the extra headers in order (borrowed during the call;
 * pass Content-Type here, e.g. "text/plain; charset=utf-8", "text/plain" or
 * "application/json"; do not pass Content-Length, Transfer-Encoding or
 * Connection), Content-Length: len, Connection: close when the connection will
 * close, then body (borrowed during the call; may be NULL when len is 0; not
 * sent for HEAD requests and 1xx/204/304 statuses). status must be 200..599.
 * Completes the exchange: if the request body was not read it is discarded
 * (the engine skips it when it is small and framed, or closes the connection
 * after the response). Returns 0, or LK_EINVAL for a bad status or a call on
 * an already completed exchange (a program bug; logged). */
int lk_exchange_respond(struct lk_exchange *ex, int status, const struct lk_http_header *extra,
                        size_t n_extra, const char *body, size_t len);

/* Receives the whole request body. cb(ex, body, len, err, data) is called
 * once, never before this returns:
 *   err 0           body complete (body/len borrowed from the arena, valid
 *                   until the exchange completes; NUL-terminated for
 *                   convenience; len 0 and a non-NULL "" without a body);
 *   LK_ELIMIT       more than max_bytes (answer 413; the connection closes
 *                   after the response);
 *   LK_EPARSE       malformed chunked framing (answer 400; closes after);
 *   LK_ECLOSED / LK_ETIMEDOUT  the client went away or stalled (respond
 *                   anyway to free the exchange; nothing is sent).
 * The callback (or later code) must complete the exchange with
 * lk_exchange_respond(); lk_exchange_proxy() is not allowed after
 * read_body. Returns 0, or LK_EINVAL when called twice or after completion. */
typedef void lk_exchange_body_cb(struct lk_exchange *ex, const char *body, size_t len, int err,
                                 void *data);
int lk_exchange_read_body(struct lk_exchange *ex, size_t max_bytes, lk_exchange_body_cb *cb,
                          void *data);

/* Answers the request with "101 Switching Protocols" and hands the client
 * connection over to the program (the worker's tunnel endpoint,
 * lib/net/tunnel.h). The response carries "Connection: Upgrade" and the extra
 * headers in order (borrowed during the call; pass at least "Upgrade: <proto>";
 * Content-Length, Transfer-Encoding and Connection are ignored). The engine
 * then forgets the connection: it is no longer counted in n_conns, drained or
 * timed out, and the access log shows status 101. On success *out receives the
 * connection's bufferevent (ownership moves to the caller, who frees it with
 * bufferevent_free()): its callbacks are cleared and reading/writing are
 * disabled, its watermarks and timeouts reset, the 101 is queued in its
 * output buffer and any bytes the client sent after the request head are
 * still in its input buffer. It is a TLS bufferevent when the request came
 * over a TLS listener. Completes the exchange. Returns 0; LK_EINVAL (nothing
 * happened) when ex is not waiting for the program, read_body was used, or
 * the request has a body (Content-Length: 0 is none); LK_ECLOSED when the client is already gone or
 * has shut its write side (the exchange is completed and freed; *out is NULL). Loop thread only. */
int lk_exchange_upgrade(struct lk_exchange *ex, const struct lk_http_header *extra, size_t n_extra,
                        struct bufferevent **out);

/* A custom upstream connector for lk_exchange_proxy() (the worker's route
 * into a tunnel, lib/net/tunnel.h): returns 0 with *out set to a connected,
 * socket-backed bufferevent created with BEV_OPT_CLOSE_ON_FREE (ownership
 * moves to the engine, which sets its callbacks and frees it when the
 * exchange ends; it is never pooled), or a negative lk_err with a reason in
 * errtext (errtext_len bytes; reported through on_error). */
typedef int lk_proxy_connect_cb(void *data, struct bufferevent **out, char *errtext,
                                size_t errtext_len);

/* Called when a proxied exchange fails before any response byte went to the
 * client: DNS, connect, TLS, send, or receive/parse of the upstream response
 * head, a timeout, or (websocket with pass_non_101 false) a non-101 answer.
 * errtext (borrowed during the call) says what failed, e.g. "connection
 * refused (127.0.0.1:9)". The program must complete ex with
 * lk_exchange_respond() (e.g. 502 "Failed to fetch from target service: ..."),
 * now or later. Not called when the client itself went away. */
typedef void lk_proxy_error_cb(struct lk_exchange *ex, const char *errtext, void *data);

/* The engine's texts (errtext) for the upstream timeouts of DESIGN §9, as
 * printf formats, for a program that fetches on its own and must answer
 * alike (the worker's cache): host and port; host; host and the idle ms. */
#define LK_ETEXT_CONNECT_TIMEOUT "connection to %s:%d timed out"
#define LK_ETEXT_NO_ANSWER       "upstream %s did not answer in time"
#define LK_ETEXT_BODY_IDLE       "upstream %s sent no body bytes for %u ms (upstream idle timeout)"

/* The most resp_default entries one lk_proxy_req may carry (the proxy notes
 * which of them the upstream sent in one 64-bit set). */
#define LK_PROXY_MAX_RESP_DEFAULT 64

/* What lk_exchange_proxy() sends and how it treats the answer. Everything is
 * borrowed during the lk_exchange_proxy() call only (copied into the arena). */
struct lk_proxy_req {
    /* Absolute upstream URL: http://, https://, ws:// or wss:// (ws maps to
     * http, wss to https), host (name, IPv4 or [IPv6]), optional port,
     * path + query (the path defaults to "/"). Fragments are dropped. */
    const char *url;
    /* The complete request header list to send, in order (normally the
     * incoming headers minus Host, with the program's replacements applied).
     * The engine drops Host (it sends its own, see host below), Content-Length
     * and the hop-by-hop headers (Connection and every header it names,
     * Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding, and
     * Upgrade unless websocket), then frames the body itself: Content-Length
     * passed through, chunked in -> chunked out. */
    const struct lk_http_header *headers;
    size_t n_headers;
    /* Host header value to send; NULL derives it from url: host, plus
     * ":port" when the port is not the scheme's default. */
    const char *host;
    /* Response headers to set, replacing any the upstream sent with the same
     * name (may be NULL/0). */
    const struct lk_http_header *resp_set;
    size_t n_resp_set;
    /* Response headers to add only where the upstream response has no header
     * of that name (CORS, DESIGN §2.7; may be NULL/0; at most
     * LK_PROXY_MAX_RESP_DEFAULT). Applied after resp_set. */
    const struct lk_http_header *resp_default;
    size_t n_resp_default;
    /* WebSocket upgrade: sends Connection: Upgrade and the request's Upgrade
     * header; on 101 the client gets a 101 with every upstream header except
     * Content-Length and Content-Encoding, plus resp_set/resp_default, then
     * both connections become a byte tunnel (ws_buffer_max per direction,
     * half-close passed on). */
    bool websocket;
    /* For websocket only: when the upstream answers anything but 101, true
     * passes that response to the client unchanged (local server, SPEC §5.4:
     * resp_set and resp_default are not applied; only hop-by-hop headers and
     * the body framing are redone as for any response), false calls on_ws_refused (else
     * on_error) with "upstream answered <status> instead of 101" (worker, SPEC §4.7). */
    bool ws_pass_non_101;
    /* For websocket only (the worker, SPEC §4.7): the tunnel reads frame
     * heads; a close frame is passed on with code 1000 and its reason (same
     * mask key), and a side that ends or fails without sending one gets the
     * other side a 1011 close with a reason saying so. Data, ping and pong
     * frames pass untouched; so does, from its first head that breaks RFC
     * 6455 §5.2 on (reserved bits without an extension in the 101, reserved
     * opcodes, the wrong masking), everything a direction carries.
     * False: the tunnel moves bytes. */
    bool ws_close_normal;
    lk_proxy_error_cb *on_error; /* required */
    /* With websocket and !ws_pass_non_101: the upstream answered without
     * switching protocols (may be NULL: on_error). */
    lk_proxy_error_cb *on_ws_refused;
    void *data;
    /* Optional custom connector: when set, the engine does not resolve or
     * dial url's host (and does no TLS: the connector's transport is used as
     * it is); it calls connect(connect_data, ...) once, from inside
     * lk_exchange_proxy() before it returns, and speaks HTTP/1.1 to the
     * bufferevent it returns exactly as to a dialled upstream (url still gives
     * the request target and, unless host is set, the Host header). Without
     * connect_pool_key such connections are never pooled and never retried,
     * the request carries "Connection: close", and connect_data only needs to
     * stay valid during the lk_exchange_proxy() call. */
    lk_proxy_connect_cb *connect;
    void *connect_data;
    /* With connect: connections are kept alive in the upstream pool under
     * this key (copied) and an idle one under the same key is used before
     * connect is called; a pooled one found dead before any response byte is
     * retried once through connect, as dialled ones are. connect_data must
     * then stay valid until the exchange completes. */
    const char *connect_pool_key;
};

/* Forwards the request to spec->url and streams the answer back: status and
 * headers (hop-by-hop removed, every Set-Cookie kept in order, resp_set and
 * resp_default applied, Content-Length kept or the body re-framed for the
 * client), bodies streamed both ways with backpressure (never held whole),
 * 1xx interim responses relayed (so Expect: 100-continue is forwarded to and
 * answered by the upstream), redirects never followed, no body for
 * HEAD/204/304. Upstream connections come from the per-(scheme, host, port)
 * keep-alive pool; a pooled connection found dead before any response byte is
 * retried once on a fresh connection when the request is idempotent and has
 * no body. Failure before the first response byte -> spec->on_error; after
 * it -> the client connection is aborted. The client going away cancels the
 * upstream request (that upstream connection is closed, not pooled).
 * Completes the exchange (on_error re-opens it for one respond). A bad URL
 * in spec is reported through on_error too, from the loop, never before this
 * returns. Returns 0, or LK_EINVAL (nothing happened; the exchange still
 * needs completing) when spec->on_error is NULL, the exchange was already
 * completed, or read_body was used. */
int lk_exchange_proxy(struct lk_exchange *ex, const struct lk_proxy_req *spec);

/* True when lk_exchange_proxy() would leave out h, one of spec's headers,
 * because a Connection field of the client's request or of spec names it
 * and it is one of the client's own fields (RFC 9110 §7.6.1): for a program
 * that sends spec's request itself (the worker's cache). */
bool lk_exchange_connection_drops(const struct lk_exchange *ex, const struct lk_proxy_req *spec,
                                  const struct lk_http_header *h);

#endif
