/*
 * admin.c - the local server's admin API under /linkup/ (SPEC §5.2, §2.4,
 * DESIGN §2.8).
 *
 * Paths are matched exactly, static segments before {name} (so
 * /linkup/sessions/preview with GET is a 405, not a session lookup); any
 * other path, /linkup/... included, is left to the proxy. Every endpoint but
 * GET /linkup/check answers 403 to non-loopback peers. Errors are text/plain
 * without charset. POST bodies are JSON (415 otherwise), at most
 * LOCAL_MAX_JSON_BODY bytes (413), read without blocking; the worker call that
 * follows is asynchronous too, and the exchange is completed from its
 * callback.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/upsert.h"
#include "net/http_server.h"
#include "net/log.h"
#include "proto/hostname.h"
#include "server/inspector.h"
#include "server/server.h"
#include "server/worker_client.h"

enum admin_route {
    ADMIN_NONE = 0,
    ADMIN_CHECK,
    ADMIN_SESSIONS,
    ADMIN_PREVIEW,
    ADMIN_TUNNELED,
    ADMIN_SESSION,
    ADMIN_DNS,
    ADMIN_TUNNEL,
    ADMIN_INSPECTOR,
    ADMIN_REQUESTS,
};

/* Per-route allowed methods: "Allow" header text and what it admits. */
struct admin_methods {
    const char *allow;
    bool get, post, del;
};

static const struct admin_methods route_methods[] = {
    [ADMIN_NONE] = { "", false, false, false },
    [ADMIN_CHECK] = { "GET,HEAD", true, false, false },
    [ADMIN_SESSIONS] = { "GET,HEAD", true, false, false },
    [ADMIN_PREVIEW] = { "POST", false, true, false },
    [ADMIN_TUNNELED] = { "POST", false, true, false },
    [ADMIN_SESSION] = { "GET,HEAD,DELETE", true, false, true },
    [ADMIN_DNS] = { "GET,HEAD", true, false, false },
    [ADMIN_TUNNEL] = { "GET,HEAD", true, false, false },
    [ADMIN_INSPECTOR] = { "GET,HEAD", true, false, false },
    [ADMIN_REQUESTS] = { "GET,HEAD", true, false, false },
};

#define JSON_CONTENT_TYPE_TEXT "Expected request with `Content-Type: application/json`"

struct lk_str local_target_path(struct lk_str t)
{
    long scheme_end = lk_str_find(t, LK_STR("://"));
    if (t.len > 0 && t.ptr[0] != '/' && scheme_end > 0) {
        struct lk_str rest = { t.ptr + scheme_end + 3, t.len - (size_t)scheme_end - 3 };
        long slash = lk_str_index(rest, '/');
        if (slash < 0)
            return LK_STR("/");
        t = (struct lk_str){ rest.ptr + slash, rest.len - (size_t)slash };
    }
    for (size_t i = 0; i < t.len; i++) {
        if (t.ptr[i] == '?' || t.ptr[i] == '#')
            return (struct lk_str){ t.ptr, i };
    }
    return t;
}

static enum admin_route match_route(struct lk_str path, struct lk_str *name)
{
    static const struct {
        const char *path;
        enum admin_route route;
    } fixed[] = {
        { "/linkup/check", ADMIN_CHECK },
        { "/linkup/sessions", ADMIN_SESSIONS },
        { "/linkup/sessions/preview", ADMIN_PREVIEW },
        { "/linkup/sessions/tunneled", ADMIN_TUNNELED },
        { "/linkup/dns", ADMIN_DNS },
        { "/linkup/tunnel", ADMIN_TUNNEL },
        { "/linkup/inspector", ADMIN_INSPECTOR },
        { "/linkup/inspector/requests", ADMIN_REQUESTS },
    };
    for (size_t i = 0; i < LK_ARRAY_LEN(fixed); i++) {
        if (lk_str_eq(path, lk_str_c(fixed[i].path)))
            return fixed[i].route;
    }
    struct lk_str prefix = LK_STR("/linkup/sessions/");
    if (!lk_str_starts_with(path, prefix) || path.len == prefix.len)
        return ADMIN_NONE;
    *name = (struct lk_str){ path.ptr + prefix.len, path.len - prefix.len };
    return lk_str_index(*name, '/') < 0 ? ADMIN_SESSION : ADMIN_NONE;
}

