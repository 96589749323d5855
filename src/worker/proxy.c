/*
 * proxy.c - the worker's proxy path (SPEC §4.4, §4.7; DESIGN §2.7, §8).
 *
 * One call of lk_route_request() per request finds the session (through the
 * store and the parsed-session cache: no JSON is parsed unless the stored
 * bytes changed), the target and the extra headers; the request then streams
 * to the target through lk_exchange_proxy(). Sessions found by the lookup are
 * referenced in a per-request struct and released once the proxy call has
 * copied what it needs, so a concurrent upsert never frees a session in use.
 * A target on a tunnel hostname goes through the session's tunnel
 * (relay.c), never through the cache or back into this worker.
 */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/headers.h"
#include "core/route.h"
#include "net/log.h"
#include "proto/target.h"
#include "worker/worker.h"

#define MAX_HELD 4

static const char no_session_text[] =
    "Linkup was unable to determine the session origin of the request.\n"
    "Make sure your request includes a valid session ID in the referer or tracestate headers. - "
    "Worker";

static const char no_target_text[] =
    "The request belonged to a session, but there was no target for the request.\n"
    "Check your routing rules in the linkup config for a match. - Worker";

/* Issue 9: a store that cannot be read (Redis stopped, SQLite locked) is a
 * clear 5xx, not SPEC §3.4's 422, which would tell the client its request
 * named no session; a stored value that fails validation stays 422. The
 * detail (addresses, driver text) goes to the log, not to the client. */
static const char store_down_text[] =
    "Linkup could not read its session store, so the session of the request is unknown.\n"
    "Try again in a moment. - Worker";

struct lookup_ctx {
    struct worker *w;
    struct lk_session *held[MAX_HELD]; /* references, released after routing */
    size_t n_held;
};

static int lookup_session(void *ctx, struct lk_str name, const struct lk_session **out,
                          struct lk_buf *err)
{
    struct lookup_ctx *lc = ctx;
    struct lk_session *s = NULL;
    if (lc->n_held == MAX_HELD)
        return LK_ENOTFOUND;
    int rc = lk_store_get_session_str(&lc->w->store->sessions, lc->w->cache, name, &s, err);
    if (rc != 0)
        return rc;
    lc->held[lc->n_held++] = s;
    *out = s;
    return 0;
}

static void release_held(struct lookup_ctx *lc)
{
    for (size_t i = 0; i < lc->n_held; i++)
        lk_session_free(lc->held[i]);
    lc->n_held = 0;
}

bool worker_reject_unproxyable(struct lk_exchange *ex)
{
    struct lk_str host;
    if (lk_str_eq(lk_exchange_method(ex), LK_STR("CONNECT"))) {
        static const struct lk_http_header h[] = {
            { LK_STR("Allow"), LK_STR(LK_HTTP_PROXY_ALLOW) },
            { LK_STR("Content-Type"), LK_STR("text/plain") },
            { LK_STR("Cache-Control"), LK_STR("no-store") },
        };
        static const char text[] = "CONNECT is not supported by this server";
        lk_exchange_respond(ex, 405, h, LK_ARRAY_LEN(h), text, sizeof(text) - 1);
        return true;
    }
    if (lk_exchange_minor_version(ex) >= 1 && !lk_exchange_header(ex, LK_STR("host"), &host)) {
        worker_respond_error(ex, 400, "missing Host header field");
        return true;
    }
    return false;
}

void worker_tunnel_not_connected(struct lk_exchange *ex, struct lk_str session)
{
    worker_respond_error(ex, 502,
                         lk_exchange_printf(ex,
                                            "Failed to fetch from target service: tunnel for "
                                            "session '%.*s' is not connected",
                                            (int)session.len, session.ptr));
}

/* SPEC §4.4 step 1: the full request URL as received. */
static struct lk_str request_url(struct worker *w, struct lk_exchange *ex)
{
    struct lk_str target = lk_exchange_target(ex);
    struct lk_target t;
    struct lk_str host;
    lk_target_split(target, &t);
    if (t.is_absolute)
        return target;
    if (!lk_exchange_header(ex, LK_STR("host"), &host) || host.len == 0)
        host = lk_str_c(w->bound);
    return lk_exchange_url(ex, host);
}

const char *worker_request_url(struct worker *w, struct lk_exchange *ex)
{
    struct lk_str url = request_url(w, ex);
    return lk_exchange_strndup(ex, url.ptr, url.len);
}

