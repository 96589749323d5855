/*
 * relay.c - the worker's end of the built-in tunnel (DESIGN §8, issue 7):
 * the GET /linkup/v2/tunnel endpoint, the routing of requests for a tunnel
 * hostname into the session's tunnel, and the registry of tunnel holders
 * through which workers sharing one Redis hand such requests to the worker
 * that holds the tunnel (docs/internals/tunnel.md, "Integration").
 *
 * A request forwarded by a peer carries WORKER_PEER_HEADER with the shared
 * --peer-secret; it is relayed through a local tunnel or answered with the
 * 502, never forwarded again, so a stale registry entry cannot loop. The
 * header is removed from everything sent into a tunnel.
 */
#include <event2/event.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "net/log.h"
#include "net/tunnel.h"
#include "worker/worker.h"

/* ---- the endpoint ------------------------------------------------------- */

/* The secret of session's tunnel record into secret: LK_TUNNEL_AUTH_OK,
 * DENIED when the record is missing or does not parse, UNAVAILABLE when the
 * store cannot be read. */
static enum lk_tunnel_auth record_secret(struct worker *w, const char *session,
                                         struct lk_buf *secret)
{
    struct lk_buf key = LK_BUF_INIT;
    struct lk_buf raw = LK_BUF_INIT;
    struct lk_buf err = LK_BUF_INIT;
    enum lk_tunnel_auth verdict = LK_TUNNEL_AUTH_DENIED;
    lk_buf_addf(&key, "%s%s", w->tunnel.prefix, session);
    int rc = lk_kv_get(&w->store->tunnels, key.data, &raw, &err);
    if (rc == 0) {
        json_t *obj = json_loadb(raw.data, raw.len, 0, NULL);
        const json_t *v = json_object_get(obj, "secret");
        if (json_is_string(v)) {
            lk_buf_add(secret, json_string_value(v), json_string_length(v));
            verdict = LK_TUNNEL_AUTH_OK;
        }
        json_decref(obj);
    } else if (rc != LK_ENOTFOUND) {
        LK_LOG(ERROR, "tunnel for session '%s': cannot read its record: %s", session, err.data);
        verdict = LK_TUNNEL_AUTH_UNAVAILABLE;
    }
    lk_buf_release(&err);
    lk_buf_release(&raw);
    lk_buf_release(&key);
    return verdict;
}

/* lk_tunnel_auth_cb: the secret must be the session's tunnel record's;
 * success refreshes the record's last_started (id and secret kept). */
static enum lk_tunnel_auth tunnel_auth(const char *session, const char *secret, size_t secret_len,
                                       void *data)
{
    struct worker *w = data;
    struct lk_buf want = LK_BUF_INIT;
    struct lk_buf err = LK_BUF_INIT;
    enum lk_tunnel_auth verdict = record_secret(w, session, &want);
    if (verdict == LK_TUNNEL_AUTH_OK &&
        !lk_tunnel_secret_eq(want.data, want.len, secret, secret_len))
        verdict = LK_TUNNEL_AUTH_DENIED;
    bool ok = verdict == LK_TUNNEL_AUTH_OK;
    if (ok && worker_tunnel_upsert(&w->store->tunnels, &w->tunnel, session, worker_now_ms(), NULL,
                                   NULL, &err) != 0)
        LK_LOG(WARN, "tunnel for session '%s': cannot refresh last_started: %s", session, err.data);
    if (want.data != NULL)
        OPENSSL_cleanse(want.data, want.len);
    lk_buf_release(&want);
    lk_buf_release(&err);
    return verdict;
}

void worker_tunnel_endpoint(struct worker *w, struct lk_exchange *ex)
{
    if (!lk_str_eq(lk_exchange_method(ex), LK_STR("GET"))) {
        static const struct lk_http_header allow = { LK_STR("Allow"), LK_STR("GET") };
        lk_exchange_respond(ex, 405, &allow, 1, NULL, 0);
        return;
    }
    lk_tunnel_hub_handle(w->hub, ex, tunnel_auth, w);
}

/* ---- registry of tunnel holders ------------------------------------------ */

/* Forwarding to the holder of a tunnel needs the shared store and the
 * secret; being recorded as a holder needs this worker's own address too. */