/* Percent-decodes a path segment into the arena (invalid escapes kept, and
 * "%00": a NUL would cut the name short, `smug%00x` naming `smug`). */
static char *decode_segment(struct lk_exchange *ex, struct lk_str s)
{
    char *out = lk_exchange_alloc(ex, s.len + 1);
    size_t n = 0;
    for (size_t i = 0; i < s.len; i++) {
        if (s.ptr[i] == '%' && i + 2 < s.len) {
            int hi = lk_hex_digit(s.ptr[i + 1]);
            int lo = lk_hex_digit(s.ptr[i + 2]);
            if (hi >= 0 && lo >= 0 && (hi | lo) != 0) {
                out[n++] = (char)(hi * 16 + lo);
                i += 2;
                continue;
            }
        }
        out[n++] = s.ptr[i];
    }
    out[n] = '\0';
    return out;
}

static void respond_json(struct lk_exchange *ex, int status, const char *body, size_t len)
{
    const struct lk_http_header ct = { LK_STR("Content-Type"), LK_STR("application/json") };
    lk_exchange_respond(ex, status, &ct, 1, body, len);
}

static void respond_buf_text(struct lk_exchange *ex, int status, struct lk_buf *b)
{
    local_respond_text(ex, status, b->data ? b->data : "");
}

/* ---- GET /linkup/sessions ------------------------------------------------ */

struct kv_pair {
    char *key;
    char *value;
};

struct kv_pairs {
    struct kv_pair *items;
    size_t n, cap;
};

static int collect_pair(void *data, const char *key, const char *value, size_t value_len)
{
    struct kv_pairs *p = data;
    LK_GROW(p->items, p->cap, p->n + 1);
    p->items[p->n].key = lk_xstrdup(key);
    p->items[p->n].value = lk_xstrndup(value, value_len);
    p->n++;
    return 0;
}

static int cmp_pair(const void *a, const void *b)
{
    return strcmp(((const struct kv_pair *)a)->key, ((const struct kv_pair *)b)->key);
}

static void list_sessions(struct local_server *ls, struct lk_exchange *ex)
{
    struct kv_pairs pairs = { 0 };
    struct lk_buf err = LK_BUF_INIT;
    struct lk_buf out = LK_BUF_INIT;
    int rc = lk_kv_list(&ls->kv, collect_pair, &pairs, &err);
    if (rc != 0) {
        lk_buf_addf(&out, "Failed to list sessions: %s", err.data ? err.data : "");
        respond_buf_text(ex, 500, &out);
    } else {
        /* SPEC leaves the key order open; sorted keys make it stable. */
        if (pairs.n > 1)
            qsort(pairs.items, pairs.n, sizeof(pairs.items[0]), cmp_pair);
        lk_buf_adds(&out, "{\"sessions\":{");
        for (size_t i = 0; i < pairs.n; i++) {
            if (i > 0)
                lk_buf_addch(&out, ',');
            lk_json_add_string(&out, pairs.items[i].key, strlen(pairs.items[i].key));
            lk_buf_addch(&out, ':');
            lk_buf_adds(&out, pairs.items[i].value);
        }
        lk_buf_adds(&out, "}}");
        respond_json(ex, 200, out.data, out.len);
    }
    for (size_t i = 0; i < pairs.n; i++) {
        free(pairs.items[i].key);
        free(pairs.items[i].value);
    }
    free(pairs.items);
    lk_buf_release(&out);
    lk_buf_release(&err);
}

/* ---- GET and DELETE /linkup/sessions/{name} ------------------------------ */

