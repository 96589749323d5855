/*
 * http_server.c - listeners, client connections and the exchange API.
 *
 * A client connection walks READING_HEAD -> HANDLER -> (READING_BODY |
 * PROXYING | TUNNEL) -> back to READING_HEAD (keep-alive), DISCARDING (an
 * unread body is skipped first) or FLUSHING/LINGERING -> CLOSED. Exactly one
 * head is parsed at a time, so pipelined requests are answered in order.
 * Connections are destroyed only in on_reap(), which libevent runs after the
 * callbacks of the current iteration (docs/internals/loop.md).
 */
#include "net/http_server.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/err.h"
#include "net/addr.h"
#include "net/h2_front.h"
#include "net/heap.h"
#include "net/http_internal.h"
#include "net/log.h"
#include "proto/target.h"
#include "proto/ws.h"

/* An unread request body up to this size is skipped to keep the connection;
 * a larger one makes the connection close after the response. */
#define DISCARD_MAX (1024 * 1024)
/* lk_exchange_respond() copies bodies up to this size next to the head. */
#define RESPOND_COPY_MAX (16 * 1024)
#define LINGER_MS        2000
/* Bytes read from a plain client socket per read event (libevent reads
 * 4 KiB after a FIONREAD ioctl). */
#define CLIENT_READ (16 * 1024)
/* Idle time after the last connection before the heap is trimmed. */
#define HEAP_IDLE_TRIM_MS 2000

/* ---- arena ------------------------------------------------------------- */

struct lk_net_arena_chunk {
    struct lk_net_arena_chunk *next;
    size_t used, cap;
    bool embedded; /* part of a larger allocation: not freed here */
    max_align_t mem[];
};

/* Bytes of arena that come with every exchange in the same allocation: one
 * malloc per request covers the request head, the proxy state and the
 * response head in the common case (finding 7). */
#define EXCHANGE_ARENA 6144

/* n bytes, not cleared. */
static void *arena_take(struct lk_net_arena *a, size_t n)
{
    size_t align = sizeof(max_align_t);
    n = (n + align - 1) / align * align;
    struct lk_net_arena_chunk *c = a->chunks;
    if (c == NULL || c->cap - c->used < n) {
        size_t cap = n > 4096 ? n : 4096;
        c = lk_xmalloc(sizeof(*c) + cap);
        c->used = 0;
        c->cap = cap;
        c->embedded = false;
        c->next = a->chunks;
        a->chunks = c;
    }
    void *p = (char *)c->mem + c->used;
    c->used += n;
    return p;
}

void *lk_net_arena_alloc(struct lk_net_arena *a, size_t n)
{
    void *p = arena_take(a, n);
    memset(p, 0, n);
    return p;
}

char *lk_net_arena_strndup(struct lk_net_arena *a, const char *p, size_t n)
{
    char *s = arena_take(a, n + 1);
    if (n > 0)
        memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

void lk_net_arena_release(struct lk_net_arena *a)
{
    while (a->chunks != NULL) {
        struct lk_net_arena_chunk *c = a->chunks;
        a->chunks = c->next;
        if (!c->embedded)
            free(c);
    }
}

/* ---- options, lists ---------------------------------------------------- */

void lk_http_server_opts_init(struct lk_http_server_opts *o)
{
    memset(o, 0, sizeof(*o));
    lk_http1_limits_default(&o->limits);
    o->head_timeout_ms = 30000;
    o->idle_timeout_ms = 60000;
    o->connect_timeout_ms = 10000;
    o->first_byte_timeout_ms = 120000;
    o->upstream_idle_timeout_ms = 60000;
    o->send_timeout_ms = 60000;
    o->max_conns = 4096;
    o->stream_buffer_max = 256 * 1024;
    o->ws_buffer_max = 1024 * 1024;
    o->pool_max_idle_per_host = 128;
    o->pool_max_idle = 512;
    o->pool_idle_timeout_ms = 30000;
    o->access_log = true;
}

#define LIST_PUSH(head, x)      \
    do {                        \
        (x)->prev = NULL;       \
        (x)->next = (head);     \
        if ((head) != NULL)     \
            (head)->prev = (x); \
        (head) = (x);           \
    } while (0)

#define LIST_UNLINK(head, x)             \
    do {                                 \
        if ((x)->prev != NULL)           \
            (x)->prev->next = (x)->next; \
        else                             \
            (head) = (x)->next;          \
        if ((x)->next != NULL)           \
            (x)->next->prev = (x)->prev; \
        (x)->prev = (x)->next = NULL;    \
    } while (0)

/* ---- heads ------------------------------------------------------------- */

void lk_head_add_field(struct lk_buf *b, struct lk_str name, struct lk_str value)
{
    char *p = lk_buf_grow(b, name.len + value.len + 4); /* "name: value\r\n" */
    if (p == NULL)
        return;
    if (name.len) /* an empty lk_str may have a NULL ptr */
        memcpy(p, name.ptr, name.len);
    p += name.len;
    *p++ = ':';
    *p++ = ' ';
    if (value.len)
        memcpy(p, value.ptr, value.len);
    p += value.len;
    *p++ = '\r';
    *p = '\n';
}

void lk_head_add_hex(struct lk_buf *b, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v > 0);
    lk_buf_add(b, tmp + i, sizeof(tmp) - i);
}

void lk_head_add_status(struct lk_buf *b, int status, struct lk_str reason)
{
    lk_buf_add(b, "HTTP/1.1 ", 9);
    lk_buf_add_u64(b, status > 0 ? (uint64_t)status : 0);
    lk_buf_add(b, " ", 1);
    lk_buf_addstr(b, reason);
    lk_buf_add(b, "\r\n", 2);
}

void lk_head_rebase(struct lk_http_header *h, size_t n, const char *from, const char *to)
{
    for (size_t i = 0; i < n; i++) {
        h[i].name = lk_head_rebase_str(h[i].name, from, to);
        h[i].value = lk_head_rebase_str(h[i].value, from, to);
    }
}

static const char *state_name(enum lk_conn_state s)
{
    static const char *const names[] = { "READING_HEAD", "HANDLER", "READING_BODY", "PROXYING",
                                         "DISCARDING",   "TUNNEL",  "FLUSHING",     "LINGERING",
                                         "H2",           "CLOSED" };
    return names[s];
}

/* Every state change goes through here (STYLE §3.7). */
void lk_conn_set_state(struct lk_conn *c, enum lk_conn_state s)
{
    /* CLOSED is final: the connection waits in the reap list for
     * conn_destroy(). A proxy failing in the same loop turn as the close (the
     * exchange still points at the connection until then) would otherwise
     * revive it, and its second lk_conn_close() would queue it twice. */
    if (c->state == s || c->state == LK_CONN_CLOSED)
        return;
    LK_CLOG(c->id, DEBUG, "%s -> %s", state_name(c->state), state_name(s));
    c->state = s;
}

void lk_conn_set_timer(struct lk_conn *c, unsigned ms)
{
    if (c->state != LK_CONN_CLOSED)
        lk_timer_set(&c->timer, ms);
}

/* ---- own reads of plain client sockets ---------------------------------- */

/* What a client can make us buffer while we are not consuming: the same
 * bound as the bufferevent's read watermark (conn_start). */
static size_t read_high(const struct lk_conn *c)
{
    return (c->relayed ? c->srv->relay_limits : c->srv->opts.limits).max_head + 4096;
}

/* Registers rd exactly when reading is wanted, the peer has not closed and
 * the input is under read_high() (libevent's watermark semantics). */
static void rd_update(struct lk_conn *c)
{
    bool on = c->own_read && c->rd_want && !c->rd_eof && c->state != LK_CONN_CLOSED &&
              evbuffer_get_length(bufferevent_get_input(c->bev)) < read_high(c);
    if (on && !c->rd_added)
        event_add(&c->rd, NULL);
    else if (!on && c->rd_added)
        event_del(&c->rd);
    c->rd_added = on;
}

/* The engine consumed input: reading may resume under the bound. */
static void on_input_drained(struct evbuffer *in, const struct evbuffer_cb_info *info, void *arg)
{
    struct lk_conn *c = arg;
    (void)in;
    if (info->n_deleted > 0 && !c->rd_added)
        rd_update(c);
}

static void on_client_read(struct bufferevent *bev, void *arg);
static void on_client_event(struct bufferevent *bev, short what, void *arg);

static void on_client_readable(evutil_socket_t fd, short what, void *arg)
{
    struct lk_conn *c = arg;
    (void)fd;
    (void)what;
    size_t have = evbuffer_get_length(bufferevent_get_input(c->bev));
    size_t room = read_high(c) > have ? read_high(c) - have : 0;
    int state = 0;
    size_t want = room < CLIENT_READ ? room : CLIENT_READ;
    size_t got = want > 0 ? lk_net_read_more(c->bev, want, &state) : 0;
    int err = errno;
    if (state != 0)
        c->rd_eof = true; /* a closed or failed socket stays readable */
    rd_update(c);
    if (got > 0) {
        on_client_read(c->bev, c);
        lk_tunnel_flush_posted(); /* a request into a tunnel stream leaves now */
    }
    if (state == 0 || c->state == LK_CONN_CLOSED)
        return;
    EVUTIL_SET_SOCKET_ERROR(state < 0 ? err : 0);
    on_client_event(c->bev, BEV_EVENT_READING | (state < 0 ? BEV_EVENT_ERROR : BEV_EVENT_EOF), c);
}

