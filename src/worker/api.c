/*
 * api.c - the worker's request dispatch and its session API (SPEC §4.2-4.3,
 * DESIGN §2.1, §8).
 *
 * Order of decisions for every request, as in the original's router:
 *   1. a Host that is a tunnel hostname goes to that session's tunnel,
 *      whatever the path (DESIGN §8);
 *   2. GET /linkup/v2/tunnel, the tunnel endpoint, authenticated by the
 *      session's tunnel secret (relay.c);
 *   3. the seven /linkup paths (exact match on the path) run the
 *      authentication middleware first (x-linkup-version for
 *      /linkup/local-session, then Authorization), then the method check
 *      (405 with Allow), then the handler;
 *   4. everything else is the unauthenticated proxy path (proxy.c).
 * POST bodies go through the framework rejections of SPEC §4.3 in axum's
 * order: Content-Type (415), size (413), JSON syntax (400), shape (422).
 *
 * Store writes never block the loop for long: a SQLite store locked by
 * another process refuses a call after WORKER_SQLITE_BUSY_MS. The endpoint
 * handler then answers nothing (store_failed()), and the whole handler runs
 * again from a timer with backoff (its store steps are idempotent: names
 * are re-chosen, puts overwrite) until it succeeds or WORKER_SQLITE_RETRY_MS
 * have passed; only then is the store error answered (500 "Failed to store
 * server config: ... database is locked"). Meanwhile every other request is
 * served.
 */
#include <event2/event.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/headers.h"
#include "core/route.h"
#include "core/session.h"
#include "core/sha256.h"
#include "core/upsert.h"
#include "core/version.h"
#include "net/log.h"
#include "net/tunnel.h"
#include "proto/target.h"
#include "worker/worker.h"

/* ---- responses ------------------------------------------------------------ */

void worker_respond_error(struct lk_exchange *ex, int status, const char *body)
{
    static const struct lk_http_header h[] = {
        { LK_STR("Content-Type"), LK_STR("text/plain") },
        { LK_STR("Cache-Control"), LK_STR("no-store") },
    };
    lk_exchange_respond(ex, status, h, LK_ARRAY_LEN(h), body, strlen(body));
}

void worker_respond_text(struct lk_exchange *ex, int status, const char *body)
{
    static const struct lk_http_header h[] = {
        { LK_STR("Content-Type"), LK_STR("text/plain; charset=utf-8") },
    };
    lk_exchange_respond(ex, status, h, LK_ARRAY_LEN(h), body, strlen(body));
}

static void respond_json(struct lk_exchange *ex, const struct lk_buf *json)
{
    static const struct lk_http_header h[] = {
        { LK_STR("Content-Type"), LK_STR("application/json") },
    };
    lk_exchange_respond(ex, 200, h, LK_ARRAY_LEN(h), json->data, json->len);
}

/* An HttpError whose body is prefix + detail. */
static void respond_error2(struct lk_exchange *ex, int status, const char *prefix,
                           const struct lk_buf *detail, const char *suffix)
{
    worker_respond_error(
        ex, status,
        lk_exchange_printf(ex, "%s%s%s", prefix, detail->data ? detail->data : "", suffix));
}

/* ---- store calls refused as busy --------------------------------------------- */

struct endpoint;

/* One request whose endpoint handler is (re)run until the store is free. */
struct worker_store_try {
    struct worker_store_try *prev, *next; /* in w->tries while waiting */
    struct worker *w;
    struct lk_exchange *ex;
    const struct endpoint *ep;
    const char *body; /* POST: the JSON body, in ex's arena; GET: NULL */
    size_t len;
    struct event *timer; /* owned; NULL until the first retry */
    uint64_t deadline_ms;
    unsigned delay_ms;
    bool again; /* set by store_failed() during a run */
};