static bool can_forward(const struct worker *w)
{
    return w->peer_secret != NULL && worker_store_is_shared(w->store);
}

static bool has_registry(const struct worker *w)
{
    return w->peer_url != NULL && can_forward(w);
}

/* The registry key of session's tunnel hostname: WORKER_HOLDER_PREFIX and
 * the session in lower case (ASCII). Hostnames are case-insensitive and a
 * peer reads the name back from a host that clients and URL parsers
 * lower-case, so the holder writes and every worker reads this one form. */
static void holder_key(struct lk_buf *key, struct lk_str session)
{
    lk_buf_adds(key, WORKER_HOLDER_PREFIX);
    lk_buf_addstr_lower(key, session);
}

/* Records this worker as the holder of session's tunnel: unconditionally
 * for a tunnel that just connected (the newest connection is the live one),
 * and for a refresh only while the entry is missing or still ours, so a
 * tunnel that moved to another worker while this one has not noticed its
 * connection die yet is not taken back (DESIGN §8, "Several workers"). */
static void holder_put(struct worker *w, const char *session, bool refresh)
{
    struct lk_buf key = LK_BUF_INIT;
    struct lk_buf err = LK_BUF_INIT;
    holder_key(&key, lk_str_c(session));
    int rc =
        refresh
            ? worker_store_reg_refresh(w->store, key.data, w->peer_url, WORKER_HOLDER_TTL_MS, &err)
            : worker_store_reg_put(w->store, key.data, w->peer_url, WORKER_HOLDER_TTL_MS, &err);
    if (rc != 0)
        LK_LOG(WARN, "tunnel registry: cannot record %s: %s", key.data, err.data);
    lk_buf_release(&err);
    lk_buf_release(&key);
}

static void holder_del(struct worker *w, const char *session)
{
    struct lk_buf key = LK_BUF_INIT;
    struct lk_buf err = LK_BUF_INIT;
    holder_key(&key, lk_str_c(session));
    if (worker_store_reg_del_if(w->store, key.data, w->peer_url, &err) != 0)
        LK_LOG(WARN, "tunnel registry: cannot delete %s: %s", key.data, err.data);
    lk_buf_release(&err);
    lk_buf_release(&key);
}

static long held_index(const struct worker *w, const char *session)
{
    for (size_t i = 0; i < w->n_held; i++) {
        if (strcmp(w->held[i], session) == 0)
            return (long)i;
    }
    return -1;
}

/* lk_tunnel_hub_change_cb: keeps w->held and the registry up to date. */
static void on_tunnel_change(const char *session, bool connected, void *data)
{
    struct worker *w = data;
    long i = held_index(w, session);
    if (connected && i < 0) {
        LK_GROW(w->held, w->cap_held, w->n_held + 1);
        w->held[w->n_held++] = lk_xstrdup(session);
    } else if (!connected && i >= 0) {
        free(w->held[i]);
        w->held[i] = w->held[--w->n_held];
    }
    if (!has_registry(w))
        return;
    if (connected)
        holder_put(w, session, false);
    else
        holder_del(w, session);
}

static void on_holder_timer(evutil_socket_t fd, short what, void *data)
{
    struct worker *w = data;
    (void)fd;
    (void)what;
    for (size_t i = 0; i < w->n_held && has_registry(w); i++)
        holder_put(w, w->held[i], true);
}

void worker_relay_start(struct worker *w, struct event_base *base)
{
    struct timeval tv = { WORKER_HOLDER_REFRESH_MS / 1000,
                          (WORKER_HOLDER_REFRESH_MS % 1000) * 1000 };
    w->hub = lk_tunnel_hub_new(base, NULL, on_tunnel_change, w);
    w->holder_ev = event_new(base, -1, EV_PERSIST, on_holder_timer, w);
    event_add(w->holder_ev, &tv);
}

void worker_relay_touch(struct worker *w)
{
    struct lk_buf err = LK_BUF_INIT;
    for (size_t i = 0; i < w->n_held; i++) {
        lk_buf_reset(&err);
        if (worker_tunnel_upsert(&w->store->tunnels, &w->tunnel, w->held[i], worker_now_ms(), NULL,
                                 NULL, &err) != 0)
            LK_LOG(WARN, "tunnel for session '%s': cannot refresh last_started: %s", w->held[i],
                   err.data);
    }
    lk_buf_release(&err);
}