static void rd_start(struct lk_conn *c)
{
    evutil_socket_t fd = bufferevent_getfd(c->bev);
    if (!c->plain || fd < 0)
        return;
    event_assign(&c->rd, c->srv->base, fd, EV_READ | EV_PERSIST, on_client_readable, c);
    evbuffer_add_cb(bufferevent_get_input(c->bev), on_input_drained, c);
    c->own_read = true;
}

static void rd_stop(struct lk_conn *c)
{
    if (!c->own_read)
        return;
    if (c->rd_added)
        event_del(&c->rd);
    c->rd_added = false;
    if (c->bev != NULL)
        evbuffer_remove_cb(bufferevent_get_input(c->bev), on_input_drained, c);
    c->own_read = false;
}

void lk_conn_read_enable(struct lk_conn *c, bool on)
{
    if (c->own_read) {
        c->rd_want = on;
        rd_update(c);
    } else if (on) {
        bufferevent_enable(c->bev, EV_READ);
    } else {
        bufferevent_disable(c->bev, EV_READ);
    }
}

void lk_conn_read_by_libevent(struct lk_conn *c)
{
    if (!c->own_read)
        return;
    bool want = c->rd_want && !c->rd_eof;
    rd_stop(c);
    if (want)
        bufferevent_enable(c->bev, EV_READ);
}

void lk_conn_kick(struct lk_conn *c)
{
    if (c->state != LK_CONN_CLOSED && !event_pending(&c->kick, EV_TIMEOUT, NULL))
        event_active(&c->kick, EV_TIMEOUT, 0);
}

/* ---- connection lifecycle --------------------------------------------- */

void lk_conn_close(struct lk_conn *c, const char *why)
{
    struct lk_http_server *srv = c->srv;
    if (c->state == LK_CONN_CLOSED)
        return;
    LK_CLOG(c->id, DEBUG, "closing: %s", why);
    lk_conn_set_state(c, LK_CONN_CLOSED);
    lk_timer_cancel(&c->timer);
    event_del(&c->kick);
    rd_stop(c);
    if (c->bev != NULL) {
        bufferevent_disable(c->bev, EV_READ | EV_WRITE);
        bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
    }
    LIST_UNLINK(srv->conns, c);
    LIST_PUSH(srv->reap, c);
    event_active(&srv->reap_ev, EV_TIMEOUT, 0);
}

/* Idle between requests (no byte of the next head yet): a drain, or the
 * retirement of a tunnel stream, closes it at once. */
static bool conn_idle(const struct lk_conn *c)
{
    return c->state == LK_CONN_READING_HEAD && !c->head_begun;
}

/* No keep-alive after the current response: the server drains, or the
 * connection was retired (lk_http_server_retire_adopted). */
static bool conn_ending(const struct lk_conn *c)
{
    return c->srv->draining || c->retiring;
}

void lk_http_server_note_upstream(struct lk_http_server *srv, evutil_socket_t fd)
{
    struct sockaddr_storage a;
    socklen_t n = sizeof(a);
    if (fd < 0 || getsockname(fd, (struct sockaddr *)&a, &n) != 0)
        return;
    int port = lk_addr_port((struct sockaddr *)&a);
    if (port <= 0)
        return;
    struct lk_self_slot *s = &srv->self[port % LK_SELF_SLOTS];
    s->port = (uint16_t)port;
    s->fd = fd;
}

/* An IPv4 or IPv6 endpoint as 16 address bytes (IPv4 and IPv4-mapped IPv6
 * alike: a dual-stack listener sees 127.0.0.1 as ::ffff:127.0.0.1) and a
 * port; false for other families. */
static bool endpoint(const struct sockaddr_storage *ss, unsigned char addr[16], int *port)
{
    static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        memcpy(addr, mapped, 12);
        memcpy(addr + 12, &in->sin_addr, 4);
    } else if (ss->ss_family == AF_INET6) {
        memcpy(addr, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
    } else {
        return false;
    }
    *port = lk_addr_port((const struct sockaddr *)ss);
    return true;
}

static bool same_endpoint(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    unsigned char x[16], y[16];
    int px, py;
    return endpoint(a, x, &px) && endpoint(b, y, &py) && px == py && memcmp(x, y, 16) == 0;
}

bool lk_conn_from_self(struct lk_conn *c)
{
    if (c->self_checked)
        return c->from_self;
    c->self_checked = true;
    int port = lk_addr_port((struct sockaddr *)&c->peer);
    if (c->bev == NULL || bufferevent_getfd(c->bev) < 0 || port <= 0)
        return false; /* a stream of the HTTP/2 front or of the tunnel */
    const struct lk_self_slot *s = &c->srv->self[port % LK_SELF_SLOTS];
    if (s->port != port)
        return false;
    /* That socket (or whatever now has its descriptor) must be the other
     * end of this very connection. */
    struct sockaddr_storage ours, theirs;
    socklen_t n1 = sizeof(ours), n2 = sizeof(theirs);
    if (getsockname(s->fd, (struct sockaddr *)&ours, &n1) != 0 ||
        getpeername(s->fd, (struct sockaddr *)&theirs, &n2) != 0 ||
        !same_endpoint(&ours, &c->peer) || !same_endpoint(&theirs, &c->local))
        return false;
    LK_CLOG(c->id, WARN,
            "request loop: %s is this server's own upstream connection (a service points back "
            "at this server)",
            c->peer_str);
    c->from_self = true;
    return true;
}

void lk_conn_reset_on_close(struct lk_conn *c)
{
    evutil_socket_t fd = c->bev != NULL ? bufferevent_getfd(c->bev) : -1;
    struct linger lg = { .l_onoff = 1, .l_linger = 0 };
    if (fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) != 0)
        LK_CLOG(c->id, DEBUG, "SO_LINGER: %s", strerror(errno));
}

void lk_conn_close_send_timeout(struct lk_conn *c)
{
    LK_CLOG(c->id, INFO, "client took no bytes for %u ms (send timeout); closing",
            c->srv->opts.send_timeout_ms);
    lk_conn_close(c, "send timeout");
}

static void respond_nothing_body_cb(struct lk_exchange *ex)
{
    /* The program gets LK_ECLOSED and must still respond to free ex. */
    lk_exchange_body_cb *cb = ex->body_cb;
    ex->body_cb = NULL;
    ex->phase = LK_EX_HANDLER;
    if (cb != NULL)
        cb(ex, NULL, 0, LK_ECLOSED, ex->body_data);
}

static void log_access(const struct lk_exchange *ex);

/* The one destructor of a client connection; runs from on_reap only. */
static void conn_destroy(struct lk_conn *c)
{
    struct lk_exchange *ex = c->ex;
    c->ex = NULL;
    if (ex != NULL) {
        ex->conn = NULL;
        ex->aborted = true;
        /* The client left before the exchange was done (it was never logged:
         * lk_conn_exchange_done takes c->ex first). Log it, and hand it to
         * on_access (the DESIGN §7 inspector), with the status it reached: 0
         * when no answer had started. Not the body-discarding stand-in
         * (status -1) of an exchange logged already. */
        if (ex->status >= 0)
            log_access(ex);
        if (ex->phase == LK_EX_PROXY)
            lk_proxy_abort(ex);
        else if (ex->phase == LK_EX_READ_BODY)
            respond_nothing_body_cb(ex);
        else if (ex->phase == LK_EX_DONE)
            lk_exchange_free(ex);
        /* LK_EX_HANDLER: the program still holds ex and frees it by
         * responding. */
    }
    if (c->bev != NULL) /* NULL after lk_exchange_upgrade() or start_h2() took it */
        lk_net_bev_free(c->bev);
    lk_h2_front_free(c->h2);
    c->srv->n_conns--;
    if (c->accepted)
        c->srv->n_clients--;
    free(c);
}

static void on_reap(evutil_socket_t fd, short what, void *arg)
{
    struct lk_http_server *srv = arg;
    (void)fd;
    (void)what;
    while (srv->reap != NULL) {
        struct lk_conn *c = srv->reap;
        LIST_UNLINK(srv->reap, c);
        conn_destroy(c);
    }
    lk_http_server_check_drain(srv);
}

static void start_reading_head(struct lk_conn *c)
{
    lk_conn_set_state(c, LK_CONN_READING_HEAD);
    c->head_begun = false;
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    lk_conn_read_enable(c, true);
    unsigned ms = c->n_requests == 0 ? c->srv->opts.head_timeout_ms : c->srv->opts.idle_timeout_ms;
    lk_conn_set_timer(c, ms);
    /* A pipelined request or an EOF already read needs a pass now; on our
     * own reads of a plain socket, anything else arrives as a read event
     * (an empty pass per request costs an event callback). A bufferevent
     * (TLS, tunnel stream) may hold input it has not announced yet. */
    if (!c->own_read || c->read_eof || evbuffer_get_length(bufferevent_get_input(c->bev)) != 0)
        lk_conn_kick(c);
}

/* Closes after the output is flushed; lingers when input may still come so
 * that the client reads the response before a reset (RFC 9112 §9.6). */
static void close_after_flush(struct lk_conn *c)
{
    lk_conn_set_state(c, LK_CONN_FLUSHING);
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    bufferevent_enable(c->bev, EV_WRITE);
    lk_conn_set_timer(c, c->srv->opts.idle_timeout_ms);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) != 0)
        return;
    if (bufferevent_getfd(c->bev) < 0) {
        /* An in-memory end (a tunnel stream): nothing to linger for, and
         * the EOF now reaches the stream together with the last bytes, so
         * both leave in one DATA frame. */
        lk_net_shutdown_write(c->bev);
        lk_conn_close(c, "response sent");
        return;
    }
    lk_conn_kick(c);
}