#define STORE_RETRY_FIRST_MS     10
#define STORE_RETRY_MAX_DELAY_MS 250

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A store call of the running handler failed with e. When it failed only on
 * another process's lock and the retry deadline is ahead, answers nothing
 * and has the handler run again later (returns true: the handler must stop
 * without responding). Otherwise answers 500 prefix + e (returns false). */
static bool store_failed(struct worker *w, struct lk_exchange *ex, const char *prefix,
                         const struct lk_buf *e)
{
    struct worker_store_try *t = w->cur_try;
    bool busy = worker_store_take_busy(w->store);
    if (busy && t != NULL && t->ex == ex && mono_ms() < t->deadline_ms) {
        t->again = true;
        return true;
    }
    respond_error2(ex, 500, prefix, e, "");
    return false;
}

/* ---- authentication (SPEC §4.2) --------------------------------------------- */

/* The core's SHA-256 (see worker.c: no OpenSSL provider for a digest). */
static void sha256(const char *p, size_t n, unsigned char out[32])
{
    lk_sha256(p, n, out);
}

/* The Authorization value with every "Bearer " removed, compared with the
 * token through SHA-256 digests: equal-length inputs to CRYPTO_memcmp, so the
 * time taken does not depend on where the values differ. */
static bool token_matches(const struct worker *w, struct lk_exchange *ex, struct lk_str v)
{
    char *stripped = lk_exchange_alloc(ex, v.len + 1);
    size_t n = 0;
    static const struct lk_str bearer = LK_STR("Bearer ");
    for (size_t i = 0; i < v.len;) {
        if (v.len - i >= bearer.len && memcmp(v.ptr + i, bearer.ptr, bearer.len) == 0) {
            i += bearer.len;
            continue;
        }
        stripped[n++] = v.ptr[i++];
    }
    unsigned char digest[32];
    sha256(stripped, n, digest);
    return CRYPTO_memcmp(digest, w->token_digest, sizeof(digest)) == 0;
}

/* The value of request header name as the original's runtime (Cloudflare
 * Workers' Headers.get()) sees it: every occurrence, joined with ", ", so a
 * repeated Authorization is one value that matches no token. False when the
 * header is absent. */
static bool joined_header(struct lk_exchange *ex, struct lk_str name, struct lk_str *value)
{
    size_t n, count = 0, len = 0;
    const struct lk_http_header *h = lk_exchange_headers(ex, &n);
    for (size_t i = 0; i < n; i++) {
        if (lk_str_ieq(h[i].name, name)) {
            *value = h[i].value;
            len += h[i].value.len + 2;
            count++;
        }
    }
    if (count <= 1)
        return count == 1;
    char *out = lk_exchange_alloc(ex, len), *at = out;
    for (size_t i = 0, seen = 0; i < n; i++) {
        if (!lk_str_ieq(h[i].name, name))
            continue;
        if (seen++ > 0) {
            memcpy(at, ", ", 2);
            at += 2;
        }
        memcpy(at, h[i].value.ptr, h[i].value.len);
        at += h[i].value.len;
    }
    *value = (struct lk_str){ out, (size_t)(at - out) };
    return true;
}

/* x-linkup-version rules of /linkup/local-session; responds and returns false
 * when the client is turned away. */
static bool version_ok(struct lk_exchange *ex)
{
    struct lk_str v;
    struct lk_version ver;
    if (!joined_header(ex, LK_STR("x-linkup-version"), &v)) {
        worker_respond_text(ex, 401, "No x-linkup-version header, please upgrade your Linkup CLI.");
        return false;
    }
    if (!lk_headers_is_visible(v) || lk_version_parse(v, &ver, NULL) != 0) {
        worker_respond_text(ex, 401, "Invalid x-linkup-version header.");
        return false;
    }
    bool outdated = lk_version_is_outdated(&ver);
    lk_version_release(&ver);
    if (outdated) {
        worker_respond_text(ex, 401,
                            "Your Linkup CLI is outdated, please upgrade to the latest version.");
        return false;
    }
    return true;
}