/* Appends SessionDetailResponse (SPEC §2.4). */
static void detail_json(const struct lk_session *s, const char *name, struct lk_buf *out)
{
    static const char tail[] = ",\"cache_routes\":null";
    /* A read-only view without cache routes: the detail shape has none. */
    struct lk_session view = *s;
    view.has_cache_routes = false;
    view.n_cache_routes = 0;
    lk_buf_adds(out, "{\"session_kind\":");
    lk_json_add_string(out, lk_session_kind_name(s->kind), strlen(lk_session_kind_name(s->kind)));
    lk_buf_adds(out, ",\"session_name\":");
    lk_json_add_string(out, name, strlen(name));
    lk_buf_addch(out, ',');
    size_t start = out->len;
    lk_session_lists_to_json(&view, out);
    LK_ASSERT(out->len - start >= sizeof(tail) - 1);
    LK_ASSERT(memcmp(out->data + out->len - (sizeof(tail) - 1), tail, sizeof(tail) - 1) == 0);
    lk_buf_truncate(out, out->len - (sizeof(tail) - 1));
    lk_buf_addch(out, '}');
}

static void session_get_or_delete(struct local_server *ls, struct lk_exchange *ex, const char *name,
                                  bool del)
{
    struct lk_session *s = NULL;
    struct lk_buf err = LK_BUF_INIT;
    struct lk_buf out = LK_BUF_INIT;
    int rc = lk_store_get_session(&ls->kv, ls->cache, name, &s, &err);
    if (rc == LK_ENOTFOUND) {
        lk_buf_addf(&out, "Session '%s' not found", name);
        respond_buf_text(ex, 404, &out);
    } else if (rc != 0) {
        lk_buf_addf(&out, "Failed to %s session: %s", del ? "find" : "get", err.data);
        respond_buf_text(ex, 500, &out);
    } else if (!del) {
        detail_json(s, name, &out);
        respond_json(ex, 200, out.data, out.len);
    } else if (lk_store_delete_session(&ls->kv, name, &err) != 0) {
        lk_buf_addf(&out, "Failed to delete session: %s", err.data);
        respond_buf_text(ex, 500, &out);
    } else {
        local_dns_names_drop(&ls->names, name);
        local_tunnel_session_deleted(ls, name);
        LK_LOG(INFO, "session %s deleted", name);
        lk_exchange_respond(ex, 204, NULL, 0, NULL, 0);
    }
    lk_session_free(s);
    lk_buf_release(&out);
    lk_buf_release(&err);
}

/* ---- POST /linkup/sessions/{preview,tunneled} ---------------------------- */

/* One upsert forwarded to the worker; owned by itself until its exchange is
 * completed from the worker callback. */
struct upsert_call {
    struct local_server *ls;
    struct lk_exchange *ex;
    bool tunneled;
    struct lk_upsert req;
    struct lk_session *session; /* tunneled: what is stored locally */
};

static void upsert_call_free(struct upsert_call *c)
{
    lk_upsert_release(&c->req);
    lk_session_free(c->session);
    free(c);
}

static void respond_worker_error(struct lk_exchange *ex, const char *what)
{
    local_respond_text(ex, 500, lk_exchange_printf(ex, "Failed to request to Worker: %s", what));
}

/* A TunnelData (SPEC §2.4) lacks a field or has one of the wrong type:
 * appends serde's words for the first such field to why. More fields are
 * fine (DESIGN §8: "provider"). */
static bool tunnel_data_bad(const json_t *td, struct lk_buf *why)
{
    static const char *const strings[] = { "account_id", "name", "url", "id", "secret" };
    if (!json_is_object(td)) {
        lk_buf_adds(why, td == NULL ? "missing field `tunnel_data`"
                                    : "invalid type: expected struct TunnelData");
        return true;
    }
    for (size_t i = 0; i < LK_ARRAY_LEN(strings); i++) {
        const json_t *v = json_object_get(td, strings[i]);
        if (!json_is_string(v)) {
            lk_buf_addf(
                why, v == NULL ? "missing field `%s`" : "invalid type for `%s`: expected a string",
                strings[i]);
            return true;
        }
    }
    const json_t *ls = json_object_get(td, "last_started");
    if (!json_is_integer(ls) || json_integer_value(ls) < 0) {
        lk_buf_adds(why, ls == NULL ? "missing field `last_started`"
                                    : "invalid type for `last_started`: expected u64");
        return true;
    }
    return false;
}

