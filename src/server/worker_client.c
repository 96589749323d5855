/*
 * worker_client.c - evhttp client calls to the worker (worker_client.h).
 *
 * One struct call per request owns its evhttp_connection. libevent must not
 * see its connection freed from inside its own request callback, so a
 * finished call is freed from a zero-delay timer (call->reap) instead.
 * evhttp dials only the first address a name resolves to, so "localhost" is
 * dialled as 127.0.0.1 and, when that connection is refused, as ::1 (DESIGN
 * §4: every address of a name is tried; the worker may listen on either).
 */
#include "server/worker_client.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/str.h"
#include "net/log.h"

struct call {
    struct call *prev, *next; /* w->calls */
    struct local_worker *w;
    struct evhttp_connection *evcon; /* owned */
    struct event reap;               /* frees the call from the loop */
    char *url;                       /* owned, for messages */
    char *path;                      /* owned, relative request path */
    char *json;                      /* owned, request body */
    size_t json_len;
    size_t attempt; /* index into w->dial */
    local_worker_cb *cb;
    void *data;
    enum evhttp_request_error error;
    bool has_error, done;
};

struct local_worker {
    struct event_base *base; /* borrowed */
    struct evdns_base *dns;  /* owned */
    SSL_CTX *tls;            /* owned; NULL for http:// workers */
    char *url;               /* owned, as given */
    char *host;              /* owned, the name TLS checks (no brackets) */
    const char *dial[2];     /* the addresses to dial, in order (host or literals) */
    size_t n_dial;
    char *host_header; /* owned, host[:port] */
    char *path_prefix; /* owned, base path without trailing '/' */
    char *auth;        /* owned, "Bearer {token}" */
    int port;
    struct call *calls;
};

static int parse_url(struct local_worker *w, const char *url, struct lk_buf *err)
{
    struct evhttp_uri *u = evhttp_uri_parse(url);
    const char *scheme = u ? evhttp_uri_get_scheme(u) : NULL;
    const char *host = u ? evhttp_uri_get_host(u) : NULL;
    bool tls = scheme && strcasecmp(scheme, "https") == 0;
    if (!scheme || (!tls && strcasecmp(scheme, "http") != 0) || !host || host[0] == '\0') {
        lk_buf_addf(err, "invalid worker URL \"%s\": expected http(s)://host[:port][/path]", url);
        if (u)
            evhttp_uri_free(u);
        return LK_EINVAL;
    }
    int port = evhttp_uri_get_port(u);
    w->port = port > 0 ? port : (tls ? 443 : 80);
    /* evhttp keeps the brackets of an IPv6 literal ("[::1]"): they go in the
     * Host header, not in the address dialled. */
    size_t hlen = strlen(host);
    bool bracketed = hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']';
    w->host = bracketed ? lk_xstrndup(host + 1, hlen - 2) : lk_xstrdup(host);
    if (strcasecmp(w->host, "localhost") == 0) {
        w->dial[0] = "127.0.0.1";
        w->dial[1] = "::1";
        w->n_dial = 2;
    } else {
        w->dial[0] = w->host;
        w->n_dial = 1;
    }
    struct lk_buf hh = LK_BUF_INIT;
    lk_buf_addf(&hh, !bracketed && strchr(host, ':') ? "[%s]" : "%s", host);
    if (port > 0)
        lk_buf_addf(&hh, ":%d", port);
    w->host_header = lk_buf_detach(&hh, NULL);
    const char *path = evhttp_uri_get_path(u);
    size_t plen = path ? strlen(path) : 0;
    while (plen > 0 && path[plen - 1] == '/')
        plen--;
    w->path_prefix = lk_xstrndup(path ? path : "", plen);
    evhttp_uri_free(u);
    return tls ? 1 : 0;
}