static void flushed(struct lk_conn *c)
{
    if (c->read_eof || c->is_tls) {
        lk_conn_close(c, "response sent");
        return;
    }
    lk_net_shutdown_write(c->bev);
    lk_conn_set_state(c, LK_CONN_LINGERING);
    evbuffer_drain(bufferevent_get_input(c->bev),
                   evbuffer_get_length(bufferevent_get_input(c->bev)));
    lk_conn_read_enable(c, true);
    lk_conn_set_timer(c, LINGER_MS);
}

/* ---- request body ------------------------------------------------------ */

static int add_chunk_header(struct evbuffer *dst, size_t n)
{
    return evbuffer_add_printf(dst, "%zx\r\n", n) < 0 ? LK_EIO : 0;
}

static int move_chunked(struct lk_exchange *ex, struct evbuffer *in, struct evbuffer *dst,
                        bool chunked_out, size_t max, const char **why)
{
    size_t moved = 0;
    while (!ex->body_done && moved < max) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
            break;
        size_t framing = 0, data = 0;
        int rc = lk_http1_chunked_decode(&ex->chunked, v.iov_base, v.iov_len, &framing, &data, why);
        if (rc < 0)
            return rc;
        evbuffer_drain(in, framing);
        if (data > 0) {
            if (dst == NULL) {
                evbuffer_drain(in, data);
            } else {
                if (chunked_out)
                    add_chunk_header(dst, data);
                evbuffer_remove_buffer(in, dst, data);
                if (chunked_out)
                    evbuffer_add(dst, "\r\n", 2);
            }
            moved += data;
        }
        if (rc == 1) {
            ex->body_done = true;
            if (dst != NULL && chunked_out)
                evbuffer_add(dst, "0\r\n\r\n", 5);
        }
    }
    return 0;
}

int lk_exchange_move_body(struct lk_exchange *ex, struct evbuffer *in, struct evbuffer *dst,
                          bool chunked_out, size_t max, const char **why)
{
    if (ex->body_done)
        return 0;
    if (ex->req.body_kind == LK_HTTP1_BODY_CHUNKED)
        return move_chunked(ex, in, dst, chunked_out, max, why);
    size_t n = evbuffer_get_length(in);
    if (n > max)
        n = max;
    if (n > ex->body_left)
        n = (size_t)ex->body_left;
    if (dst != NULL)
        evbuffer_remove_buffer(in, dst, n);
    else
        evbuffer_drain(in, n);
    ex->body_left -= n;
    if (ex->body_left == 0)
        ex->body_done = true;
    return 0;
}

/* ---- exchanges --------------------------------------------------------- */

static void read_body_progress(struct lk_conn *c);
static void body_finish(struct lk_exchange *ex, int err);

/* Deferred work of an exchange: read_body on an aborted exchange, or the
 * proxy's error report (proxy.c sets defer_fn). */
static void on_exchange_defer(evutil_socket_t fd, short what, void *arg)
{
    struct lk_exchange *ex = arg;
    (void)fd;
    (void)what;
    if (ex->defer_fn != NULL) {
        void (*fn)(struct lk_exchange *) = ex->defer_fn;
        ex->defer_fn = NULL;
        fn(ex);
    } else if (ex->phase == LK_EX_READ_BODY) {
        body_finish(ex, LK_ECLOSED);
    }
}

void lk_exchange_defer(struct lk_exchange *ex, void (*fn)(struct lk_exchange *))
{
    if (!ex->defer_ready) { /* assigned on first use: most exchanges never defer */
        event_assign(&ex->defer, ex->srv->base, -1, 0, on_exchange_defer, ex);
        ex->defer_ready = true;
    }
    ex->defer_fn = fn;
    event_active(&ex->defer, EV_TIMEOUT, 0);
}

/* One allocation: the exchange, then its first arena chunk. */
static struct lk_exchange *exchange_alloc(void)
{
    size_t align = _Alignof(max_align_t);
    size_t off = (sizeof(struct lk_exchange) + align - 1) / align * align;
    char *mem = lk_xmalloc(off + sizeof(struct lk_net_arena_chunk) + EXCHANGE_ARENA);
    struct lk_exchange *ex = (struct lk_exchange *)(void *)mem;
    memset(ex, 0, sizeof(*ex));
    struct lk_net_arena_chunk *chunk = (struct lk_net_arena_chunk *)(void *)(mem + off);
    chunk->next = NULL;
    chunk->used = 0;
    chunk->cap = EXCHANGE_ARENA;
    chunk->embedded = true;
    ex->arena.chunks = chunk;
    return ex;
}

/* parsed: the head (head, len) as parsed by read_head(); its slices are
 * moved to the exchange's copy instead of parsing again (finding 6). */
static struct lk_exchange *exchange_new(struct lk_conn *c, const char *head, size_t len,
                                        const struct lk_http1_request *parsed)
{
    struct lk_http_server *srv = c->srv;
    struct lk_exchange *ex = exchange_alloc();
    ex->srv = srv;
    ex->conn = c;
    ex->conn_id = c->id;
    ex->head = lk_net_arena_strndup(&ex->arena, head, len);
    ex->head_len = len;
    ex->req = *parsed;
    size_t n = parsed->n_headers;
    ex->req.headers = lk_net_arena_alloc(&ex->arena, (n ? n : 1) * sizeof(*ex->req.headers));
    if (n > 0)
        memcpy(ex->req.headers, parsed->headers, n * sizeof(*ex->req.headers));
    ex->req.headers_cap = n;
    ex->req.method = lk_head_rebase_str(ex->req.method, head, ex->head);
    ex->req.target = lk_head_rebase_str(ex->req.target, head, ex->head);
    lk_head_rebase(ex->req.headers, n, head, ex->head);
    ex->is_ws = lk_ws_is_upgrade_request(ex->req.method, ex->req.minor_version, ex->req.headers,
                                         ex->req.n_headers);
    ex->is_tls = c->is_tls || c->https;
    ex->is_loopback = c->is_loopback;
    ex->local_port = lk_addr_port((struct sockaddr *)&c->local);
    memcpy(ex->peer_str, c->peer_str, sizeof(ex->peer_str));
    ex->body_left = ex->req.body_kind == LK_HTTP1_BODY_LENGTH ? ex->req.content_length : 0;
    ex->body_done = ex->req.body_kind == LK_HTTP1_BODY_NONE ||
                    (ex->req.body_kind == LK_HTTP1_BODY_LENGTH && ex->body_left == 0);
    lk_http1_chunked_init(&ex->chunked);
    gettimeofday(&ex->start, NULL);
    LIST_PUSH(srv->exchanges, ex);
    /* Idle (heap trim) means no request in flight: idle keep-alive
     * connections (browsers', the worker's pooled tunnel streams) hold no
     * body buffers, WebSocket tunnels little (lk_exchange_relaying). */
    if (srv->n_exchanges++ == 0)
        lk_heap_idle_busy(srv->heap_idle);
    return ex;
}

static void exchange_uncount(struct lk_exchange *ex)
{
    if (--ex->srv->n_exchanges == 0)
        lk_heap_idle_quiet(ex->srv->heap_idle);
}

void lk_exchange_relaying(struct lk_exchange *ex)
{
    if (ex->relaying)
        return;
    ex->relaying = true;
    exchange_uncount(ex);
}

void lk_exchange_free(struct lk_exchange *ex)
{
    if (ex == NULL)
        return;
    LIST_UNLINK(ex->srv->exchanges, ex);
    if (!ex->relaying)
        exchange_uncount(ex);
    if (ex->defer_ready)
        event_del(&ex->defer);
    if (ex->body_buf != NULL)
        evbuffer_free(ex->body_buf);
    lk_net_arena_release(&ex->arena);
    free(ex);
}

static void on_log_flush(evutil_socket_t fd, short what, void *arg)
{
    struct lk_http_server *srv = arg;
    (void)fd;
    (void)what;
    srv->log_flush_set = false;
    lk_log_flush();
}

/* Buffers an access line; the engine's timer writes it out (log.h). */
static void write_access(struct lk_http_server *srv, const struct lk_access_entry *e)
{
    lk_log_access(e);
    if (lk_log_pending() && !srv->log_flush_set) {
        struct timeval tv = lk_ms_tv(100);
        evtimer_add(&srv->log_flush, &tv);
        srv->log_flush_set = true;
    }
}

