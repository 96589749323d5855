/*
 * proxy.c - lk_exchange_proxy(): one request forwarded to an upstream and its
 * response streamed back, plus the WebSocket tunnel after a 101.
 *
 * States: CONNECTING -> AWAIT_HEAD (request head sent, body streaming) ->
 * BODY (response streaming) -> done, or AWAIT_HEAD -> TUNNEL. Bodies move
 * between evbuffers with evbuffer_remove_buffer(); a direction stops reading
 * its source while the destination holds more than stream_buffer_max bytes
 * (ws_buffer_max in the tunnel) and resumes from the destination's write
 * callback. Before the first response byte reaches the client every failure
 * goes to spec->on_error; after it the client connection is aborted.
 * The proxy state lives in the exchange's arena, so finishing the exchange
 * frees it: nothing may touch px after lk_conn_exchange_done().
 * With ws_close_normal (the worker, SPEC §4.7) the tunnel reads frame heads:
 * data frames pass untouched, close frames are re-sent with code 1000, a
 * side that ends without a close frame gets the other one a 1011 close, and
 * a drain closes both sides with 1001 at frame boundaries (lk_proxy_drain()).
 * An upstream that fails (not a clean EOF) ends an HTTP/2 front stream with
 * an error: RST_STREAM CANCEL (RFC 8441 §5).
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/url.h"
#include "net/http_internal.h"
#include "net/log.h"
#include "net/rng_os.h"
#include "net/splice.h"
#include "net/tunnel_internal.h"
#include "proto/ws.h"

enum px_state {
    PX_CONNECTING = 0,
    PX_AWAIT_HEAD,
    PX_BODY,
    PX_TUNNEL,
};

/* One direction of a WebSocket tunnel read frame by frame (ws_move()). */
struct ws_dir {
    uint64_t left;  /* bytes of the current frame still to pass on */
    bool closed;    /* a close frame went this way */
    bool malformed; /* a head that breaks RFC 6455 §5.2: the rest passes as bytes */
    bool to_upstream;
    uint8_t rsv_ok;  /* RSV bits data frames may carry: some only with an extension */
    bool going_away; /* draining: a 1001 close goes this way at the next frame boundary */
    bool dropping;   /* our 1001 close went this way: the source's bytes are dropped */
    bool answered;   /* dropping, a close came from the source: its side is done */
};

struct lk_proxy {
    struct lk_exchange *ex;
    struct lk_http_server *srv;
    enum px_state state;
    struct lk_upstream *up;      /* connected upstream, owned */
    struct lk_upstream *pending; /* connection attempt in flight, owned */
    bool tls;
    char *host; /* for connecting: no brackets */
    int port;
    char *head; /* the request head to send */
    size_t head_len;
    const struct lk_http_header *resp_set, *resp_default;
    size_t n_resp_set, n_resp_default;
    bool websocket, pass_non_101;
    /* The Sec-WebSocket-Accept the upstream's 101 must carry (RFC 6455
     * §4.2.2) for the key sent; "" when the request had no key. */
    char ws_accept[32];
    lk_proxy_error_cb *on_error;
    lk_proxy_error_cb *on_ws_refused; /* NULL: on_error */
    void *data;
    lk_proxy_connect_cb *connect; /* custom connector, or NULL */
    void *connect_data;           /* see lk_proxy_req.connect_pool_key */
    char *pool_key;               /* the connector's pool key, or NULL */
    bool retry_ok, retried;
    bool req_chunked_out;
    bool resp_started; /* response bytes went to the client */
    bool up_paused;    /* upstream reading paused for backpressure */
    bool up_eof;       /* the upstream closed (its input may still hold bytes) */
    /* The rest of a Content-Length body goes from the upstream socket to a
     * plain client socket (relay) or into a built-in tunnel stream (splice)
     * by splice(2) (try_splice()), which reads the upstream meanwhile. */
    struct lk_splice *relay;
    struct lk_tunnel_splice *splice;
    /* response */
    struct lk_http1_response resp;
    enum lk_http1_body_kind resp_kind;
    uint64_t resp_left;
    struct lk_http1_chunked resp_chunked;
    bool client_chunked, client_keep;
    bool client_until_close; /* the client's body ends with the connection */
    /* One timer, by state: AWAIT_HEAD the first response byte, counted from
     * the last request byte passed upstream (sent_mark_ms: a body still
     * arriving postpones it); BODY the upstream idle timeout
     * (upstream_idle_timeout_ms without a read; off while reading is paused
     * for a slow client, and for custom connectors, whose streams have their
     * own rules). Progress only records a mark (the loop's cached time); the
     * expiry re-arms for the rest. It is the attached upstream connection's
     * lazy timer (up->timer, on_timer while attached), so a pooled
     * connection's hand-overs and the first-byte deadline cost no event
     * changes (docs/performance.md, finding 32). */
    bool body_idle_off; /* no idle timeout: custom connector (tunnel stream) */
    int64_t idle_mark_ms;
    int64_t sent_mark_ms;
    /* tunnel */
    bool c_eof, u_eof, c_shut, u_shut;
    bool u_dead;                  /* the upstream failed: nothing more is written to it */
    bool ws_frames;               /* ws_close_normal: frames are read (ws_move()) */
    struct ws_dir ws_up, ws_down; /* client -> upstream, upstream -> client */
    char errtext[256];
};

static void attach(struct lk_proxy *px, struct lk_upstream *up);
static void pump_response(struct lk_proxy *px, const char *pre, size_t pre_len);
static void tunnel_pump(struct lk_proxy *px);

static void set_timer(struct lk_proxy *px, unsigned ms)
{
    if (px->up != NULL)
        lk_timer_set(&px->up->timer, ms);
}

static bool timer_on(const struct lk_proxy *px)
{
    return px->up != NULL && lk_timer_is_on(&px->up->timer);
}

/* Own-read mode (plain sockets, attach()): the bufferevent's EV_READ is off
 * and the upstream's own event (lk_upstream_own_reads()) reads the socket in
 * 64 KiB (no libevent ioctl + 4 KiB read first). */
static bool own_read(const struct lk_proxy *px)
{
    return px->up != NULL && px->up->rd_owned;
}

/* Frees the upstream side; reusable connections go back to the pool. */
static void drop_upstream(struct lk_proxy *px, bool reusable)
{
    set_timer(px, 0);
    lk_splice_cancel(px->relay);
    lk_tunnel_splice_cancel(px->splice);
    px->relay = NULL;
    px->splice = NULL;
    if (px->pending != NULL) {
        lk_upstream_free(px->pending);
        px->pending = NULL;
    }
    if (px->up != NULL) {
        bufferevent_setcb(px->up->bev, NULL, NULL, NULL, NULL);
        /* A pooled connection keeps reading enabled (no epoll_ctl per
         * request); the pool watches it for a close. */
        if (!reusable)
            bufferevent_disable(px->up->bev, EV_READ | EV_WRITE);
        lk_upstream_release(px->up, reusable);
        px->up = NULL;
    }
}

static void ws_abort_close(struct lk_proxy *px);

void lk_proxy_abort(struct lk_exchange *ex)
{
    struct lk_proxy *px = ex->proxy;
    if (px != NULL) {
        ws_abort_close(px);
        drop_upstream(px, false);
    }
    ex->proxy = NULL;
    lk_exchange_free(ex);
}

/* Failure before the first response byte: hand the exchange back. */
static void fail(struct lk_proxy *px, const char *errtext)
{
    struct lk_exchange *ex = px->ex;
    struct lk_conn *c = ex->conn;
    if (px->resp_started) {
        LK_CLOG(ex->conn_id, WARN, "upstream failed mid-response: %s", errtext);
        drop_upstream(px, false);
        if (c != NULL) {
            /* A client that reads until the close must not take the cut
             * body for a whole one (chunked and sized bodies show the cut
             * themselves). */
            if (px->client_until_close)
                lk_conn_reset_on_close(c);
            lk_conn_close(c, "upstream failed mid-response");
        }
        return;
    }
    LK_CLOG(ex->conn_id, INFO, "proxy error: %s", errtext);
    drop_upstream(px, false);
    ex->proxy = NULL;
    ex->phase = LK_EX_HANDLER;
    if (c != NULL) {
        lk_conn_set_state(c, LK_CONN_HANDLER);
        /* Stop body bytes from being consumed while the program decides. */
    }
    px->on_error(ex, errtext, px->data);
}

static void deferred_fail(struct lk_exchange *ex)
{
    struct lk_proxy *px = ex->proxy;
    fail(px, px->errtext);
}

/* Upstream body bytes arrived (or reading resumed): the idle period
 * restarts. Cheap enough for every read: no timer syscall or heap work. */
static void idle_mark(struct lk_proxy *px)
{
    if (timer_on(px))
        px->idle_mark_ms = lk_loop_now_ms(px->srv->base);
}