/* The outgoing header list (lk_route_outgoing_headers) in the exchange's arena. */
static const struct lk_http_header *outgoing_headers(struct worker *w, struct lk_exchange *ex,
                                                     const struct lk_route_result *r, size_t *n_out)
{
    size_t n_in = 0;
    const struct lk_http_header *in = lk_exchange_headers(ex, &n_in);
    struct lk_http_header *out =
        lk_exchange_alloc(ex, (n_in + LK_ROUTE_MAX_EXTRA + 1) * sizeof(*out));
    *n_out = lk_route_outgoing_headers(in, n_in, r, out);
    return worker_auth_strip(w, ex, out, n_out);
}

static void on_http_error(struct lk_exchange *ex, const char *errtext, void *data)
{
    (void)data;
    worker_respond_error(
        ex, 502, lk_exchange_printf(ex, "Failed to fetch from target service: %s", errtext));
}

/* SPEC §4.7: "Failed to connect to destination" is for an upstream that
 * answered the upgrade without switching protocols (the engine's
 * on_ws_refused). Every other failure (DNS, connect, TLS, timeout, a
 * malformed answer) is the network failure of SPEC §4.4 step 7
 * (on_http_error). */
static void on_ws_refused(struct lk_exchange *ex, const char *errtext, void *data)
{
    (void)data;
    worker_respond_error(ex, 502,
                         lk_exchange_printf(ex, "Failed to connect to destination: %s", errtext));
}

/* SPEC §4.4 step 4: upgrade: websocket, exact and case-sensitive. */
static bool wants_websocket(struct lk_exchange *ex)
{
    size_t n = 0;
    const struct lk_http_header *h = lk_exchange_headers(ex, &n);
    struct lk_str v;
    return lk_headers_get(h, n, LK_STR("upgrade"), &v) && lk_str_eq(v, LK_STR("websocket"));
}

/* True when the request carries a body (chunked, or a non-zero length). */
static bool has_body(const struct lk_exchange *ex)
{
    enum lk_http1_body_kind kind = lk_exchange_body_kind(ex);
    return kind == LK_HTTP1_BODY_CHUNKED ||
           (kind == LK_HTTP1_BODY_LENGTH && lk_exchange_content_length(ex) > 0);
}

/* SPEC §4.6: a GET whose upstream path matches a cache route of the session
 * is cacheable; its key is appended to key. A GET with a body is not: the
 * cache's fetch sends none, and SPEC §4.4 step 5 keeps the body stream, so
 * it is streamed like any other request.
 *
 * The key is "{length of the name}:{name}\n{upstream URL}", not the SPEC
 * §4.6 key alone (lk_route_cache_key): that one writes every IP host as
 * example.com, so two services of a session on 10.0.0.5:80 and 10.0.0.6:80
 * shared entries, and it joins name and host with a dot while names may hold
 * dots (SPEC §2.5: session `r.s` on `localhost` and session `r` on
 * `s.localhost` shared entries). The length prefix makes the name end
 * unambiguously, and the whole upstream URL names the service (issue 3: keys
 * scoped to the session). */
static bool cache_key(struct lk_exchange *ex, const struct lk_route_result *r, struct lk_buf *key)
{
    const struct lk_session *s = r->found.session;
    struct lk_url u;
    bool cacheable = false;
    if (!s->has_cache_routes || s->n_cache_routes == 0 ||
        !lk_str_eq(lk_exchange_method(ex), LK_STR("GET")) || has_body(ex))
        return false;
    if (lk_url_parse(r->target.url.data, r->target.url.len, &u, NULL) != 0)
        return false;
    cacheable = lk_route_is_cacheable(LK_STR("GET"), s, lk_str_c(u.path));
    if (cacheable) {
        lk_buf_addf(key, "%zu:", r->found.name.len);
        lk_buf_addstr(key, r->found.name);
        lk_buf_addch(key, '\n');
        lk_buf_addstr(key, lk_buf_str(&r->target.url));
    }
    lk_url_release(&u);
    return cacheable;
}

/* DESIGN §7: the routed-to header (in the arena: the cache keeps the spec
 * past this call). Tunnelled, it joins the CORS defaults, so the local
 * server's own answer, more precise, wins; else it is set by us. */
static void add_routed_to(struct lk_exchange *ex, struct lk_route_result *r, bool tunnelled,
                          struct lk_proxy_req *spec)
{
    struct lk_str v = lk_route_routed_to(r, tunnelled ? "tunnel" : "worker");
    size_t n = tunnelled ? LK_HEADERS_N_CORS + 1 : 1;
    struct lk_http_header *h = lk_exchange_alloc(ex, n * sizeof(*h));
    if (tunnelled)
        memcpy(h, lk_headers_cors, LK_HEADERS_N_CORS * sizeof(*h));
    h[n - 1] = (struct lk_http_header){ LK_STR(LK_ROUTE_ROUTED_TO),
                                        { lk_exchange_strndup(ex, v.ptr, v.len), v.len } };
    if (tunnelled) {
        spec->resp_default = h;
        spec->n_resp_default = n;
    } else {
        spec->resp_set = h;
        spec->n_resp_set = n;
    }
}