/* Checks the worker's 2xx body: an object with a string session_name (and,
 * for tunneled, a whole tunnel_data). Returns an owned copy of the name or
 * NULL with the reason in why. */
static char *worker_session_name(const struct local_worker_resp *resp, bool tunneled,
                                 struct lk_buf *why)
{
    json_t *root = NULL;
    char *name = NULL;
    if (lk_json_load(resp->body, resp->body_len, &root, why) != 0)
        return NULL;
    json_t *jname = json_object_get(root, "session_name");
    if (!json_is_object(root))
        lk_buf_addf(why, "invalid type: expected struct %sSessionResponse",
                    tunneled ? "Tunneled" : "");
    else if (!json_is_string(jname))
        lk_buf_adds(why, jname == NULL ? "missing field `session_name`"
                                       : "invalid type for `session_name`: expected a string");
    else if (!tunneled || !tunnel_data_bad(json_object_get(root, "tunnel_data"), why))
        name = lk_xstrdup(json_string_value(jname));
    json_decref(root);
    return name;
}

/* True when "{name}.{domain}" is a name the DNS responder and the TLS
 * listener can serve (SPEC §5.2 step 4, §5.6). '_' is taken: session names
 * have no syntax rules (§2.5), DNS labels may hold it (RFC 2181 §11) and
 * this check always took it; the worker's tunnel hostnames do not.
 * Anything else (/, .., CR/LF, spaces) never reaches the names registry, the
 * logs or a header (docs/reliability.md). */
static bool is_dns_name(const char *name, const char *domain)
{
    struct lk_buf full = LK_BUF_INIT;
    lk_buf_addf(&full, "%s.%s", name, domain);
    bool ok = lk_hostname_valid(full.data, full.len, LK_HOSTNAME_UNDERSCORE);
    lk_buf_release(&full);
    return ok;
}

/* SPEC §5.2 step 5: the worker's TunneledSessionResponse as compact JSON
 * (§2.4), in the worker's field order; fields the worker added (the built-in
 * tunnel's "provider", DESIGN §8) are kept for the CLI. */
static void respond_compact_json(struct lk_exchange *ex, const struct local_worker_resp *resp)
{
    json_t *root = NULL;
    struct lk_buf why = LK_BUF_INIT;
    char *text = NULL;
    if (lk_json_load(resp->body, resp->body_len, &root, &why) == 0)
        text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    if (text != NULL)
        respond_json(ex, 200, text, strlen(text));
    else
        respond_json(ex, 200, resp->body, resp->body_len);
    free(text);
    json_decref(root);
    lk_buf_release(&why);
}

/* SPEC §5.2 steps 3-5 once the worker accepted a tunneled session. */
static void store_tunneled(struct upsert_call *c, const char *worker_name,
                           const struct local_worker_resp *resp)
{
    struct local_server *ls = c->ls;
    struct lk_buf name = LK_BUF_INIT;
    struct lk_buf err = LK_BUF_INIT;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < c->session->n_domains; i++) {
        if (!is_dns_name(worker_name, c->session->domains[i].domain)) {
            lk_buf_adds(&err, "invalid DNS name for the session name and a domain");
            rc = LK_EINVAL;
        }
    }
    if (rc == 0)
        rc = lk_store_session(&ls->kv, c->session, LK_NAME_ANIMAL, worker_name, &ls->rng, &name,
                              &err);
    if (rc != 0) {
        local_respond_text(
            c->ex, 500, lk_exchange_printf(c->ex, "Failed to store server config: %s", err.data));
    } else {
        const char **domains = lk_xcalloc(c->session->n_domains + 1, sizeof(*domains));
        for (size_t i = 0; i < c->session->n_domains; i++)
            domains[i] = c->session->domains[i].domain;
        local_dns_names_set(&ls->names, worker_name, domains, c->session->n_domains);
        free(domains);
        LK_LOG(INFO, "session %s stored (worker name %s)", name.data, worker_name);
        local_tunnel_update(ls, worker_name, resp->body, resp->body_len);
        respond_compact_json(c->ex, resp);
    }
    lk_buf_release(&name);
    lk_buf_release(&err);
}