static bool authorized(const struct worker *w, struct lk_exchange *ex, bool check_version)
{
    struct lk_str v;
    if (check_version && !version_ok(ex))
        return false;
    if (!joined_header(ex, LK_STR("authorization"), &v)) {
        worker_respond_text(ex, 401, "Missing authorization header.");
        return false;
    }
    if (!lk_headers_is_visible(v) || !token_matches(w, ex, v)) {
        lk_exchange_respond(ex, 401, NULL, 0, NULL, 0);
        return false;
    }
    return true;
}

/* ---- session endpoints ------------------------------------------------------ */

/* Builds the session of an upsert; answers 400 and returns NULL on failure. */
static struct lk_session *build_session(struct lk_exchange *ex, const struct lk_upsert *req,
                                        enum lk_session_kind kind)
{
    struct lk_session *s = NULL;
    struct lk_buf e = LK_BUF_INIT;
    if (lk_upsert_to_session(req, kind, &s, &e) != 0)
        respond_error2(ex, 400, "Failed to parse server config: ", &e, " - Worker");
    lk_buf_release(&e);
    return s;
}

/* v1: store_session with the endpoint's naming; the name as plain text. */
static void v1_upsert(struct worker *w, struct lk_exchange *ex, const struct lk_upsert *req,
                      enum lk_session_kind kind, enum lk_name_kind naming)
{
    struct lk_session *s = build_session(ex, req, kind);
    struct lk_buf name = LK_BUF_INIT;
    struct lk_buf e = LK_BUF_INIT;
    if (s == NULL)
        return;
    const char *desired = req->named ? req->desired_name : "";
    if (lk_store_session(&w->store->sessions, s, naming, desired, &w->rng, &name, &e) != 0)
        store_failed(w, ex, "Failed to store server config: ", &e);
    else
        worker_respond_text(ex, 200, name.data);
    lk_buf_release(&e);
    lk_buf_release(&name);
    lk_session_free(s);
}

static void on_local_session(struct worker *w, struct lk_exchange *ex, const struct lk_upsert *req)
{
    v1_upsert(w, ex, req, LK_SESSION_TUNNELED, LK_NAME_ANIMAL);
}

static void on_preview_session(struct worker *w, struct lk_exchange *ex,
                               const struct lk_upsert *req)
{
    v1_upsert(w, ex, req, LK_SESSION_PREVIEW, LK_NAME_SIX_CHAR);
}

/* The v2 name: desired_name for Named, else new_session_name. Answers 500
 * and returns non-zero on failure. */
static int v2_name(struct worker *w, struct lk_exchange *ex, const struct lk_upsert *req,
                   const struct lk_session *s, struct lk_buf *name)
{
    struct lk_buf e = LK_BUF_INIT;
    int rc = 0;
    if (req->named)
        lk_buf_adds(name, req->desired_name);
    else
        rc = lk_new_session_name(&w->store->sessions, req->name_kind, "", s, &w->rng, name, &e);
    if (rc != 0)
        store_failed(w, ex, "Failed generate new session name: ", &e);
    lk_buf_release(&e);
    return rc;
}

/* strict_store_session with DESIGN §2.1's mapping (conflict -> 409). */
static int v2_store(struct worker *w, struct lk_exchange *ex, const char *name,
                    const struct lk_session *s)
{
    struct lk_buf e = LK_BUF_INIT;
    int rc = lk_strict_store_session(&w->store->sessions, name, s, &e);
    if (rc == LK_ECONFLICT)
        worker_respond_error(ex, 409, "Conflict");
    else if (rc != 0)
        store_failed(w, ex, "Failed to store server config: ", &e);
    lk_buf_release(&e);
    return rc;
}

static bool has_localhost_service(const struct lk_session *s)
{
    for (size_t i = 0; i < s->n_services; i++) {
        if (strcmp(s->services[i].location.host, "localhost") == 0)
            return true;
    }
    return false;
}

