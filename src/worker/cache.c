/*
 * cache.c - the worker's response cache: an LRU map bounded in bytes, and
 * whole-response fetches through libcurl's multi interface on the worker's
 * libevent loop (one event per curl socket plus one timer). libcurl is
 * loaded (lk_curl) and the multi handle created by the first fetch, so a
 * worker whose sessions have no cache routes never maps libcurl; without
 * libcurl every miss is streamed by the engine instead, uncached, and the
 * reason is logged once.
 *
 * Invariant: a pending fetch owns its exchange until it completes it exactly
 * once, by lk_exchange_respond() (the answer, or a 502 once the request may
 * have reached the upstream) or lk_exchange_proxy() (fallback, only while
 * it cannot have: see may_resend()).
 */
#include "worker/cache.h"

#include <event2/event.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/headers.h"
#include "core/route.h"
#include "net/curl_dl.h"
#include "net/log.h"
#include "proto/http1.h"
#include "proto/http_cache.h"

/* ---- entries and the LRU map --------------------------------------------- */

struct centry {
    struct centry *hnext;       /* hash chain */
    struct centry *prev, *next; /* LRU list, head = most recently used */
    uint64_t hash;
    char *key; /* owned */
    int status;
    struct lk_http_header *headers; /* owned array; strings point into hmem */
    size_t n_headers;
    char *hmem; /* owned "name\0value\0" pairs */
    char *body; /* owned */
    size_t body_len, size;
    uint64_t stored_ms, expires_ms;
    uint64_t age_s; /* the upstream's Age when stored */
    char *vary;     /* owned: see vary_request_fields(); "" without Vary */
    size_t vary_len;
};

struct fetch;