/* Arms (on) or stops the body idle timer. */
static void idle_timer(struct lk_proxy *px, bool on)
{
    unsigned ms = px->srv->opts.upstream_idle_timeout_ms;
    if (!on || ms == 0 || px->body_idle_off) {
        set_timer(px, 0);
        return;
    }
    if (timer_on(px)) {
        idle_mark(px);
        return;
    }
    set_timer(px, ms);
    px->idle_mark_ms = lk_loop_now_ms(px->srv->base);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct lk_proxy *px = arg;
    (void)fd;
    (void)what;
    if (px->state == PX_BODY) {
        unsigned ms = px->srv->opts.upstream_idle_timeout_ms;
        if ((px->relay != NULL && !lk_splice_reading(px->relay)) ||
            (px->splice != NULL && !lk_tunnel_splice_reading(px->splice))) {
            set_timer(px, ms); /* waiting for the client, not the upstream */
            px->idle_mark_ms = lk_loop_now_ms(px->srv->base);
            return;
        }
        int64_t idle = lk_loop_now_ms(px->srv->base) - px->idle_mark_ms;
        if (idle >= 0 && idle < (int64_t)ms) {
            int64_t mark = px->idle_mark_ms;
            set_timer(px, ms - (unsigned)idle);
            px->idle_mark_ms = mark;
            return;
        }
        snprintf(px->errtext, sizeof(px->errtext), LK_ETEXT_BODY_IDLE, px->host, ms);
        fail(px, px->errtext); /* the response started: aborts the client */
        return;
    }
    if (px->state == PX_AWAIT_HEAD) {
        /* DESIGN §9: request sent -> first response byte; a request body
         * still moving upstream is not the upstream's delay. */
        unsigned ms = px->srv->opts.first_byte_timeout_ms;
        int64_t quiet = lk_loop_now_ms(px->srv->base) - px->sent_mark_ms;
        if (quiet >= 0 && quiet < (int64_t)ms) {
            set_timer(px, ms - (unsigned)quiet);
            return;
        }
    }
    snprintf(px->errtext, sizeof(px->errtext), LK_ETEXT_NO_ANSWER, px->host);
    px->ex->no_answer = true;
    fail(px, px->errtext);
}

/* ---- building the request head ------------------------------------------ */

/* The tokens of a field list's Connection fields (RFC 9110 §7.6.1), split
 * once per head so that checking each field against them costs a few
 * length compares. When they do not fit, h and n keep the list and
 * listed_in_connection() scans it as lk_str_has_token() would. */
#define CONN_TOKENS_MAX 8
struct conn_tokens {
    struct lk_str tok[CONN_TOKENS_MAX];
    size_t n_tok;
    uint64_t lens; /* bit len % 64 of each token: most names are told apart by it */
    const struct lk_http_header *h;
    size_t n;
};

static void connection_tokens(const struct lk_http_header *h, size_t n, struct conn_tokens *ct)
{
    ct->n_tok = 0;
    ct->lens = 0;
    ct->h = NULL;
    ct->n = 0;
    for (size_t i = 0; i < n; i++) {
        if (!lk_str_ieq(h[i].name, LK_STR("connection")))
            continue;
        struct lk_str v = h[i].value;
        for (size_t at = 0; at <= v.len;) { /* the items lk_str_has_token() sees */
            size_t end = at;
            while (end < v.len && v.ptr[end] != ',')
                end++;
            if (ct->n_tok == CONN_TOKENS_MAX) {
                ct->h = h;
                ct->n = n;
                return;
            }
            struct lk_str tok = lk_str_trim((struct lk_str){ v.ptr + at, end - at });
            ct->tok[ct->n_tok++] = tok;
            ct->lens |= UINT64_C(1) << (tok.len & 63);
            at = end + 1;
        }
    }
}

/* name is a token of some Connection field. */
static bool listed_in_connection(const struct conn_tokens *ct, struct lk_str name)
{
    if (ct->n == 0 && !(ct->lens >> (name.len & 63) & 1))
        return false;
    for (size_t i = 0; i < ct->n; i++) {
        if (lk_str_ieq(ct->h[i].name, LK_STR("connection")) &&
            lk_str_has_token(ct->h[i].value, name))
            return true;
    }
    for (size_t i = 0; i < ct->n_tok; i++) {
        if (lk_str_ieq(ct->tok[i], name))
            return true;
    }
    return false;
}

/* True when h is a field the client sent (the program passed the engine's own
 * slice through) rather than one the program added: only the client's own
 * fields may be named by its Connection header (RFC 9110 §7.6.1), so a client
 * cannot strip the routing headers the program sets. */
static bool is_client_field(const struct lk_exchange *ex, const struct lk_http_header *h)
{
    for (size_t i = 0; i < ex->req.n_headers; i++) {
        if (ex->req.headers[i].name.ptr == h->name.ptr &&
            ex->req.headers[i].value.ptr == h->value.ptr)
            return true;
    }
    return false;
}

/* h is a client's own field that a Connection field names (spec_conn,
 * req_conn: the tokens of the program's and the client's lists). */
static bool dropped_by_connection(const struct lk_exchange *ex, const struct lk_http_header *h,
                                  const struct conn_tokens *spec_conn,
                                  const struct conn_tokens *req_conn)
{
    return (listed_in_connection(spec_conn, h->name) || listed_in_connection(req_conn, h->name)) &&
           is_client_field(ex, h);
}

bool lk_exchange_connection_drops(const struct lk_exchange *ex, const struct lk_proxy_req *spec,
                                  const struct lk_http_header *h)
{
    struct conn_tokens spec_conn, req_conn;
    connection_tokens(spec->headers, spec->n_headers, &spec_conn);
    connection_tokens(ex->req.headers, ex->req.n_headers, &req_conn);
    return dropped_by_connection(ex, h, &spec_conn, &req_conn);
}

/* spec_conn, req_conn: the Connection tokens of the program's and the
 * client's lists. */
static bool skip_request_header(const struct lk_exchange *ex, const struct lk_http_header *h,
                                bool websocket, const struct conn_tokens *spec_conn,
                                const struct conn_tokens *req_conn)
{
    struct lk_str name = h->name;
    if (lk_str_ieq(name, LK_STR("host")) || lk_str_ieq(name, LK_STR("content-length")))
        return true;
    if (lk_str_ieq(name, LK_STR("upgrade")))
        return !websocket;
    if (lk_http1_is_hop_by_hop(name))
        return true;
    return dropped_by_connection(ex, h, spec_conn, req_conn);
}

/* base64(SHA-1(key + the RFC 6455 GUID)) into out (29 bytes with its NUL);
 * "" when the digest cannot be made. */
static void ws_expected_accept(struct lk_str key, char out[32])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned md_len = 0;
    char in[128 + sizeof(guid)];
    out[0] = '\0';
    if (key.len > 128)
        return; /* no valid key is that long (RFC 6455: 16 bytes, base64) */
    memcpy(in, key.ptr, key.len);
    memcpy(in + key.len, guid, sizeof(guid) - 1);
    if (EVP_Digest(in, key.len + sizeof(guid) - 1, md, &md_len, EVP_sha1(), NULL) != 1 ||
        md_len != 20)
        return;
    EVP_EncodeBlock((unsigned char *)out, md, (int)md_len);
}

static void build_head(struct lk_proxy *px, const struct lk_proxy_req *spec,
                       const struct lk_url *url)
{
    struct lk_exchange *ex = px->ex;
    struct lk_buf *b = &px->srv->head_buf;
    lk_buf_reset(b);
    lk_buf_addstr(b, ex->req.method);
    lk_buf_add(b, " ", 1);
    lk_buf_adds(b, url->path && url->path[0] ? url->path : "/");
    if (url->query != NULL) {
        lk_buf_add(b, "?", 1);
        lk_buf_adds(b, url->query);
    }
    lk_buf_adds(b, " HTTP/1.1\r\nHost: ");
    if (spec->host != NULL)
        lk_buf_adds(b, spec->host);
    else
        lk_url_host_port(url, b);
    lk_buf_add(b, "\r\n", 2);
    bool has_upgrade = false;
    struct conn_tokens spec_conn, req_conn;
    connection_tokens(spec->headers, spec->n_headers, &spec_conn);
    connection_tokens(ex->req.headers, ex->req.n_headers, &req_conn);
    for (size_t i = 0; i < spec->n_headers; i++) {
        const struct lk_http_header *h = &spec->headers[i];
        if (skip_request_header(ex, h, spec->websocket, &spec_conn, &req_conn))
            continue;
        has_upgrade |= lk_str_ieq(h->name, LK_STR("upgrade"));
        if (spec->websocket && lk_str_ieq(h->name, LK_STR("sec-websocket-key")))
            ws_expected_accept(lk_str_trim(h->value), px->ws_accept);
        lk_head_add_field(b, h->name, h->value);
    }
    if (spec->websocket) {
        lk_buf_adds(b, "Connection: Upgrade\r\n");
        if (!has_upgrade)
            lk_buf_adds(b, "Upgrade: websocket\r\n");
    } else if (spec->connect != NULL && spec->connect_pool_key == NULL) {
        /* An unpooled connector's connection: the peer may close right
         * after the response (a tunnel stream then ends with its last DATA
         * frame instead of waiting for ours). */
        lk_buf_adds(b, "Connection: close\r\n");
    }
    if (ex->req.body_kind == LK_HTTP1_BODY_LENGTH) {
        lk_buf_adds(b, "Content-Length: ");
        lk_buf_add_u64(b, ex->req.content_length);
        lk_buf_add(b, "\r\n", 2);
    } else if (ex->req.body_kind == LK_HTTP1_BODY_CHUNKED) {
        lk_buf_adds(b, "Transfer-Encoding: chunked\r\n");
        px->req_chunked_out = true;
    }
    lk_buf_add(b, "\r\n", 2);
    px->head = lk_net_arena_strndup(&ex->arena, b->data, b->len);
    px->head_len = b->len;
}