static void session_name_json(const char *name, struct lk_buf *out)
{
    lk_buf_adds(out, "{\"session_name\":");
    lk_json_add_string(out, name, strlen(name));
}

static void on_v2_preview(struct worker *w, struct lk_exchange *ex, const struct lk_upsert *req)
{
    struct lk_session *s = build_session(ex, req, LK_SESSION_PREVIEW);
    struct lk_buf name = LK_BUF_INIT;
    struct lk_buf json = LK_BUF_INIT;
    if (s == NULL)
        return;
    if (has_localhost_service(s))
        worker_respond_error(ex, 400,
                             "Preview session cannot contain services pointing to localhost");
    else if (v2_name(w, ex, req, s, &name) == 0 && v2_store(w, ex, name.data, s) == 0) {
        session_name_json(name.data, &json);
        lk_buf_addch(&json, '}');
        respond_json(ex, &json);
    }
    lk_buf_release(&json);
    lk_buf_release(&name);
    lk_session_free(s);
}

/* True when u is the tunnel URL of session name: its host is that session's
 * tunnel hostname, without userinfo, path, query or fragment. Names have no
 * syntax rules (SPEC §2.5), and one holding '/', '?', '#', '@', '%' or
 * non-ASCII would make a URL that names another host (`a/b`: host
 * `linkup-tunnel-a`; `a%41`: the tunnel of session `aa`). The empty name
 * passes: strict_store_session refuses it with its own error (SPEC §2.5). */
static bool is_tunnel_url_of(const struct worker *w, const struct lk_url *u, const char *name)
{
    struct lk_str session;
    if (name[0] == '\0')
        return true;
    return u->userinfo == NULL && strcmp(u->path, "/") == 0 && u->query == NULL &&
           u->fragment == NULL &&
           worker_tunnel_host_session(&w->tunnel, lk_str_c(u->host), &session) &&
           lk_str_ieq(session, lk_str_c(name));
}

/* SPEC §4.3.7 step 4: every service whose host is exactly localhost now
 * points at the tunnel URL (parsed, so it gains a trailing slash). LK_EPARSE
 * when that URL does not parse or is not the tunnel URL of session name. */
static int repoint_localhost(const struct worker *w, struct lk_session *s, const char *name,
                             const struct lk_buf *tunnel_url)
{
    for (size_t i = 0; i < s->n_services; i++) {
        struct lk_session_service *svc = &s->services[i];
        struct lk_url u;
        struct lk_buf str = LK_BUF_INIT;
        if (strcmp(svc->location.host, "localhost") != 0)
            continue;
        if (lk_url_parse(tunnel_url->data, tunnel_url->len, &u, NULL) != 0)
            return LK_EPARSE;
        if (!is_tunnel_url_of(w, &u, name)) {
            lk_url_release(&u);
            return LK_EPARSE;
        }
        lk_url_release(&svc->location);
        svc->location = u;
        lk_url_serialize(&u, &str);
        free(svc->location_str);
        svc->location_str = lk_buf_detach(&str, NULL);
    }
    return 0;
}

