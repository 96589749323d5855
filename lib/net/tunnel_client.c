/*
 * tunnel_client.c - the local server's side of the built-in tunnel: dial the
 * worker, upgrade, serve the streams, and start over with backoff after any
 * drop.
 *
 * States: WAITING (retry timer armed) -> CONNECTING (the engine's upstream
 * connector: DNS, every address, TLS) -> HANDSHAKE (upgrade request sent,
 * reading the answer) -> CONNECTED (a struct lk_tunnel runs the HTTP/2
 * server) -> WAITING. Only the connected state is visible to the program.
 * lk_tunnel_client_shutdown() leads from any state to CLOSING (the tunnel,
 * if any, finishes its streams after a GOAWAY) and then DONE. A worker that
 * shuts down sends GOAWAY: its tunnel goes to the old list, where it
 * finishes the requests in it, and the client reconnects at once.
 * The secret goes into the request and nowhere else: it is never logged.
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/url.h"
#include "net/http_internal.h"
#include "net/log.h"
#include "net/tunnel.h"
#include "net/tunnel_internal.h"

#define MAX_RESPONSE_HEADERS 64

enum client_state {
    CL_WAITING = 0,
    CL_CONNECTING,
    CL_HANDSHAKE,
    CL_CONNECTED,
    CL_CLOSING,
    CL_DONE,
};

struct lk_tunnel_client {
    struct lk_http_server *srv;        /* not used once shutting down */
    struct lk_tunnel_client_opts opts; /* strings below are owned copies */
    char *session, *secret;
    bool tls;
    char *host; /* no brackets, for connecting */
    int port;
    char *request; /* the upgrade request head */
    enum client_state state;
    struct lk_upstream *pending; /* connection attempt */
    struct bufferevent *bev;     /* during the handshake */
    struct lk_tunnel *t;         /* while connected */
    struct lk_tunnel **old;      /* the worker's GOAWAY: finishing their streams */
    size_t n_old, cap_old;
    struct event retry_timer, hs_timer;
    struct event done_ev; /* calls on_done from the loop */
    lk_tunnel_client_done_cb *on_done;
    void *done_data;
    unsigned backoff_ms;
    struct timeval up_since; /* when t was connected */
    uint64_t spliced;        /* by the tunnels before t */
    char last_error[192];
};

void lk_tunnel_client_opts_init(struct lk_tunnel_client_opts *o)
{
    memset(o, 0, sizeof(*o));
    lk_tunnel_opts_init(&o->tunnel);
    o->backoff_min_ms = 100;
    o->backoff_max_ms = 2000;
    o->handshake_timeout_ms = 10000;
}

static void start_timer(struct event *ev, unsigned ms)
{
    struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
    evtimer_add(ev, &tv);
}

static void set_connected(struct lk_tunnel_client *c, bool connected, const char *why)
{
    if (!connected)
        snprintf(c->last_error, sizeof(c->last_error), "%s", why);
    if (c->opts.on_state != NULL)
        c->opts.on_state(c, connected, why, c->opts.data);
}

/* Drops the connection attempt or handshake in progress, if any. */
static void drop_attempt(struct lk_tunnel_client *c)
{
    event_del(&c->hs_timer);
    if (c->pending != NULL) {
        lk_upstream_free(c->pending);
        c->pending = NULL;
    }
    if (c->bev != NULL) {
        bufferevent_free(c->bev);
        c->bev = NULL;
    }
}

/* Drops whatever is in progress and schedules the next attempt. */
static void retry_later(struct lk_tunnel_client *c, const char *why)
{
    bool was_connected = c->state == CL_CONNECTED;
    drop_attempt(c);
    c->state = CL_WAITING;
    if (was_connected)
        LK_LOG(WARN, "tunnel for session '%s' dropped: %s; reconnecting", c->session, why);
    else
        LK_LOG(INFO, "tunnel for session '%s' not connected: %s; retrying in %u ms", c->session,
               why, c->backoff_ms);
    start_timer(&c->retry_timer, c->backoff_ms);
    c->backoff_ms =
        c->backoff_ms * 2 > c->opts.backoff_max_ms ? c->opts.backoff_max_ms : c->backoff_ms * 2;
    set_connected(c, false, why);
}