/* Copies s to *at, NUL-terminated, and moves *at past it. */
static struct lk_str put_copy(char **at, struct lk_str s)
{
    char *p = *at;
    if (s.len > 0)
        memcpy(p, s.ptr, s.len);
    p[s.len] = '\0';
    *at = p + s.len + 1;
    return (struct lk_str){ p, s.len };
}

static struct lk_http_header *copy_headers(struct lk_exchange *ex, const struct lk_http_header *h,
                                           size_t n)
{
    if (n == 0 || h == NULL)
        return NULL;
    /* One block for every name and value, each NUL-terminated. */
    size_t text = 0;
    for (size_t i = 0; i < n; i++)
        text += h[i].name.len + h[i].value.len + 2;
    struct lk_http_header *out = lk_net_arena_alloc(&ex->arena, n * sizeof(*out));
    char *p = lk_net_arena_alloc(&ex->arena, text);
    for (size_t i = 0; i < n; i++) {
        out[i].name = put_copy(&p, h[i].name);
        out[i].value = put_copy(&p, h[i].value);
    }
    return out;
}

static bool is_idempotent(struct lk_str m)
{
    static const struct lk_str methods[] = { LK_STR("GET"),   LK_STR("HEAD"), LK_STR("OPTIONS"),
                                             LK_STR("TRACE"), LK_STR("PUT"),  LK_STR("DELETE") };
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        if (lk_str_eq(m, methods[i]))
            return true;
    }
    return false;
}

/* ---- starting ---------------------------------------------------------- */

static void on_connected(struct lk_upstream *up, int err, const char *errtext, void *data)
{
    struct lk_proxy *px = data;
    px->pending = NULL;
    if (err != 0) {
        fail(px, errtext);
        return;
    }
    attach(px, up);
}

/* The custom connector hands over a connected bufferevent at once; its
 * failure is reported from the loop like any connect error. */
static void connect_custom(struct lk_proxy *px)
{
    struct bufferevent *bev = NULL;
    px->state = PX_CONNECTING;
    px->errtext[0] = '\0';
    int rc = px->connect(px->connect_data, &bev, px->errtext, sizeof(px->errtext));
    if (px->pool_key == NULL) { /* connect_data is gone after lk_exchange_proxy() */
        px->connect = NULL;
        px->connect_data = NULL;
    }
    if (rc != 0 || bev == NULL) {
        if (bev != NULL)
            lk_net_bev_free(bev);
        if (px->errtext[0] == '\0')
            snprintf(px->errtext, sizeof(px->errtext), "custom connector failed: %s",
                     lk_strerror(rc));
        lk_exchange_defer(px->ex, deferred_fail);
        return;
    }
    attach(px, lk_upstream_wrap(px->srv, bev, px->host, px->pool_key));
}

static void connect_upstream(struct lk_proxy *px, bool fresh)
{
    struct lk_upstream *up = NULL;
    if (px->connect != NULL) {
        if (px->pool_key != NULL && !fresh)
            up = lk_upstream_take(px->srv, px->pool_key);
        if (up == NULL) {
            connect_custom(px);
            return;
        }
    } else if (!fresh) {
        up = lk_upstream_get(px->srv, px->tls, px->host, px->port, on_connected, px, &px->pending);
    } else {
        up = lk_upstream_connect(px->srv, px->tls, px->host, px->port, on_connected, px,
                                 &px->pending);
    }
    px->state = PX_CONNECTING;
    if (up != NULL)
        attach(px, up);
}

static int setup(struct lk_proxy *px, const struct lk_proxy_req *spec)
{
    struct lk_exchange *ex = px->ex;
    struct lk_url url;
    char mem[1024];
    const char *why = NULL;
    bool plain =
        spec->url != NULL && lk_url_split_plain(lk_str_c(spec->url), mem, sizeof(mem), &url);
    if (!plain &&
        (spec->url == NULL || lk_url_parse(spec->url, strlen(spec->url), &url, &why) != 0)) {
        snprintf(px->errtext, sizeof(px->errtext), "invalid upstream URL: %s",
                 why ? why : "missing");
        return LK_EINVAL;
    }
    int rc = 0;
    bool http = strcmp(url.scheme, "http") == 0 || strcmp(url.scheme, "ws") == 0;
    bool https = strcmp(url.scheme, "https") == 0 || strcmp(url.scheme, "wss") == 0;
    if ((!http && !https) || url.host == NULL || url.host[0] == '\0') {
        snprintf(px->errtext, sizeof(px->errtext), "unsupported upstream URL scheme \"%s\"",
                 url.scheme);
        rc = LK_EINVAL;
        goto out;
    }
    px->tls = https && spec->connect == NULL; /* a connector brings its own transport */
    px->port = lk_url_effective_port(&url);
    size_t hl = strlen(url.host);
    if (url.host[0] == '[' && hl >= 2)
        px->host = lk_net_arena_strndup(&ex->arena, url.host + 1, hl - 2);
    else
        px->host = lk_net_arena_strndup(&ex->arena, url.host, hl);
    build_head(px, spec, &url);
out:
    if (!plain)
        lk_url_release(&url);
    return rc;
}

int lk_exchange_proxy(struct lk_exchange *ex, const struct lk_proxy_req *spec)
{
    if (ex == NULL || spec == NULL || spec->on_error == NULL || ex->phase != LK_EX_HANDLER ||
        ex->used_read_body)
        return LK_EINVAL;
    struct lk_proxy *px = lk_net_arena_alloc(&ex->arena, sizeof(*px));
    px->ex = ex;
    px->srv = ex->srv;
    px->on_error = spec->on_error;
    px->on_ws_refused = spec->on_ws_refused;
    px->data = spec->data;
    px->websocket = spec->websocket;
    px->pass_non_101 = spec->ws_pass_non_101;
    px->ws_frames = spec->websocket && spec->ws_close_normal;
    px->ws_up.to_upstream = true;
    px->connect = spec->connect;
    px->connect_data = spec->connect_data;
    if (spec->connect != NULL && spec->connect_pool_key != NULL)
        px->pool_key = lk_net_arena_strndup(&ex->arena, spec->connect_pool_key,
                                            strlen(spec->connect_pool_key));
    px->resp_set = copy_headers(ex, spec->resp_set, spec->n_resp_set);
    px->n_resp_set = px->resp_set ? spec->n_resp_set : 0;
    LK_ASSERT(spec->n_resp_default <= LK_PROXY_MAX_RESP_DEFAULT);
    px->resp_default = copy_headers(ex, spec->resp_default, spec->n_resp_default);
    px->n_resp_default = px->resp_default ? spec->n_resp_default : 0;
    px->retry_ok = is_idempotent(ex->req.method) && ex->req.body_kind == LK_HTTP1_BODY_NONE;
    px->body_idle_off = spec->connect != NULL;
    ex->proxy = px;
    ex->phase = LK_EX_PROXY;
    if (ex->conn != NULL)
        lk_conn_set_state(ex->conn, LK_CONN_PROXYING);
    if (ex->conn == NULL) {
        /* The client is gone: just free everything from the loop. */
        lk_exchange_defer(ex, lk_proxy_abort);
        return 0;
    }
    if (lk_conn_from_self(ex->conn)) {
        snprintf(px->errtext, sizeof(px->errtext),
                 "request loop: the request came back from this server's own proxy");
        lk_exchange_defer(ex, deferred_fail);
        return 0;
    }
    if (setup(px, spec) != 0) {
        lk_exchange_defer(ex, deferred_fail);
        return 0;
    }
    LK_CLOG(ex->conn_id, DEBUG, "proxying to %s://%s:%d", px->tls ? "https" : "http", px->host,
            px->port);
    connect_upstream(px, false);
    return 0;
}

/* ---- request side ------------------------------------------------------ */

/* Answers the 400 of reject_body() (from the loop). */
static void deferred_reject(struct lk_exchange *ex)
{
    struct lk_proxy *px = ex->proxy;
    const char *why = px->errtext;
    ex->proxy = NULL;
    ex->phase = LK_EX_HANDLER;
    lk_conn_set_state(ex->conn, LK_CONN_HANDLER);
    ex->req.keep_alive = false; /* the framing is lost: close after the 400 */
    static const struct lk_http_header ct = { LK_STR("Content-Type"),
                                              LK_STR("text/plain; charset=utf-8") };
    lk_exchange_respond(ex, 400, &ct, 1, why, strlen(why));
}

/* The client's chunked request body is malformed. Before any response byte
 * went out the client still gets the truth: the upstream exchange is
 * cancelled at once (its connection saw a partial body, so it is closed,
 * never pooled) and the engine answers 400 with Connection: close from the
 * loop (this may run inside lk_exchange_proxy(), via attach()). Meanwhile
 * px->up is NULL, so the pumps do nothing; a client leaving first aborts the
 * exchange, which cancels the deferred answer. After the response started
 * the client connection can only be cut. */