struct worker_cache {
    struct event_base *base;
    const struct lk_curl *lc; /* NULL until the first fetch loads libcurl */
    CURLM *multi;             /* created with lc */
    struct event *timer;
    struct centry **buckets;
    size_t n_buckets, n_entries, bytes, max_bytes;
    struct centry *lru_head, *lru_tail;
    struct fetch *pending; /* doubly linked */
    bool draining;         /* no new fetches: everything goes to the engine */
    bool no_curl;          /* libcurl failed to load: misses go to the engine */
    /* The engine's upstream timeouts (DESIGN §9; 0 = none), see
     * worker_cache_new(). */
    unsigned connect_ms, first_byte_ms, idle_ms;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t hash_key(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static struct centry **slot(const struct worker_cache *c, const char *key, uint64_t h)
{
    struct centry **pp = &c->buckets[h & (c->n_buckets - 1)];
    while (*pp != NULL && ((*pp)->hash != h || strcmp((*pp)->key, key) != 0))
        pp = &(*pp)->hnext;
    return pp;
}

static void lru_unlink(struct worker_cache *c, struct centry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        c->lru_head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        c->lru_tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push_front(struct worker_cache *c, struct centry *e)
{
    e->next = c->lru_head;
    e->prev = NULL;
    if (c->lru_head)
        c->lru_head->prev = e;
    c->lru_head = e;
    if (c->lru_tail == NULL)
        c->lru_tail = e;
}

static void entry_free(struct centry *e)
{
    free(e->key);
    free(e->headers);
    free(e->hmem);
    free(e->body);
    free(e->vary);
    free(e);
}

static void remove_entry(struct worker_cache *c, struct centry *e)
{
    struct centry **pp = slot(c, e->key, e->hash);
    *pp = e->hnext;
    lru_unlink(c, e);
    c->n_entries--;
    c->bytes -= e->size;
    entry_free(e);
}

static void grow(struct worker_cache *c)
{
    size_t n = c->n_buckets ? c->n_buckets * 2 : 64;
    struct centry **b = lk_xcalloc(n, sizeof(*b));
    for (size_t i = 0; i < c->n_buckets; i++) {
        struct centry *e = c->buckets[i];
        while (e != NULL) {
            struct centry *next = e->hnext;
            e->hnext = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free(c->buckets);
    c->buckets = b;
    c->n_buckets = n;
}

/* The live entry for key (moved to the LRU front), or NULL. */
static struct centry *lookup(struct worker_cache *c, const char *key)
{
    if (c->n_buckets == 0)
        return NULL;
    struct centry *e = *slot(c, key, hash_key(key));
    if (e == NULL)
        return NULL;
    if (e->expires_ms <= now_ms()) {
        remove_entry(c, e);
        return NULL;
    }
    lru_unlink(c, e);
    lru_push_front(c, e);
    return e;
}

/* Takes ownership of e (key, headers, body set); replaces an older entry of
 * the same key and evicts from the LRU tail until the cache fits. */
static void insert(struct worker_cache *c, struct centry *e)
{
    if (e->size > c->max_bytes) {
        entry_free(e);
        return;
    }
    if (c->n_buckets == 0 || c->n_entries >= c->n_buckets)
        grow(c);
    e->hash = hash_key(e->key);
    struct centry *old = *slot(c, e->key, e->hash);
    if (old != NULL)
        remove_entry(c, old);
    while (c->bytes + e->size > c->max_bytes && c->lru_tail != NULL)
        remove_entry(c, c->lru_tail);
    struct centry **head = &c->buckets[e->hash & (c->n_buckets - 1)];
    e->hnext = *head;
    *head = e;
    lru_push_front(c, e);
    c->n_entries++;
    c->bytes += e->size;
}

size_t worker_cache_n_entries(const struct worker_cache *c)
{
    return c->n_entries;
}

size_t worker_cache_n_bytes(const struct worker_cache *c)
{
    return c->bytes;
}

/* ---- responses ------------------------------------------------------------- */

static bool named_in(struct lk_str name, const struct lk_http_header *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (lk_str_ieq(h[i].name, name))
            return true;
    }
    return false;
}

/* Responds with status, headers and body as the engine answers a proxied
 * request: spec's resp_set replacing the headers of the same names, then each
 * resp_default header (CORS, DESIGN §2.7) the others lack. */
static void respond_proxied(struct lk_exchange *ex, const struct lk_proxy_req *spec, int status,
                            const struct lk_http_header *h, size_t n, const char *body, size_t len)
{
    size_t cap = n + spec->n_resp_set + spec->n_resp_default;
    struct lk_http_header *all = lk_exchange_alloc(ex, cap * sizeof(*all));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!named_in(h[i].name, spec->resp_set, spec->n_resp_set))
            all[k++] = h[i];
    }
    for (size_t i = 0; i < spec->n_resp_set; i++)
        all[k++] = spec->resp_set[i];
    for (size_t i = 0; i < spec->n_resp_default; i++) {
        if (!named_in(spec->resp_default[i].name, all, k))
            all[k++] = spec->resp_default[i];
    }
    lk_exchange_respond(ex, status, all, k, body, len);
}

/* Answers from entry e: its headers with Age (RFC 9111 §4, §5.1: the
 * upstream's Age plus the seconds e has been stored) instead of the stored
 * one, and spec's response headers. */
static void respond_hit(struct lk_exchange *ex, const struct lk_proxy_req *spec,
                        const struct centry *e)
{
    struct lk_http_header *h = lk_exchange_alloc(ex, (e->n_headers + 1) * sizeof(*h));
    size_t n = 0;
    for (size_t i = 0; i < e->n_headers; i++) {
        if (!lk_str_ieq(e->headers[i].name, LK_STR("age")))
            h[n++] = e->headers[i];
    }
    uint64_t age = e->age_s + (now_ms() - e->stored_ms) / 1000u;
    h[n++] = (struct lk_http_header){ LK_STR("Age"), lk_str_c(lk_exchange_printf(
                                                         ex, "%llu", (unsigned long long)age)) };
    respond_proxied(ex, spec, e->status, h, n, e->body, e->body_len);
}

/* ---- cacheability (SPEC §4.6) ------------------------------------------------ */

/* RFC 9111 §3.5: the answer to a request with Authorization is stored only
 * when the response allows a shared cache to (public, s-maxage or
 * must-revalidate). */
static bool authorization_allows(const struct lk_proxy_req *spec, const struct lk_http_header *h,
                                 size_t n)
{
    if (!lk_headers_has(spec->headers, spec->n_headers, LK_STR("authorization")))
        return true;
    for (size_t i = 0; i < n; i++) {
        struct lk_str v = h[i].value;
        if (lk_str_ieq(h[i].name, LK_STR("cache-control")) &&
            (lk_cc_has(v, LK_STR("public")) || lk_cc_has(v, LK_STR("must-revalidate")) ||
             lk_cc_seconds(v, LK_STR("s-maxage")) >= 0))
            return true;
    }
    return false;
}

/* RFC 9111 §5.2.1.1: true when the request's Cache-Control max-age=N
 * refuses e, older than N seconds (max-age=0, a browser's reload, refuses
 * every stored response). */
static bool too_old_for(const struct centry *e, const struct lk_proxy_req *spec)
{
    uint64_t age_ms = e->age_s * 1000u + (now_ms() - e->stored_ms);
    for (size_t i = 0; i < spec->n_headers; i++) {
        if (!lk_str_ieq(spec->headers[i].name, LK_STR("cache-control")))
            continue;
        long max = lk_cc_seconds(spec->headers[i].value, LK_STR("max-age"));
        if (max == 0 || (max > 0 && age_ms > (uint64_t)max * 1000u))
            return true;
    }
    return false;
}

/* ---- Vary (RFC 9111 §4.1) ---------------------------------------------------- */

/* Appends to out the value of request field name as a stored response's
 * Vary compares it: every field line of that name joined with ", ", or
 * "\x01" when there is none (a field may be present and empty). */
static void request_field(const struct lk_proxy_req *spec, struct lk_str name, struct lk_buf *out)
{
    bool found = false;
    for (size_t i = 0; i < spec->n_headers; i++) {
        if (!lk_str_ieq(spec->headers[i].name, name))
            continue;
        if (found)
            lk_buf_add(out, ", ", 2);
        lk_buf_addstr(out, spec->headers[i].value);
        found = true;
    }
    if (!found)
        lk_buf_addch(out, '\x01');
}

/* The request's fields that the response's Vary names, into out as
 * "name\0value\0" pairs (names in lower case; out empty when the response
 * has no Vary). False for "Vary: *": no later request matches it, so such
 * a response is not stored. */
static bool vary_request_fields(const struct lk_http_header *h, size_t n,
                                const struct lk_proxy_req *spec, struct lk_buf *out)
{
    for (size_t i = 0; i < n; i++) {
        if (!lk_str_ieq(h[i].name, LK_STR("vary")))
            continue;
        struct lk_str rest = h[i].value;
        while (rest.len > 0) {
            long comma = lk_str_index(rest, ',');
            size_t end = comma < 0 ? rest.len : (size_t)comma;
            struct lk_str name = lk_str_trim((struct lk_str){ rest.ptr, end });
            rest =
                comma < 0 ? LK_STR("") : (struct lk_str){ rest.ptr + end + 1, rest.len - end - 1 };
            if (name.len == 0)
                continue;
            if (lk_str_eq(name, LK_STR("*")))
                return false;
            lk_buf_addstr_lower(out, name);
            lk_buf_addch(out, '\0');
            request_field(spec, name, out);
            lk_buf_addch(out, '\0');
        }
    }
    return true;
}

/* True when the request's fields match those e was stored for. */
static bool vary_matches(const struct centry *e, const struct lk_proxy_req *spec)
{
    struct lk_buf now = LK_BUF_INIT;
    bool same = true;
    for (size_t at = 0; same && at < e->vary_len;) {
        const char *name = e->vary + at;
        const char *value = name + strlen(name) + 1;
        lk_buf_reset(&now);
        request_field(spec, lk_str_c(name), &now);
        same = now.len == strlen(value) && memcmp(now.data, value, now.len) == 0;
        at = (size_t)(value - e->vary) + strlen(value) + 1;
    }
    lk_buf_release(&now);
    return same;
}

/* A conditional or range request (RFC 9110 §13.1, §14.2) bypasses the
 * cache: a stored entry is a full answer to an unconditional request, and
 * the upstream's answer to such a request (304, 206, 412) fits it alone.
 * So does a request whose Cache-Control says no-store (RFC 9111 §5.2.1.5:
 * nothing of the exchange may be stored) or no-cache (§5.2.1.4: no stored
 * answer without asking the origin; a browser's reload sends it). */
static bool bypasses_cache(const struct lk_proxy_req *spec)
{
    static const struct lk_str names[] = {
        LK_STR("if-none-match"),       LK_STR("if-modified-since"), LK_STR("if-match"),
        LK_STR("if-unmodified-since"), LK_STR("if-range"),          LK_STR("range"),
    };
    for (size_t i = 0; i < spec->n_headers; i++) {
        struct lk_str v = spec->headers[i].value;
        if (lk_str_ieq(spec->headers[i].name, LK_STR("cache-control")) &&
            (lk_cc_has(v, LK_STR("no-store")) || lk_cc_has(v, LK_STR("no-cache"))))
            return true;
        for (size_t j = 0; j < LK_ARRAY_LEN(names); j++) {
            if (lk_str_ieq(spec->headers[i].name, names[j]))
                return true;
        }
    }
    return false;
}

/* ---- fetches ------------------------------------------------------------------- */

struct fetch {
    struct worker_cache *c;
    struct fetch *prev, *next;
    struct lk_exchange *ex;
    struct lk_proxy_req spec; /* arena copy, for the fallback */
    char *key;                /* owned */
    CURL *easy;
    struct curl_slist *req_headers;
    struct event *timer;   /* owned; first-byte, then body idle timeout */
    uint64_t last_byte_ms; /* when a response byte last arrived */
    struct lk_buf hmem;    /* "name\0value\0" of the final response */
    size_t n_headers;
    struct lk_buf conn;   /* the final response's Connection values, ", "-joined */
    struct lk_buf raw;    /* the current response head as received, for check_head() */
    const char *bad_head; /* why the engine's parser refused that head (static) */
    struct lk_buf body;   /* capped at WORKER_CACHE_MAX_ENTRY */
    char errbuf[CURL_ERROR_SIZE];
    bool sent;     /* curl got to sending the request (may_resend()) */
    bool got_byte; /* a response byte arrived */
    bool too_big;
};

static const struct lk_http_header error_headers[] = {
    { LK_STR("Content-Type"), LK_STR("text/plain") },
    { LK_STR("Cache-Control"), LK_STR("no-store") },
};

/* Copies spec into the exchange's arena (it is borrowed during the call),
 * without the client's fields that a Connection field names (SPEC §3.10):
 * the engine would drop them, so neither curl nor the fallback sends them.
 * The other hop-by-hop headers are curl_headers()' and the engine's. */
static void copy_spec(struct lk_exchange *ex, const struct lk_proxy_req *in,
                      struct lk_proxy_req *out)
{
    size_t k = 0;
    *out = *in;
    out->url = lk_exchange_strndup(ex, in->url, strlen(in->url));
    struct lk_http_header *h = lk_exchange_alloc(ex, (in->n_headers + 1) * sizeof(*h));
    for (size_t i = 0; i < in->n_headers; i++) {
        struct lk_str n = in->headers[i].name;
        struct lk_str v = in->headers[i].value;
        if (lk_exchange_connection_drops(ex, in, &in->headers[i]))
            continue;
        h[k].name = (struct lk_str){ lk_exchange_strndup(ex, n.ptr, n.len), n.len };
        h[k].value = (struct lk_str){ lk_exchange_strndup(ex, v.ptr, v.len), v.len };
        k++;
    }
    out->headers = h;
    out->n_headers = k;
}

static void unlink_fetch(struct fetch *f)
{
    struct worker_cache *c = f->c;
    if (f->prev)
        f->prev->next = f->next;
    else
        c->pending = f->next;
    if (f->next)
        f->next->prev = f->prev;
}

static void fetch_free(struct fetch *f)
{
    const struct lk_curl *lc = f->c->lc;
    if (f->easy) {
        lc->multi_remove_handle(f->c->multi, f->easy);
        lc->easy_cleanup(f->easy);
    }
    if (f->req_headers)
        lc->slist_free_all(f->req_headers);
    if (f->timer)
        event_free(f->timer);
    lk_buf_release(&f->hmem);
    lk_buf_release(&f->conn);
    lk_buf_release(&f->raw);
    lk_buf_release(&f->body);
    free(f->key);
    free(f);
}

static void proxy_or_502(struct lk_exchange *ex, const struct lk_proxy_req *spec)
{
    static const char msg[] = "Failed to fetch from target service: proxy refused";
    if (lk_exchange_proxy(ex, spec) != 0)
        lk_exchange_respond(ex, 502, error_headers, LK_ARRAY_LEN(error_headers), msg,
                            sizeof(msg) - 1);
}

static void fall_back(struct fetch *f)
{
    proxy_or_502(f->ex, &f->spec);
}

/* SPEC §4.4 step 7 for a fetch that may have reached the upstream: 502
 * "Failed to fetch from target service: {why}", as the engine's on_error
 * answers (why is borrowed during the call). */
static void respond_fetch_error(struct fetch *f, const char *why)
{
    const char *body = lk_exchange_printf(f->ex, "Failed to fetch from target service: %s", why);
    LK_CLOG(lk_exchange_conn_id(f->ex), INFO, "cache fetch error: %s", why);
    lk_exchange_respond(f->ex, 502, error_headers, LK_ARRAY_LEN(error_headers), body, strlen(body));
}

/* A failed fetch may go to the streaming engine only when the request cannot
 * have reached the upstream: curl never got to sending it (resolve, connect
 * or TLS failed; on_prereq() not called) and did not time out (the engine
 * would only wait as long again). Anything else is answered with a 502: a
 * second request could repeat what the upstream already did. */
static bool may_resend(const struct fetch *f, CURLcode result)
{
    return !f->sent && result != CURLE_OPERATION_TIMEDOUT;
}

/* The response headers collected in f->hmem as an array in the arena (*n
 * entries), without those the response's Connection fields name (SPEC
 * §3.10; the hop-by-hop ones never reach f->hmem). */
static struct lk_http_header *response_headers(struct fetch *f, size_t *n)
{
    struct lk_http_header *h = lk_exchange_alloc(f->ex, (f->n_headers + 1) * sizeof(*h));
    struct lk_str conn = lk_buf_str(&f->conn);
    const char *p = f->hmem.data;
    size_t k = 0;
    for (size_t i = 0; i < f->n_headers; i++) {
        size_t nl = strlen(p);
        size_t vl = strlen(p + nl + 1);
        h[k].name = (struct lk_str){ p, nl };
        h[k].value = (struct lk_str){ p + nl + 1, vl };
        if (conn.len == 0 || !lk_str_has_token(conn, h[k].name))
            k++;
        p += nl + vl + 2;
    }
    *n = k;
    return h;
}

/* Stores h[0..n) (pointing into f->hmem) and f->body under f->key, unless
 * the response varies on everything (Vary: *) or answers credentials it
 * does not allow to share (RFC 9111 §3.5). */
static void store_response(struct worker_cache *c, struct fetch *f, int status,
                           const struct lk_http_header *h, size_t n, uint64_t ttl)
{
    struct lk_buf vary = LK_BUF_INIT;
    if (!authorization_allows(&f->spec, h, n) || !vary_request_fields(h, n, &f->spec, &vary)) {
        lk_buf_release(&vary);
        return;
    }
    struct centry *e = lk_xcalloc(1, sizeof(*e));
    e->vary = lk_buf_detach(&vary, &e->vary_len);
    e->key = f->key;
    f->key = NULL;
    e->status = status;
    e->n_headers = n;
    e->hmem = lk_xmemdup(f->hmem.data, f->hmem.len + 1);
    e->headers = lk_xcalloc(n + 1, sizeof(*e->headers));
    for (size_t i = 0; i < n; i++) {
        e->headers[i].name =
            (struct lk_str){ e->hmem + (h[i].name.ptr - f->hmem.data), h[i].name.len };
        e->headers[i].value =
            (struct lk_str){ e->hmem + (h[i].value.ptr - f->hmem.data), h[i].value.len };
    }
    e->body_len = f->body.len;
    e->body = lk_xmemdup(f->body.data ? f->body.data : "", f->body.len + 1);
    e->size = strlen(e->key) + f->hmem.len + e->body_len + e->vary_len + sizeof(*e);
    e->stored_ms = now_ms();
    e->expires_ms = e->stored_ms + ttl;
    e->age_s = lk_http_cache_age(h, n);
    insert(c, e);
}

/* The upstream's host (no IPv6 brackets; in the exchange's arena) and port
 * (the scheme's default when the URL has none), for the engine's texts. */
static const char *upstream_host(const struct fetch *f, int *port)
{
    struct lk_str url = lk_str_c(f->spec.url);
    struct lk_str p;
    struct lk_str host = lk_route_host(url, &p);
    uint64_t n = 0;
    if (lk_str_to_u64(p, 65535, &n) != 0)
        n = lk_str_starts_with(url, LK_STR("https:")) ? 443 : 80;
    *port = (int)n;
    if (host.len >= 2 && host.ptr[0] == '[') {
        host.ptr++;
        host.len -= 2;
    }
    return lk_exchange_strndup(f->ex, host.ptr, host.len);
}

static void finish(struct fetch *f, CURLcode result)
{
    const struct lk_curl *lc = f->c->lc;
    const char *why = f->errbuf[0] != '\0' ? f->errbuf : lc->easy_strerror(result);
    long status = 0;
    unlink_fetch(f);
    lc->easy_getinfo(f->easy, CURLINFO_RESPONSE_CODE, &status);
    if (f->bad_head != NULL) {
        /* The engine's words for the same head (lib/net/proxy.c). */
        respond_fetch_error(
            f, lk_exchange_printf(f->ex, "invalid response from upstream: %s", f->bad_head));
    } else if (result != CURLE_OK && f->too_big) {
        /* Deliberate: the engine asks again and streams the large answer. */
        fall_back(f);
    } else if (result != CURLE_OK && may_resend(f, result)) {
        LK_CLOG(lk_exchange_conn_id(f->ex), DEBUG, "cache fetch failed before sending: %s", why);
        fall_back(f);
    } else if (result == CURLE_OPERATION_TIMEDOUT && !f->sent) {
        int port = 0;
        const char *host = upstream_host(f, &port);
        respond_fetch_error(f, lk_exchange_printf(f->ex, LK_ETEXT_CONNECT_TIMEOUT, host, port));
    } else if (result != CURLE_OK) {
        respond_fetch_error(f, why);
    } else if (status < 200) {
        respond_fetch_error(
            f, lk_exchange_printf(f->ex, "invalid response from upstream: status %ld", status));
    } else {
        size_t n = 0;
        struct lk_http_header *h = response_headers(f, &n);
        uint64_t ttl = lk_http_cache_ttl_ms((int)status, h, n, (int64_t)time(NULL),
                                            WORKER_CACHE_DEFAULT_TTL_MS);
        /* Stored first: h lives in the exchange's arena, which responding
         * frees. */
        if (ttl > 0)
            store_response(f->c, f, (int)status, h, n, ttl);
        respond_proxied(f->ex, &f->spec, (int)status, h, n, f->body.data, f->body.len);
    }
    fetch_free(f);
}

static void check_done(struct worker_cache *c)
{
    CURLMsg *msg;
    int left = 0;
    while ((msg = c->lc->multi_info_read(c->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        struct fetch *f = NULL;
        c->lc->easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&f);
        finish(f, msg->data.result);
    }
}

/* ---- timeouts (DESIGN §9, the engine's) ------------------------------------------- */

/* (Re)arms f's timer for ms; 0 stops it. */
static void arm_timer(struct fetch *f, unsigned ms)
{
    if (ms == 0) {
        evtimer_del(f->timer);
        return;
    }
    struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
    evtimer_add(f->timer, &tv);
}

/* A response byte arrived: the first one ends the first-byte timeout and
 * starts the body idle timeout, which later bytes restart (cheaply: the
 * timer re-checks last_byte_ms when it fires). */
static void got_response_bytes(struct fetch *f)
{
    f->last_byte_ms = now_ms();
    if (!f->got_byte) {
        f->got_byte = true;
        arm_timer(f, f->c->idle_ms);
    }
}

/* The request was sent and the upstream is silent (no head within
 * first_byte_ms, or no body byte for idle_ms): 502 with the engine's texts,
 * never a second request. */
static void on_fetch_timer(evutil_socket_t fd, short what, void *data)
{
    struct fetch *f = data;
    (void)fd;
    (void)what;
    uint64_t idle = now_ms() - f->last_byte_ms;
    if (f->got_byte && idle < f->c->idle_ms) {
        arm_timer(f, f->c->idle_ms - (unsigned)idle);
        return;
    }
    int port = 0;
    const char *host = upstream_host(f, &port);
    const char *why = f->got_byte
                          ? lk_exchange_printf(f->ex, LK_ETEXT_BODY_IDLE, host, f->c->idle_ms)
                          : lk_exchange_printf(f->ex, LK_ETEXT_NO_ANSWER, host);
    unlink_fetch(f);
    respond_fetch_error(f, why);
    fetch_free(f);
}

/* ---- libcurl callbacks ----------------------------------------------------------- */

/* CURLOPT_PREREQFUNCTION: connected (DNS, TCP and TLS done), the request is
 * about to be sent. From here on it may reach the upstream. */
static int on_prereq(void *data, char *primary_ip, char *local_ip, int primary_port, int local_port)
{
    struct fetch *f = data;
    (void)primary_ip;
    (void)local_ip;
    (void)primary_port;
    (void)local_port;
    f->sent = true;
    arm_timer(f, f->c->first_byte_ms);
    return CURL_PREREQFUNC_OK;
}

static size_t on_body(char *p, size_t size, size_t n, void *data)
{
    struct fetch *f = data;
    size_t len = size * n;
    got_response_bytes(f);
    if (f->body.len + len > WORKER_CACHE_MAX_ENTRY) {
        f->too_big = true;
        return 0; /* aborts the transfer: the engine streams it instead */
    }
    lk_buf_add(&f->body, p, len);
    return len;
}

static bool skip_response_header(struct lk_str name)
{
    return lk_http1_is_hop_by_hop(name) || lk_str_ieq(name, LK_STR("content-length"));
}

/* The complete head in f->raw through the engine's own parser (RFC 9112:
 * bare CR, obs-fold, differing Content-Lengths, the DESIGN §9 limits), which
 * libcurl is laxer about: a head the streaming path would answer with a 502
 * is neither relayed nor stored. True when it passes. */
static bool check_head(struct fetch *f)
{
    struct lk_http_header headers[LK_HTTP1_MAX_HEADERS];
    struct lk_http1_response resp = { .headers = headers, .headers_cap = LK_HTTP1_MAX_HEADERS };
    const char *why = NULL;
    int rc = lk_http1_parse_response(f->raw.data, f->raw.len, NULL, false, &resp, &why);
    if (rc > 0)
        return true;
    f->bad_head = why ? why : "malformed";
    return false;
}

static size_t on_header(char *p, size_t size, size_t n, void *data)
{
    struct fetch *f = data;
    size_t len = size * n;
    struct lk_str line = lk_str_trim((struct lk_str){ p, len });
    got_response_bytes(f);
    if (lk_str_starts_with((struct lk_str){ p, len }, LK_STR("HTTP/")))
        lk_buf_reset(&f->raw); /* a new head (after a 1xx) */
    if (f->raw.len + len > LK_HTTP1_MAX_HEAD) {
        f->bad_head = "message head too large";
        return 0; /* aborts the transfer */
    }
    lk_buf_add(&f->raw, p, len);
    if (line.len == 0) {
        /* The end of a head; a 1xx one is followed by another. */
        bool interim = f->raw.len > 9 && f->raw.data[9] == '1';
        return interim || check_head(f) ? len : 0;
    }
    if (lk_str_starts_with(line, LK_STR("HTTP/"))) {
        /* A new status line (after a 1xx): forget the headers so far. */
        lk_buf_reset(&f->hmem);
        lk_buf_reset(&f->conn);
        f->n_headers = 0;
        return len;
    }
    long colon = lk_str_index(line, ':');
    if (colon <= 0)
        return len;
    struct lk_str name = { line.ptr, (size_t)colon };
    struct lk_str value =
        lk_str_trim((struct lk_str){ line.ptr + colon + 1, line.len - (size_t)colon - 1 });
    if (memchr(line.ptr, '\0', line.len) != NULL)
        return len;
    if (lk_str_ieq(name, LK_STR("connection"))) {
        /* Kept aside: response_headers() drops the fields it names. */
        if (f->conn.len > 0)
            lk_buf_add(&f->conn, ", ", 2);
        lk_buf_add(&f->conn, value.ptr, value.len);
        return len;
    }
    if (skip_response_header(name))
        return len;
    lk_buf_add(&f->hmem, name.ptr, name.len);
    lk_buf_addch(&f->hmem, '\0');
    lk_buf_add(&f->hmem, value.ptr, value.len);
    lk_buf_addch(&f->hmem, '\0');
    f->n_headers++;
    return len;
}

static void on_socket_event(evutil_socket_t fd, short what, void *data)
{
    struct worker_cache *c = data;
    int running = 0;
    int action =
        ((what & EV_READ) ? CURL_CSELECT_IN : 0) | ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    c->lc->multi_socket_action(c->multi, fd, action, &running);
    check_done(c);
}

static int on_curl_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct worker_cache *c = userp;
    struct event *ev = socketp;
    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (ev != NULL)
            event_free(ev);
        c->lc->multi_assign(c->multi, s, NULL);
        return 0;
    }
    short flags = EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) |
                  ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
    if (ev != NULL)
        event_free(ev);
    ev = event_new(c->base, s, flags, on_socket_event, c);
    c->lc->multi_assign(c->multi, s, ev);
    event_add(ev, NULL);
    return 0;
}