static SSL_CTX *new_tls_ctx(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        return NULL;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

int local_worker_new(struct event_base *base, const char *base_url, const char *token,
                     struct local_worker **out, struct lk_buf *err)
{
    struct local_worker *w = lk_xcalloc(1, sizeof(*w));
    w->base = base;
    w->url = lk_xstrdup(base_url);
    int tls = parse_url(w, base_url, err);
    if (tls < 0) {
        local_worker_free(w);
        return tls;
    }
    struct lk_buf auth = LK_BUF_INIT;
    lk_buf_addf(&auth, "Bearer %s", token ? token : "");
    w->auth = lk_buf_detach(&auth, NULL);
    w->dns =
        evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS | EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (!w->dns)
        w->dns = evdns_base_new(base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (tls)
        w->tls = new_tls_ctx();
    if (!w->dns || (tls && !w->tls)) {
        lk_buf_adds(err, w->dns ? "cannot set up TLS for the worker client"
                                : "cannot set up DNS for the worker client");
        local_worker_free(w);
        return LK_EIO;
    }
    *out = w;
    return 0;
}

const char *local_worker_url(const struct local_worker *w)
{
    return w->url;
}

static void unlink_call(struct call *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        c->w->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

static void call_free(struct call *c)
{
    event_del(&c->reap);
    if (c->evcon)
        evhttp_connection_free(c->evcon);
    free(c->url);
    free(c->path);
    free(c->json);
    free(c);
}

static void on_reap(evutil_socket_t fd, short what, void *arg)
{
    struct call *c = arg;
    (void)fd;
    (void)what;
    unlink_call(c);
    call_free(c);
}

static void schedule_reap(struct call *c)
{
    struct timeval now = { 0, 0 };
    evtimer_add(&c->reap, &now);
}

static const char *error_text(const struct call *c)
{
    if (!c->has_error)
        return "connection failed";
    switch (c->error) {
    case EVREQ_HTTP_TIMEOUT:
        return "operation timed out";
    case EVREQ_HTTP_EOF:
        return "connection closed before a complete response";
    case EVREQ_HTTP_INVALID_HEADER:
        return "invalid response head";
    case EVREQ_HTTP_BUFFER_ERROR:
        return "connection error";
    case EVREQ_HTTP_REQUEST_CANCEL:
        return "request cancelled";
    case EVREQ_HTTP_DATA_TOO_LONG:
        return "response too large";
    }
    return "connection failed";
}

static void finish(struct call *c, int status, const char *body, size_t len, const char *why)
{
    struct lk_buf e = LK_BUF_INIT;
    if (status == 0)
        lk_buf_addf(&e, "error sending request for url (%s): %s", c->url, why);
    struct local_worker_resp r = {
        .status = status,
        .body = body ? body : "",
        .body_len = body ? len : 0,
        .error = status == 0 ? e.data : NULL,
    };
    c->done = true;
    c->cb(&r, c->data);
    lk_buf_release(&e);
}

static void on_error(enum evhttp_request_error error, void *arg)
{
    struct call *c = arg;
    c->error = error;
    c->has_error = true;
}

static void launch(struct local_worker *w, size_t attempt, const char *path, const char *json,
                   size_t len, local_worker_cb *cb, void *data);

static void on_done(struct evhttp_request *req, void *arg)
{
    struct call *c = arg;
    int status = req ? evhttp_request_get_response_code(req) : 0;
    if (status <= 0 && !c->has_error && c->attempt + 1 < c->w->n_dial) {
        /* Not connected (refused): the next address of the name, in a new
         * call, since this connection is only freed from the loop. */
        c->done = true;
        launch(c->w, c->attempt + 1, c->path, c->json, c->json_len, c->cb, c->data);
    } else if (status <= 0) {
        finish(c, 0, NULL, 0, error_text(c));
    } else {
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        size_t len = evbuffer_get_length(in);
        char *body = lk_xmalloc(len + 1);
        evbuffer_remove(in, body, len);
        body[len] = '\0';
        finish(c, status, body, len, NULL);
        free(body);
    }
    schedule_reap(c);
}

static struct bufferevent *new_bev(struct local_worker *w)
{
    if (!w->tls)
        return bufferevent_socket_new(w->base, -1, BEV_OPT_CLOSE_ON_FREE);
    SSL *ssl = SSL_new(w->tls);
    if (!ssl)
        return NULL;
    SSL_set_tlsext_host_name(ssl, w->host);
    SSL_set1_host(ssl, w->host);
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        w->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        SSL_free(ssl);
        return NULL;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

static void add_headers(struct local_worker *w, struct evhttp_request *req)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Host", w->host_header);
    evhttp_add_header(h, "Authorization", w->auth);
    evhttp_add_header(h, "x-linkup-version", LK_VERSION);
    evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_add_header(h, "Connection", "close");
}

/* Starts the request; returns false when the connection cannot be set up. */
static bool start(struct call *c)
{
    struct local_worker *w = c->w;
    struct bufferevent *bev = new_bev(w);
    if (!bev)
        return false;
    c->evcon = evhttp_connection_base_bufferevent_new(w->base, w->dns, bev, w->dial[c->attempt],
                                                      (unsigned short)w->port);
    if (!c->evcon) {
        bufferevent_free(bev);
        return false;
    }
    struct timeval tv = { LOCAL_WORKER_TIMEOUT_MS / 1000, (LOCAL_WORKER_TIMEOUT_MS % 1000) * 1000 };
    evhttp_connection_set_timeout_tv(c->evcon, &tv);
    evhttp_connection_set_retries(c->evcon, 0);
    evhttp_connection_set_max_body_size(c->evcon, LOCAL_WORKER_MAX_BODY);
    struct evhttp_request *req = evhttp_request_new(on_done, c);
    evhttp_request_set_error_cb(req, on_error);
    add_headers(w, req);
    evbuffer_add(evhttp_request_get_output_buffer(req), c->json, c->json_len);
    struct lk_buf uri = LK_BUF_INIT;
    lk_buf_addf(&uri, "%s/%s", w->path_prefix, c->path);
    int rc = evhttp_make_request(c->evcon, req, EVHTTP_REQ_POST, uri.data);
    lk_buf_release(&uri);
    /* On failure evhttp_make_request has freed req. */
    return rc == 0;
}

static void on_start_failed(evutil_socket_t fd, short what, void *arg)
{
    struct call *c = arg;
    (void)fd;
    (void)what;
    evtimer_assign(&c->reap, c->w->base, on_reap, c);
    finish(c, 0, NULL, 0, "cannot open a connection");
    schedule_reap(c);
}

/* Dials w->dial[attempt] for a new call; cb(data) runs once, later. */
static void launch(struct local_worker *w, size_t attempt, const char *path, const char *json,
                   size_t len, local_worker_cb *cb, void *data)
{
    struct call *c = lk_xcalloc(1, sizeof(*c));
    struct lk_buf url = LK_BUF_INIT;
    c->w = w;
    c->cb = cb;
    c->data = data;
    c->attempt = attempt;
    c->path = lk_xstrdup(path);
    c->json = lk_xstrndup(json, len);
    c->json_len = len;
    lk_buf_addf(&url, "%s%s%s", w->url, lk_str_ends_with(lk_str_c(w->url), LK_STR("/")) ? "" : "/",
                path);
    c->url = lk_buf_detach(&url, NULL);
    c->next = w->calls;
    if (w->calls)
        w->calls->prev = c;
    w->calls = c;
    evtimer_assign(&c->reap, w->base, on_reap, c);
    if (!start(c)) {
        /* Async errors only through the callback (STYLE §3.4): report it
         * from the loop. */
        LK_LOG(WARN, "worker call to %s could not start", c->url);
        evtimer_assign(&c->reap, w->base, on_start_failed, c);
        schedule_reap(c);
    }
}

void local_worker_post(struct local_worker *w, const char *path, const char *json, size_t len,
                       local_worker_cb *cb, void *data)
{
    launch(w, 0, path, json, len, cb, data);
}

void local_worker_cancel_all(struct local_worker *w, const char *why)
{
    struct call *c = w->calls;
    while (c) {
        struct call *next = c->next;
        if (!c->done) {
            /* Freeing the connection drops its request without callbacks. */
            if (c->evcon)
                evhttp_connection_free(c->evcon);
            c->evcon = NULL;
            finish(c, 0, NULL, 0, why);
        }
        unlink_call(c);
        call_free(c);
        c = next;
    }
}

void local_worker_free(struct local_worker *w)
{
    if (!w)
        return;
    while (w->calls) {
        struct call *c = w->calls;
        unlink_call(c);
        call_free(c);
    }
    if (w->dns)
        evdns_base_free(w->dns, 0);
    if (w->tls)
        SSL_CTX_free(w->tls);
    free(w->url);
    free(w->host);
    free(w->host_header);
    free(w->path_prefix);
    free(w->auth);
    free(w);
}