static void reject_body(struct lk_proxy *px, const char *why)
{
    struct lk_exchange *ex = px->ex;
    if (px->resp_started || ex->conn == NULL) {
        snprintf(px->errtext, sizeof(px->errtext), "invalid chunked request body: %s", why);
        fail(px, px->errtext);
        return;
    }
    LK_CLOG(ex->conn_id, INFO, "rejected request body: 400 %s", why);
    drop_upstream(px, false);
    snprintf(px->errtext, sizeof(px->errtext), "%s", why);
    lk_exchange_defer(ex, deferred_reject);
}

/* Moves request body bytes upstream. Returns false when it ended or is
 * ending the exchange (the caller must leave px and ex alone), true
 * otherwise. */
static bool pump_request(struct lk_proxy *px)
{
    struct lk_exchange *ex = px->ex;
    if (px->up == NULL || ex->conn == NULL || px->state == PX_TUNNEL || ex->body_done)
        return true;
    struct evbuffer *out = bufferevent_get_output(px->up->bev);
    size_t limit = px->srv->opts.stream_buffer_max, have = evbuffer_get_length(out);
    if (have >= limit)
        return true;
    const char *why = NULL;
    struct evbuffer *in = bufferevent_get_input(ex->conn->bev);
    size_t in_have = evbuffer_get_length(in);
    if (lk_exchange_move_body(ex, in, out, px->req_chunked_out, limit - have, &why) != 0) {
        reject_body(px, why ? why : "invalid chunked body");
        return false;
    }
    /* Progress is told by what left the client's input: an in-memory pair
     * (a tunnel stream) may pass the bytes on to its other end at once,
     * leaving our output as it was. */
    if (evbuffer_get_length(in) != in_have)
        px->sent_mark_ms =
            lk_loop_now_ms(px->srv->base); /* on_timer(): the first byte waits from here */
    return true;
}

static void attach(struct lk_proxy *px, struct lk_upstream *up);

static void on_up_read(struct bufferevent *bev, void *arg);
static void on_up_readable(evutil_socket_t fd, short what, void *arg);
static void on_up_write(struct bufferevent *bev, void *arg);
static void on_up_event(struct bufferevent *bev, short what, void *arg);

static void attach(struct lk_proxy *px, struct lk_upstream *up)
{
    px->up = up;
    px->state = PX_AWAIT_HEAD;
    size_t limit = px->srv->opts.stream_buffer_max;
    bufferevent_setcb(up->bev, on_up_read, on_up_write, on_up_event, px);
    bufferevent_setwatermark(up->bev, EV_WRITE, limit / 2, 0);
    bufferevent_setwatermark(up->bev, EV_READ, 0, 0);
    /* Enabling EV_WRITE arms the write event even with nothing queued (an
     * epoll_ctl and a wake-up): only do it when not enabled already. */
    short enabled = bufferevent_get_enabled(up->bev);
    if (lk_upstream_own_reads(up, on_up_readable, px)) {
        /* A plain socket is read by its own event (on_up_readable): no
         * FIONREAD ioctl per read, 64 KiB per read, and no event changes
         * when a pooled connection is handed over. */
        if (!(enabled & EV_WRITE))
            bufferevent_enable(up->bev, EV_WRITE);
    } else if ((enabled & (EV_READ | EV_WRITE)) != (EV_READ | EV_WRITE)) {
        bufferevent_enable(up->bev, EV_READ | EV_WRITE);
    }
    lk_net_send(up->bev, up->plain, px->head, px->head_len, NULL, 0);
    lk_timer_set_cb(&up->timer, on_timer, px); /* ours until drop_upstream() */
    set_timer(px, px->srv->opts.first_byte_timeout_ms);
    px->sent_mark_ms = lk_loop_now_ms(px->srv->base);
    pump_request(px);
}

/* ---- response side ----------------------------------------------------- */

static bool in_list(const struct lk_http_header *h, size_t n, struct lk_str name)
{
    return lk_http1_find_header(h, n, name) != NULL;
}

/* A field list with the set of its name lengths (bit len % 64): most names
 * are told absent by one test instead of a pass over the list. */
struct name_set {
    const struct lk_http_header *h;
    size_t n;
    uint64_t lens;
};

static struct name_set name_set(const struct lk_http_header *h, size_t n)
{
    struct name_set ns = { h, n, 0 };
    for (size_t i = 0; i < n; i++)
        ns.lens |= UINT64_C(1) << (h[i].name.len & 63);
    return ns;
}

static bool in_set(const struct name_set *ns, struct lk_str name)
{
    return (ns->lens >> (name.len & 63) & 1) && in_list(ns->h, ns->n, name);
}

static void add_header(struct lk_buf *out, const struct lk_http_header *h)
{
    lk_head_add_field(out, h->name, h->value);
}

/* The upstream did not take the WebSocket upgrade (errtext says how): the
 * program's on_ws_refused answers, if it set one. */
static void ws_refused(struct lk_proxy *px)
{
    if (px->on_ws_refused != NULL)
        px->on_error = px->on_ws_refused;
    fail(px, px->errtext);
}

/* What is wrong with the upstream's 101 as the answer to a WebSocket
 * handshake (RFC 6455 §4.2.2: Upgrade: websocket, any case, and the
 * Sec-WebSocket-Accept of the key sent), or NULL: a client's handshake
 * fails there (SPEC §4.7, §5.4 step 3). */
static const char *ws_switch_problem(const struct lk_proxy *px)
{
    bool upgrade = false, accept = px->ws_accept[0] == '\0';
    for (size_t i = 0; i < px->resp.n_headers; i++) {
        const struct lk_http_header *h = &px->resp.headers[i];
        if (lk_str_ieq(h->name, LK_STR("upgrade")))
            upgrade |= lk_str_has_token(h->value, LK_STR("websocket"));
        else if (lk_str_ieq(h->name, LK_STR("sec-websocket-accept")))
            accept |= lk_str_eq(lk_str_trim(h->value), lk_str_c(px->ws_accept));
    }
    if (!upgrade)
        return "upstream answered 101 without Upgrade: websocket";
    return accept ? NULL : "upstream answered 101 with a wrong Sec-WebSocket-Accept";
}

/* A Sec-WebSocket-* field (RFC 6455 §11.3). */
static bool is_sec_websocket(struct lk_str name)
{
    return name.len >= 14 && lk_str_ieq((struct lk_str){ name.ptr, 14 }, LK_STR("sec-websocket-"));
}

/* Which resp_default names the upstream's head has (bit i: the name of
 * resp_default[i]), in one pass over the head: a name whose length no
 * default has is passed over at once. */
static uint64_t defaults_sent(const struct lk_proxy *px)
{
    struct name_set defaults = name_set(px->resp_default, px->n_resp_default);
    uint64_t sent = 0;
    for (size_t i = 0; i < px->resp.n_headers; i++) {
        struct lk_str name = px->resp.headers[i].name;
        if (!(defaults.lens >> (name.len & 63) & 1))
            continue;
        for (size_t j = 0; j < px->n_resp_default; j++) {
            if (lk_str_ieq(name, px->resp_default[j].name))
                sent |= UINT64_C(1) << j;
        }
    }
    return sent;
}

/* Upstream headers (filtered by keep()), then resp_set, then resp_default
 * where absent. A final response without Date gets one (RFC 9110 §6.6.1: a
 * recipient with a clock appends it to a response it forwards; nginx and
 * the original's hyper do too). */
static void write_headers(struct lk_proxy *px, struct lk_buf *out, bool ws101)
{
    const struct lk_http1_response *r = &px->resp;
    struct conn_tokens conn;
    connection_tokens(r->headers, r->n_headers, &conn);
    struct name_set set = name_set(px->resp_set, px->n_resp_set);
    bool has_date = false;
    for (size_t i = 0; i < r->n_headers; i++) {
        struct lk_str name = r->headers[i].name;
        bool drop;
        if (ws101) {
            /* SPEC §5.4 step 4 without the hop-by-hop fields (SPEC §3.10,
             * RFC 9110 §7.6.1): Connection (written below), Keep-Alive, TE,
             * the names Connection lists, ... go; Upgrade and Sec-WebSocket-*
             * stay even when listed (the handshake's). */
            bool ws_field = lk_str_ieq(name, LK_STR("upgrade")) || is_sec_websocket(name);
            drop =
                lk_str_ieq(name, LK_STR("content-length")) ||
                lk_str_ieq(name, LK_STR("content-encoding")) ||
                (!ws_field && (lk_http1_is_hop_by_hop(name) || listed_in_connection(&conn, name)));
        } else {
            drop = lk_http1_is_hop_by_hop(name) || listed_in_connection(&conn, name) ||
                   (lk_str_ieq(name, LK_STR("content-length")) &&
                    px->resp_kind != LK_HTTP1_BODY_LENGTH && px->resp_kind != LK_HTTP1_BODY_NONE);
        }
        if (drop || in_set(&set, name))
            continue;
        has_date = has_date || lk_str_ieq(name, LK_STR("date"));
        add_header(out, &r->headers[i]);
    }
    if (!has_date && !ws101 && !in_set(&set, LK_STR("date")))
        lk_head_add_date(px->srv, out);
    if (ws101 && !in_set(&set, LK_STR("connection")))
        lk_buf_adds(out, "Connection: upgrade\r\n");
    for (size_t i = 0; i < px->n_resp_set; i++)
        add_header(out, &px->resp_set[i]);
    if (px->n_resp_default == 0)
        return;
    uint64_t sent = defaults_sent(px);
    for (size_t i = 0; i < px->n_resp_default; i++) {
        if (in_set(&set, px->resp_default[i].name) || (sent >> i & 1))
            continue;
        add_header(out, &px->resp_default[i]);
    }
}

