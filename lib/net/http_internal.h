/*
 * http_internal.h - structures shared by the engine's files (http_server.c,
 * proxy.c, upstream.c). Not for programs: use http_server.h.
 *
 * Ownership: the server owns its listeners, client connections (srv->conns),
 * idle upstream connections (srv->idle) and every live exchange
 * (srv->exchanges). A connection owns its bufferevent and its timer storage;
 * a busy upstream connection is owned by the proxy state of one exchange.
 * A client connection is destroyed only by on_reap() (conn_close() queues it),
 * so a callback never frees the object it is running on.
 */
#ifndef LK_NET_HTTP_INTERNAL_H
#define LK_NET_HTTP_INTERNAL_H

#include <event2/event.h>
#include <event2/event_struct.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

#include "core/buf.h"
#include "net/accept_guard.h"
#include "net/http_server.h"
#include "net/timer.h"
#include "proto/http1.h"

struct bufferevent;
struct evbuffer;
struct evconnlistener;
struct lk_h2_front;
struct lk_proxy;
struct lk_upstream;

/* The loop's cached clock in ms (no syscall inside a callback). */
static inline int64_t lk_loop_now_ms(struct event_base *base)
{
    struct timeval tv;
    event_base_gettimeofday_cached(base, &tv);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* Request-scoped bump allocator: chunks freed together at exchange end. */
struct lk_net_arena {
    struct lk_net_arena_chunk *chunks;
};
void *lk_net_arena_alloc(struct lk_net_arena *a, size_t n);
char *lk_net_arena_strndup(struct lk_net_arena *a, const char *p, size_t n);
void lk_net_arena_release(struct lk_net_arena *a);

enum lk_conn_state {
    LK_CONN_READING_HEAD = 0,
    LK_CONN_HANDLER,      /* the program holds the exchange */
    LK_CONN_READING_BODY, /* lk_exchange_read_body() in progress */
    LK_CONN_PROXYING,     /* lk_exchange_proxy() in progress */
    LK_CONN_DISCARDING,   /* skipping an unread request body after a response */
    LK_CONN_TUNNEL,       /* WebSocket byte pump */
    LK_CONN_FLUSHING,     /* writing the last response, then close */
    LK_CONN_LINGERING,    /* write side shut, draining input before close */
    LK_CONN_H2,           /* HTTP/2 prior knowledge: h2 serves it (net/h2_front.h) */
    LK_CONN_CLOSED,       /* queued for destruction */
};

struct lk_listener {
    struct lk_listener *next;
    struct lk_http_server *srv;
    struct evconnlistener *evl;
    struct ssl_ctx_st *tls;
    lk_tls_ctx_cb *tls_get; /* lazy TLS listener: supplies tls on first use */
    void *tls_data;
    struct lk_accept_guard guard; /* accept(2) failures (EMFILE ...): pause */
};

struct lk_conn {
    struct lk_http_server *srv;
    struct lk_conn *prev, *next; /* srv->conns, or srv->reap when closed */
    uint64_t id;
    struct bufferevent *bev; /* owned */
    enum lk_conn_state state;
    struct lk_timer timer; /* per-phase timeout (lazy: it moves every request) */
    struct event kick;     /* "process the input again" from the loop */
    struct sockaddr_storage peer;
    char peer_str[64];
    bool is_loopback, is_tls;
    bool plain; /* a plain socket bufferevent: lk_net_send() may write inline */
    /* Own reads (plain sockets, until a WebSocket tunnel): the bufferevent's
     * EV_READ stays off and rd reads the socket straight into its input
     * buffer, without libevent's FIONREAD ioctl before every read. */
    struct event rd;
    bool own_read, rd_want, rd_added, rd_eof;
    bool read_eof;   /* the client shut its write side */
    bool eof_aborts; /* adopted stream: EOF while proxying means gone */
    bool relayed;    /* a tunnel stream: heads parsed with srv->relay_limits */
    bool accepted;   /* from a listener, counted in srv->n_clients; an adopted
                        stream is bounded by its connection's stream limit */
    bool https;      /* a stream of an HTTP/2-over-TLS client: https:// URLs */
    /* A stream of the HTTP/2 front or of the built-in tunnel: a WebSocket
     * whose upstream failed ends with lk_net_pair_error() joined to the EOF,
     * for RST_STREAM CANCEL after its last bytes (RFC 8441 §5; h2_front.c
     * and tunnel.c cancel_when_flushed()). */
    bool pair_resets;
    /* The listener's end of an accepted socket (getsockname at accept;
     * zeroed for an adopted stream, whose lk_exchange_local_port() is 0),
     * and whether the peer is one of this server's own upstream connections
     * (lk_conn_from_self(), decided at the first proxied request). */
    struct sockaddr_storage local;
    bool self_checked, from_self;
    bool retiring;   /* lk_http_server_retire_adopted(): no keep-alive */
    bool head_begun; /* bytes of the next head have arrived */
    unsigned n_requests;
    struct lk_exchange *ex; /* current exchange, or NULL */
    uint64_t discard_left;  /* LK_CONN_DISCARDING budget */
    /* LK_CONN_H2: owns the client bufferevent (bev is NULL then); freed by
     * the connection's destructor. */
    struct lk_h2_front *h2;
};

enum lk_ex_phase {
    LK_EX_HANDLER = 0, /* waiting for the program */
    LK_EX_READ_BODY,
    LK_EX_PROXY,
    LK_EX_DONE, /* engine finished; freed when the program is done too */
};

struct lk_exchange {
    struct lk_http_server *srv;
    struct lk_exchange *prev, *next; /* srv->exchanges */
    struct lk_conn *conn;            /* NULL once the client is gone */
    uint64_t conn_id;
    struct lk_net_arena arena;
    struct lk_http1_request req; /* slices into head (arena) */
    char *head;
    size_t head_len;
    bool is_ws, is_tls, is_loopback;
    int local_port;
    char peer_str[64];
    enum lk_ex_phase phase;
    bool aborted;
    bool no_answer; /* the proxy failed on the first-byte timeout */
    bool used_read_body;
    bool relaying; /* a WebSocket tunnel: not counted in srv->n_exchanges */
    /* Request body consumption (client -> somewhere). */
    uint64_t body_left; /* LENGTH: bytes left */
    struct lk_http1_chunked chunked;
    bool body_done;
    /* read_body */
    struct evbuffer *body_buf;
    size_t body_max;
    lk_exchange_body_cb *body_cb;
    void *body_data;
    /* Response accounting for the access log. */
    int status;
    uint64_t bytes_out;
    struct timeval start;
    const char *log_session, *log_service;
    struct lk_proxy *proxy; /* proxy.c state, arena-allocated */
    struct event defer;     /* one-shot deferred work, see lk_exchange_defer */
    bool defer_ready;
    void (*defer_fn)(struct lk_exchange *ex);
};

/* The loop guard's memory of recent upstream connections: the local port of
 * one and its socket, in slot port % LK_SELF_SLOTS (a newer connection
 * takes the slot of an older one). */
#define LK_SELF_SLOTS 256
struct lk_self_slot {
    uint16_t port; /* 0: empty */
    evutil_socket_t fd;
};

struct lk_http_server {
    struct event_base *base;
    struct lk_http_server_opts opts;
    /* opts.send_timeout_ms as one of the base's common timeouts (every
     * connection has the same: a queue, not the timer heap); unset when 0. */
    struct timeval send_tv;
    lk_http_handler_cb *handler;
    void *data;
    struct evdns_base *dns;
    bool own_dns;
    struct ssl_ctx_st *client_tls;
    bool own_client_tls;
    struct lk_listener *listeners;
    struct lk_conn *conns;
    size_t n_conns;       /* open in conns: accepted connections and adopted streams */
    size_t n_clients;     /* accepted connections: what max_conns bounds (DESIGN §9) */
    struct lk_conn *reap; /* closed connections awaiting destruction */
    struct event reap_ev; /* runs on_reap */
    struct lk_exchange *exchanges;
    size_t n_exchanges;        /* exchanges not relaying; 0 = idle for the heap policy */
    struct lk_pool_host *pool; /* idle upstream connections by (scheme, host, port) */
    size_t n_pool_hosts;
    size_t n_idle;
    struct lk_buf head_buf; /* scratch for outgoing heads; reset per use */
    /* "Date: <IMF-fixdate>\r\n" of the second date_sec, for the responses
     * the server makes itself (RFC 9110 §6.6.1); see date_field(). */
    char date_field[64];
    size_t date_len;
    time_t date_sec;
    /* Parser output for client and upstream heads: a parse and the copy
     * of its result into the exchange (exchange_new(), read_response_head())
     * run without returning to the loop, so one array of each serves every
     * connection. */
    struct lk_http_header *req_scratch;  /* relay_limits.max_headers + 1 entries */
    struct lk_http_header *resp_scratch; /* resp_limits.max_headers + 1 entries */
    /* opts.limits plus room for the fields a relaying Linkup hop adds
     * (lk_http_server_adopt_relayed()). */
    struct lk_http1_limits relay_limits;
    /* Upstream response heads: opts.limits, each at least its default. */
    struct lk_http1_limits resp_limits;
    struct event log_flush; /* flushes the buffered access log */
    bool log_flush_set;
    uint64_t next_id;
    bool draining;
    struct event drain_timer;
    bool drain_timer_set;
    lk_http_server_drained_cb *drain_done;
    void *drain_data;
    struct event drain_check;       /* finishes the drain from the loop */
    struct lk_http_server ***holds; /* lk_http_server_hold(): the drain waits */
    size_t n_holds, cap_holds;
    struct lk_heap_idle *heap_idle;          /* trims the heap 2 s after the last
                                                connection closes (net/heap.h) */
    struct lk_self_slot self[LK_SELF_SLOTS]; /* lk_http_server_note_upstream() */
};

/* ---- http_server.c ----------------------------------------------------- */

/* Marks c closed, stops its watchers and queues it for destruction at the end
 * of the loop iteration (the one destructor: conn_destroy via on_reap). */
void lk_conn_close(struct lk_conn *c, const char *why);
/* Loop guard. A session whose service points back at this server (its own
 * address, or a name of it) would send every request round again, each hop
 * a new upstream connection, until the connection limit. No header can mark
 * the hops (SPEC §3.10 forwards headers unchanged), so the server remembers
 * the local end of each upstream connection it opens
 * (lk_http_server_note_upstream(), on connect), and a client connection
 * whose peer is one of them, confirmed against that socket's own ends, is
 * its own request come back: lk_conn_from_self() (once per connection; a
 * slot lookup, plus two getsockname/getpeername only on a port match). */
void lk_http_server_note_upstream(struct lk_http_server *srv, evutil_socket_t fd);
bool lk_conn_from_self(struct lk_conn *c);
/* Makes the coming close of c's socket a reset (SO_LINGER 0): for a client
 * whose response body ends with the connection (HTTP/1.0) and was cut, a
 * FIN would read as the whole body. Streams of the HTTP/2 front and of the
 * tunnel (pair ends, no socket) always carry HTTP/1.1 to the engine, so
 * their bodies never end with the connection. */
void lk_conn_reset_on_close(struct lk_conn *c);
/* lk_conn_close() for a client that took no byte of its pending output for
 * the send timeout, with the INFO line that says so. */
void lk_conn_close_send_timeout(struct lk_conn *c);
/* The engine has finished the response of c->ex: logs it, frees the
 * exchange, and continues with keep-alive, discarding or closing. */
void lk_conn_exchange_done(struct lk_conn *c, bool keep_alive);
/* The one way to change a connection's state (logged at debug level). */
void lk_conn_set_state(struct lk_conn *c, enum lk_conn_state s);
/* Arms c's timer for ms (0 disarms). */
void lk_conn_set_timer(struct lk_conn *c, unsigned ms);
/* Schedules the client input to be processed again from the loop. */
void lk_conn_kick(struct lk_conn *c);
/* Starts or stops reading the client (own reads or the bufferevent's). */
void lk_conn_read_enable(struct lk_conn *c, bool on);
/* Hands reading back to libevent (a WebSocket tunnel drives the
 * bufferevent's EV_READ itself); keeps whether reading was on. */
void lk_conn_read_by_libevent(struct lk_conn *c);
/* Moves up to max request-body data bytes from the client input to dst
 * (NULL: drop), re-framed as chunked when chunked_out. Returns 0 or
 * LK_EPARSE; ex->body_done is set at the end of the body. */
int lk_exchange_move_body(struct lk_exchange *ex, struct evbuffer *in, struct evbuffer *dst,
                          bool chunked_out, size_t max, const char **why);
/* Runs fn(ex) from the loop (once; a later call replaces an earlier pending
 * one). Cancelled when ex is freed. */
void lk_exchange_defer(struct lk_exchange *ex, void (*fn)(struct lk_exchange *));
/* The exchange became a WebSocket tunnel: it no longer keeps the heap busy
 * (its buffers are bounded by ws_buffer_max; HMR sockets stay open for
 * hours). */
void lk_exchange_relaying(struct lk_exchange *ex);
/* Frees an exchange (arena, body buffer) and unlinks it from the server. */
void lk_exchange_free(struct lk_exchange *ex);
/* lk_http_server_adopt() for a stream of the HTTP/2 front (h2_front.c): the
 * same, and a WebSocket on it whose upstream fails ends with an error
 * (lk_conn.pair_resets); https: a stream of a TLS client connection, so
 * lk_exchange_is_tls() is true and the request's URL is https:// as on the
 * TLS listener itself. */
int lk_http_server_adopt_h2(struct lk_http_server *srv, struct bufferevent *bev,
                            const char *peer_label, bool peer_is_loopback, bool https);
/* The drain may be complete: check it from the loop. */
void lk_http_server_check_drain(struct lk_http_server *srv);
/* The SSL_CTX for https:// upstreams, created on first use unless the
 * program supplied one; NULL when it cannot be created (logged). */
struct ssl_ctx_st *lk_http_server_client_tls(struct lk_http_server *srv);

/* ---- proxy.c ----------------------------------------------------------- */

/* Client-side events while LK_CONN_PROXYING or LK_CONN_TUNNEL. An EOF
 * before any response byte closes the connection and cancels the upstream
 * request (the client is gone, as nginx takes it); during the response, or
 * in a WebSocket tunnel, it is a half-close. */
void lk_proxy_on_client_read(struct lk_exchange *ex);
void lk_proxy_on_client_write(struct lk_exchange *ex);
/* The server started to drain (again: idempotent). A WebSocket tunnel that
 * reads frames (ws_close_normal) sends both sides a 1001 close at the next
 * frame boundary of each direction and relays nothing after it; it ends
 * when both sides have closed, or at the drain deadline. Other tunnels
 * carry on untouched: their bytes have no boundary the engine knows. May
 * finish the exchange (nothing may touch ex after it). */
void lk_proxy_drain(struct lk_exchange *ex);
void lk_proxy_on_client_eof(struct lk_exchange *ex);
/* The client connection is going away: cancel the upstream side and free
 * the proxy state (the upstream connection is closed, not pooled). */
void lk_proxy_abort(struct lk_exchange *ex);

/* ---- upstream.c -------------------------------------------------------- */

/* Result of lk_upstream_connect(): err 0 and a connected up, or err < 0 with
 * errtext (borrowed during the call); on error up has been freed. Always
 * called from the loop, never before lk_upstream_connect() returns. */
typedef void lk_upstream_cb(struct lk_upstream *up, int err, const char *errtext, void *data);

/* Idle upstream connections of one (tls, host, port), newest first. A
 * bucket outlives its connections (reused for the next ones) until the
 * server has too many buckets, then empty ones are freed. */
struct lk_pool_host {
    struct lk_pool_host *next; /* srv->pool */
    bool tls;
    int port;
    char *host; /* owned */
    struct lk_upstream *idle;
    size_t n_idle;
};

struct lk_upstream {
    struct lk_http_server *srv;
    struct lk_upstream *prev, *next; /* pool->idle while pooled */
    struct lk_pool_host *pool;       /* bucket while pooled, else NULL */
    char *key;                       /* "scheme://host:port", owned */
    char *host;                      /* without brackets, owned */
    int port;
    bool tls;
    bool plain;   /* plain socket bufferevent: see lk_net_send() */
    bool reused;  /* came out of the pool */
    bool no_pool; /* from a custom connector: freed, never pooled */
    struct bufferevent *bev;
    struct evutil_addrinfo *addrs, *cur;
    bool addrs_from_evdns;
    struct lk_resolve_ticket *ticket;
    struct lk_timer timer; /* connect timeout / pool idle timeout */
    struct event deliver;
    /* A plain socket is read by our own event from the first exchange on
     * (lk_upstream_own_reads()): while pooled it watches for a close, while
     * in use it calls read_cb. Handing the connection over only changes
     * read_cb: no event_add/event_del, no epoll_ctl per request. */
    struct event rd;
    bool rd_owned, rd_added;
    event_callback_fn read_cb; /* NULL: nobody reads (taken, not attached yet) */
    void *read_arg;
    int result;
    char errtext[256];
    lk_upstream_cb *cb;
    void *data;
};

/* Takes an idle pooled connection for (tls, host, port) when one exists
 * (returns it, reused set, no callback), else starts a new one
 * (lk_upstream_connect) and returns NULL; cb then reports the outcome from
 * the loop and *pending holds the attempt (free it to cancel). host has no
 * brackets. */
struct lk_upstream *lk_upstream_get(struct lk_http_server *srv, bool tls, const char *host,
                                    int port, lk_upstream_cb *cb, void *data,
                                    struct lk_upstream **pending);
/* Same, but never takes a pooled connection (returns NULL). */
struct lk_upstream *lk_upstream_connect(struct lk_http_server *srv, bool tls, const char *host,
                                        int port, lk_upstream_cb *cb, void *data,
                                        struct lk_upstream **pending);
/* Wraps a bufferevent from a custom connector (lk_proxy_req.connect) as a
 * connected upstream; takes ownership of bev. With pool_key NULL, label names
 * it in log lines and it is never pooled; otherwise released connections
 * wait in the pool under pool_key (lk_upstream_take()). */
struct lk_upstream *lk_upstream_wrap(struct lk_http_server *srv, struct bufferevent *bev,
                                     const char *label, const char *pool_key);
/* Takes an idle connection pooled under pool_key by lk_upstream_wrap()
 * (reused set, no callback), or returns NULL. */
struct lk_upstream *lk_upstream_take(struct lk_http_server *srv, const char *pool_key);
/* Plain sockets only (returns false otherwise): our own event (up->rd)
 * reads the socket and calls cb(fd, EV_READ, arg); the bufferevent's EV_READ
 * is turned off once, on the first call. */
bool lk_upstream_own_reads(struct lk_upstream *up, event_callback_fn cb, void *arg);
/* Pauses or resumes our own reads (backpressure). */
void lk_upstream_reading(struct lk_upstream *up, bool on);
/* Hands reading back to the bufferevent (its EV_READ on), for good. */
void lk_upstream_reads_to_libevent(struct lk_upstream *up);
/* Returns a connection to the pool (reusable) or frees it. */
void lk_upstream_release(struct lk_upstream *up, bool reusable);
void lk_upstream_free(struct lk_upstream *up);
/* Frees every pooled connection and every pool bucket. */
void lk_upstream_pool_clear(struct lk_http_server *srv);

/* ---- io.c -------------------------------------------------------------- */

/* Sets TCP_NODELAY on bev's socket (as nginx's tcp_nodelay; errors are
 * ignored: AF_UNIX has no Nagle) and lets libevent write up to 256 KiB per
 * writev instead of 16 KiB (finding 2). */
void lk_net_tune_socket(struct bufferevent *bev);
/* Half-closes bev's write side: shutdown(SHUT_WR) on a socket; on one end of
 * a bufferevent pair (a tunnel stream), moves the queued output to the
 * partner and runs the partner's event callback with BEV_EVENT_EOF
 * (deferred: pair callbacks always are). Nothing for other bufferevents. */
void lk_net_shutdown_write(struct bufferevent *bev);
/* Tells bev's pair partner (none: nothing) that this end failed: its event
 * callback gets BEV_EVENT_ERROR | BEV_EVENT_READING (deferred, as every pair
 * callback). Called right before lk_net_shutdown_write() or
 * lk_net_bev_free() in the same callback, the error joins their EOF in one
 * event callback, which comes after the read callback for the bytes they
 * move: the partner sees every byte, then an abnormal end. */
void lk_net_pair_error(struct bufferevent *bev);
/* Drops everything queued in bev's output (bytes nobody will take: a pair
 * end whose partner is gone, a stream being reset). */
void lk_net_drop_output(struct bufferevent *bev);
/* bufferevent_free() that a pair partner notices: the queued output and an
 * EOF reach the partner first (libevent unlinks a freed pair end without
 * telling the other). Every engine-owned connection is freed with it.
 * NULL is a no-op. */
void lk_net_bev_free(struct bufferevent *bev);
/* How many of the first len bytes of b to move so that the move ends on a
 * chain boundary: the longest prefix of whole chains, when that is at least
 * half of len, else len. Whole chains move by pointer; evbuffer_remove_buffer()
 * copies the part of a chain it splits. */
size_t lk_net_whole_chains(struct evbuffer *b, size_t len);
/* True when bev is one end of a bufferevent pair whose other end is gone
 * (freed): nothing it holds or is given to write can be delivered any more. */
bool lk_net_bev_orphaned(struct bufferevent *bev);
/* True when bev is a socket bufferevent without TLS or filters, whose fd the
 * functions below may read and write directly. */
bool lk_net_bev_is_plain(struct bufferevent *bev);
/* Sends (pre, pre_len) and then the first n bytes of src (NULL when n is 0)
 * to bev, in that order after anything already queued: when plain and
 * bev's output buffer is empty the bytes are written to the socket at once
 * (sendmsg, MSG_DONTWAIT | MSG_NOSIGNAL), and whatever the kernel does not
 * take is queued in the output buffer (arming EV_WRITE as usual). n bytes
 * are always drained from src. Returns the bytes written inline. Write
 * errors are left for libevent to report on its next write. */
size_t lk_net_send(struct bufferevent *bev, bool plain, const void *pre, size_t pre_len,
                   struct evbuffer *src, size_t n);
/* Reads up to max more bytes from a plain bev's socket into its input buffer
 * in 64 KiB reads, until the socket has no more (EAGAIN), EOF or an error.
 * Returns the bytes read; *state is 0 (no more for now, or max reached), 1
 * (EOF) or -1 (error, errno set). A caller that leaves EOF and errors to
 * libevent may ignore *state: libevent sees them on its next read. */
size_t lk_net_read_more(struct bufferevent *bev, size_t max, int *state);

/* ---- tunnel.c ---------------------------------------------------------- */

/* Sends the frames for the bytes the engine moved into tunnel streams during
 * the callback now running, at once instead of one loop turn later (from
 * the pairs' deferred read callbacks), so the far side starts on each
 * request or response while this side goes on with the rest of its batch.
 * The engine calls it at the end of its plain socket read callbacks;
 * nothing to send costs a test. */
void lk_tunnel_flush_posted(void);

/* ---- heads (http_server.c) ---------------------------------------------- */

/* Appends "name: value\r\n" / a hex number to b (memcpy, no printf:
 * finding 5; decimals: lk_buf_add_u64). */
void lk_head_add_field(struct lk_buf *b, struct lk_str name, struct lk_str value);
void lk_head_add_hex(struct lk_buf *b, uint64_t v);
/* "HTTP/1.1 <status> <reason>\r\n". */
void lk_head_add_status(struct lk_buf *b, int status, struct lk_str reason);

/* "Date: <IMF-fixdate>\r\n" for now (RFC 9110 §6.6.1), formatted once per
 * second from the loop's cached time. */
void lk_head_add_date(struct lk_http_server *srv, struct lk_buf *b);
/* Makes a parsed head's slices (pointing into from) point at the same
 * offsets in to. */
void lk_head_rebase(struct lk_http_header *h, size_t n, const char *from, const char *to);
static inline struct lk_str lk_head_rebase_str(struct lk_str s, const char *from, const char *to)
{
    if (s.ptr != NULL)
        s.ptr = to + (s.ptr - from);
    return s;
}

#endif