static void log_access(const struct lk_exchange *ex)
{
    struct lk_http_server *srv = ex->srv;
    bool log = srv->opts.access_log && lk_log_enabled(LK_LOG_INFO);
    if (!log && srv->opts.on_access == NULL)
        return;
    struct timeval now;
    gettimeofday(&now, NULL);
    struct lk_str host = LK_STR_NULL;
    struct lk_str path = ex->req.target;
    if (path.len > 0 && path.ptr[0] != '/' && path.ptr[0] != '*') {
        /* Absolute-form: its authority routed the request, not Host (RFC
         * 9112 §3.2.2), so the entry shows it and the origin-form rest, as
         * for the same request over HTTP/2. */
        struct lk_target t;
        lk_target_split(path, &t);
        if (t.is_absolute) {
            /* Userinfo ends at the last '@', as lk_url_parse() reads it. */
            const char *at = memrchr(t.authority.ptr, '@', t.authority.len);
            host = t.authority;
            if (at != NULL)
                host = (struct lk_str){ at + 1,
                                        (size_t)(t.authority.ptr + t.authority.len - (at + 1)) };
            path = (struct lk_str){ t.path.ptr, (size_t)(path.ptr + path.len - t.path.ptr) };
            if (path.len == 0)
                path = LK_STR("/");
        }
    }
    if (host.ptr == NULL) {
        const struct lk_http_header *h =
            lk_http1_find_header(ex->req.headers, ex->req.n_headers, LK_STR("host"));
        if (h != NULL)
            host = h->value;
    }
    long long ms = (long long)(now.tv_sec - ex->start.tv_sec) * 1000 +
                   (now.tv_usec - ex->start.tv_usec) / 1000;
    struct lk_access_entry e = {
        .conn_id = ex->conn_id,
        .method = ex->req.method.ptr,
        .method_len = ex->req.method.len,
        .host = host.ptr,
        .host_len = host.len,
        .path = path.ptr,
        .path_len = path.len,
        .session = ex->log_session,
        .service = ex->log_service,
        .status = ex->status,
        .bytes = ex->bytes_out,
        .ms = ms > 0 ? (uint64_t)ms : 0,
    };
    if (srv->opts.on_access != NULL)
        srv->opts.on_access(srv->opts.access_data, &e);
    if (log)
        write_access(srv, &e);
}

void lk_conn_exchange_done(struct lk_conn *c, bool keep_alive)
{
    struct lk_exchange *ex = c->ex;
    LK_ASSERT(ex != NULL);
    log_access(ex);
    bool body_done = ex->body_done;
    uint64_t left = ex->req.body_kind == LK_HTTP1_BODY_CHUNKED ? DISCARD_MAX : ex->body_left;
    c->ex = NULL;
    c->n_requests++;
    /* Keep the chunked decoder state for discarding: move it into c. */
    struct lk_http1_chunked chunked = ex->chunked;
    enum lk_http1_body_kind kind = ex->req.body_kind;
    lk_exchange_free(ex);
    /* Closed while the response was finishing (a tunnel stream's peer went
     * away in the same loop turn): its destructor is already queued, and
     * CLOSED is final. */
    if (c->state == LK_CONN_CLOSED)
        return;
    if (!keep_alive || c->read_eof || conn_ending(c)) {
        close_after_flush(c);
        return;
    }
    if (!body_done) {
        if (left > DISCARD_MAX) {
            close_after_flush(c);
            return;
        }
        /* A minimal exchange keeps the framing state for the skip. */
        struct lk_exchange *skip = lk_xcalloc(1, sizeof(*skip));
        skip->srv = c->srv;
        skip->conn = c;
        skip->conn_id = c->id;
        skip->req.body_kind = kind;
        skip->body_left = left;
        skip->chunked = chunked;
        skip->phase = LK_EX_DONE;
        skip->status = -1;
        LIST_PUSH(c->srv->exchanges, skip);
        c->ex = skip;
        c->discard_left = DISCARD_MAX;
        lk_conn_set_state(c, LK_CONN_DISCARDING);
        lk_conn_set_timer(c, c->srv->opts.idle_timeout_ms);
        lk_conn_kick(c);
        return;
    }
    start_reading_head(c);
}

static void discard_progress(struct lk_conn *c)
{
    struct lk_exchange *skip = c->ex;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t before = evbuffer_get_length(in);
    const char *why = NULL;
    if (lk_exchange_move_body(skip, in, NULL, false, c->discard_left, &why) != 0) {
        lk_conn_close(c, "bad chunked body");
        return;
    }
    size_t used = before - evbuffer_get_length(in);
    c->discard_left = used > c->discard_left ? 0 : c->discard_left - used;
    if (skip->body_done) {
        c->ex = NULL;
        lk_exchange_free(skip);
        start_reading_head(c);
    } else if (c->discard_left == 0) {
        /* Too much to skip for the next request: close, but as after any
         * response (shut down writing, then read and drop for a while), so
         * a client still sending does not get a reset before it read the
         * response (RFC 9112 §9.6). */
        c->ex = NULL;
        lk_exchange_free(skip);
        close_after_flush(c);
    } else if (c->read_eof) {
        lk_conn_close(c, "client closed inside a request body");
    }
}

/* ---- writing responses ------------------------------------------------- */

static bool status_has_body(int status)
{
    return status >= 200 && status != 204 && status != 304;
}

/* Appends "Date: <IMF-fixdate>\r\n" (RFC 9110 §5.6.7) for now, formatted
 * once per second (the loop's cached time; no locale). */
void lk_head_add_date(struct lk_http_server *srv, struct lk_buf *b)
{
    static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
    static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    struct timeval tv;
    (void)event_base_gettimeofday_cached(srv->base, &tv); /* falls back to the clock itself */
    if (srv->date_len == 0 || tv.tv_sec != srv->date_sec) {
        struct tm tm;
        time_t t = tv.tv_sec;
        gmtime_r(&t, &tm);
        int n = snprintf(srv->date_field, sizeof(srv->date_field),
                         "Date: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n", days[tm.tm_wday % 7],
                         tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour,
                         tm.tm_min, tm.tm_sec);
        srv->date_len = n > 0 && (size_t)n < sizeof(srv->date_field) ? (size_t)n : 0;
        srv->date_sec = tv.tv_sec;
    }
    lk_buf_add(b, srv->date_field, srv->date_len);
}

static void write_error_and_close(struct lk_conn *c, int status, const char *why)
{
    struct lk_buf *b = &c->srv->head_buf;
    size_t len = strlen(why);
    lk_buf_reset(b);
    lk_head_add_status(b, status, lk_str_c(lk_http1_reason(status)));
    lk_head_add_date(c->srv, b);
    lk_buf_adds(b, "Content-Type: text/plain; charset=utf-8\r\nContent-Length: ");
    lk_buf_add_u64(b, len);
    lk_buf_adds(b, "\r\nConnection: close\r\n\r\n");
    lk_buf_add(b, why, len);
    lk_net_send(c->bev, c->plain, b->data, b->len, NULL, 0);
    LK_CLOG(c->id, INFO, "rejected request head: %d %s", status, why);
    /* Its access line too (one per request): method, host and path are
     * those of a head that did not parse, so "-". */
    if (c->srv->opts.access_log && lk_log_enabled(LK_LOG_INFO)) {
        struct lk_access_entry e = { .conn_id = c->id, .status = status, .bytes = len };
        write_access(c->srv, &e);
    }
    close_after_flush(c);
}

static bool header_forbidden_in_respond(struct lk_str name)
{
    return lk_str_ieq(name, LK_STR("content-length")) ||
           lk_str_ieq(name, LK_STR("transfer-encoding")) || lk_str_ieq(name, LK_STR("connection"));
}

int lk_exchange_respond(struct lk_exchange *ex, int status, const struct lk_http_header *extra,
                        size_t n_extra, const char *body, size_t len)
{
    if (ex == NULL || ex->phase != LK_EX_HANDLER || status < 200 || status > 599) {
        LK_LOG(ERROR, "lk_exchange_respond: invalid call (status %d)", status);
        return LK_EINVAL;
    }
    struct lk_conn *c = ex->conn;
    ex->status = status;
    if (c == NULL) {
        /* The client went away; nothing to send. */
        lk_exchange_free(ex);
        return 0;
    }
    ex->phase = LK_EX_DONE;
    bool keep = ex->req.keep_alive && !c->read_eof && !conn_ending(c);
    /* An unread body is skipped afterwards when small; otherwise close. */
    if (!ex->body_done && (ex->used_read_body || ex->body_left > DISCARD_MAX))
        keep = false;
    struct lk_buf *b = &c->srv->head_buf;
    lk_buf_reset(b);
    lk_head_add_status(b, status, lk_str_c(lk_http1_reason(status)));
    bool has_date = false;
    for (size_t i = 0; i < n_extra; i++) {
        if (!header_forbidden_in_respond(extra[i].name))
            lk_head_add_field(b, extra[i].name, extra[i].value);
        has_date = has_date || lk_str_ieq(extra[i].name, LK_STR("date"));
    }
    /* A stored upstream answer (the worker's cache) keeps its own Date. */
    if (!has_date)
        lk_head_add_date(c->srv, b);
    if (status != 204 && status != 304) {
        lk_buf_add(b, "Content-Length: ", 16);
        lk_buf_add_u64(b, len);
        lk_buf_add(b, "\r\n", 2);
    }
    if (!keep)
        lk_buf_add(b, "Connection: close\r\n", 19);
    else if (ex->req.minor_version == 0)
        lk_buf_add(b, "Connection: keep-alive\r\n", 24);
    lk_buf_add(b, "\r\n", 2);
    bool is_head = lk_str_eq(ex->req.method, LK_STR("HEAD"));
    bool send_body = len > 0 && !is_head && status_has_body(status);
    /* Small bodies go out with the head in one write. */
    if (send_body && len <= RESPOND_COPY_MAX) {
        lk_buf_add(b, body, len);
        send_body = false;
        ex->bytes_out = len;
    }
    lk_net_send(c->bev, c->plain, b->data, b->len, NULL, 0);
    if (send_body) {
        lk_net_send(c->bev, c->plain, body, len, NULL, 0);
        ex->bytes_out = len;
    }
    lk_conn_exchange_done(c, keep);
    return 0;
}