static void on_timer(evutil_socket_t fd, short what, void *data)
{
    struct worker_cache *c = data;
    int running = 0;
    (void)fd;
    (void)what;
    c->lc->multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(c);
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    struct worker_cache *c = userp;
    (void)multi;
    if (timeout_ms < 0) {
        evtimer_del(c->timer);
        return 0;
    }
    struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
    evtimer_add(c->timer, &tv);
    return 0;
}

/* ---- lifecycle -------------------------------------------------------------------- */

struct worker_cache *worker_cache_new(struct event_base *base, size_t max_bytes,
                                      const struct lk_http_server_opts *so)
{
    struct worker_cache *c = lk_xcalloc(1, sizeof(*c));
    c->base = base;
    c->max_bytes = max_bytes;
    c->connect_ms = so->connect_timeout_ms;
    c->first_byte_ms = so->first_byte_timeout_ms;
    c->idle_ms = so->upstream_idle_timeout_ms;
    return c;
}

/* Loads libcurl and creates the multi handle on the first fetch; false
 * (logged once) when libcurl cannot be loaded. */
static bool ensure_multi(struct worker_cache *c)
{
    if (c->multi != NULL)
        return true;
    if (c->no_curl)
        return false;
    const char *why = NULL;
    const struct lk_curl *lc = lk_curl(&why);
    if (lc == NULL) {
        LK_LOG(ERROR, "response cache disabled: %s", why);
        c->no_curl = true;
        return false;
    }
    c->lc = lc;
    c->multi = lc->multi_init();
    if (c->multi == NULL)
        LK_BUG("curl_multi_init failed");
    c->timer = evtimer_new(c->base, on_timer, c);
    lc->multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    lc->multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    lc->multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    lc->multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    return true;
}