/* SPEC §5.2: the worker's SessionResponse, re-serialised (§2.4, compact). */
static void respond_session_name(struct lk_exchange *ex, const char *name)
{
    struct lk_buf out = LK_BUF_INIT;
    lk_buf_adds(&out, "{\"session_name\":");
    lk_json_add_string(&out, name, strlen(name));
    lk_buf_addch(&out, '}');
    respond_json(ex, 200, out.data, out.len);
    lk_buf_release(&out);
}

static void on_worker_answer(const struct local_worker_resp *resp, void *data)
{
    struct upsert_call *c = data;
    struct lk_exchange *ex = c->ex;
    if (resp->status == 0) {
        respond_worker_error(ex, resp->error);
    } else if (c->tunneled && resp->status == 409) {
        local_respond_text(ex, 409, "Conflict");
    } else if (resp->status < 200 || resp->status > 299) {
        if (!c->tunneled) {
            const struct lk_http_header ct = { LK_STR("Content-Type"), LK_STR("text/plain") };
            lk_exchange_respond(ex, resp->status, &ct, 1, resp->body, resp->body_len);
        } else {
            respond_worker_error(
                ex, lk_exchange_printf(ex, "request failed with status %d %s: %s", resp->status,
                                       lk_http1_status_reason(resp->status), resp->body));
        }
    } else {
        struct lk_buf why = LK_BUF_INIT;
        char *name = worker_session_name(resp, c->tunneled, &why);
        if (!name)
            respond_worker_error(ex, lk_exchange_printf(ex, "error decoding response body: %s",
                                                        why.data ? why.data : ""));
        else if (!c->tunneled)
            respond_session_name(ex, name);
        else if (lk_upsert_to_session(&c->req, LK_SESSION_TUNNELED, &c->session, &why) != 0)
            /* SPEC §5.2 step 2: built from the original request only once
             * the worker accepted it (the worker validates the same way). */
            local_respond_text(ex, 400,
                               lk_exchange_printf(ex,
                                                  "Failed to parse server config: %s - local "
                                                  "server",
                                                  why.data));
        else
            store_tunneled(c, name, resp);
        free(name);
        lk_buf_release(&why);
    }
    upsert_call_free(c);
}

/* Parses the body and forwards it; completes ex on error. A tunneled
 * session is validated only after the worker's answer (SPEC §5.2). */
static void on_upsert_body(struct lk_exchange *ex, const char *body, size_t len, int err,
                           void *data)
{
    struct upsert_call *c = data;
    struct lk_buf msg = LK_BUF_INIT;
    int rc = err;
    if (err == LK_ELIMIT) {
        local_respond_text(ex, 413, "Failed to buffer the request body: length limit exceeded");
    } else if (err != 0) {
        local_respond_text(ex, 400, "Failed to buffer the request body");
    } else if ((rc = lk_upsert_parse(body, len, &c->req, &msg)) != 0) {
        respond_buf_text(ex, rc == LK_EPARSE ? 400 : 422, &msg);
    } else if (!c->ls->worker) {
        respond_worker_error(ex, "no worker configured");
        rc = LK_EINVAL;
    } else {
        struct lk_buf json = LK_BUF_INIT;
        lk_upsert_to_json(&c->req, &json);
        local_worker_post(c->ls->worker,
                          c->tunneled ? "linkup/v2/sessions/tunneled"
                                      : "linkup/v2/sessions/preview",
                          json.data, json.len, on_worker_answer, c);
        lk_buf_release(&json);
    }
    lk_buf_release(&msg);
    if (rc != 0)
        upsert_call_free(c);
}