static void write_status_line(struct lk_proxy *px, struct lk_buf *out)
{
    struct lk_str reason = px->resp.reason;
    if (reason.len == 0)
        reason = lk_str_c(lk_http1_reason(px->resp.status));
    lk_head_add_status(out, px->resp.status, reason);
}

static void start_tunnel(struct lk_proxy *px);

/* Builds the client's response head in srv->head_buf (sent by the first
 * pump_response()). */
static void start_response(struct lk_proxy *px)
{
    struct lk_exchange *ex = px->ex;
    struct lk_conn *c = ex->conn;
    struct lk_buf *out = &px->srv->head_buf;
    lk_buf_reset(out);
    px->resp_kind = px->resp.body_kind;
    px->resp_left = px->resp.content_length;
    lk_http1_chunked_init(&px->resp_chunked);
    bool until_close = px->resp_kind == LK_HTTP1_BODY_UNTIL_CLOSE;
    bool reframe = px->resp_kind == LK_HTTP1_BODY_CHUNKED || until_close;
    px->client_keep = ex->req.keep_alive && !c->read_eof && !px->srv->draining;
    if (reframe && ex->req.minor_version == 1)
        px->client_chunked = true;
    else if (reframe)
        px->client_keep = false; /* HTTP/1.0: the close delimits the body */
    px->client_until_close = reframe && !px->client_chunked;
    write_status_line(px, out);
    write_headers(px, out, false);
    if (px->client_chunked)
        lk_buf_add(out, "Transfer-Encoding: chunked\r\n", 28);
    if (!px->client_keep)
        lk_buf_add(out, "Connection: close\r\n", 19);
    else if (ex->req.minor_version == 0)
        lk_buf_add(out, "Connection: keep-alive\r\n", 24);
    lk_buf_add(out, "\r\n", 2);
    px->resp_started = true;
    ex->status = px->resp.status;
    px->state = PX_BODY;
    /* The body idle timer starts in pump_response(), only when the body
     * does not come whole with the head (no timer work for such answers). */
    bufferevent_setwatermark(c->bev, EV_WRITE, px->srv->opts.stream_buffer_max / 2, 0);
}

static void relay_interim(struct lk_proxy *px)
{
    struct lk_exchange *ex = px->ex;
    if (ex->req.minor_version == 0)
        return;
    struct lk_buf *out = &px->srv->head_buf;
    lk_buf_reset(out);
    write_status_line(px, out);
    /* RFC 9110 §7.6.1 (SPEC §3.10): the fixed hop-by-hop names and those
     * the head's Connection lists, as for a final response. */
    struct conn_tokens conn;
    connection_tokens(px->resp.headers, px->resp.n_headers, &conn);
    for (size_t i = 0; i < px->resp.n_headers; i++) {
        struct lk_str name = px->resp.headers[i].name;
        if (!lk_http1_is_hop_by_hop(name) && !listed_in_connection(&conn, name))
            add_header(out, &px->resp.headers[i]);
    }
    lk_buf_add(out, "\r\n", 2);
    lk_net_send(ex->conn->bev, ex->conn->plain, out->data, out->len, NULL, 0);
}

/* Parses response heads until a final one; returns true when it started the
 * body or the tunnel, false when waiting or failed. */
static void read_response_head(struct lk_proxy *px)
{
    struct lk_exchange *ex = px->ex;
    struct evbuffer *in = bufferevent_get_input(px->up->bev);
    const struct lk_http1_limits *lim = &px->srv->resp_limits;
    bool is_head = lk_str_eq(ex->req.method, LK_STR("HEAD"));
    for (;;) {
        size_t len = evbuffer_get_length(in);
        if (len == 0)
            return;
        size_t n = len < lim->max_head + 1 ? len : lim->max_head + 1;
        const char *why = NULL;
        const char *p = NULL;
        int rc = LK_PARTIAL;
        px->resp.headers = px->srv->resp_scratch;
        px->resp.headers_cap = lim->max_headers;
        /* In place in the first chain when the head fits there. */
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) >= 1 && v.iov_len < n) {
            p = v.iov_base;
            rc = lk_http1_parse_response(p, v.iov_len, lim, is_head, &px->resp, &why);
        }
        if (rc == LK_PARTIAL) {
            p = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
            rc = lk_http1_parse_response(p, n, lim, is_head, &px->resp, &why);
        }
        if (rc == LK_PARTIAL)
            return;
        if (rc < 0) {
            snprintf(px->errtext, sizeof(px->errtext), "invalid response from upstream: %s",
                     why ? why : "malformed");
            fail(px, px->errtext);
            return;
        }
        /* The head's slices point into the evbuffer: copy the head and move
         * the slices there before draining (no second parse). */
        char *copy = lk_net_arena_strndup(&ex->arena, p, (size_t)rc);
        size_t nh = px->resp.n_headers;
        struct lk_http_header *hs = lk_net_arena_alloc(&ex->arena, (nh ? nh : 1) * sizeof(*hs));
        if (nh > 0)
            memcpy(hs, px->resp.headers, nh * sizeof(*hs));
        lk_head_rebase(hs, nh, p, copy);
        px->resp.headers = hs;
        px->resp.headers_cap = nh;
        px->resp.reason = lk_head_rebase_str(px->resp.reason, p, copy);
        evbuffer_drain(in, (size_t)rc);
        set_timer(px, 0);
        int status = px->resp.status;
        const char *bad_switch = status == 101 && px->websocket ? ws_switch_problem(px) : NULL;
        if (bad_switch != NULL) {
            snprintf(px->errtext, sizeof(px->errtext), "%s", bad_switch);
            ws_refused(px);
            return;
        }
        if (status == 101 && px->websocket) {
            start_tunnel(px);
            return;
        }
        if (status == 101) {
            fail(px, "upstream switched protocols without being asked to");
            return;
        }
        if (px->websocket && !px->pass_non_101) {
            snprintf(px->errtext, sizeof(px->errtext), "upstream answered %d instead of 101",
                     status);
            ws_refused(px);
            return;
        }
        if (px->websocket) {
            /* A refused upgrade goes to the client unchanged (SPEC §5.4 step
             * 3): no resp_set, no CORS defaults, on interim and final heads. */
            px->n_resp_set = px->n_resp_default = 0;
        }
        if (status < 200) {
            relay_interim(px);
            set_timer(px, px->srv->opts.first_byte_timeout_ms);
            continue;
        }
        start_response(px);
        pump_response(px, px->srv->head_buf.data, px->srv->head_buf.len);
        return;
    }
}

static void finish(struct lk_proxy *px, bool up_reusable)
{
    struct lk_exchange *ex = px->ex;
    struct lk_conn *c = ex->conn;
    bool req_done = ex->body_done;
    drop_upstream(px, up_reusable && req_done && px->resp.keep_alive);
    ex->proxy = NULL;
    ex->phase = LK_EX_DONE;
    if (c != NULL) {
        bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
        /* The response head went out without `Connection: close`, so the
         * connection stays even when the upstream answered before the whole
         * request body (RFC 9110 §10.1.1): the engine reads and drops the
         * rest of the body, or closes past its discard limit. */
        lk_conn_exchange_done(c, px->client_keep);
    }
}

static void add_chunk_size(struct evbuffer *out, size_t n)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    tmp[--i] = '\n';
    tmp[--i] = '\r';
    do {
        tmp[--i] = "0123456789abcdef"[n & 15];
        n >>= 4;
    } while (n > 0);
    evbuffer_add(out, tmp + i, sizeof(tmp) - i);
}

static size_t move_resp_chunked(struct lk_proxy *px, struct evbuffer *in, struct evbuffer *out,
                                size_t room, bool *done, const char **why)
{
    size_t moved = 0;
    while (moved < room && !*done) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
            break;
        size_t framing = 0, data = 0;
        int rc =
            lk_http1_chunked_decode(&px->resp_chunked, v.iov_base, v.iov_len, &framing, &data, why);
        if (rc < 0)
            return (size_t)-1;
        evbuffer_drain(in, framing);
        if (data > 0) {
            if (px->client_chunked)
                add_chunk_size(out, data);
            evbuffer_remove_buffer(in, out, data);
            if (px->client_chunked)
                evbuffer_add(out, "\r\n", 2);
            moved += data;
        }
        *done = rc == 1;
    }
    return moved;
}

#define READ_MORE_MAX (64 * 1024 - 256)

