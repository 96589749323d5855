/*
 * proxy.c - the local server's proxy path (SPEC §5.3, §5.4).
 *
 * Per request: build the request URL (absolute-form target verbatim, else
 * "{http|https}://{Host or localhost}{target}"), route it with the pure core
 * over the in-memory store (sessions parsed once, through the session cache),
 * then hand the engine the outgoing header list: the incoming headers minus
 * Host, minus every header routing replaces, plus the replacements and the
 * normalised Cookie header. The engine streams everything else, adds the
 * CORS headers only where the upstream set none (DESIGN §2.7) and passes
 * non-101 WebSocket answers through unchanged (SPEC §5.4 step 3).
 */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/headers.h"
#include "core/route.h"
#include "net/http_server.h"
#include "net/log.h"
#include "server/server.h"

#define NO_SESSION_TEXT                                                                          \
    "Linkup was unable to determine the session origin of the request. Ensure that your "        \
    "request includes a valid session identifier in the referer or tracestate headers. - Local " \
    "Server"
#define NO_TARGET_TEXT                                                                        \
    "The request belonged to a session, but there was no target for the request. Check that " \
    "the routing rules in your linkup config have a match for this request. - Local Server"
#define PROXY_ERROR_PREFIX "Failed to proxy request - are all your servers started? "

/* Sessions found while routing one request; references dropped after it. */
struct lookup_ctx {
    struct local_server *ls;
    struct lk_session *refs[4];
    size_t n_refs;
};

static int lookup(void *ctx, struct lk_str name, const struct lk_session **out, struct lk_buf *err)
{
    struct lookup_ctx *c = ctx;
    struct lk_session *s = NULL;
    int rc = lk_store_get_session_str(&c->ls->kv, c->ls->cache, name, &s, err);
    if (rc != 0)
        return rc;
    /* Routing stops at the first session found, so one slot is used. */
    LK_ASSERT(c->n_refs < LK_ARRAY_LEN(c->refs));
    c->refs[c->n_refs++] = s;
    *out = s;
    return 0;
}

static void lookup_release(struct lookup_ctx *c)
{
    for (size_t i = 0; i < c->n_refs; i++)
        lk_session_free(c->refs[i]);
    c->n_refs = 0;
}

static bool is_absolute(struct lk_str target)
{
    struct lk_str http = { target.ptr, target.len < 7 ? target.len : 7 };
    struct lk_str https = { target.ptr, target.len < 8 ? target.len : 8 };
    return lk_str_ieq(http, LK_STR("http://")) || lk_str_ieq(https, LK_STR("https://"));
}

/* SPEC §5.3 step 1, with scheme https on a TLS listener (DESIGN §2.10). */
static struct lk_str request_url(struct lk_exchange *ex)
{
    struct lk_str target = lk_exchange_target(ex);
    if (is_absolute(target))
        return target;
    struct lk_str host = LK_STR("localhost");
    lk_exchange_header(ex, LK_STR("host"), &host);
    return lk_exchange_url(ex, host);
}

/* The outgoing header list (lk_route_outgoing_headers) in the exchange's arena. */
static struct lk_http_header *outgoing_headers(struct lk_exchange *ex,
                                               const struct lk_route_result *r, size_t *n_out)
{
    size_t n_in = 0;
    const struct lk_http_header *in = lk_exchange_headers(ex, &n_in);
    struct lk_http_header *out =
        lk_exchange_alloc(ex, (n_in + LK_ROUTE_MAX_EXTRA + 1) * sizeof(*out));
    *n_out = lk_route_outgoing_headers(in, n_in, r, out);
    return out;
}

static void on_proxy_error(struct lk_exchange *ex, const char *errtext, void *data)
{
    (void)data;
    local_respond_text(ex, 502, lk_exchange_printf(ex, PROXY_ERROR_PREFIX "%s", errtext));
}

/* SPEC §5.4 step 3, §5.7: a WebSocket upstream that gave no HTTP answer is
 * a 502 whose body is the error text alone, without Content-Type. */
static void on_ws_error(struct lk_exchange *ex, const char *errtext, void *data)
{
    (void)data;
    lk_exchange_respond(ex, 502, NULL, 0, errtext, strlen(errtext));
}

/* SPEC §5.4 step 2: the WebSocket handshake carries the target host without
 * its port. */
static const char *ws_host(struct lk_exchange *ex, const struct lk_route_result *r)
{
    struct lk_str host = lk_route_host(lk_buf_str(&r->target.url), NULL);
    return lk_exchange_strndup(ex, host.ptr, host.len);
}

static void forward(struct lk_exchange *ex, struct lk_route_result *r)
{
    size_t n;
    struct lk_http_header *headers = outgoing_headers(ex, r, &n);
    bool ws = lk_exchange_is_websocket(ex);
    /* DESIGN §7: where the request went (lk_exchange_proxy copies it). */
    struct lk_http_header routed = { LK_STR(LK_ROUTE_ROUTED_TO),
                                     lk_route_routed_to(r, "local-server") };
    struct lk_proxy_req spec = {
        .url = r->target.url.data,
        .headers = headers,
        .n_headers = n,
        .host = ws ? ws_host(ex, r) : NULL,
        .resp_set = &routed,
        .n_resp_set = 1,
        .resp_default = lk_headers_cors,
        .n_resp_default = LK_HEADERS_N_CORS,
        .websocket = ws,
        .ws_pass_non_101 = true,
        .on_error = ws ? on_ws_error : on_proxy_error,
    };
    if (lk_exchange_proxy(ex, &spec) != 0)
        local_respond_text(ex, 502, PROXY_ERROR_PREFIX "invalid upstream request");
}

void local_proxy_handle(struct local_server *ls, struct lk_exchange *ex)
{
    struct lookup_ctx ctx = { .ls = ls };
    struct lk_route_result local;
    struct lk_route_result *r = lk_route_slot_take(&ls->route, &local);
    struct lk_buf err = LK_BUF_INIT;
    struct lk_str url = request_url(ex);
    size_t n;
    const struct lk_http_header *h = lk_exchange_headers(ex, &n);
    int rc = lk_route_request(url, h, n, lookup, &ctx, &ls->rng, r, &err);
    if (rc != 0 && !r->found.session) {
        if (err.len > 0)
            LK_CLOG(lk_exchange_conn_id(ex), WARN, "session lookup failed: %s", err.data);
        local_respond_text(ex, 422, NO_SESSION_TEXT);
    } else if (rc != 0) {
        lk_exchange_set_log_fields(
            ex, lk_exchange_strndup(ex, r->found.name.ptr, r->found.name.len), NULL);
        local_respond_text(ex, 404, NO_TARGET_TEXT);
    } else {
        lk_exchange_set_log_fields(ex,
                                   lk_exchange_strndup(ex, r->found.name.ptr, r->found.name.len),
                                   r->target.service->name);
        /* A service name that cannot go out as linkup-destination (CR, LF:
         * lk_route_extra_invalid) fails the request, never splits it. */
        struct lk_str bad = lk_route_extra_invalid(&r->extra);
        if (bad.len > 0)
            local_respond_text(
                ex, 502,
                lk_exchange_printf(ex, PROXY_ERROR_PREFIX "invalid header value for %.*s",
                                   (int)bad.len, bad.ptr));
        else
            forward(ex, r);
    }
    lk_route_slot_give(&ls->route, r);
    lookup_release(&ctx);
    lk_buf_release(&err);
}