void worker_relay_go_away(struct worker *w)
{
    if (w->hub != NULL)
        lk_tunnel_hub_go_away(w->hub);
}

void worker_relay_stop(struct worker *w)
{
    if (w->holder_ev != NULL)
        event_free(w->holder_ev);
    w->holder_ev = NULL;
    lk_tunnel_hub_free(w->hub); /* calls no on_change: the registry is cleared here */
    w->hub = NULL;
    for (size_t i = 0; i < w->n_held; i++) {
        if (has_registry(w))
            holder_del(w, w->held[i]);
        free(w->held[i]);
    }
    free(w->held);
    w->held = NULL;
    w->n_held = w->cap_held = 0;
}

/* ---- routing -------------------------------------------------------------- */

/* True when ex was forwarded by a peer worker (valid WORKER_PEER_HEADER). */
static bool from_peer(const struct worker *w, struct lk_exchange *ex)
{
    struct lk_str v;
    if (!lk_exchange_header(ex, LK_STR(WORKER_PEER_HEADER), &v))
        return false;
    if (w->peer_secret != NULL &&
        lk_tunnel_secret_eq(w->peer_secret, strlen(w->peer_secret), v.ptr, v.len))
        return true;
    LK_CLOG(lk_exchange_conn_id(ex), WARN, "request from %s: invalid %s header (ignored)",
            lk_exchange_peer(ex), WORKER_PEER_HEADER);
    return false;
}

/* spec's headers without WORKER_PEER_HEADER, plus (peer_secret non-NULL) our
 * own, in the exchange's arena. */
static void filter_headers(struct lk_exchange *ex, struct lk_proxy_req *spec,
                           const char *peer_secret)
{
    struct lk_http_header *out = lk_exchange_alloc(ex, (spec->n_headers + 1) * sizeof(*out));
    size_t n = 0;
    for (size_t i = 0; i < spec->n_headers; i++) {
        if (!lk_str_ieq(spec->headers[i].name, LK_STR(WORKER_PEER_HEADER)))
            out[n++] = spec->headers[i];
    }
    if (peer_secret != NULL)
        out[n++] = (struct lk_http_header){ LK_STR(WORKER_PEER_HEADER), lk_str_c(peer_secret) };
    spec->headers = out;
    spec->n_headers = n;
}

/* The holder of session's tunnel other than this worker into url; false
 * when there is none (or no registry). */
static bool find_holder(struct worker *w, struct lk_str session, struct lk_buf *url)
{
    struct lk_buf key = LK_BUF_INIT;
    struct lk_buf err = LK_BUF_INIT;
    holder_key(&key, session);
    int rc = worker_store_reg_get(w->store, key.data, url, &err);
    if (rc != 0 && rc != LK_ENOTFOUND)
        LK_LOG(WARN, "tunnel registry: cannot read %s: %s", key.data, err.data);
    bool found =
        rc == 0 && url->len > 0 && (w->peer_url == NULL || strcmp(url->data, w->peer_url) != 0);
    lk_buf_release(&err);
    lk_buf_release(&key);
    return found;
}

/* Re-targets spec at the peer worker base_url: same path and query, Host =
 * the tunnel hostname of the original URL. */
static void to_peer(struct lk_exchange *ex, struct lk_proxy_req *spec, const char *base_url)
{
    const char *url = spec->url;
    const char *auth = strstr(url, "://");
    auth = auth ? auth + 3 : url;
    size_t auth_len = strcspn(auth, "/?#");
    const char *rest = auth + auth_len;
    size_t base_len = strlen(base_url);
    while (base_len > 0 && base_url[base_len - 1] == '/')
        base_len--;
    if (spec->host == NULL)
        spec->host = lk_exchange_strndup(ex, auth, auth_len);
    spec->url = lk_exchange_printf(ex, "%.*s%s%s", (int)base_len, base_url,
                                   rest[0] == '/' ? "" : "/", rest);
    spec->connect = NULL;
    spec->connect_data = NULL;
    spec->connect_pool_key = NULL;
}

/* A request handed to the holder of session's tunnel (peer forwarding). */
struct peer_leg {
    struct lk_str session;                       /* in the exchange's arena */
    const char *holder;                          /* in the exchange's arena */
    lk_proxy_error_cb *on_error, *on_ws_refused; /* the caller's, with data */
    void *data;
};

