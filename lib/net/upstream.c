/*
 * upstream.c - connections to upstream servers: resolve, connect (trying
 * every address in order), TLS with SNI and verification, and the keep-alive
 * pool of idle connections per (scheme, host, port).
 *
 * Results reach the caller only through the deliver event, so a connection
 * attempt never calls back before lk_upstream_get() returns. A pending
 * evdns_getaddrinfo() cannot be cancelled synchronously, so its callback
 * gets a small ticket that outlives the connection when needed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/alloc.h"
#include "core/err.h"
#include "net/addr.h"
#include "net/http_internal.h"
#include "net/log.h"

struct lk_resolve_ticket {
    struct lk_upstream *up; /* NULL once the connection gave up waiting */
    struct evdns_getaddrinfo_request *req;
};

static void try_next(struct lk_upstream *up);

static void set_timer(struct lk_upstream *up, unsigned ms)
{
    lk_timer_set(&up->timer, ms);
}

static void free_addrs(struct lk_upstream *up)
{
    if (up->addrs == NULL)
        return;
    if (up->addrs_from_evdns) {
        evutil_freeaddrinfo(up->addrs);
    } else {
        while (up->addrs != NULL) {
            struct evutil_addrinfo *next = up->addrs->ai_next;
            free(up->addrs->ai_addr);
            free(up->addrs);
            up->addrs = next;
        }
    }
    up->addrs = up->cur = NULL;
}

void lk_upstream_free(struct lk_upstream *up)
{
    if (up == NULL)
        return;
    if (up->ticket != NULL) {
        up->ticket->up = NULL;
        evdns_getaddrinfo_cancel(up->ticket->req);
        up->ticket = NULL;
    }
    lk_timer_cancel(&up->timer);
    event_del(&up->deliver);
    if (up->rd_added)
        event_del(&up->rd);
    if (up->bev != NULL)
        lk_net_bev_free(up->bev); /* a tunnel stream's end sees EOF */
    free_addrs(up);
    if (up->key != up->host)
        free(up->key);
    free(up->host);
    free(up);
}

static void on_deliver(evutil_socket_t fd, short what, void *arg)
{
    struct lk_upstream *up = arg;
    (void)fd;
    (void)what;
    lk_upstream_cb *cb = up->cb;
    void *data = up->data;
    up->cb = NULL;
    if (up->result == 0) {
        set_timer(up, 0);
        free_addrs(up);
        bufferevent_setcb(up->bev, NULL, NULL, NULL, NULL);
        up->plain = !up->tls && lk_net_bev_is_plain(up->bev);
        cb(up, 0, NULL, data);
        return;
    }
    char errtext[sizeof(up->errtext)];
    memcpy(errtext, up->errtext, sizeof(errtext));
    int err = up->result;
    lk_upstream_free(up);
    cb(NULL, err, errtext, data);
}

static void deliver(struct lk_upstream *up, int err)
{
    up->result = err;
    set_timer(up, 0);
    event_active(&up->deliver, EV_TIMEOUT, 0);
}

static void on_connect_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct lk_upstream *up = arg;
    (void)fd;
    (void)what;
    if (up->ticket != NULL) {
        up->ticket->up = NULL;
        evdns_getaddrinfo_cancel(up->ticket->req);
        up->ticket = NULL;
    }
    if (up->bev != NULL) {
        bufferevent_free(up->bev);
        up->bev = NULL;
    }
    snprintf(up->errtext, sizeof(up->errtext), LK_ETEXT_CONNECT_TIMEOUT, up->host, up->port);
    deliver(up, LK_ETIMEDOUT);
}

/*
 * libevent's TLS bufferevent reports a failure as a stack of codes, popped
 * last-pushed first: SSL_get_error()'s value (SSL_ERROR_SSL, SSL_ERROR_SYSCALL;
 * library 0, not OpenSSL errors), then OpenSSL's own error queue. Only the
 * latter, or a bare SSL_ERROR_SSL, means TLS itself failed. SSL_ERROR_SYSCALL
 * or an OpenSSL system error means the socket failed (refused, reset) before
 * or during the handshake: that is reported like a plain connection, with
 * the same text as for http:// (SPEC §5.3 / §4.4 bodies).
 */
struct conn_errors {
    unsigned long tls; /* the first OpenSSL (non-system) error queued, or 0 */
    int sys;           /* errno of an OpenSSL system error, or 0 */
    bool is_ssl;       /* SSL_ERROR_SSL was reported */
};