/* Whether the tunnel up since c->up_since held for backoff_max_ms. */
static bool held_long(const struct lk_tunnel_client *c)
{
    struct timeval now, held;
    event_base_gettimeofday_cached(c->srv->base, &now);
    evutil_timersub(&now, &c->up_since, &held);
    return (uint64_t)held.tv_sec * 1000 + (uint64_t)held.tv_usec / 1000 >= c->opts.backoff_max_ms;
}

/* A shutdown is done once every tunnel has closed. */
static void maybe_done(struct lk_tunnel_client *c)
{
    if (c->state != CL_CLOSING || c->t != NULL || c->n_old > 0)
        return;
    c->state = CL_DONE;
    c->on_done(c, c->done_data); /* may free c */
}

static void on_tunnel_closed(struct lk_tunnel *t, const char *why, void *data)
{
    struct lk_tunnel_client *c = data;
    char reason[160];
    snprintf(reason, sizeof(reason), "%s", why); /* why lives in t */
    c->spliced += lk_tunnel_spliced_bytes(t);
    lk_tunnel_free(t);
    for (size_t i = 0; i < c->n_old; i++) {
        if (c->old[i] == t) {
            c->old[i] = c->old[--c->n_old];
            LK_LOG(INFO, "tunnel for session '%s': the previous connection closed: %s", c->session,
                   reason);
            maybe_done(c);
            return;
        }
    }
    c->t = NULL;
    if (c->state == CL_CLOSING) {
        LK_LOG(INFO, "tunnel for session '%s' closed: %s", c->session, reason);
        maybe_done(c);
        return;
    }
    /* A tunnel that held for backoff_max_ms reconnects at once; one replaced
     * or dropped sooner (another local server on the same session takes
     * the tunnel back and forth) keeps backing off, so two such servers
     * swap it every backoff_max_ms, not ten times a second. */
    if (held_long(c))
        c->backoff_ms = c->opts.backoff_min_ms;
    retry_later(c, reason);
}

/* The worker is shutting down (its GOAWAY): t serves the requests in it
 * and then closes; a new connection goes up at once, to another worker
 * behind the same address if there is one. From inside nghttp2: t is not
 * freed here. */
static void on_worker_goaway(struct lk_tunnel *t, void *data)
{
    struct lk_tunnel_client *c = data;
    if (c->t != t || c->state != CL_CONNECTED)
        return;
    LK_LOG(INFO,
           "tunnel for session '%s': the worker is going away; reconnecting (%zu stream(s) "
           "finish on the old connection)",
           c->session, lk_tunnel_n_streams(t));
    LK_GROW(c->old, c->cap_old, c->n_old + 1);
    c->old[c->n_old++] = t;
    c->t = NULL;
    c->state = CL_WAITING;
    /* At once, unless the tunnels keep going away as soon as they are up
     * (then with the backoff of any drop). */
    if (held_long(c)) {
        c->backoff_ms = c->opts.backoff_min_ms;
        start_timer(&c->retry_timer, 0);
    } else {
        start_timer(&c->retry_timer, c->backoff_ms);
        c->backoff_ms =
            c->backoff_ms * 2 > c->opts.backoff_max_ms ? c->opts.backoff_max_ms : c->backoff_ms * 2;
    }
    set_connected(c, false, "the worker is going away");
}

static void upgraded(struct lk_tunnel_client *c)
{
    struct bufferevent *bev = c->bev;
    c->bev = NULL;
    event_del(&c->hs_timer);
    c->state = CL_CONNECTED;
    event_base_gettimeofday_cached(c->srv->base, &c->up_since);
    c->last_error[0] = '\0';
    char label[96];
    snprintf(label, sizeof(label), "'%s'", c->session);
    c->t = lk_tunnel_new(c->srv->base, bev, false, &c->opts.tunnel, label, c->srv, on_tunnel_closed,
                         c);
    lk_tunnel_set_goaway_cb(c->t, on_worker_goaway);
    LK_LOG(INFO, "tunnel for session '%s' connected to %s:%d", c->session, c->host, c->port);
    set_connected(c, true, "connected");
}