/* The holder could not be reached (dead, not listening, gone mid-request):
 * the tunnel is not reachable from here, so the answer is the 502 of no
 * tunnel (DESIGN §8; docs/worker.md), as once its registry entry expires.
 * A holder that is slow to answer is still the caller's timeout error. */
static void on_peer_error(struct lk_exchange *ex, const char *errtext, void *data)
{
    const struct peer_leg *leg = data;
    if (lk_exchange_upstream_no_answer(ex)) {
        leg->on_error(ex, errtext, leg->data);
        return;
    }
    LK_CLOG(lk_exchange_conn_id(ex), WARN, "tunnel for session '%.*s': its holder %s failed: %s",
            (int)leg->session.len, leg->session.ptr, leg->holder, errtext);
    worker_tunnel_not_connected(ex, leg->session);
}

static void on_peer_ws_refused(struct lk_exchange *ex, const char *errtext, void *data)
{
    const struct peer_leg *leg = data;
    leg->on_ws_refused(ex, errtext, leg->data);
}

void worker_tunnel_forward(struct worker *w, struct lk_exchange *ex, struct lk_str session,
                           struct lk_proxy_req *spec)
{
    struct lk_tunnel *t = lk_tunnel_hub_find(w->hub, session);
    struct lk_buf holder = LK_BUF_INIT;
    if (t != NULL) {
        filter_headers(ex, spec, NULL);
        lk_tunnel_hub_target(w->hub, ex, t, session, spec);
    } else if (can_forward(w) && !from_peer(w, ex) && find_holder(w, session, &holder)) {
        LK_CLOG(lk_exchange_conn_id(ex), DEBUG, "tunnel for session '%.*s' is held by %s",
                (int)session.len, session.ptr, holder.data);
        filter_headers(ex, spec, w->peer_secret);
        to_peer(ex, spec, holder.data);
        struct peer_leg *leg = lk_exchange_alloc(ex, sizeof(*leg));
        leg->session =
            (struct lk_str){ lk_exchange_strndup(ex, session.ptr, session.len), session.len };
        leg->holder = lk_exchange_strndup(ex, holder.data, holder.len);
        leg->on_error = spec->on_error;
        leg->on_ws_refused = spec->on_ws_refused;
        leg->data = spec->data;
        spec->on_error = on_peer_error;
        spec->on_ws_refused = spec->on_ws_refused ? on_peer_ws_refused : NULL;
        spec->data = leg;
    } else {
        lk_buf_release(&holder);
        worker_tunnel_not_connected(ex, session);
        return;
    }
    lk_buf_release(&holder);
    if (lk_exchange_proxy(ex, spec) != 0)
        worker_respond_error(ex, 502, "Failed to fetch from target service: proxy refused");
}

static void on_host_error(struct lk_exchange *ex, const char *errtext, void *data)
{
    (void)data;
    worker_respond_error(
        ex, 502, lk_exchange_printf(ex, "Failed to fetch from target service: %s", errtext));
}

void worker_tunnel_host_request(struct worker *w, struct lk_exchange *ex, struct lk_str session,
                                struct lk_str path)
{
    struct lk_proxy_req spec = { 0 };
    /* Session auth (DESIGN §7): a tunnel hostname is a session URL; a peer
     * checked the request before forwarding it, and the tunnel check
     * (`linkup health`) tells nothing but that the tunnel is up. */
    lk_exchange_set_log_fields(ex, lk_exchange_strndup(ex, session.ptr, session.len), NULL);
    if (w->auth_on && !lk_str_eq(path, LK_STR("/linkup/check")) && !from_peer(w, ex) &&
        !worker_auth_allow(w, ex, true))
        return; /* answered (ex may be gone) */
    spec.url = worker_request_url(w, ex);
    spec.headers = lk_exchange_headers(ex, &spec.n_headers);
    spec.headers = worker_auth_strip(w, ex, spec.headers, &spec.n_headers);
    spec.websocket = lk_exchange_is_websocket(ex);
    spec.ws_pass_non_101 = true;
    spec.on_error = on_host_error;
    worker_tunnel_forward(w, ex, session, &spec);
}