static void collect_tls_errors(struct bufferevent *bev, struct conn_errors *ce)
{
    unsigned long e;
    while ((e = bufferevent_get_openssl_error(bev)) != 0) {
        if (ERR_SYSTEM_ERROR(e))
            ce->sys = ERR_GET_REASON(e);
        else if (ERR_GET_LIB(e) == 0)
            ce->is_ssl |= e == SSL_ERROR_SSL;
        else
            ce->tls = e; /* popped last = queued first: the root cause */
    }
}

static void describe_tls_error(struct lk_upstream *up, const char *addr, unsigned long tls_err)
{
    char buf[160] = "";
    const char *verify = "";
    SSL *ssl = bufferevent_openssl_get_ssl(up->bev);
    long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    if (tls_err != 0)
        ERR_error_string_n(tls_err, buf, sizeof(buf));
    if (vr != X509_V_OK)
        verify = X509_verify_cert_error_string(vr);
    snprintf(up->errtext, sizeof(up->errtext), "tls handshake with %s (%s) failed%s%s%s%s",
             up->host, addr, *buf ? ": " : "", buf, *verify ? ": " : "", verify);
}

static void describe_error(struct lk_upstream *up, const char *addr)
{
    /* Read first: libevent restores the errno of the failed connect(),
     * read() or write() for deferred callbacks; nothing may clobber it. */
    int sock_err = EVUTIL_SOCKET_ERROR();
    struct conn_errors ce = { 0, 0, false };
    if (bufferevent_openssl_get_ssl(up->bev) != NULL)
        collect_tls_errors(up->bev, &ce);
    if (ce.tls != 0 || (ce.is_ssl && ce.sys == 0)) {
        describe_tls_error(up, addr, ce.tls);
        return;
    }
    if (ce.sys != 0)
        sock_err = ce.sys;
    if (sock_err != 0)
        snprintf(up->errtext, sizeof(up->errtext), "error trying to connect to %s: %s", addr,
                 evutil_socket_error_to_string(sock_err));
    else
        snprintf(up->errtext, sizeof(up->errtext), "connection to %s closed during setup", addr);
}

static void on_connect_event(struct bufferevent *bev, short what, void *arg)
{
    struct lk_upstream *up = arg;
    (void)bev;
    char addr[64];
    lk_addr_format(up->cur->ai_addr, addr, sizeof(addr));
    if (what & BEV_EVENT_CONNECTED) {
        LK_LOG(DEBUG, "upstream %s connected via %s", up->key, addr);
        lk_http_server_note_upstream(up->srv, bufferevent_getfd(up->bev));
        bufferevent_disable(up->bev, EV_READ | EV_WRITE);
        deliver(up, 0);
        return;
    }
    describe_error(up, addr);
    LK_LOG(DEBUG, "upstream %s: %s", up->key, up->errtext);
    bufferevent_free(up->bev);
    up->bev = NULL;
    up->cur = up->cur->ai_next;
    try_next(up);
}

/* NULL when the client TLS context cannot be created. */
static SSL *new_ssl(struct lk_upstream *up)
{
    SSL_CTX *ctx = lk_http_server_client_tls(up->srv);
    if (ctx == NULL)
        return NULL;
    SSL *ssl = SSL_new(ctx);
    LK_ASSERT(ssl != NULL);
    unsigned char tmp[16];
    bool is_ip = inet_pton(AF_INET, up->host, tmp) == 1 || inet_pton(AF_INET6, up->host, tmp) == 1;
    X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
    if (is_ip) {
        X509_VERIFY_PARAM_set1_ip_asc(param, up->host);
    } else {
        SSL_set_tlsext_host_name(ssl, up->host);
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        X509_VERIFY_PARAM_set1_host(param, up->host, 0);
    }
    SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
    return ssl;
}

/* Starts a connection to up->cur, skipping addresses that fail at once. */
static void try_next(struct lk_upstream *up)
{
    for (; up->cur != NULL; up->cur = up->cur->ai_next) {
        struct event_base *base = up->srv->base;
        int opts = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS;
        if (up->tls) {
            SSL *ssl = new_ssl(up);
            if (ssl == NULL) {
                snprintf(up->errtext, sizeof(up->errtext),
                         "cannot set up the TLS client context for %s", up->host);
                break;
            }
            up->bev =
                bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, opts);
            bufferevent_openssl_set_allow_dirty_shutdown(up->bev, 1);
        } else {
            up->bev = bufferevent_socket_new(base, -1, opts);
        }
        LK_ASSERT(up->bev != NULL);
        bufferevent_setcb(up->bev, NULL, NULL, on_connect_event, up);
        if (bufferevent_socket_connect(up->bev, up->cur->ai_addr, (int)up->cur->ai_addrlen) == 0) {
            lk_net_tune_socket(up->bev);
            return;
        }
        char addr[64];
        lk_addr_format(up->cur->ai_addr, addr, sizeof(addr));
        describe_error(up, addr);
        bufferevent_free(up->bev);
        up->bev = NULL;
    }
    if (up->errtext[0] == '\0')
        snprintf(up->errtext, sizeof(up->errtext), "no address to connect to for %s", up->host);
    deliver(up, LK_EIO);
}