/* Pauses or resumes reading the upstream (backpressure). */
static void set_up_reading(struct lk_proxy *px, bool on)
{
    if (own_read(px)) {
        lk_upstream_reading(px->up, on);
    } else if (on) {
        bufferevent_enable(px->up->bev, EV_READ);
    } else {
        bufferevent_disable(px->up->bev, EV_READ);
    }
}

/* Moves what the upstream's input holds of the response body to the client,
 * at most room (stream_buffer_max less what is queued) at a time; returns the
 * bytes moved, or (size_t)-1 after failing the exchange. pre (the response
 * head, may be NULL/0) goes first, in the same write when possible. */
static size_t move_response(struct lk_proxy *px, struct lk_conn *c, const char *pre, size_t pre_len,
                            size_t room, bool *done)
{
    struct evbuffer *in = bufferevent_get_input(px->up->bev);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    size_t moved = 0;
    if (pre_len > 0 && px->resp_kind != LK_HTTP1_BODY_LENGTH)
        lk_net_send(c->bev, c->plain, pre, pre_len, NULL, 0);
    switch (px->resp_kind) {
    case LK_HTTP1_BODY_NONE:
        *done = true;
        break;
    case LK_HTTP1_BODY_LENGTH: {
        size_t have_in = evbuffer_get_length(in);
        size_t n = have_in < room ? have_in : room;
        n = n < px->resp_left ? n : (size_t)px->resp_left;
        if (n < have_in && n < px->resp_left)
            n = lk_net_whole_chains(in, n); /* cut by room: end on a chain */
        lk_net_send(c->bev, c->plain, pre, pre_len, in, n);
        px->resp_left -= n;
        moved = n;
        *done = px->resp_left == 0;
        break;
    }
    case LK_HTTP1_BODY_CHUNKED: {
        const char *why = NULL;
        moved = move_resp_chunked(px, in, out, room, done, &why);
        if (moved == (size_t)-1) {
            snprintf(px->errtext, sizeof(px->errtext), "invalid chunked response: %s", why);
            fail(px, px->errtext);
        }
        break;
    }
    case LK_HTTP1_BODY_UNTIL_CLOSE: {
        size_t have_in = evbuffer_get_length(in);
        size_t n = have_in < room ? have_in : room;
        if (n < have_in)
            n = lk_net_whole_chains(in, n);
        if (n > 0 && px->client_chunked)
            add_chunk_size(out, n);
        evbuffer_remove_buffer(in, out, n);
        if (n > 0 && px->client_chunked)
            evbuffer_add(out, "\r\n", 2);
        moved = n;
        *done = px->up_eof && evbuffer_get_length(in) == 0;
        break;
    }
    }
    return moved;
}

/* The client a body was spliced to went away; nothing failed upstream. */
static void client_gone(struct lk_exchange *ex, const char *why)
{
    if (ex->proxy != NULL)
        drop_upstream(ex->proxy, false);
    if (ex->conn != NULL)
        lk_conn_close(ex->conn, why);
}

/* The tunnel stream a body was spliced into went away, as a socket client
 * that resets. */
static void deferred_stream_gone(struct lk_exchange *ex)
{
    client_gone(ex, "tunnel stream closed mid-response");
}

/* Both splice movers report here (splice.h). */
static void on_splice(void *ctx, int status, size_t n)
{
    struct lk_proxy *px = ctx;
    struct lk_exchange *ex = px->ex;
    if (status == LK_SPLICE_MOVED) {
        ex->bytes_out += n;
        px->resp_left -= n;
        idle_mark(px);
        return;
    }
    px->relay = NULL; /* gone: only one of them ran */
    px->splice = NULL;
    switch (status) {
    case LK_SPLICE_DONE:
        finish(px, true);
        return;
    case LK_SPLICE_WRITE_ERROR:
        if (n == ETIMEDOUT) {
            drop_upstream(px, false);
            lk_conn_close_send_timeout(ex->conn);
            return;
        }
        client_gone(ex, "client went away mid-response");
        return;
    case LK_SPLICE_EOF:
        snprintf(px->errtext, sizeof(px->errtext), "upstream %s closed the connection mid-body",
                 px->host);
        fail(px, px->errtext);
        return;
    case LK_SPLICE_READ_ERROR:
        snprintf(px->errtext, sizeof(px->errtext), "upstream %s: read error: %s", px->host,
                 evutil_socket_error_to_string((int)n));
        fail(px, px->errtext);
        return;
    default: /* GONE: from inside the tunnel, which must not be re-entered */
        lk_exchange_defer(ex, deferred_stream_gone);
        return;
    }
}

/* Hands the rest of a long Content-Length body to splice(2), which moves
 * it without passing through our memory: from a plain upstream socket to a
 * plain client socket (finding 28) or into a built-in tunnel stream
 * (finding 27), or from a built-in tunnel stream (the worker's upstream) to
 * a plain client socket (finding 31). Only once everything read so far has
 * left for the client. */
static bool try_splice(struct lk_proxy *px, struct lk_conn *c)
{
    if (px->resp_kind != LK_HTTP1_BODY_LENGTH || px->up_eof || px->resp_left < LK_SPLICE_MIN ||
        evbuffer_get_length(bufferevent_get_input(px->up->bev)) != 0)
        return false;
    bool client_empty = evbuffer_get_length(bufferevent_get_output(c->bev)) == 0;
    if (!own_read(px)) {
        if (!c->plain || px->up->plain || !client_empty)
            return false;
        px->splice = lk_tunnel_splice_to(px->up->bev, bufferevent_getfd(c->bev), px->resp_left,
                                         &px->srv->send_tv, on_splice, px);
    } else if (c->plain) {
        if (!client_empty)
            return false;
        px->relay = lk_splice_start(px->srv->base, bufferevent_getfd(px->up->bev),
                                    bufferevent_getfd(c->bev), px->resp_left, &px->srv->send_tv,
                                    on_splice, px);
    } else {
        px->splice = lk_tunnel_splice_start(c->bev, bufferevent_getfd(px->up->bev), px->resp_left,
                                            on_splice, px);
    }
    if (px->relay == NULL && px->splice == NULL)
        return false;
    set_up_reading(px, false);
    px->up_paused = false;
    idle_timer(px, true);
    return true;
}

/* Moves response body bytes to the client; pre (the response head, may be
 * NULL/0) goes first, in the same write when possible. */
static void pump_response(struct lk_proxy *px, const char *pre, size_t pre_len)
{
    struct lk_exchange *ex = px->ex;
    if (px->state != PX_BODY || ex->conn == NULL || px->relay != NULL || px->splice != NULL)
        return;
    struct lk_conn *c = ex->conn;
    struct evbuffer *in = bufferevent_get_input(px->up->bev);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    size_t limit = px->srv->opts.stream_buffer_max;
    bool done = false;
    size_t moved = 0, step;
    /* Again while the input holds more than one room's worth and the client
     * took the last one at once: an inline write leaves no output, so no
     * write callback would come back for the rest, and an upstream that is a
     * tunnel stream delivers far more than a socket read at a time. */
    do {
        size_t have = evbuffer_get_length(out);
        step = move_response(px, c, pre, pre_len, have < limit ? limit - have : 0, &done);
        if (step == (size_t)-1)
            return;
        moved += step;
        pre = NULL;
        pre_len = 0;
    } while (!done && step > 0 && evbuffer_get_length(in) > 0 && evbuffer_get_length(out) < limit);
    ex->bytes_out += moved;
    if (done) {
        if (px->client_chunked)
            evbuffer_add(out, "0\r\n\r\n", 5);
        finish(px, true);
        return;
    }
    if (px->up_eof && evbuffer_get_length(in) == 0) {
        snprintf(px->errtext, sizeof(px->errtext), "upstream %s closed the connection mid-body",
                 px->host);
        fail(px, px->errtext);
        return;
    }
    if (px->up_eof) {
        idle_timer(px, false); /* nothing more to read; the rest is the client's pace */
        return;
    }
    if (try_splice(px, c))
        return;
    /* Backpressure: pause the upstream while the client is slow; the idle
     * timer only runs while the upstream is being read. */
    bool full = evbuffer_get_length(out) >= limit;
    if (full && !px->up_paused) {
        set_up_reading(px, false);
        px->up_paused = true;
        idle_timer(px, false);
    } else if (!full) {
        if (px->up_paused)
            set_up_reading(px, true);
        px->up_paused = false;
        idle_timer(px, true); /* armed once; afterwards reads only mark it */
    }
}

static void on_up_event(struct bufferevent *bev, short what, void *arg);

/* Our read event on a plain upstream socket (attach()): up to 64 KiB per
 * event, no more than a Content-Length body still needs. An EOF or error is
 * reported once nothing more was read (the socket stays readable), after the
 * bytes of the same read were handled like any others. */