int lk_exchange_upgrade(struct lk_exchange *ex, const struct lk_http_header *extra, size_t n_extra,
                        struct bufferevent **out)
{
    *out = NULL;
    /* Content-Length: 0 is no body either (RFC 9110 §8.6). */
    bool body = ex != NULL && ex->req.body_kind != LK_HTTP1_BODY_NONE &&
                !(ex->req.body_kind == LK_HTTP1_BODY_LENGTH && ex->req.content_length == 0);
    if (ex == NULL || ex->phase != LK_EX_HANDLER || ex->used_read_body || body)
        return LK_EINVAL;
    struct lk_conn *c = ex->conn;
    if (c == NULL || c->read_eof) {
        if (c != NULL) {
            ex->phase = LK_EX_DONE;
            lk_conn_close(c, "client gone before the upgrade");
        } else {
            lk_exchange_free(ex);
        }
        return LK_ECLOSED;
    }
    ex->status = 101;
    struct evbuffer *o = bufferevent_get_output(c->bev);
    evbuffer_add(o, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n", 55);
    for (size_t i = 0; i < n_extra; i++) {
        if (header_forbidden_in_respond(extra[i].name))
            continue;
        struct lk_buf *b = &c->srv->head_buf;
        lk_buf_reset(b);
        lk_head_add_field(b, extra[i].name, extra[i].value);
        evbuffer_add(o, b->data, b->len);
    }
    evbuffer_add(o, "\r\n", 2);
    log_access(ex);
    LK_CLOG(c->id, DEBUG, "upgraded; connection handed over");
    c->ex = NULL;
    lk_exchange_free(ex);
    struct bufferevent *bev = c->bev;
    lk_conn_close(c, "upgraded");
    c->bev = NULL;
    bufferevent_setwatermark(bev, EV_READ | EV_WRITE, 0, 0);
    bufferevent_set_timeouts(bev, NULL, NULL);
    *out = bev;
    return 0;
}

/* ---- read_body --------------------------------------------------------- */

static void body_finish(struct lk_exchange *ex, int err)
{
    struct lk_conn *c = ex->conn;
    lk_exchange_body_cb *cb = ex->body_cb;
    ex->body_cb = NULL;
    ex->phase = LK_EX_HANDLER;
    if (c != NULL) {
        lk_conn_set_state(c, LK_CONN_HANDLER);
        lk_conn_set_timer(c, 0);
    }
    if (err != 0) {
        cb(ex, NULL, 0, err, ex->body_data);
        return;
    }
    size_t len = ex->body_buf ? evbuffer_get_length(ex->body_buf) : 0;
    char *body = lk_net_arena_alloc(&ex->arena, len + 1);
    if (len > 0)
        evbuffer_remove(ex->body_buf, body, len);
    cb(ex, body, len, 0, ex->body_data);
}

static void read_body_progress(struct lk_conn *c)
{
    struct lk_exchange *ex = c->ex;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    const char *why = NULL;
    if (ex->req.body_kind == LK_HTTP1_BODY_LENGTH && ex->req.content_length > ex->body_max) {
        body_finish(ex, LK_ELIMIT);
        return;
    }
    size_t have = evbuffer_get_length(ex->body_buf);
    /* One byte past the limit tells a body over it (no wrap at SIZE_MAX). */
    size_t room = ex->body_max >= have ? ex->body_max - have : 0;
    if (room < SIZE_MAX)
        room++;
    if (lk_exchange_move_body(ex, in, ex->body_buf, false, room, &why) != 0) {
        body_finish(ex, LK_EPARSE);
        return;
    }
    if (evbuffer_get_length(ex->body_buf) > ex->body_max) {
        body_finish(ex, LK_ELIMIT);
        return;
    }
    if (ex->body_done) {
        body_finish(ex, 0);
        return;
    }
    if (c->read_eof)
        body_finish(ex, LK_ECLOSED);
}

int lk_exchange_read_body(struct lk_exchange *ex, size_t max_bytes, lk_exchange_body_cb *cb,
                          void *data)
{
    if (ex == NULL || cb == NULL || ex->phase != LK_EX_HANDLER || ex->used_read_body)
        return LK_EINVAL;
    ex->used_read_body = true;
    ex->body_cb = cb;
    ex->body_data = data;
    ex->body_max = max_bytes;
    ex->body_buf = evbuffer_new();
    ex->phase = LK_EX_READ_BODY;
    if (ex->conn == NULL) {
        lk_exchange_defer(ex, NULL);
        return 0;
    }
    /* RFC 9110 §10.1.1: a client waiting on "Expect: 100-continue" gets the
     * interim answer once the program has decided to read the body. */
    bool too_big = ex->req.body_kind == LK_HTTP1_BODY_LENGTH &&
                   ex->req.content_length > max_bytes; /* answered 413 at once instead */
    if (ex->req.expect_continue && ex->req.minor_version >= 1 &&
        ex->req.body_kind != LK_HTTP1_BODY_NONE && !too_big)
        bufferevent_write(ex->conn->bev, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    lk_conn_set_state(ex->conn, LK_CONN_READING_BODY);
    lk_conn_set_timer(ex->conn, ex->srv->opts.head_timeout_ms);
    lk_conn_kick(ex->conn);
    return 0;
}

/* ---- reading heads ----------------------------------------------------- */

static void dispatch_head(struct lk_conn *c, const char *head, size_t len,
                          const struct lk_http1_request *parsed)
{
    struct lk_exchange *ex = exchange_new(c, head, len, parsed);
    evbuffer_drain(bufferevent_get_input(c->bev), len);
    c->ex = ex;
    lk_conn_set_state(c, LK_CONN_HANDLER);
    lk_conn_set_timer(c, 0);
    LK_CLOG(c->id, DEBUG, "request %.*s %.*s", (int)ex->req.method.len, ex->req.method.ptr,
            (int)ex->req.target.len, ex->req.target.ptr);
    c->srv->handler(ex, c->srv->data);
}

static void on_h2_closed(void *data, const char *why)
{
    lk_conn_close(data, why);
}

/* The client spoke the HTTP/2 preface: the connection (still one of
 * srv->conns, counted against max_conns) is served by h2_front from now on;
 * it owns the bufferevent, and conn_destroy() frees it. */
static void start_h2(struct lk_conn *c)
{
    struct bufferevent *bev = c->bev;
    lk_timer_cancel(&c->timer); /* h2_front keeps its own timers */
    event_del(&c->kick);
    rd_stop(c);
    bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
    c->bev = NULL;
    lk_conn_set_state(c, LK_CONN_H2);
    c->h2 = lk_h2_front_new(c->srv, bev, c->id, c->peer_str, c->is_loopback, c->is_tls,
                            on_h2_closed, c);
    if (c->srv->draining)
        lk_h2_front_drain(c->h2);
}

/* Whether the TLS handshake agreed on "h2" by ALPN (RFC 9113 §3.2). */
static bool alpn_is_h2(struct lk_conn *c)
{
    const unsigned char *proto = NULL;
    unsigned len = 0;
    SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
    if (ssl != NULL)
        SSL_get0_alpn_selected(ssl, &proto, &len);
    return len == 2 && memcmp(proto, "h2", 2) == 0;
}

/* HTTP/2 on a client's first request: 1 when the connection became HTTP/2,
 * 0 when the bytes so far are a prefix of the preface (wait for more), -1
 * when this is HTTP/1.x. A TLS client speaks HTTP/2 when ALPN chose "h2"
 * (nghttp2 then checks the preface); a plain TCP client with prior
 * knowledge (RFC 9113 §3.3) when it opens with the preface. Adopted streams
 * are never HTTP/2. */
static int sniff_h2(struct lk_conn *c, struct evbuffer *in)
{
    if (c->n_requests > 0 || c->eof_aborts)
        return -1;
    if (c->is_tls) {
        if (!alpn_is_h2(c))
            return -1;
        start_h2(c);
        return 1;
    }
    if (!c->plain)
        return -1;
    char first[LK_H2_PREFACE_LEN];
    ev_ssize_t n = evbuffer_copyout(in, first, sizeof(first));
    int m = lk_h2_preface_match(first, n > 0 ? (size_t)n : 0);
    if (m == 0 && c->read_eof)
        return -1; /* the 400 path closes it */
    if (m == 1)
        start_h2(c);
    return m;
}

static void read_head(struct lk_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    size_t len = evbuffer_get_length(in);
    if (len == 0) {
        if (c->read_eof)
            lk_conn_close(c, "client closed");
        return;
    }
    if (!c->head_begun) {
        c->head_begun = true;
        lk_conn_set_timer(c, c->srv->opts.head_timeout_ms);
    }
    if (sniff_h2(c, in) >= 0)
        return;
    /* Pipelining backpressure: answer the queued responses first. */
    if (evbuffer_get_length(out) > c->srv->opts.stream_buffer_max)
        return;
    const struct lk_http1_limits *lim = c->relayed ? &c->srv->relay_limits : &c->srv->opts.limits;
    size_t n = len < lim->max_head + 1 ? len : lim->max_head + 1;
    struct lk_http1_request req = { .headers = c->srv->req_scratch,
                                    .headers_cap = lim->max_headers };
    const char *why = NULL;
    /* Parse in place in the first chain; pull the head together only when
     * it spans chains (evbuffer_pullup() would copy up to max_head). */
    struct evbuffer_iovec v;
    const char *p = NULL;
    int rc = LK_PARTIAL;
    if (evbuffer_peek(in, -1, NULL, &v, 1) >= 1 && v.iov_len < n) {
        p = v.iov_base;
        rc = lk_http1_parse_request(p, v.iov_len, lim, &req, &why);
    }
    if (rc == LK_PARTIAL) {
        p = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
        rc = lk_http1_parse_request(p, n, lim, &req, &why);
    }
    if (rc == LK_PARTIAL) {
        if (c->read_eof)
            lk_conn_close(c, "client closed inside a request head");
        return;
    }
    if (rc < 0) {
        lk_conn_read_enable(c, false);
        write_error_and_close(c, req.err_status, why ? why : "bad request");
        return;
    }
    dispatch_head(c, p, (size_t)rc, &req);
}

static void process(struct lk_conn *c)
{
    switch (c->state) {
    case LK_CONN_READING_HEAD:
        read_head(c);
        break;
    case LK_CONN_READING_BODY:
        read_body_progress(c);
        break;
    case LK_CONN_PROXYING:
    case LK_CONN_TUNNEL:
        lk_proxy_on_client_read(c->ex);
        break;
    case LK_CONN_DISCARDING:
        discard_progress(c);
        break;
    case LK_CONN_LINGERING: {
        struct evbuffer *in = bufferevent_get_input(c->bev);
        evbuffer_drain(in, evbuffer_get_length(in));
        if (c->read_eof)
            lk_conn_close(c, "lingering close done");
        break;
    }
    case LK_CONN_FLUSHING:
        if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
            flushed(c);
        break;
    case LK_CONN_HANDLER:
    case LK_CONN_H2:
    case LK_CONN_CLOSED:
        break;
    }
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    process(arg);
}

static void on_client_read(struct bufferevent *bev, void *arg)
{
    (void)bev;
    process(arg);
}

static void on_client_write(struct bufferevent *bev, void *arg)
{
    struct lk_conn *c = arg;
    (void)bev;
    if (c->state == LK_CONN_PROXYING || c->state == LK_CONN_TUNNEL)
        lk_proxy_on_client_write(c->ex);
    else
        process(c);
}

static void on_client_event(struct bufferevent *bev, short what, void *arg)
{
    struct lk_conn *c = arg;
    (void)bev;
    if (what & BEV_EVENT_ERROR) {
        int e = EVUTIL_SOCKET_ERROR();
        LK_CLOG(c->id, DEBUG, "client error in %s: %s", state_name(c->state),
                e ? evutil_socket_error_to_string(e) : "tls error");
        lk_conn_close(c, "client error");
        return;
    }
    if (what & BEV_EVENT_TIMEOUT) { /* only the write timeout is set (conn_start) */
        lk_conn_close_send_timeout(c);
        return;
    }
    if (!(what & BEV_EVENT_EOF))
        return;
    c->read_eof = true;
    if (c->is_tls) {
        /* bufferevent_openssl stops writing, too, once the client's
         * close_notify arrived: nothing queued or still to come can reach
         * it, so unlike a plain client's half-close this ends the connection
         * (and cancels an upstream exchange that would wait for room). */
        lk_conn_close(c, "TLS client closed");
        return;
    }
    if (lk_net_bev_orphaned(c->bev)) {
        /* A tunnel stream whose other end went away (reset, or the tunnel
         * closed): whatever is queued for it, or still to come, has nowhere
         * to go. Holding the connection would keep its buffers until a
         * timeout. */
        lk_conn_close(c, "stream closed by the peer");
        return;
    }
    switch (c->state) {
    case LK_CONN_PROXYING:
        if (c->eof_aborts) {
            lk_conn_close(c, "stream closed mid-request");
            break;
        }
        lk_proxy_on_client_eof(c->ex);
        break;
    case LK_CONN_TUNNEL:
        lk_proxy_on_client_eof(c->ex);
        break;
    case LK_CONN_HANDLER:
        /* Half-closed client: the response can still be written. */
        break;
    default:
        process(c);
        break;
    }
}

static void on_client_timer(evutil_socket_t fd, short what, void *arg)
{
    struct lk_conn *c = arg;
    (void)fd;
    (void)what;
    if (c->state == LK_CONN_READING_BODY) {
        struct lk_exchange *ex = c->ex;
        body_finish(ex, LK_ETIMEDOUT);
        return;
    }
    LK_CLOG(c->id, DEBUG, "timeout in %s", state_name(c->state));
    lk_conn_close(c, "timeout");
}

/* ---- accepting --------------------------------------------------------- */

/* Past max_conns (DESIGN §9): a plain client gets a 503 written straight
 * to the socket. A TLS client would read those bytes as a broken handshake
 * (WRONG_VERSION_NUMBER) and answering properly would need a handshake for
 * a connection over the limit, so a TLS listener just closes. */
static void reject_busy(struct lk_http_server *srv, evutil_socket_t fd, bool tls)
{
    if (tls) {
        evutil_closesocket(fd);
        return;
    }
    static const char why[] = "too many connections";
    struct lk_buf *b = &srv->head_buf;
    lk_buf_reset(b);
    lk_head_add_status(b, 503, lk_str_c(lk_http1_reason(503)));
    lk_head_add_date(srv, b);
    lk_buf_adds(b, "Content-Type: text/plain; charset=utf-8\r\nContent-Length: ");
    lk_buf_add_u64(b, sizeof(why) - 1);
    lk_buf_adds(b, "\r\nConnection: close\r\n\r\n");
    lk_buf_add(b, why, sizeof(why) - 1);
    ssize_t n;
    do {
        n = send(fd, b->data, b->len, MSG_NOSIGNAL | MSG_DONTWAIT);
    } while (n == -1 && errno == EINTR);
    shutdown(fd, SHUT_WR);
    evutil_closesocket(fd);
}

static struct lk_conn *conn_new(struct lk_http_server *srv);
static void conn_start(struct lk_conn *c);

static void on_accept_error(struct evconnlistener *evl, void *arg)
{
    struct lk_listener *l = arg;
    (void)evl;
    lk_accept_guard_failed(&l->guard, EVUTIL_SOCKET_ERROR());
}

static void on_accept(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct lk_listener *l = arg;
    struct lk_http_server *srv = l->srv;
    (void)evl;
    if (srv->draining) {
        evutil_closesocket(fd);
        return;
    }
    if (srv->n_clients >= srv->opts.max_conns) {
        bool tls = l->tls != NULL || l->tls_get != NULL;
        LK_LOG(WARN, "too many connections (%zu); %s", srv->n_clients,
               tls ? "closing a TLS connection" : "answering 503");
        reject_busy(srv, fd, tls);
        return;
    }
    if (l->tls == NULL && l->tls_get != NULL) {
        l->tls = l->tls_get(l->tls_data); /* kept once it is not NULL */
        if (l->tls == NULL) {
            evutil_closesocket(fd);
            return;
        }
    }
    struct lk_conn *c = conn_new(srv);
    c->accepted = true;
    srv->n_clients++;
    memcpy(&c->peer, sa, (size_t)salen < sizeof(c->peer) ? (size_t)salen : sizeof(c->peer));
    lk_addr_format(sa, c->peer_str, sizeof(c->peer_str));
    c->is_loopback = lk_addr_is_loopback(sa);
    struct sockaddr_storage local;
    socklen_t local_len = sizeof(local);
    if (getsockname(fd, (struct sockaddr *)&local, &local_len) == 0)
        c->local = local;
    if (l->tls != NULL) {
        SSL *ssl = SSL_new(l->tls);
        c->bev = bufferevent_openssl_socket_new(srv->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                BEV_OPT_CLOSE_ON_FREE);
        c->is_tls = true;
    } else {
        c->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
        c->plain = true;
    }
    LK_ASSERT(c->bev != NULL);
    lk_net_tune_socket(c->bev);
    conn_start(c);
}

/* What an adopted byte stream is the far end of. */
enum adopt_kind {
    ADOPT_TUNNEL = 0, /* a tunnel stream (tunnel.c) */
    ADOPT_RELAYED,    /* a tunnel stream with widened head limits */
    ADOPT_H2,         /* an HTTP/2 front stream (h2_front.c) */
    ADOPT_H2_TLS,     /* the same, of a TLS client connection */
};

static int adopt(struct lk_http_server *srv, struct bufferevent *bev, const char *peer_label,
                 bool peer_is_loopback, enum adopt_kind kind);

int lk_http_server_adopt(struct lk_http_server *srv, struct bufferevent *bev,
                         const char *peer_label, bool peer_is_loopback)
{
    return adopt(srv, bev, peer_label, peer_is_loopback, ADOPT_TUNNEL);
}

int lk_http_server_adopt_h2(struct lk_http_server *srv, struct bufferevent *bev,
                            const char *peer_label, bool peer_is_loopback, bool https)
{
    return adopt(srv, bev, peer_label, peer_is_loopback, https ? ADOPT_H2_TLS : ADOPT_H2);
}

int lk_http_server_adopt_relayed(struct lk_http_server *srv, struct bufferevent *bev,
                                 const char *peer_label)
{
    return adopt(srv, bev, peer_label, false, ADOPT_RELAYED);
}

void lk_http_server_retire_adopted(struct bufferevent *bev)
{
    bufferevent_event_cb eventcb = NULL;
    void *arg = NULL;
    bufferevent_getcb(bev, NULL, NULL, &eventcb, &arg);
    if (eventcb != on_client_event || arg == NULL)
        return; /* not (or no longer) served by the HTTP/1.1 engine */
    struct lk_conn *c = arg;
    c->retiring = true;
    /* Request bytes the engine has not read yet (its read callback is
     * deferred; a paused pair keeps them in the partner's output) are a
     * request that came before the tunnel's GOAWAY: it is served first. */
    struct bufferevent *partner = bufferevent_pair_get_partner(bev);
    bool unread = evbuffer_get_length(bufferevent_get_input(bev)) > 0 ||
                  (partner != NULL && evbuffer_get_length(bufferevent_get_output(partner)) > 0);
    if (conn_idle(c) && !unread)
        lk_conn_close(c, "tunnel going away");
}

static int adopt(struct lk_http_server *srv, struct bufferevent *bev, const char *peer_label,
                 bool peer_is_loopback, enum adopt_kind kind)
{
    /* A tunnel stream during a drain is one the worker opened before it saw
     * the tunnel's GOAWAY notice: served (the tunnel refuses streams after
     * its final GOAWAY), then closed (conn_ending()). */
    bool refuse_drain = srv->draining && kind != ADOPT_RELAYED;
    if (refuse_drain) {
        lk_net_bev_free(bev);
        return LK_ECLOSED;
    }
    struct lk_conn *c = conn_new(srv);
    const char *label = peer_label ? peer_label : "adopted";
    size_t n = strnlen(label, sizeof(c->peer_str) - 1);
    memcpy(c->peer_str, label, n); /* c is zeroed: NUL-terminated */
    c->is_loopback = peer_is_loopback;
    c->eof_aborts = true;
    c->relayed = kind == ADOPT_RELAYED;
    c->https = kind == ADOPT_H2_TLS;
    c->pair_resets = kind == ADOPT_RELAYED || kind == ADOPT_H2 || kind == ADOPT_H2_TLS;
    c->bev = bev;
    c->plain = lk_net_bev_is_plain(bev);
    bufferevent_set_max_single_write(bev, 256 * 1024);
    conn_start(c);
    return 0;
}

static struct lk_conn *conn_new(struct lk_http_server *srv)
{
    struct lk_conn *c = lk_xcalloc(1, sizeof(*c));
    c->srv = srv;
    c->id = ++srv->next_id;
    return c;
}

/* Common start of accepted and adopted connections: c->bev is set. */
static void conn_start(struct lk_conn *c)
{
    struct lk_http_server *srv = c->srv;
    lk_timer_init(&c->timer, srv->base, on_client_timer, c);
    event_assign(&c->kick, srv->base, -1, 0, on_kick, c);
    bufferevent_setcb(c->bev, on_client_read, on_client_write, on_client_event, c);
    /* Bound what a peer can make us buffer while we are not consuming. */
    bufferevent_setwatermark(c->bev, EV_READ, 0, read_high(c));
    /* The send timeout: libevent arms it only while output is queued and
     * restarts it on every write, so it measures a client taking nothing.
     * A pair end (tunnel stream) has no socket and would time out idle. */
    if (evutil_timerisset(&srv->send_tv) && bufferevent_getfd(c->bev) >= 0)
        bufferevent_set_timeouts(c->bev, NULL, &srv->send_tv);
    rd_start(c);
    bufferevent_enable(c->bev, c->own_read ? EV_WRITE : EV_READ | EV_WRITE);
    LIST_PUSH(srv->conns, c);
    srv->n_conns++;
    LK_CLOG(c->id, DEBUG, "accepted from %s", c->peer_str);
    c->state = LK_CONN_HANDLER; /* so that the first set_state logs */
    start_reading_head(c);
}

/* ---- server ------------------------------------------------------------ */

static void on_drain_check(evutil_socket_t fd, short what, void *arg);
static void on_drain_timer(evutil_socket_t fd, short what, void *arg);

/* The client context for https:// upstreams: system trust store plus
 * ca_file (may be NULL). NULL on failure (logged). */
static SSL_CTX *new_client_tls(const char *ca_file)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL || SSL_CTX_set_default_verify_paths(ctx) != 1 ||
        (ca_file != NULL && SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1)) {
        LK_LOG(ERROR, "cannot set up the TLS client context");
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    static const unsigned char alpn[] = "\x08http/1.1";
    SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn) - 1);
    return ctx;
}