static void on_resolved(int result, struct evutil_addrinfo *res, void *arg)
{
    struct lk_resolve_ticket *t = arg;
    struct lk_upstream *up = t->up;
    free(t);
    if (up == NULL) {
        if (res != NULL)
            evutil_freeaddrinfo(res);
        return;
    }
    up->ticket = NULL;
    if (result != 0 || res == NULL) {
        snprintf(up->errtext, sizeof(up->errtext),
                 "dns error: failed to lookup address information for %s: %s", up->host,
                 evutil_gai_strerror(result));
        if (res != NULL)
            evutil_freeaddrinfo(res);
        deliver(up, LK_EIO);
        return;
    }
    up->addrs = up->cur = res;
    up->addrs_from_evdns = true;
    try_next(up);
}

static void add_addr(struct lk_upstream *up, struct evutil_addrinfo ***tail, int family,
                     const char *ip)
{
    struct evutil_addrinfo *ai = lk_xcalloc(1, sizeof(*ai));
    struct sockaddr_storage *ss = lk_xcalloc(1, sizeof(*ss));
    if (family == AF_INET6) {
        struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)up->port);
        inet_pton(AF_INET6, ip, &v6->sin6_addr);
        ai->ai_addrlen = sizeof(*v6);
    } else {
        struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)up->port);
        inet_pton(AF_INET, ip, &v4->sin_addr);
        ai->ai_addrlen = sizeof(*v4);
    }
    ai->ai_family = family;
    ai->ai_socktype = SOCK_STREAM;
    ai->ai_addr = (struct sockaddr *)ss;
    **tail = ai;
    *tail = &ai->ai_next;
}

static bool is_localhost(const char *host)
{
    size_t n = strlen(host);
    if (strcasecmp(host, "localhost") == 0)
        return true;
    return n > 10 && strcasecmp(host + n - 10, ".localhost") == 0;
}

/* Literals and localhost need no DNS; everything else goes to evdns. */
static void resolve(struct lk_upstream *up)
{
    struct evutil_addrinfo **tail = &up->addrs;
    unsigned char tmp[16];
    if (inet_pton(AF_INET, up->host, tmp) == 1) {
        add_addr(up, &tail, AF_INET, up->host);
    } else if (inet_pton(AF_INET6, up->host, tmp) == 1) {
        add_addr(up, &tail, AF_INET6, up->host);
    } else if (is_localhost(up->host)) {
        /* RFC 6761 §6.3; ::1 first, as resolvers order it. */
        add_addr(up, &tail, AF_INET6, "::1");
        add_addr(up, &tail, AF_INET, "127.0.0.1");
    }
    if (up->addrs != NULL) {
        up->cur = up->addrs;
        try_next(up);
        return;
    }
    struct evutil_addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    char port[16];
    snprintf(port, sizeof(port), "%d", up->port);
    struct lk_resolve_ticket *t = lk_xcalloc(1, sizeof(*t));
    t->up = up;
    up->ticket = t;
    struct evdns_getaddrinfo_request *req =
        evdns_getaddrinfo(up->srv->dns, up->host, port, &hints, on_resolved, t);
    /* NULL: the callback already ran (and freed the ticket). */
    if (req != NULL && up->ticket == t)
        t->req = req;
}

static char *make_key(bool tls, const char *host, int port)
{
    size_t n = strlen(host) + 32;
    char *key = lk_xmalloc(n);
    snprintf(key, n, "%s://%s:%d", tls ? "https" : "http", host, port);
    return key;
}

static struct lk_pool_host *find_host(struct lk_http_server *srv, bool tls, const char *host,
                                      int port)
{
    for (struct lk_pool_host *h = srv->pool; h != NULL; h = h->next) {
        if (h->port == port && h->tls == tls && strcmp(h->host, host) == 0)
            return h;
    }
    return NULL;
}