static void on_up_readable(evutil_socket_t fd, short what, void *arg)
{
    struct lk_proxy *px = arg;
    struct bufferevent *bev = px->up->bev;
    (void)fd;
    (void)what;
    size_t have = evbuffer_get_length(bufferevent_get_input(bev));
    size_t want = READ_MORE_MAX;
    if (px->state == PX_BODY && px->resp_kind == LK_HTTP1_BODY_LENGTH) {
        uint64_t left = px->resp_left > have ? px->resp_left - have : 0;
        want = left < want ? (size_t)left : want;
    }
    int state = 0;
    size_t got = want > 0 ? lk_net_read_more(bev, want, &state) : 0;
    int e = errno;
    if (px->state == PX_BODY)
        idle_mark(px);
    if (state != 0 && got == 0) {
        set_up_reading(px, false);
        EVUTIL_SET_SOCKET_ERROR(state < 0 ? e : 0);
        on_up_event(bev, BEV_EVENT_READING | (state < 0 ? BEV_EVENT_ERROR : BEV_EVENT_EOF), px);
        return;
    }
    on_up_read(bev, px);
    lk_tunnel_flush_posted(); /* a response into a tunnel stream leaves now */
}

static void on_up_read(struct bufferevent *bev, void *arg)
{
    struct lk_proxy *px = arg;
    (void)bev;
    if (px->state == PX_AWAIT_HEAD) {
        read_response_head(px);
    } else if (px->state == PX_BODY) {
        idle_mark(px);
        pump_response(px, NULL, 0);
    } else if (px->state == PX_TUNNEL)
        tunnel_pump(px);
}

static void on_up_write(struct bufferevent *bev, void *arg)
{
    struct lk_proxy *px = arg;
    (void)bev;
    if (px->state == PX_TUNNEL)
        tunnel_pump(px);
    else
        pump_request(px);
}

static void retry(struct lk_proxy *px)
{
    LK_CLOG(px->ex->conn_id, DEBUG, "pooled connection to %s was dead; retrying", px->host);
    drop_upstream(px, false);
    px->retried = true;
    connect_upstream(px, true);
}

/* The upstream of c's tunnel failed (a reset or a read error, not an EOF).
 * An HTTP/2 front stream is told with an error, which joins the EOF that
 * follows it in the same callback: its client gets RST_STREAM CANCEL after
 * the bytes, not END_STREAM (RFC 8441 §5: "RST exceptions are represented
 * with the RST_STREAM frame ... with the CANCEL error code"). Other clients
 * are closed as before. */
static void fail_client_stream(struct lk_conn *c)
{
    if (c->pair_resets)
        lk_net_pair_error(c->bev);
}

static void on_up_event(struct bufferevent *bev, short what, void *arg)
{
    struct lk_proxy *px = arg;
    (void)bev;
    if (px->state == PX_TUNNEL) {
        if ((what & BEV_EVENT_ERROR) && !px->ws_frames) {
            struct lk_conn *c = px->ex->conn;
            if (c->pair_resets) {
                /* The bytes read before the error, then the error. */
                evbuffer_add_buffer(bufferevent_get_output(c->bev),
                                    bufferevent_get_input(px->up->bev));
                lk_net_pair_error(c->bev);
                lk_net_shutdown_write(c->bev);
            }
            lk_conn_close(c, "websocket upstream error");
            return;
        }
        if (what & BEV_EVENT_ERROR) {
            /* The client still gets a 1011 close (pump_dir()). */
            LK_CLOG(px->ex->conn_id, DEBUG, "websocket upstream error");
            px->u_dead = px->u_shut = true;
        }
        px->u_eof = true;
        tunnel_pump(px);
        return;
    }
    if (px->state == PX_BODY && !(what & BEV_EVENT_ERROR)) {
        /* Bytes held back by backpressure still go out; pump_response()
         * ends an until-close body or reports a truncated one. */
        px->up_eof = true;
        px->resp.keep_alive = false;
        pump_response(px, NULL, 0);
        return;
    }
    if (px->state == PX_AWAIT_HEAD && px->up->reused && !px->retried && px->retry_ok &&
        evbuffer_get_length(bufferevent_get_input(px->up->bev)) == 0) {
        retry(px);
        return;
    }
    int e = EVUTIL_SOCKET_ERROR();
    if ((what & BEV_EVENT_ERROR) && e != 0)
        snprintf(px->errtext, sizeof(px->errtext), "error reading from upstream %s: %s", px->host,
                 evutil_socket_error_to_string(e));
    else if (px->state == PX_BODY)
        snprintf(px->errtext, sizeof(px->errtext), "upstream %s closed the connection mid-body",
                 px->host);
    else
        snprintf(px->errtext, sizeof(px->errtext),
                 "upstream %s closed the connection without a response", px->host);
    fail(px, px->errtext);
}

/* ---- client-side hooks ------------------------------------------------- */

void lk_proxy_on_client_read(struct lk_exchange *ex)
{
    struct lk_proxy *px = ex->proxy;
    if (px == NULL)
        return;
    if (px->state == PX_TUNNEL)
        tunnel_pump(px);
    else
        pump_request(px);
}

void lk_proxy_on_client_write(struct lk_exchange *ex)
{
    struct lk_proxy *px = ex->proxy;
    if (px == NULL)
        return;
    if (px->state == PX_TUNNEL)
        tunnel_pump(px);
    else if (px->state == PX_BODY)
        pump_response(px, NULL, 0);
}

void lk_proxy_on_client_eof(struct lk_exchange *ex)
{
    struct lk_proxy *px = ex->proxy;
    if (px == NULL)
        return;
    if (px->state == PX_TUNNEL) {
        px->c_eof = true;
        tunnel_pump(px);
        return;
    }
    if (!pump_request(px))
        return;
    /* The client closed before the whole request: it is gone, and the
     * upstream request is cancelled. After the request but before any
     * response byte it is taken as gone too, as nginx does (its
     * proxy_ignore_client_abort off): a browser that gives up closes, and a
     * slow upstream (a long poll, a hung page) is not kept busy for nobody
     * (issue 3). A client that half-closes and still waits is not served
     * (nginx: 499). Once the response streams it goes on: the writes tell
     * whether the client still reads. */
    if (ex->conn == NULL)
        return;
    if (!ex->body_done)
        lk_conn_close(ex->conn, "client went away mid-request");
    else if (!px->resp_started)
        lk_conn_close(ex->conn, "client went away before the response");
}

/* ---- websocket tunnel -------------------------------------------------- */

static void start_tunnel(struct lk_proxy *px)
{
    struct lk_exchange *ex = px->ex;
    struct lk_conn *c = ex->conn;
    struct lk_buf *out = &px->srv->head_buf;
    lk_buf_reset(out);
    write_status_line(px, out);
    write_headers(px, out, true);
    lk_buf_add(out, "\r\n", 2);
    lk_net_send(c->bev, c->plain, out->data, out->len, NULL, 0);
    px->resp_started = true;
    ex->status = 101;
    px->state = PX_TUNNEL;
    lk_conn_set_state(c, LK_CONN_TUNNEL);
    lk_exchange_relaying(ex);
    size_t limit = px->srv->opts.ws_buffer_max;
    bufferevent_setwatermark(c->bev, EV_WRITE, limit / 2, 0);
    bufferevent_setwatermark(px->up->bev, EV_WRITE, limit / 2, 0);
    bufferevent_setwatermark(c->bev, EV_READ, 0, 0);
    lk_conn_read_by_libevent(c); /* pump_dir() drives both sides' EV_READ */
    /* An upstream that is a tunnel stream: a failure of the local server's
     * upstream now comes as an error, not an EOF (RFC 8441 §5). */
    lk_tunnel_stream_relaying(px->up->bev);
    if (px->ws_frames && lk_http1_find_header(px->resp.headers, px->resp.n_headers,
                                              LK_STR("sec-websocket-extensions")) != NULL)
        px->ws_up.rsv_ok = px->ws_down.rsv_ok = 0x70; /* permessage-deflate uses RSV1 */
    /* Opened while the server drains: closed at once (lk_proxy_drain()). */
    if (px->ws_frames && px->srv->draining)
        px->ws_up.going_away = px->ws_down.going_away = true;
    lk_upstream_reads_to_libevent(px->up); /* pump_dir() drives EV_READ */
    px->c_eof = c->read_eof;
    LK_CLOG(ex->conn_id, DEBUG, "websocket tunnel open to %s", px->host);
    tunnel_pump(px);
}

/* Passes the first n bytes of in on to out, or drops them once our own
 * close went wd's way (RFC 6455 §5.5.1: nothing may follow a close). */
static void ws_pass(struct evbuffer *in, struct evbuffer *out, const struct ws_dir *wd, size_t n)
{
    if (wd->dropping)
        evbuffer_drain(in, n);
    else
        evbuffer_remove_buffer(in, out, n);
}

static size_t ws_own_close(struct ws_dir *wd, uint16_t code, const char *why, uint8_t *f);

/* Moves whole frames and frame parts from in to out (SPEC §4.7): data and
 * control frames as they are, a close frame only once it is all in, with
 * code 1000 and its reason. Draining, a 1001 close goes out at the first
 * frame boundary, never inside a frame, and what follows is dropped. Leaves
 * in a frame head that is not all there. */