static void on_hs_read(struct bufferevent *bev, void *arg)
{
    struct lk_tunnel_client *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    struct lk_http1_limits lim;
    lk_http1_limits_default(&lim);
    size_t n = evbuffer_get_length(in);
    if (n > lim.max_head + 1)
        n = lim.max_head + 1;
    struct lk_http_header headers[MAX_RESPONSE_HEADERS];
    struct lk_http1_response resp = { .headers = headers, .headers_cap = MAX_RESPONSE_HEADERS };
    lim.max_headers = MAX_RESPONSE_HEADERS;
    const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
    int rc = lk_http1_parse_response(p, n, &lim, false, &resp, NULL);
    if (rc == LK_PARTIAL)
        return;
    char why[96];
    if (rc < 0) {
        retry_later(c, "invalid answer to the tunnel upgrade");
        return;
    }
    const struct lk_http_header *up =
        lk_http1_find_header(resp.headers, resp.n_headers, LK_STR("upgrade"));
    if (resp.status != 101 || up == NULL ||
        !lk_str_has_token(up->value, LK_STR(LK_TUNNEL_UPGRADE))) {
        snprintf(why, sizeof(why), "worker answered %d to the tunnel upgrade", resp.status);
        if (resp.status == 401)
            LK_LOG(WARN, "tunnel for session '%s' rejected by the worker: invalid tunnel secret",
                   c->session);
        retry_later(c, why);
        return;
    }
    evbuffer_drain(in, (size_t)rc);
    upgraded(c);
}

static void on_hs_event(struct bufferevent *bev, short what, void *arg)
{
    struct lk_tunnel_client *c = arg;
    (void)bev;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        retry_later(c, "connection closed during the tunnel upgrade");
}

static void on_hs_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    retry_later(arg, "no answer to the tunnel upgrade in time");
}

static void on_connected(struct lk_upstream *up, int err, const char *errtext, void *data)
{
    struct lk_tunnel_client *c = data;
    c->pending = NULL;
    if (err != 0) {
        retry_later(c, errtext);
        return;
    }
    c->bev = up->bev;
    up->bev = NULL;
    lk_upstream_free(up);
    c->state = CL_HANDSHAKE;
    bufferevent_setcb(c->bev, on_hs_read, NULL, on_hs_event, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, 0);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    evbuffer_add(bufferevent_get_output(c->bev), c->request, strlen(c->request));
    start_timer(&c->hs_timer, c->opts.handshake_timeout_ms);
}

static void on_done_ev(evutil_socket_t fd, short what, void *arg)
{
    struct lk_tunnel_client *c = arg;
    (void)fd;
    (void)what;
    c->on_done(c, c->done_data);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    struct lk_tunnel_client *c = arg;
    (void)fd;
    (void)what;
    c->state = CL_CONNECTING;
    lk_upstream_connect(c->srv, c->tls, c->host, c->port, on_connected, c, &c->pending);
}

/* The upgrade request of tunnel.h, with the worker URL's path as prefix. */
static char *build_request(const struct lk_url *url, const char *session, const char *secret)
{
    struct lk_buf b = LK_BUF_INIT;
    const char *path = url->path != NULL ? url->path : "";
    size_t plen = strlen(path);
    while (plen > 0 && path[plen - 1] == '/')
        plen--;
    lk_buf_addf(&b, "GET %.*s%s HTTP/1.1\r\nHost: ", (int)plen, path, LK_TUNNEL_PATH);
    lk_url_host_port(url, &b);
    lk_buf_addf(&b,
                "\r\nConnection: Upgrade\r\nUpgrade: %s\r\nAuthorization: Bearer %s\r\n"
                "%s: %s\r\n\r\n",
                LK_TUNNEL_UPGRADE, secret, LK_TUNNEL_SESSION_HEADER, session);
    return lk_buf_detach(&b, NULL);
}