static void on_v2_tunneled(struct worker *w, struct lk_exchange *ex, const struct lk_upsert *req)
{
    struct lk_session *s = build_session(ex, req, LK_SESSION_TUNNELED);
    struct lk_buf name = LK_BUF_INIT;
    struct lk_buf tunnel = LK_BUF_INIT;
    struct lk_buf url = LK_BUF_INIT;
    struct lk_buf e = LK_BUF_INIT;
    if (s == NULL || v2_name(w, ex, req, s, &name) != 0)
        goto out;
    /* The tunnel is upserted before the conflict check, as in the original. */
    if (worker_tunnel_upsert(&w->store->tunnels, &w->tunnel, name.data, worker_now_ms(), &tunnel,
                             &url, &e) != 0) {
        store_failed(w, ex, "Failed to upsert tunnel: ", &e);
        goto out;
    }
    if (repoint_localhost(w, s, name.data, &url) != 0) {
        worker_respond_error(ex, 500,
                             lk_exchange_printf(ex,
                                                "Failed to upsert tunnel: invalid "
                                                "tunnel url %s",
                                                url.data));
        goto out;
    }
    if (v2_store(w, ex, name.data, s) == 0) {
        struct lk_buf json = LK_BUF_INIT;
        session_name_json(name.data, &json);
        lk_buf_adds(&json, ",\"tunnel_data\":");
        lk_buf_addstr(&json, lk_buf_str(&tunnel));
        lk_buf_addch(&json, '}');
        respond_json(ex, &json);
        lk_buf_release(&json);
    }
out:
    lk_buf_release(&e);
    lk_buf_release(&url);
    lk_buf_release(&tunnel);
    lk_buf_release(&name);
    lk_session_free(s);
}

/* ---- GET endpoints ------------------------------------------------------------ */

static void on_check(struct worker *w, struct lk_exchange *ex)
{
    (void)w;
    worker_respond_text(ex, 200, "OK");
}

static void on_no_tunnel(struct worker *w, struct lk_exchange *ex)
{
    (void)w;
    worker_respond_text(
        ex, 422, "This linkup session has no associated tunnel / was started with --no-tunnel");
}

/* The length of the UTF-8 sequence at p[0..n) when it is valid (1 to 4),
 * else minus the length of its maximal valid prefix (at least 1), the part
 * that Rust's String::from_utf8_lossy replaces by one U+FFFD. */
static int utf8_seq(const unsigned char *p, size_t n)
{
    unsigned char lo = 0x80, hi = 0xBF;
    int len;
    if (p[0] < 0x80)
        return 1;
    if (p[0] >= 0xC2 && p[0] <= 0xDF)
        len = 2;
    else if (p[0] >= 0xE0 && p[0] <= 0xEF)
        len = 3;
    else if (p[0] >= 0xF0 && p[0] <= 0xF4)
        len = 4;
    else
        return -1;
    if (p[0] == 0xE0)
        lo = 0xA0; /* overlong */
    else if (p[0] == 0xED)
        hi = 0x9F; /* surrogates */
    else if (p[0] == 0xF0)
        lo = 0x90; /* overlong */
    else if (p[0] == 0xF4)
        hi = 0x8F; /* above U+10FFFF */
    for (int i = 1; i < len; i++) {
        if ((size_t)i >= n || p[i] < lo || p[i] > hi)
            return -i;
        lo = 0x80;
        hi = 0xBF;
    }
    return len;
}

/* s[0..n) with every invalid UTF-8 part replaced by U+FFFD, into the arena:
 * serde_urlencoded (behind the original's Query extractor) decodes lossily. */
static char *utf8_lossy(struct lk_exchange *ex, const char *s, size_t n)
{
    char *out = lk_exchange_alloc(ex, 3 * n + 1); /* zeroed: terminated */
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        int k = utf8_seq((const unsigned char *)s + i, n - i);
        if (k > 0) {
            memcpy(out + o, s + i, (size_t)k);
            o += (size_t)k;
            i += (size_t)k;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i += (size_t)-k;
        }
    }
    return out;
}

/* application/x-www-form-urlencoded decoding of s[0..n) into the arena,
 * then lossy UTF-8 (SPEC §4.3.5: the original's serde_urlencoded). */
static char *form_decode(struct lk_exchange *ex, const char *s, size_t n)
{
    char *out = lk_exchange_alloc(ex, n + 1); /* zeroed: terminated */
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '+') {
            out[o++] = ' ';
        } else if (s[i] == '%' && i + 2 < n && lk_hex_digit(s[i + 1]) >= 0 &&
                   lk_hex_digit(s[i + 2]) >= 0 &&
                   (lk_hex_digit(s[i + 1]) | lk_hex_digit(s[i + 2])) != 0) {
            /* "%00" stays as it is: a NUL would cut the C string short. */
            out[o++] = (char)(lk_hex_digit(s[i + 1]) * 16 + lk_hex_digit(s[i + 2]));
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    return utf8_lossy(ex, out, o);
}