void worker_cache_cancel_all(struct worker_cache *c)
{
    if (c != NULL)
        c->draining = true;
    while (c != NULL && c->pending != NULL) {
        struct fetch *f = c->pending;
        unlink_fetch(f);
        fall_back(f);
        fetch_free(f);
    }
}

void worker_cache_free(struct worker_cache *c)
{
    if (c == NULL)
        return;
    worker_cache_cancel_all(c);
    while (c->lru_head != NULL)
        remove_entry(c, c->lru_head);
    free(c->buckets);
    if (c->multi != NULL) {
        c->lc->multi_cleanup(c->multi);
        event_free(c->timer);
        lk_curl_cleanup();
    }
    free(c);
}

/* ---- requests ---------------------------------------------------------------------- */

/* Request headers for curl: the engine's list minus Host and hop-by-hop
 * headers (those the client's Connection names are already gone, see
 * copy_spec()); curl's own Accept is suppressed when the client sent none. */
static struct curl_slist *curl_headers(const struct lk_curl *lc, const struct lk_proxy_req *spec)
{
    struct curl_slist *list = NULL;
    struct lk_buf line = LK_BUF_INIT;
    bool has_accept = false;
    for (size_t i = 0; i < spec->n_headers; i++) {
        struct lk_str n = spec->headers[i].name;
        struct lk_str v = spec->headers[i].value;
        if (lk_str_ieq(n, LK_STR("host")) || lk_http1_is_hop_by_hop(n) ||
            lk_str_ieq(n, LK_STR("content-length")) || lk_str_ieq(n, LK_STR("expect")))
            continue;
        has_accept = has_accept || lk_str_ieq(n, LK_STR("accept"));
        lk_buf_reset(&line);
        /* "Name;" is curl's way of sending a header with an empty value. */
        lk_buf_addf(&line, "%.*s%s%.*s", (int)n.len, n.ptr, v.len ? ": " : ";", (int)v.len, v.ptr);
        list = lc->slist_append(list, line.data);
    }
    if (!has_accept)
        list = lc->slist_append(list, "Accept:");
    lk_buf_release(&line);
    return list;
}