/* axum's Json extractor: application/json or application/<x>+json. */
static bool is_json_content_type(struct lk_exchange *ex)
{
    struct lk_str ct;
    if (!lk_exchange_header(ex, LK_STR("content-type"), &ct))
        return false;
    long semi = lk_str_index(ct, ';');
    if (semi >= 0)
        ct.len = (size_t)semi;
    ct = lk_str_trim(ct);
    struct lk_str app = LK_STR("application/");
    if (ct.len <= app.len || !lk_str_ieq((struct lk_str){ ct.ptr, app.len }, app))
        return false;
    struct lk_str sub = { ct.ptr + app.len, ct.len - app.len };
    return lk_str_ieq(sub, LK_STR("json")) ||
           (sub.len > 5 &&
            lk_str_ieq((struct lk_str){ sub.ptr + sub.len - 5, 5 }, LK_STR("+json")));
}

static void upsert(struct local_server *ls, struct lk_exchange *ex, bool tunneled)
{
    if (!is_json_content_type(ex)) {
        local_respond_text(ex, 415, JSON_CONTENT_TYPE_TEXT);
        return;
    }
    struct upsert_call *c = lk_xcalloc(1, sizeof(*c));
    c->ls = ls;
    c->ex = ex;
    c->tunneled = tunneled;
    if (lk_exchange_read_body(ex, ls->max_json_body, on_upsert_body, c) != 0) {
        upsert_call_free(c);
        local_respond_text(ex, 500, "Failed to read the request body");
    }
}

/* ---- dispatch -------------------------------------------------------------- */

static bool method_allowed(const struct admin_methods *m, struct lk_str method)
{
    if (m->get && (lk_str_eq(method, LK_STR("GET")) || lk_str_eq(method, LK_STR("HEAD"))))
        return true;
    if (m->post && lk_str_eq(method, LK_STR("POST")))
        return true;
    return m->del && lk_str_eq(method, LK_STR("DELETE"));
}

static void respond_405(struct lk_exchange *ex, const struct admin_methods *m)
{
    const struct lk_http_header allow = { LK_STR("Allow"), lk_str_c(m->allow) };
    lk_exchange_respond(ex, 405, &allow, 1, NULL, 0);
}

static void respond_check(struct lk_exchange *ex)
{
    const struct lk_http_header ct = { LK_STR("Content-Type"),
                                       LK_STR("text/plain; charset=utf-8") };
    lk_exchange_respond(ex, 200, &ct, 1, "OK", 2);
}

static void respond_dns(struct local_server *ls, struct lk_exchange *ex)
{
    struct lk_buf out = LK_BUF_INIT;
    local_dns_names_to_json(&ls->names, &out);
    respond_json(ex, 200, out.data, out.len);
    lk_buf_release(&out);
}

/* ---- the request inspector (DESIGN §7, server/inspector.h) ------------------ */

/* The raw value of query parameter key in the request target; false when
 * absent. */
static bool query_param(struct lk_exchange *ex, const char *key, struct lk_str *value)
{
    struct lk_str t = lk_exchange_target(ex);
    long q = lk_str_index(t, '?');
    if (q < 0)
        return false;
    struct lk_str rest = { t.ptr + q + 1, t.len - (size_t)q - 1 };
    long hash = lk_str_index(rest, '#');
    if (hash >= 0)
        rest.len = (size_t)hash;
    size_t klen = strlen(key);
    while (rest.len > 0) {
        long amp = lk_str_index(rest, '&');
        struct lk_str pair = { rest.ptr, amp < 0 ? rest.len : (size_t)amp };
        if (pair.len > klen && memcmp(pair.ptr, key, klen) == 0 && pair.ptr[klen] == '=') {
            *value = (struct lk_str){ pair.ptr + klen + 1, pair.len - klen - 1 };
            return true;
        }
        if (amp < 0)
            break;
        rest.ptr += amp + 1;
        rest.len -= (size_t)amp + 1;
    }
    return false;
}