/* The decoded value of the query field named key (NULL when absent), and
 * in *n_found how often it occurs: serde's struct deserializer, behind the
 * original's Query extractor, rejects a duplicated field. */
const char *worker_query_field(struct lk_exchange *ex, struct lk_str query, const char *key,
                               size_t *n_found)
{
    size_t klen = strlen(key);
    const char *value = NULL;
    *n_found = 0;
    if (query.ptr == NULL)
        return NULL;
    const char *p = query.ptr;
    const char *end = query.ptr + query.len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pair_end = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(pair_end - p));
        const char *name_end = eq ? eq : pair_end;
        char *name = form_decode(ex, p, (size_t)(name_end - p));
        if (strlen(name) == klen && memcmp(name, key, klen) == 0 && (*n_found)++ == 0)
            value = eq ? form_decode(ex, eq + 1, (size_t)(pair_end - eq - 1)) : "";
        p = amp ? amp + 1 : end;
    }
    return value;
}

/* Path and query of the request target (origin-form or absolute-form). */
static void split_target(struct lk_str target, struct lk_str *path, struct lk_str *query)
{
    struct lk_target t;
    lk_target_split(target, &t);
    *path = t.path;
    *query = t.query;
}

static void on_tunnel(struct worker *w, struct lk_exchange *ex)
{
    struct lk_str path;
    struct lk_str query;
    struct lk_buf json = LK_BUF_INIT;
    struct lk_buf e = LK_BUF_INIT;
    split_target(lk_exchange_target(ex), &path, &query);
    size_t n_found;
    const char *name = worker_query_field(ex, query, "session_name", &n_found);
    if (name == NULL) {
        worker_respond_text(ex, 400,
                            "Failed to deserialize query string: missing field `session_name`");
        return;
    }
    if (n_found > 1) {
        worker_respond_text(ex, 400,
                            "Failed to deserialize query string: duplicate field `session_name`");
        return;
    }
    if (worker_tunnel_upsert(&w->store->tunnels, &w->tunnel, name, worker_now_ms(), &json, NULL,
                             &e) != 0)
        store_failed(w, ex, "Failed to upsert tunnel: ", &e);
    else
        respond_json(ex, &json);
    lk_buf_release(&e);
    lk_buf_release(&json);
}

/* ---- dispatch ------------------------------------------------------------------ */

typedef void get_handler_fn(struct worker *w, struct lk_exchange *ex);
typedef void post_handler_fn(struct worker *w, struct lk_exchange *ex, const struct lk_upsert *req);

struct endpoint {
    const char *path;
    bool check_version;    /* x-linkup-version middleware (/linkup/local-session) */
    get_handler_fn *get;   /* GET and HEAD */
    post_handler_fn *post; /* POST with a JSON upsert body */
};

static const struct endpoint endpoints[] = {
    { "/linkup/local-session", true, NULL, on_local_session },
    { "/linkup/preview-session", false, NULL, on_preview_session },
    { "/linkup/tunnel", false, on_tunnel, NULL },
    { "/linkup/check", false, on_check, NULL },
    { "/linkup/no-tunnel", false, on_no_tunnel, NULL },
    { "/linkup/v2/sessions/preview", false, NULL, on_v2_preview },
    { "/linkup/v2/sessions/tunneled", false, NULL, on_v2_tunneled },
};

struct post_ctx {
    struct worker *w;
    const struct endpoint *ep;
};

static void run_try(struct worker_store_try *t);