static void ws_move(struct evbuffer *in, struct evbuffer *out, struct ws_dir *wd)
{
    for (;;) {
        size_t avail = evbuffer_get_length(in);
        if (wd->malformed) {
            ws_pass(in, out, wd, avail);
            return;
        }
        if (wd->left > 0) {
            size_t n = avail < wd->left ? avail : (size_t)wd->left;
            if (n == 0)
                return;
            ws_pass(in, out, wd, n);
            wd->left -= n;
            continue;
        }
        if (wd->going_away && !wd->closed) {
            /* RFC 6455 §7.4.1: 1001, "a server going down". A close frame
             * may come between the fragments of a message (§5.4). */
            static const char why[] = "server shutting down";
            uint8_t f[LK_WS_CLOSE_FRAME_MAX];
            evbuffer_add(out, f, ws_own_close(wd, LK_WS_CLOSE_GOING_AWAY, why, f));
            wd->dropping = true;
        }
        uint8_t head[LK_WS_HEAD_MAX];
        ev_ssize_t got = evbuffer_copyout(in, head, sizeof(head));
        struct lk_ws_head h;
        int rc = lk_ws_parse_head(head, got > 0 ? (size_t)got : 0, &h);
        if (rc == 0)
            return;
        /* §5.2: reserved bits only as an extension defines them, no
         * reserved opcode, client frames masked and server frames not.
         * Anything else is no WebSocket stream we understand (the far end
         * judges it): from there on it passes as bytes, untouched. */
        bool control = h.opcode >= 8;
        if (rc < 0 || (h.opcode > 2 && h.opcode < 8) || h.opcode > 10 ||
            (h.rsv & ~(control ? 0 : wd->rsv_ok)) != 0 || h.masked != wd->to_upstream) {
            wd->malformed = true;
            continue;
        }
        if (h.opcode != LK_WS_OP_CLOSE || wd->dropping) {
            /* Draining, a close from the source: that side closed (RFC
             * 6455 §7.1.2), sends nothing more, and is done as at its EOF. */
            wd->answered = wd->answered || h.opcode == LK_WS_OP_CLOSE;
            wd->left = h.len + h.payload_len;
            continue;
        }
        size_t whole = h.len + (size_t)h.payload_len;
        if (avail < whole)
            return;
        uint8_t f[LK_WS_CLOSE_FRAME_MAX], o[LK_WS_CLOSE_FRAME_MAX];
        evbuffer_remove(in, f, whole);
        evbuffer_add(out, o, lk_ws_close_normalize(f, &h, o));
        wd->closed = true;
    }
}

/* Writes to f a close frame of our own (code, why) that goes wd's way, and
 * marks wd closed. Returns its length. */
static size_t ws_own_close(struct ws_dir *wd, uint16_t code, const char *why, uint8_t *f)
{
    uint8_t mask[4];
    if (wd->to_upstream)
        lk_rng_os_fill(NULL, mask, sizeof(mask)); /* a client's frames are masked */
    wd->closed = true;
    return lk_ws_close_frame(f, code, (const uint8_t *)why, strlen(why),
                             wd->to_upstream ? mask : NULL);
}

/* Writes to f the 1011 close that goes wd's way when its source went away
 * without a close frame, and marks wd closed. Returns its length. */
static size_t ws_gone_frame(struct ws_dir *wd, uint8_t *f)
{
    static const char why_up[] = "websocket upstream went away without a close frame";
    static const char why_client[] = "websocket client went away without a close frame";
    return ws_own_close(wd, LK_WS_CLOSE_INTERNAL_ERROR, wd->to_upstream ? why_client : why_up, f);
}

/* The source of wd ended without a close frame: what it left is passed on
 * and, at a frame boundary, the other side gets a 1011 close (SPEC §4.7:
 * an error closes both sides with 1011 and a diagnostic reason). */
static void ws_end(struct evbuffer *in, struct evbuffer *out, struct ws_dir *wd)
{
    bool boundary = wd->left == 0 && evbuffer_get_length(in) == 0 && !wd->malformed;
    ws_pass(in, out, wd, evbuffer_get_length(in));
    if (wd->closed || !boundary)
        return;
    uint8_t f[LK_WS_CLOSE_FRAME_MAX];
    evbuffer_add(out, f, ws_gone_frame(wd, f));
}

/* The client connection is being torn down (reset, send timeout) while a
 * frame-reading tunnel is open: a plain upstream socket that has taken
 * everything so far and is at a frame boundary still gets its 1011 close,
 * if the kernel takes it at once (SPEC §4.7: an error closes both sides). */
static void ws_abort_close(struct lk_proxy *px)
{
    struct ws_dir *wd = &px->ws_up;
    if (!px->ws_frames || px->state != PX_TUNNEL || px->up == NULL || px->tls || px->u_dead ||
        px->u_shut || wd->closed || wd->left != 0 || wd->malformed)
        return;
    int fd = bufferevent_getfd(px->up->bev);
    if (fd < 0 || evbuffer_get_length(bufferevent_get_output(px->up->bev)) != 0)
        return;
    uint8_t f[LK_WS_CLOSE_FRAME_MAX];
    size_t n = ws_gone_frame(wd, f);
    if (send(fd, f, n, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)n)
        LK_CLOG(px->ex->conn_id, DEBUG, "websocket client gone: 1011 close sent upstream");
}

/* Moves src's input to dst's output; pauses src while dst is full; passes a
 * half-close on once dst has flushed. wd: the direction read frame by frame,
 * or NULL. */
static void pump_dir(struct lk_proxy *px, struct bufferevent *src, struct bufferevent *dst,
                     bool src_eof, bool *dst_shut, struct ws_dir *wd)
{
    struct evbuffer *out = bufferevent_get_output(dst);
    struct evbuffer *in = bufferevent_get_input(src);
    if (wd != NULL && wd->to_upstream && px->u_dead)
        evbuffer_drain(in, evbuffer_get_length(in)); /* nowhere to go */
    else if (wd == NULL)
        evbuffer_add_buffer(out, in);
    else if (src_eof && !*dst_shut) {
        ws_move(in, out, wd);
        ws_end(in, out, wd);
    } else
        ws_move(in, out, wd);
    size_t limit = px->srv->opts.ws_buffer_max;
    if (!src_eof) {
        if (evbuffer_get_length(out) >= limit)
            bufferevent_disable(src, EV_READ);
        else
            bufferevent_enable(src, EV_READ);
    }
    if (src_eof && !*dst_shut) {
        bufferevent_setwatermark(dst, EV_WRITE, 0, 0);
        /* A pair end whose other half is gone (a tunnel stream, or an
         * HTTP/2 stream whose connection closed) never drains: what it
         * holds (a 1011 close, say) is lost, as on a reset socket. Both
         * sides going in one loop turn would otherwise wait for the drain
         * deadline. */
        if (lk_net_bev_orphaned(dst))
            lk_net_drop_output(dst);
        if (evbuffer_get_length(out) == 0) {
            /* An upstream that failed: the error joins the EOF, after the
             * bytes (the 1011 close, if any). */
            if (px->u_dead && dst != px->up->bev)
                fail_client_stream(px->ex->conn);
            lk_net_shutdown_write(dst); /* a socket, or a tunnel stream's pair end */
            *dst_shut = true;
        }
    }
}

static struct ws_dir *ws_up(struct lk_proxy *px)
{
    return px->ws_frames ? &px->ws_up : NULL;
}

static struct ws_dir *ws_down(struct lk_proxy *px)
{
    return px->ws_frames ? &px->ws_down : NULL;
}

static void tunnel_pump(struct lk_proxy *px)
{
    struct lk_exchange *ex = px->ex;
    struct lk_conn *c = ex->conn;
    if (c == NULL || px->up == NULL)
        return;
    /* Draining, a side whose close answered ours is done, as at its EOF
     * (RFC 6455 §7.1.1: then the TCP connection closes). */
    bool c_end = px->c_eof || px->ws_up.answered;
    bool u_end = px->u_eof || px->ws_down.answered;
    if (px->tls || c->is_tls) {
        /* TLS has no half-close we can pass on: either EOF ends the tunnel. */
        if (c_end || u_end) {
            pump_dir(px, c->bev, px->up->bev, c_end, &px->u_shut, ws_up(px));
            pump_dir(px, px->up->bev, c->bev, u_end, &px->c_shut, ws_down(px));
            if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
                drop_upstream(px, false);
                lk_conn_close(c, "websocket tunnel closed");
            }
            return;
        }
    }
    pump_dir(px, c->bev, px->up->bev, c_end, &px->u_shut, ws_up(px));
    pump_dir(px, px->up->bev, c->bev, u_end, &px->c_shut, ws_down(px));
    if (px->c_shut && px->u_shut) {
        LK_CLOG(ex->conn_id, DEBUG, "websocket tunnel closed both ways");
        drop_upstream(px, false);
        ex->proxy = NULL;
        ex->phase = LK_EX_DONE;
        c->read_eof = true;
        lk_conn_exchange_done(c, false);
        return;
    }
    if ((!c_end && px->ws_up.answered) || (!u_end && px->ws_down.answered))
        tunnel_pump(px); /* a close that answered ours came just now */
}

void lk_proxy_drain(struct lk_exchange *ex)
{
    struct lk_proxy *px = ex->proxy;
    if (px == NULL || px->state != PX_TUNNEL || !px->ws_frames || px->ws_up.going_away)
        return;
    LK_CLOG(ex->conn_id, DEBUG, "draining: websocket closed with 1001 both ways");
    px->ws_up.going_away = px->ws_down.going_away = true;
    tunnel_pump(px); /* the closes go out now where no frame is half-way */
}