struct ssl_ctx_st *lk_http_server_client_tls(struct lk_http_server *srv)
{
    if (srv->client_tls == NULL) {
        srv->client_tls = new_client_tls(NULL);
        srv->own_client_tls = srv->client_tls != NULL;
    }
    return srv->client_tls;
}

static size_t at_least(size_t v, size_t min)
{
    return v > min ? v : min;
}

int lk_http_server_new(struct event_base *base, const struct lk_http_server_opts *opts,
                       lk_http_handler_cb *handler, void *data, struct lk_http_server **out)
{
    struct lk_http_server *srv = lk_xcalloc(1, sizeof(*srv));
    srv->base = base;
    if (opts != NULL)
        srv->opts = *opts;
    else
        lk_http_server_opts_init(&srv->opts);
    if (srv->opts.limits.max_headers == 0)
        lk_http1_limits_default(&srv->opts.limits);
    srv->handler = handler;
    srv->data = data;
    if (srv->opts.send_timeout_ms > 0) {
        struct timeval tv = lk_ms_tv(srv->opts.send_timeout_ms);
        const struct timeval *common = event_base_init_common_timeout(base, &tv);
        srv->send_tv = common != NULL ? *common : tv;
    }
    event_assign(&srv->reap_ev, base, -1, 0, on_reap, srv);
    event_assign(&srv->drain_check, base, -1, 0, on_drain_check, srv);
    evtimer_assign(&srv->drain_timer, base, on_drain_timer, srv);
    srv->dns = srv->opts.dns;
    if (srv->dns == NULL) {
        srv->dns = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
                                            EVDNS_BASE_DISABLE_WHEN_INACTIVE);
        if (srv->dns == NULL) {
            /* No usable resolv.conf: still serve /etc/hosts and literals. */
            srv->dns = evdns_base_new(base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
            if (srv->dns != NULL)
                evdns_base_load_hosts(srv->dns, NULL);
        }
        srv->own_dns = true;
        if (srv->dns == NULL) {
            LK_LOG(ERROR, "cannot create a DNS resolver");
            free(srv);
            return LK_EIO;
        }
    }
    srv->client_tls = srv->opts.upstream_tls;
    /* With an extra CA file the context is built now, so that a bad file
     * fails here; otherwise on the first https:// upstream (finding 10:
     * loading the system trust store costs ~0.1 s and ~4 MiB). */
    if (srv->client_tls == NULL && srv->opts.upstream_ca_file != NULL) {
        srv->client_tls = new_client_tls(srv->opts.upstream_ca_file);
        if (srv->client_tls == NULL) {
            if (srv->own_dns)
                evdns_base_free(srv->dns, 0);
            free(srv);
            return LK_EIO;
        }
        srv->own_client_tls = true;
    }
    evtimer_assign(&srv->log_flush, base, on_log_flush, srv);
    srv->heap_idle = lk_heap_idle_new(base, HEAP_IDLE_TRIM_MS);
    lk_buf_init(&srv->head_buf, 0);
    srv->relay_limits = srv->opts.limits;
    srv->relay_limits.max_headers += LK_HTTP_RELAY_EXTRA_HEADERS;
    srv->relay_limits.max_line += LK_HTTP_RELAY_EXTRA_BYTES;
    srv->relay_limits.max_head += LK_HTTP_RELAY_EXTRA_BYTES;
    srv->req_scratch = lk_xcalloc(srv->relay_limits.max_headers + 1, sizeof(*srv->req_scratch));
    /* Upstream response heads. The LINKUP_MAX_* knobs are request limits
     * (DESIGN §9: 431/414 past them), so a small configured value must not
     * turn ordinary responses into 502s: each limit is at least its default. */
    const struct lk_http1_limits *l = &srv->opts.limits;
    srv->resp_limits = (struct lk_http1_limits){ at_least(l->max_line, LK_HTTP1_MAX_LINE),
                                                 at_least(l->max_head, LK_HTTP1_MAX_HEAD),
                                                 at_least(l->max_headers, LK_HTTP1_MAX_HEADERS),
                                                 at_least(l->max_target, LK_HTTP1_MAX_TARGET) };
    srv->resp_scratch = lk_xcalloc(srv->resp_limits.max_headers + 1, sizeof(*srv->resp_scratch));
    srv->opts.dns = NULL;
    srv->opts.upstream_ca_file = NULL;
    *out = srv;
    return 0;
}