static void forward(struct worker *w, struct lk_exchange *ex, struct lk_route_result *r)
{
    struct lk_str session;
    struct lk_str target_host = lk_route_host(lk_buf_str(&r->target.url), NULL);
    bool on_tunnel = worker_tunnel_host_session(&w->tunnel, target_host, &session);
    struct lk_proxy_req spec = { 0 };
    struct lk_buf key = LK_BUF_INIT;
    bool ws = wants_websocket(ex);
    spec.url = r->target.url.data;
    spec.headers = outgoing_headers(w, ex, r, &spec.n_headers);
    spec.resp_default = lk_headers_cors;
    spec.n_resp_default = LK_HEADERS_N_CORS;
    spec.websocket = ws;
    spec.ws_pass_non_101 = false;
    spec.ws_close_normal = true; /* SPEC §4.7 */
    spec.on_error = on_http_error;
    spec.on_ws_refused = on_ws_refused;
    add_routed_to(ex, r, on_tunnel, &spec);
    if (on_tunnel) {
        /* The host spells the name in lower case; messages use the routed
         * session's own spelling ("Big-Cow") when it is that session. */
        if (lk_str_ieq(session, r->found.name))
            session = r->found.name;
        /* Not cached: the cache's own fetch cannot use the tunnel. */
        worker_tunnel_forward(w, ex, session, &spec);
        return;
    }
    if (!ws && cache_key(ex, r, &key)) {
        worker_cache_handle(w->responses, ex, key.data, &spec);
        lk_buf_release(&key);
        return;
    }
    lk_buf_release(&key);
    if (lk_exchange_proxy(ex, &spec) != 0)
        worker_respond_error(ex, 502, "Failed to fetch from target service: proxy refused");
}

/* SPEC §4.4 step 5: the additional headers must convert to header values
 * (lk_route_extra_invalid). Answers 400 `Failed to parse request: {e}` and
 * returns false for a request whose service name cannot be sent. */
static bool extra_headers_convert(struct lk_exchange *ex, const struct lk_route_result *r)
{
    struct lk_str bad = lk_route_extra_invalid(&r->extra);
    if (bad.len == 0)
        return true;
    worker_respond_error(ex, 400,
                         lk_exchange_printf(ex,
                                            "Failed to parse request: invalid header value for "
                                            "%.*s",
                                            (int)bad.len, bad.ptr));
    return false;
}

/* Session auth's "urls" scope: the session is the one the request's own URL
 * (or the x-forwarded-host of a proxy in front) names (SPEC §3.4 step 1). */
static bool named_by_url(struct lk_str url, const struct lk_http_header *h, size_t n,
                         struct lk_str name)
{
    struct lk_str xfh;
    return lk_str_ieq(lk_route_first_subdomain(url), name) ||
           (lk_headers_get(h, n, LK_STR("x-forwarded-host"), &xfh) &&
            lk_str_ieq(lk_route_first_subdomain(xfh), name));
}

void worker_proxy(struct worker *w, struct lk_exchange *ex)
{
    struct lookup_ctx lc = { w, { NULL }, 0 };
    struct lk_route_result local;
    struct lk_route_result *r = lk_route_slot_take(&w->route, &local);
    struct lk_buf err = LK_BUF_INIT;
    size_t n = 0;
    const struct lk_http_header *h = lk_exchange_headers(ex, &n);
    struct lk_str url = request_url(w, ex);
    int rc = lk_route_request(url, h, n, lookup_session, &lc, &w->rng, r, &err);
    if (rc != 0 && r->found.session == NULL) {
        if (err.len > 0)
            LK_CLOG(lk_exchange_conn_id(ex), WARN, "session lookup failed: %s", err.data);
        if (rc == LK_ESTORE)
            worker_respond_error(ex, 503, store_down_text);
        else
            worker_respond_error(ex, 422, no_session_text);
    } else {
        /* Before any answer: answering may free ex. */
        lk_exchange_set_log_fields(ex,
                                   lk_exchange_strndup(ex, r->found.name.ptr, r->found.name.len),
                                   rc == 0 ? r->target.service->name : NULL);
        bool by_url = w->auth_urls_only && named_by_url(url, h, n, r->found.name);
        if (!w->auth_on || worker_auth_allow(w, ex, by_url)) { /* else answered: 401 */
            if (rc != 0)
                worker_respond_error(ex, 404, no_target_text);
            else if (extra_headers_convert(ex, r))
                forward(w, ex, r);
        }
    }
    lk_route_slot_give(&w->route, r);
    release_held(&lc);
    lk_buf_release(&err);
}