static void free_try(struct worker_store_try *t)
{
    struct worker *w = t->w;
    if (t->prev != NULL)
        t->prev->next = t->next;
    else if (w->tries == t)
        w->tries = t->next;
    if (t->next != NULL)
        t->next->prev = t->prev;
    if (t->timer != NULL)
        event_free(t->timer);
    free(t);
}

static void on_retry_timer(evutil_socket_t fd, short what, void *data)
{
    struct worker_store_try *t = data;
    (void)fd;
    (void)what;
    if (lk_exchange_is_aborted(t->ex)) {
        /* The client is gone: no point in writing; responding frees ex. */
        lk_exchange_respond(t->ex, 500, NULL, 0, NULL, 0);
        free_try(t);
        return;
    }
    run_try(t);
}

/* Runs t's handler once; frees t when it answered, or arms the retry timer
 * when a store call was refused as busy (store_failed()). */
static void run_try(struct worker_store_try *t)
{
    struct worker *w = t->w;
    t->again = false;
    (void)worker_store_take_busy(w->store); /* forget failures of other paths */
    w->cur_try = t;
    if (t->body == NULL) {
        t->ep->get(w, t->ex);
    } else {
        struct lk_upsert req = { 0 };
        struct lk_buf why = LK_BUF_INIT;
        int rc = lk_upsert_parse(t->body, t->len, &req, &why);
        if (rc != 0)
            worker_respond_text(t->ex, rc == LK_EPARSE ? 400 : 422, why.data ? why.data : "");
        else
            t->ep->post(w, t->ex, &req);
        lk_upsert_release(&req);
        lk_buf_release(&why);
    }
    w->cur_try = NULL;
    if (!t->again) {
        free_try(t);
        return;
    }
    if (t->timer == NULL) {
        t->timer = evtimer_new(w->base, on_retry_timer, t);
        t->next = w->tries;
        if (w->tries != NULL)
            w->tries->prev = t;
        w->tries = t;
        LK_CLOG(lk_exchange_conn_id(t->ex), INFO,
                "store busy (locked by another process); "
                "retrying for up to %u ms",
                WORKER_SQLITE_RETRY_MS);
    }
    uint64_t now = mono_ms();
    uint64_t left = t->deadline_ms > now ? t->deadline_ms - now : 0;
    /* The last run lands on the deadline, so the error is answered then. */
    unsigned ms = left < t->delay_ms ? (unsigned)left : t->delay_ms;
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    evtimer_add(t->timer, &tv);
    t->delay_ms =
        t->delay_ms * 2 > STORE_RETRY_MAX_DELAY_MS ? STORE_RETRY_MAX_DELAY_MS : t->delay_ms * 2;
}

/* Runs an endpoint's handler (body: POST JSON in ex's arena, or NULL for
 * GET) with retries of busy store calls. */
static void run_endpoint_handler(struct worker *w, struct lk_exchange *ex,
                                 const struct endpoint *ep, const char *body, size_t len)
{
    struct worker_store_try *t = lk_xcalloc(1, sizeof(*t));
    t->w = w;
    t->ex = ex;
    t->ep = ep;
    t->body = body;
    t->len = len;
    t->deadline_ms = mono_ms() + WORKER_SQLITE_RETRY_MS;
    t->delay_ms = STORE_RETRY_FIRST_MS;
    run_try(t);
}

void worker_api_cancel(struct worker *w)
{
    while (w->tries != NULL)
        free_try(w->tries);
}

bool worker_body_failed(struct lk_exchange *ex, int err)
{
    if (err == LK_ELIMIT)
        worker_respond_text(ex, 413, "Failed to buffer the request body: length limit exceeded");
    else if (err != 0)
        worker_respond_text(ex, 400, "Failed to buffer the request body");
    return err != 0;
}

static void on_json_body(struct lk_exchange *ex, const char *body, size_t len, int err, void *data)
{
    const struct post_ctx *pc = data;
    if (worker_body_failed(ex, err))
        return;
    run_endpoint_handler(pc->w, ex, pc->ep, body != NULL ? body : "", len);
}