int lk_http_server_listen(struct lk_http_server *srv, const char *addr, struct ssl_ctx_st *tls,
                          char *bound, size_t bound_len)
{
    struct sockaddr_storage ss;
    socklen_t ss_len = 0;
    if (lk_addr_parse(addr, &ss, &ss_len) != 0) {
        LK_LOG(ERROR, "invalid listen address \"%s\"", addr ? addr : "(null)");
        return LK_EINVAL;
    }
    struct lk_listener *l = lk_xcalloc(1, sizeof(*l));
    l->srv = srv;
    l->tls = tls;
    l->evl = evconnlistener_new_bind(
        srv->base, on_accept, l, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
        1024, (struct sockaddr *)&ss, (int)ss_len);
    if (l->evl == NULL) {
        int e = EVUTIL_SOCKET_ERROR();
        LK_LOG(ERROR, "cannot listen on %s: %s", addr, evutil_socket_error_to_string(e));
        free(l);
        return LK_EIO;
    }
    char name[64];
    struct sockaddr_storage got;
    socklen_t got_len = sizeof(got);
    if (getsockname(evconnlistener_get_fd(l->evl), (struct sockaddr *)&got, &got_len) == 0)
        lk_addr_format((struct sockaddr *)&got, name, sizeof(name));
    else
        snprintf(name, sizeof(name), "%s", addr);
    if (bound != NULL && bound_len > 0)
        snprintf(bound, bound_len, "%s", name);
    if (lk_accept_guard_init(&l->guard, srv->base, l->evl, name) != 0) {
        evconnlistener_free(l->evl);
        free(l);
        return LK_ENOMEM;
    }
    evconnlistener_set_error_cb(l->evl, on_accept_error);
    l->next = srv->listeners;
    srv->listeners = l;
    return 0;
}