static void start_fetch(struct worker_cache *c, struct fetch *f)
{
    const struct lk_curl *lc = c->lc;
    CURL *e = lc->easy_init();
    if (e == NULL)
        LK_BUG("curl_easy_init failed");
    f->easy = e;
    f->timer = evtimer_new(c->base, on_fetch_timer, f);
    if (f->timer == NULL)
        LK_BUG("evtimer_new failed");
    f->req_headers = curl_headers(lc, &f->spec);
    lc->easy_setopt(e, CURLOPT_URL, f->spec.url);
    lc->easy_setopt(e, CURLOPT_HTTPHEADER, f->req_headers);
    lc->easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    lc->easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
    lc->easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    /* DNS + connect + TLS as the engine's connect timeout (0: curl's own,
     * 300 s); first byte and body idle: f->timer (on_prereq()). */
    if (c->connect_ms > 0)
        lc->easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)c->connect_ms);
    lc->easy_setopt(e, CURLOPT_PREREQFUNCTION, on_prereq);
    lc->easy_setopt(e, CURLOPT_PREREQDATA, f);
    lc->easy_setopt(e, CURLOPT_ERRORBUFFER, f->errbuf);
    lc->easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    lc->easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    lc->easy_setopt(e, CURLOPT_WRITEDATA, f);
    lc->easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    lc->easy_setopt(e, CURLOPT_HEADERDATA, f);
    lc->easy_setopt(e, CURLOPT_PRIVATE, f);
    f->next = c->pending;
    if (c->pending)
        c->pending->prev = f;
    c->pending = f;
    lc->multi_add_handle(c->multi, e);
}

void worker_cache_handle(struct worker_cache *c, struct lk_exchange *ex, const char *key,
                         const struct lk_proxy_req *spec)
{
    if (bypasses_cache(spec)) {
        proxy_or_502(ex, spec);
        return;
    }
    struct centry *e = lookup(c, key);
    if (e != NULL && (!vary_matches(e, spec) || too_old_for(e, spec)))
        e = NULL; /* fetched again; its answer replaces e */
    if (e == NULL && (c->draining || !ensure_multi(c))) {
        proxy_or_502(ex, spec);
        return;
    }
    if (e != NULL) {
        respond_hit(ex, spec, e);
        return;
    }
    struct fetch *f = lk_xcalloc(1, sizeof(*f));
    f->c = c;
    f->ex = ex;
    f->key = lk_xstrdup(key);
    copy_spec(ex, spec, &f->spec);
    start_fetch(c, f);
}