static bool valid_field(const char *s)
{
    if (s == NULL || s[0] == '\0')
        return false;
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s < 0x21 || *s == 0x7f)
            return false;
    }
    return true;
}

int lk_tunnel_client_start(struct lk_http_server *srv, const struct lk_tunnel_client_opts *opts,
                           struct lk_tunnel_client **out)
{
    struct lk_url url = { 0 };
    *out = NULL;
    if (opts->worker_url == NULL || !valid_field(opts->session) || !valid_field(opts->secret) ||
        lk_url_parse(opts->worker_url, strlen(opts->worker_url), &url, NULL) != 0)
        return LK_EINVAL;
    if (!lk_url_is_http(&url)) {
        lk_url_release(&url);
        return LK_EINVAL;
    }
    struct lk_tunnel_client *c = lk_xcalloc(1, sizeof(*c));
    c->srv = srv;
    c->opts = *opts;
    c->opts.worker_url = c->opts.session = c->opts.secret = NULL;
    c->session = lk_xstrdup(opts->session);
    c->secret = lk_xstrdup(opts->secret);
    c->tls = strcmp(url.scheme, "https") == 0;
    size_t hl = strlen(url.host);
    c->host = url.host[0] == '[' ? lk_xstrndup(url.host + 1, hl - 2) : lk_xstrdup(url.host);
    c->port = lk_url_effective_port(&url);
    c->request = build_request(&url, c->session, c->secret);
    lk_url_release(&url);
    c->backoff_ms = c->opts.backoff_min_ms;
    evtimer_assign(&c->retry_timer, srv->base, on_retry, c);
    evtimer_assign(&c->hs_timer, srv->base, on_hs_timeout, c);
    event_assign(&c->done_ev, srv->base, -1, 0, on_done_ev, c);
    start_timer(&c->retry_timer, 0);
    *out = c;
    return 0;
}

bool lk_tunnel_client_is_connected(const struct lk_tunnel_client *c)
{
    return c->state == CL_CONNECTED;
}

const char *lk_tunnel_client_last_error(const struct lk_tunnel_client *c)
{
    return c->last_error;
}

uint64_t lk_tunnel_client_spliced_bytes(const struct lk_tunnel_client *c)
{
    uint64_t n = c->spliced + (c->t != NULL ? lk_tunnel_spliced_bytes(c->t) : 0);
    for (size_t i = 0; i < c->n_old; i++)
        n += lk_tunnel_spliced_bytes(c->old[i]);
    return n;
}

void lk_tunnel_client_shutdown(struct lk_tunnel_client *c, lk_tunnel_client_done_cb *done,
                               void *data)
{
    if (c->state == CL_CLOSING || c->state == CL_DONE)
        return;
    event_del(&c->retry_timer);
    drop_attempt(c);
    c->on_done = done;
    c->done_data = data;
    for (size_t i = 0; i < c->n_old; i++)
        lk_tunnel_go_away(c->old[i]); /* their idle streams end now */
    if (c->t == NULL && c->n_old == 0) {
        c->state = CL_DONE;
        event_active(&c->done_ev, EV_TIMEOUT, 0);
        return;
    }
    c->state = CL_CLOSING;
    if (c->t != NULL) {
        LK_LOG(INFO, "tunnel for session '%s' closing: %zu stream(s) open", c->session,
               lk_tunnel_n_streams(c->t));
        lk_tunnel_go_away(c->t); /* on_tunnel_closed follows */
    }
}

void lk_tunnel_client_free(struct lk_tunnel_client *c)
{
    if (c == NULL)
        return;
    event_del(&c->retry_timer);
    event_del(&c->hs_timer);
    event_del(&c->done_ev);
    if (c->pending != NULL)
        lk_upstream_free(c->pending);
    if (c->bev != NULL)
        bufferevent_free(c->bev);
    lk_tunnel_free(c->t);
    for (size_t i = 0; i < c->n_old; i++)
        lk_tunnel_free(c->old[i]);
    free(c->old);
    free(c->session);
    free(c->secret);
    free(c->host);
    free(c->request);
    free(c);
}