int lk_http_server_listen_lazy_tls(struct lk_http_server *srv, const char *addr, lk_tls_ctx_cb *get,
                                   void *data, char *bound, size_t bound_len)
{
    int rc = lk_http_server_listen(srv, addr, NULL, bound, bound_len);
    if (rc == 0) {
        srv->listeners->tls_get = get; /* the listener just added */
        srv->listeners->tls_data = data;
    }
    return rc;
}

size_t lk_http_server_n_conns(const struct lk_http_server *srv)
{
    return srv->n_conns;
}

size_t lk_http_server_n_heap_trims(const struct lk_http_server *srv)
{
    return lk_heap_idle_trims(srv->heap_idle);
}

size_t lk_http_server_n_idle_upstreams(const struct lk_http_server *srv)
{
    return srv->n_idle;
}

static void close_listeners(struct lk_http_server *srv)
{
    while (srv->listeners != NULL) {
        struct lk_listener *l = srv->listeners;
        srv->listeners = l->next;
        lk_accept_guard_release(&l->guard);
        evconnlistener_free(l->evl);
        free(l);
    }
}

static void free_everything(struct lk_http_server *srv)
{
    close_listeners(srv);
    while (srv->conns != NULL)
        lk_conn_close(srv->conns, "server shutting down");
    /* Run the destructors now instead of from the loop. */
    event_del(&srv->reap_ev);
    while (srv->reap != NULL) {
        struct lk_conn *c = srv->reap;
        LIST_UNLINK(srv->reap, c);
        conn_destroy(c);
    }
    while (srv->exchanges != NULL)
        lk_exchange_free(srv->exchanges);
    lk_upstream_pool_clear(srv);
    event_del(&srv->drain_check);
    lk_heap_idle_free(srv->heap_idle);
    if (srv->drain_timer_set)
        evtimer_del(&srv->drain_timer);
    if (srv->own_dns)
        evdns_base_free(srv->dns, 0);
    if (srv->own_client_tls)
        SSL_CTX_free(srv->client_tls);
    if (srv->log_flush_set)
        evtimer_del(&srv->log_flush);
    lk_log_flush();
    lk_buf_release(&srv->head_buf);
    for (size_t i = 0; i < srv->n_holds; i++)
        *srv->holds[i] = NULL; /* the holder adopts nothing more */
    free(srv->holds);
    free(srv->req_scratch);
    free(srv->resp_scratch);
    free(srv);
}

void lk_http_server_free(struct lk_http_server *srv)
{
    if (srv == NULL)
        return;
    free_everything(srv);
}

void lk_http_server_hold(struct lk_http_server *srv, struct lk_http_server **ref)
{
    if (srv->n_holds == srv->cap_holds) {
        srv->cap_holds = srv->cap_holds ? 2 * srv->cap_holds : 4;
        srv->holds = lk_xrealloc(srv->holds, srv->cap_holds * sizeof(*srv->holds));
    }
    srv->holds[srv->n_holds++] = ref;
}

void lk_http_server_release(struct lk_http_server **ref)
{
    struct lk_http_server *srv = *ref;
    if (srv == NULL)
        return;
    for (size_t i = 0; i < srv->n_holds; i++) {
        if (srv->holds[i] == ref) {
            srv->holds[i] = srv->holds[--srv->n_holds];
            lk_http_server_check_drain(srv);
            return;
        }
    }
}

void lk_http_server_check_drain(struct lk_http_server *srv)
{
    if (srv->draining && !event_pending(&srv->drain_check, EV_TIMEOUT, NULL))
        event_active(&srv->drain_check, EV_TIMEOUT, 0);
}

static void finish_drain(struct lk_http_server *srv)
{
    lk_http_server_drained_cb *done = srv->drain_done;
    void *data = srv->drain_data;
    free_everything(srv);
    if (done != NULL)
        done(data);
}

static void on_drain_check(evutil_socket_t fd, short what, void *arg)
{
    struct lk_http_server *srv = arg;
    (void)fd;
    (void)what;
    /* Idle keep-alive connections are closed; busy ones close after their
     * response (lk_conn_exchange_done: conn_ending()). An idle tunnel stream
     * waits for its tunnel's final GOAWAY (lk_http_server_retire_adopted()):
     * the worker may be sending a request on it until then. */
    for (struct lk_conn *c = srv->conns, *next; c != NULL; c = next) {
        next = c->next;
        if (conn_idle(c) && (!c->relayed || c->retiring))
            lk_conn_close(c, "server draining");
        else if (c->state == LK_CONN_H2)
            lk_h2_front_drain(c->h2); /* GOAWAY; closes once its streams are done */
        else if (c->state == LK_CONN_TUNNEL && c->ex != NULL)
            lk_proxy_drain(c->ex); /* WebSockets: 1001 close frames (the worker) */
    }
    lk_upstream_pool_clear(srv);
    if (srv->conns == NULL && srv->reap == NULL && srv->exchanges == NULL && srv->n_holds == 0)
        finish_drain(srv);
}

static void on_drain_timer(evutil_socket_t fd, short what, void *arg)
{
    struct lk_http_server *srv = arg;
    (void)fd;
    (void)what;
    srv->drain_timer_set = false;
    LK_LOG(INFO, "drain deadline reached with %zu connections open", srv->n_conns);
    finish_drain(srv);
}

void lk_http_server_drain(struct lk_http_server *srv, unsigned deadline_ms,
                          lk_http_server_drained_cb *done, void *data)
{
    srv->draining = true;
    srv->drain_done = done;
    srv->drain_data = data;
    close_listeners(srv);
    struct timeval tv = lk_ms_tv(deadline_ms);
    evtimer_add(&srv->drain_timer, &tv);
    srv->drain_timer_set = true;
    lk_http_server_check_drain(srv);
}

/* ---- accessors --------------------------------------------------------- */

struct lk_str lk_exchange_method(const struct lk_exchange *ex)
{
    return ex->req.method;
}

struct lk_str lk_exchange_target(const struct lk_exchange *ex)
{
    return ex->req.target;
}

struct lk_str lk_exchange_url(struct lk_exchange *ex, struct lk_str host)
{
    struct lk_str scheme = ex->is_tls ? LK_STR("https://") : LK_STR("http://");
    struct lk_str target = ex->req.target;
    size_t len = scheme.len + host.len + target.len;
    char *url = lk_net_arena_alloc(&ex->arena, len + 1); /* zeroed: NUL-terminated */
    memcpy(url, scheme.ptr, scheme.len);
    memcpy(url + scheme.len, host.ptr, host.len);
    memcpy(url + scheme.len + host.len, target.ptr, target.len);
    return (struct lk_str){ url, len };
}

int lk_exchange_minor_version(const struct lk_exchange *ex)
{
    return ex->req.minor_version;
}

bool lk_exchange_header(const struct lk_exchange *ex, struct lk_str name, struct lk_str *value)
{
    const struct lk_http_header *h = lk_http1_find_header(ex->req.headers, ex->req.n_headers, name);
    if (h == NULL)
        return false;
    if (value != NULL)
        *value = h->value;
    return true;
}

const struct lk_http_header *lk_exchange_headers(const struct lk_exchange *ex, size_t *n)
{
    *n = ex->req.n_headers;
    return ex->req.headers;
}

enum lk_http1_body_kind lk_exchange_body_kind(const struct lk_exchange *ex)
{
    return ex->req.body_kind;
}

uint64_t lk_exchange_content_length(const struct lk_exchange *ex)
{
    return ex->req.content_length;
}

bool lk_exchange_is_websocket(const struct lk_exchange *ex)
{
    return ex->is_ws;
}

const char *lk_exchange_peer(const struct lk_exchange *ex)
{
    return ex->peer_str;
}

bool lk_exchange_peer_is_loopback(const struct lk_exchange *ex)
{
    return ex->is_loopback;
}

bool lk_exchange_is_tls(const struct lk_exchange *ex)
{
    return ex->is_tls;
}

int lk_exchange_local_port(const struct lk_exchange *ex)
{
    return ex->local_port;
}

uint64_t lk_exchange_conn_id(const struct lk_exchange *ex)
{
    return ex->conn_id;
}

bool lk_exchange_is_aborted(const struct lk_exchange *ex)
{
    return ex->aborted;
}

bool lk_exchange_upstream_no_answer(const struct lk_exchange *ex)
{
    return ex->no_answer;
}

void *lk_exchange_alloc(struct lk_exchange *ex, size_t n)
{
    return lk_net_arena_alloc(&ex->arena, n);
}

char *lk_exchange_strndup(struct lk_exchange *ex, const char *p, size_t n)
{
    return lk_net_arena_strndup(&ex->arena, p, n);
}

char *lk_exchange_printf(struct lk_exchange *ex, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    char *s = lk_net_arena_alloc(&ex->arena, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

void lk_exchange_set_log_fields(struct lk_exchange *ex, const char *session, const char *service)
{
    if (session != NULL)
        ex->log_session = lk_net_arena_strndup(&ex->arena, session, strlen(session));
    if (service != NULL)
        ex->log_service = lk_net_arena_strndup(&ex->arena, service, strlen(service));
}