/* A decimal query parameter, dflt when absent; false when it is not one. */
static bool query_u64(struct lk_exchange *ex, const char *key, uint64_t dflt, uint64_t *out)
{
    struct lk_str v;
    *out = dflt;
    if (!query_param(ex, key, &v))
        return true;
    return lk_str_to_u64(lk_str_c(decode_segment(ex, v)), UINT64_MAX, out) == 0;
}

/* GET /linkup/inspector/requests[?session=N][&limit=K][&after=SEQ]. */
static void respond_requests(struct local_server *ls, struct lk_exchange *ex)
{
    struct lk_str session = LK_STR_NULL;
    uint64_t limit = 0, after = 0;
    if (query_param(ex, "session", &session))
        session = lk_str_c(decode_segment(ex, session));
    if (!query_u64(ex, "limit", LOCAL_INSPECTOR_MAX, &limit) ||
        !query_u64(ex, "after", 0, &after)) {
        local_respond_text(ex, 400, "limit and after must be whole numbers");
        return;
    }
    struct lk_buf out = LK_BUF_INIT;
    local_inspector_json(&ls->inspector, session, (size_t)limit, after, &out);
    respond_json(ex, 200, out.data, out.len);
    lk_buf_release(&out);
}

static void respond_inspector_page(struct lk_exchange *ex)
{
    static const struct lk_http_header h[] = {
        { LK_STR("Content-Type"), LK_STR("text/html; charset=utf-8") },
        { LK_STR("Cache-Control"), LK_STR("no-store") },
    };
    lk_exchange_respond(ex, 200, h, LK_ARRAY_LEN(h), local_inspector_page,
                        local_inspector_page_len);
}

bool local_admin_handle(struct local_server *ls, struct lk_exchange *ex)
{
    struct lk_str name = LK_STR_NULL;
    enum admin_route route = match_route(local_target_path(lk_exchange_target(ex)), &name);
    if (route == ADMIN_NONE)
        return false;
    struct lk_str method = lk_exchange_method(ex);
    const struct admin_methods *m = &route_methods[route];
    bool allowed = method_allowed(m, method);
    bool open = route == ADMIN_CHECK && allowed;
    bool loopback = lk_exchange_peer_is_loopback(ex) && !ls->peers_remote;
    if (!open && !loopback) {
        LK_CLOG(lk_exchange_conn_id(ex), WARN, "admin request from %s refused",
                lk_exchange_peer(ex));
        local_respond_text(ex, 403, "Forbidden: the Linkup admin API only answers to this machine");
        return true;
    }
    if (!allowed) {
        respond_405(ex, m);
        return true;
    }
    switch (route) {
    case ADMIN_CHECK:
        respond_check(ex);
        break;
    case ADMIN_SESSIONS:
        list_sessions(ls, ex);
        break;
    case ADMIN_PREVIEW:
        upsert(ls, ex, false);
        break;
    case ADMIN_TUNNELED:
        upsert(ls, ex, true);
        break;
    case ADMIN_SESSION:
        session_get_or_delete(ls, ex, decode_segment(ex, name),
                              lk_str_eq(method, LK_STR("DELETE")));
        break;
    case ADMIN_DNS:
        respond_dns(ls, ex);
        break;
    case ADMIN_TUNNEL: {
        struct lk_str session;
        bool named = query_param(ex, "session", &session);
        local_tunnel_respond_state(ls, ex, named ? decode_segment(ex, session) : NULL);
        break;
    }
    case ADMIN_INSPECTOR:
        respond_inspector_page(ex);
        break;
    case ADMIN_REQUESTS:
        respond_requests(ls, ex);
        break;
    case ADMIN_NONE:
        LK_BUG("unreachable admin route");
    }
    return true;
}