static void pool_remove(struct lk_upstream *up)
{
    struct lk_pool_host *h = up->pool;
    if (up->prev != NULL)
        up->prev->next = up->next;
    else
        h->idle = up->next;
    if (up->next != NULL)
        up->next->prev = up->prev;
    up->prev = up->next = NULL;
    up->pool = NULL;
    h->n_idle--;
    up->srv->n_idle--;
}

/* Connections pooled by key (custom connectors) share the buckets of
 * dialled ones: the key as host, no TLS, and a port no socket has. */
#define KEYED_PORT (-1)

static struct lk_upstream *take_idle(struct lk_pool_host *h)
{
    if (h == NULL || h->idle == NULL)
        return NULL;
    struct lk_upstream *up = h->idle; /* LIFO: the warmest connection */
    pool_remove(up);
    set_timer(up, 0);
    bufferevent_setcb(up->bev, NULL, NULL, NULL, NULL);
    up->read_cb = NULL; /* rd stays added until the next reader takes over */
    up->reused = true;
    return up;
}

struct lk_upstream *lk_upstream_get(struct lk_http_server *srv, bool tls, const char *host,
                                    int port, lk_upstream_cb *cb, void *data,
                                    struct lk_upstream **pending)
{
    *pending = NULL;
    struct lk_upstream *up = take_idle(find_host(srv, tls, host, port));
    if (up != NULL)
        return up;
    return lk_upstream_connect(srv, tls, host, port, cb, data, pending);
}

struct lk_upstream *lk_upstream_take(struct lk_http_server *srv, const char *pool_key)
{
    return take_idle(find_host(srv, false, pool_key, KEYED_PORT));
}

struct lk_upstream *lk_upstream_connect(struct lk_http_server *srv, bool tls, const char *host,
                                        int port, lk_upstream_cb *cb, void *data,
                                        struct lk_upstream **pending)
{
    struct lk_upstream *up = lk_xcalloc(1, sizeof(*up));
    up->srv = srv;
    up->key = make_key(tls, host, port);
    up->host = lk_xstrdup(host);
    up->port = port;
    up->tls = tls;
    up->cb = cb;
    up->data = data;
    lk_timer_init(&up->timer, srv->base, on_connect_timeout, up);
    event_assign(&up->deliver, srv->base, -1, 0, on_deliver, up);
    set_timer(up, srv->opts.connect_timeout_ms);
    *pending = up;
    resolve(up);
    return NULL;
}

struct lk_upstream *lk_upstream_wrap(struct lk_http_server *srv, struct bufferevent *bev,
                                     const char *label, const char *pool_key)
{
    struct lk_upstream *up = lk_xcalloc(1, sizeof(*up));
    up->srv = srv;
    up->host = lk_xstrdup(pool_key != NULL ? pool_key : label);
    up->key = up->host; /* a pool key, or only a name */
    up->port = KEYED_PORT;
    up->no_pool = pool_key == NULL;
    up->bev = bev;
    up->plain = lk_net_bev_is_plain(bev);
    lk_timer_init(&up->timer, srv->base, on_connect_timeout, up);
    event_assign(&up->deliver, srv->base, -1, 0, on_deliver, up);
    bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
    return up;
}

/* ---- our own reads of plain sockets ------------------------------------ */

void lk_upstream_reading(struct lk_upstream *up, bool on)
{
    if (!up->rd_owned || up->rd_added == on)
        return;
    if (on)
        event_add(&up->rd, NULL);
    else
        event_del(&up->rd);
    up->rd_added = on;
}

static void on_rd(evutil_socket_t fd, short what, void *arg)
{
    struct lk_upstream *up = arg;
    if (up->read_cb == NULL) { /* between readers: the next one re-adds rd */
        lk_upstream_reading(up, false);
        return;
    }
    up->read_cb(fd, what, up->read_arg);
}

bool lk_upstream_own_reads(struct lk_upstream *up, event_callback_fn cb, void *arg)
{
    evutil_socket_t fd = up->plain ? bufferevent_getfd(up->bev) : -1;
    if (fd < 0)
        return false;
    if (!up->rd_owned) {
        event_assign(&up->rd, up->srv->base, fd, EV_READ | EV_PERSIST, on_rd, up);
        up->rd_owned = true;
        up->rd_added = false;
    }
    up->read_cb = cb;
    up->read_arg = arg;
    /* Ours is added before the bufferevent's read goes, so epoll's interest
     * in the fd does not change (no epoll_ctl). */
    lk_upstream_reading(up, true);
    if (bufferevent_get_enabled(up->bev) & EV_READ)
        bufferevent_disable(up->bev, EV_READ);
    return true;
}