/* axum's Json extractor: application/json or application/<x>+json, any
 * parameters, ASCII case-insensitive. */
static bool is_json_content_type(struct lk_exchange *ex)
{
    struct lk_str ct;
    if (!lk_exchange_header(ex, LK_STR("content-type"), &ct))
        return false;
    long semi = lk_str_index(ct, ';');
    struct lk_str mime = lk_str_trim((struct lk_str){ ct.ptr, semi < 0 ? ct.len : (size_t)semi });
    static const struct lk_str app = LK_STR("application/");
    if (mime.len <= app.len || !lk_str_ieq((struct lk_str){ mime.ptr, app.len }, app))
        return false;
    struct lk_str sub = { mime.ptr + app.len, mime.len - app.len };
    if (lk_str_ieq(sub, LK_STR("json")))
        return true;
    return sub.len > 5 && lk_str_ieq((struct lk_str){ sub.ptr + sub.len - 5, 5 }, LK_STR("+json"));
}

static void run_endpoint(struct worker *w, struct lk_exchange *ex, const struct endpoint *ep)
{
    struct lk_str method = lk_exchange_method(ex);
    if (!authorized(w, ex, ep->check_version))
        return;
    if (ep->get != NULL &&
        (lk_str_eq(method, LK_STR("GET")) || lk_str_eq(method, LK_STR("HEAD")))) {
        run_endpoint_handler(w, ex, ep, NULL, 0);
        return;
    }
    if (ep->post != NULL && lk_str_eq(method, LK_STR("POST"))) {
        if (!is_json_content_type(ex)) {
            worker_respond_text(ex, 415, "Expected request with `Content-Type: application/json`");
            return;
        }
        struct post_ctx *pc = lk_exchange_alloc(ex, sizeof(*pc));
        pc->w = w;
        pc->ep = ep;
        lk_exchange_read_body(ex, w->max_json_body, on_json_body, pc);
        return;
    }
    const struct lk_http_header allow = { LK_STR("Allow"),
                                          ep->get ? LK_STR("GET,HEAD") : LK_STR("POST") };
    lk_exchange_respond(ex, 405, &allow, 1, NULL, 0);
}

/* The Host of the request without its port (absolute-form targets win). */
static struct lk_str request_host(struct lk_exchange *ex)
{
    struct lk_target t;
    struct lk_str host;
    lk_target_split(lk_exchange_target(ex), &t);
    if (t.is_absolute)
        return lk_route_host(t.authority, NULL);
    if (!lk_exchange_header(ex, LK_STR("host"), &host))
        return LK_STR_NULL;
    return lk_route_host(host, NULL);
}

void worker_handle(struct lk_exchange *ex, void *data)
{
    struct worker *w = data;
    struct lk_str session;
    struct lk_str path;
    struct lk_str query;
    if (worker_reject_unproxyable(ex))
        return;
    split_target(lk_exchange_target(ex), &path, &query);
    /* DESIGN §7: the sign-in of session auth, on every host. */
    if (w->auth_on && lk_str_eq(path, LK_STR(WORKER_AUTH_PATH))) {
        worker_auth_endpoint(w, ex);
        return;
    }
    if (worker_tunnel_host_session(&w->tunnel, request_host(ex), &session)) {
        worker_tunnel_host_request(w, ex, session, path);
        return;
    }
    if (lk_str_eq(path, LK_STR(LK_TUNNEL_PATH))) {
        worker_tunnel_endpoint(w, ex);
        return;
    }
    for (size_t i = 0; i < LK_ARRAY_LEN(endpoints); i++) {
        if (lk_str_eq(path, lk_str_c(endpoints[i].path))) {
            run_endpoint(w, ex, &endpoints[i]);
            return;
        }
    }
    worker_proxy(w, ex);
}