void lk_upstream_reads_to_libevent(struct lk_upstream *up)
{
    if (!up->rd_owned)
        return;
    bufferevent_enable(up->bev, EV_READ);
    lk_upstream_reading(up, false);
    up->rd_owned = false;
    up->read_cb = NULL;
}

/* ---- pool -------------------------------------------------------------- */

static void on_idle_gone(struct lk_upstream *up, const char *why)
{
    LK_LOG(DEBUG, "pooled upstream %s dropped: %s", up->key, why);
    pool_remove(up);
    lk_upstream_free(up);
}

static void on_idle_read(struct bufferevent *bev, void *arg)
{
    (void)bev;
    on_idle_gone(arg, "unexpected data");
}

static void on_idle_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    (void)what;
    on_idle_gone(arg, "closed by peer");
}

/* A pooled plain socket became readable: data nobody asked for, or the
 * peer's close. */
static void on_idle_readable(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    char byte;
    ssize_t n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    on_idle_gone(arg, n > 0 ? "unexpected data" : "closed by peer");
}

static void on_idle_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct lk_upstream *up = arg;
    (void)fd;
    (void)what;
    on_idle_gone(up, "idle timeout");
}

/* Buckets without connections are kept for reuse; past this many buckets
 * the empty ones are freed. */
#define MAX_POOL_HOSTS 64

static void free_empty_hosts(struct lk_http_server *srv)
{
    for (struct lk_pool_host **p = &srv->pool; *p != NULL;) {
        struct lk_pool_host *h = *p;
        if (h->idle != NULL) {
            p = &h->next;
            continue;
        }
        *p = h->next;
        free(h->host);
        free(h);
        srv->n_pool_hosts--;
    }
}

static struct lk_pool_host *get_host(struct lk_http_server *srv, const struct lk_upstream *up)
{
    struct lk_pool_host *h = find_host(srv, up->tls, up->host, up->port);
    if (h != NULL)
        return h;
    if (srv->n_pool_hosts >= MAX_POOL_HOSTS)
        free_empty_hosts(srv);
    h = lk_xcalloc(1, sizeof(*h));
    h->tls = up->tls;
    h->port = up->port;
    h->host = lk_xstrdup(up->host);
    h->next = srv->pool;
    srv->pool = h;
    srv->n_pool_hosts++;
    return h;
}

void lk_upstream_release(struct lk_upstream *up, bool reusable)
{
    struct lk_http_server *srv = up->srv;
    if (!reusable || up->no_pool || srv->draining || srv->n_idle >= srv->opts.pool_max_idle ||
        srv->opts.pool_max_idle_per_host == 0 || srv->opts.pool_idle_timeout_ms == 0 ||
        evbuffer_get_length(bufferevent_get_input(up->bev)) != 0 ||
        evbuffer_get_length(bufferevent_get_output(up->bev)) != 0) {
        lk_upstream_free(up);
        return;
    }
    struct lk_pool_host *h = get_host(srv, up);
    if (h->n_idle >= srv->opts.pool_max_idle_per_host) {
        lk_upstream_free(up);
        return;
    }
    up->reused = false;
    up->pool = h;
    up->prev = NULL;
    up->next = h->idle;
    if (h->idle != NULL)
        h->idle->prev = up;
    h->idle = up;
    h->n_idle++;
    srv->n_idle++;
    bufferevent_setwatermark(up->bev, EV_READ, 0, 0);
    bufferevent_setwatermark(up->bev, EV_WRITE, 0, 0);
    if (up->rd_owned) {
        /* Our own event keeps watching, now for a close (no epoll_ctl). */
        bufferevent_setcb(up->bev, NULL, NULL, NULL, NULL);
        up->read_cb = on_idle_readable;
        up->read_arg = up;
        lk_upstream_reading(up, true);
    } else {
        bufferevent_setcb(up->bev, on_idle_read, NULL, on_idle_event, up);
        /* Reading normally stays enabled from the exchange (no epoll_ctl). */
        if (!(bufferevent_get_enabled(up->bev) & EV_READ))
            bufferevent_enable(up->bev, EV_READ);
    }
    lk_timer_set_cb(&up->timer, on_idle_timeout, up);
    set_timer(up, srv->opts.pool_idle_timeout_ms);
}

void lk_upstream_pool_clear(struct lk_http_server *srv)
{
    while (srv->pool != NULL) {
        struct lk_pool_host *h = srv->pool;
        while (h->idle != NULL) {
            struct lk_upstream *up = h->idle;
            pool_remove(up);
            lk_upstream_free(up);
        }
        srv->pool = h->next;
        free(h->host);
        free(h);
        srv->n_pool_hosts--;
    }
}
