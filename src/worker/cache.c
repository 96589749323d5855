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
 * once, by lk_exchange_respond() (success) or lk_exchange_proxy() (fallback).
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
#include "net/curl_dl.h"
#include "net/log.h"
#include "proto/http1.h"

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
    uint64_t expires_ms;
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

/* Responds with status, headers and body, adding each CORS header the
 * headers lack (DESIGN §2.7). */
static void respond_with_cors(struct lk_exchange *ex, int status, const struct lk_http_header *h,
                              size_t n, const char *body, size_t len)
{
    struct lk_http_header *all = lk_exchange_alloc(ex, (n + LK_HEADERS_N_CORS) * sizeof(*all));
    size_t k = n;
    memcpy(all, h, n * sizeof(*h));
    for (size_t i = 0; i < LK_HEADERS_N_CORS; i++) {
        bool present = false;
        for (size_t j = 0; j < n && !present; j++)
            present = lk_str_ieq(h[j].name, lk_headers_cors[i].name);
        if (!present)
            all[k++] = lk_headers_cors[i];
    }
    lk_exchange_respond(ex, status, all, k, body, len);
}

/* ---- cacheability (SPEC §4.6) ------------------------------------------------ */

/* The value of directive name= in a Cache-Control value, or -1. */
static long directive_seconds(struct lk_str cc, struct lk_str name)
{
    for (long pos = lk_str_find(cc, name); pos >= 0;) {
        size_t at = (size_t)pos + name.len;
        bool starts = pos == 0 || cc.ptr[pos - 1] == ',' || cc.ptr[pos - 1] == ' ';
        if (starts && at < cc.len && cc.ptr[at] == '=') {
            const char *p = cc.ptr + at + 1;
            uint64_t v = 0;
            if (lk_parse_u64(&p, cc.ptr + cc.len, &v) == 0)
                return v > 31536000 ? 31536000 : (long)v;
            return -1;
        }
        struct lk_str rest = { cc.ptr + at, cc.len - at };
        long next = lk_str_find(rest, name);
        pos = next < 0 ? -1 : (long)at + next;
    }
    return -1;
}

/* The lifetime in ms of a response that may be stored, or 0. */
static uint64_t storable_ttl(int status, const struct lk_http_header *h, size_t n)
{
    long smax = -1;
    long max = -1;
    if (status > 499 || status == 206)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (lk_str_ieq(h[i].name, LK_STR("set-cookie")))
            return 0;
        if (!lk_str_ieq(h[i].name, LK_STR("cache-control")))
            continue;
        struct lk_str v = h[i].value;
        if (lk_str_has_token(v, LK_STR("no-store")) || lk_str_has_token(v, LK_STR("private")) ||
            lk_str_has_token(v, LK_STR("no-cache")))
            return 0;
        long s = directive_seconds(v, LK_STR("s-maxage"));
        long m = directive_seconds(v, LK_STR("max-age"));
        smax = s >= 0 ? s : smax;
        max = m >= 0 ? m : max;
    }
    long ttl = smax >= 0 ? smax : max;
    if (ttl == 0)
        return 0;
    return ttl > 0 ? (uint64_t)ttl * 1000u : WORKER_CACHE_DEFAULT_TTL_MS;
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
    struct lk_buf hmem; /* "name\0value\0" of the final response */
    size_t n_headers;
    struct lk_buf body; /* capped at WORKER_CACHE_MAX_ENTRY */
    bool too_big;
};

/* Copies spec into the exchange's arena (it is borrowed during the call). */
static void copy_spec(struct lk_exchange *ex, const struct lk_proxy_req *in,
                      struct lk_proxy_req *out)
{
    *out = *in;
    out->url = lk_exchange_strndup(ex, in->url, strlen(in->url));
    struct lk_http_header *h = lk_exchange_alloc(ex, (in->n_headers + 1) * sizeof(*h));
    for (size_t i = 0; i < in->n_headers; i++) {
        struct lk_str n = in->headers[i].name;
        struct lk_str v = in->headers[i].value;
        h[i].name = (struct lk_str){ lk_exchange_strndup(ex, n.ptr, n.len), n.len };
        h[i].value = (struct lk_str){ lk_exchange_strndup(ex, v.ptr, v.len), v.len };
    }
    out->headers = h;
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
    lk_buf_release(&f->hmem);
    lk_buf_release(&f->body);
    free(f->key);
    free(f);
}

static void proxy_or_502(struct lk_exchange *ex, const struct lk_proxy_req *spec)
{
    static const struct lk_http_header h[] = {
        { LK_STR("Content-Type"), LK_STR("text/plain") },
        { LK_STR("Cache-Control"), LK_STR("no-store") },
    };
    static const char msg[] = "Failed to fetch from target service: proxy refused";
    if (lk_exchange_proxy(ex, spec) != 0)
        lk_exchange_respond(ex, 502, h, 2, msg, sizeof(msg) - 1);
}

static void fall_back(struct fetch *f)
{
    proxy_or_502(f->ex, &f->spec);
}

/* The response headers collected in f->hmem as an array in the arena. */
static struct lk_http_header *response_headers(struct fetch *f)
{
    struct lk_http_header *h = lk_exchange_alloc(f->ex, (f->n_headers + 1) * sizeof(*h));
    const char *p = f->hmem.data;
    for (size_t i = 0; i < f->n_headers; i++) {
        size_t nl = strlen(p);
        size_t vl = strlen(p + nl + 1);
        h[i].name = (struct lk_str){ p, nl };
        h[i].value = (struct lk_str){ p + nl + 1, vl };
        p += nl + vl + 2;
    }
    return h;
}

static void store_response(struct worker_cache *c, struct fetch *f, int status,
                           const struct lk_http_header *h, uint64_t ttl)
{
    struct centry *e = lk_xcalloc(1, sizeof(*e));
    e->key = f->key;
    f->key = NULL;
    e->status = status;
    e->n_headers = f->n_headers;
    e->hmem = lk_xmemdup(f->hmem.data, f->hmem.len + 1);
    e->headers = lk_xcalloc(f->n_headers + 1, sizeof(*e->headers));
    for (size_t i = 0; i < f->n_headers; i++) {
        e->headers[i].name =
            (struct lk_str){ e->hmem + (h[i].name.ptr - f->hmem.data), h[i].name.len };
        e->headers[i].value =
            (struct lk_str){ e->hmem + (h[i].value.ptr - f->hmem.data), h[i].value.len };
    }
    e->body_len = f->body.len;
    e->body = lk_xmemdup(f->body.data ? f->body.data : "", f->body.len + 1);
    e->size = strlen(e->key) + f->hmem.len + e->body_len + sizeof(*e);
    e->expires_ms = now_ms() + ttl;
    insert(c, e);
}

static void finish(struct fetch *f, CURLcode result)
{
    const struct lk_curl *lc = f->c->lc;
    long status = 0;
    unlink_fetch(f);
    lc->easy_getinfo(f->easy, CURLINFO_RESPONSE_CODE, &status);
    if (result != CURLE_OK || status < 200 || status > 599) {
        if (result != CURLE_OK && !f->too_big)
            LK_CLOG(lk_exchange_conn_id(f->ex), DEBUG, "cache fetch failed: %s",
                    lc->easy_strerror(result));
        fall_back(f);
        fetch_free(f);
        return;
    }
    struct lk_http_header *h = response_headers(f);
    uint64_t ttl = storable_ttl((int)status, h, f->n_headers);
    /* Stored first: h lives in the exchange's arena, which responding frees. */
    if (ttl > 0)
        store_response(f->c, f, (int)status, h, ttl);
    respond_with_cors(f->ex, (int)status, h, f->n_headers, f->body.data, f->body.len);
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

/* ---- libcurl callbacks ----------------------------------------------------------- */

static size_t on_body(char *p, size_t size, size_t n, void *data)
{
    struct fetch *f = data;
    size_t len = size * n;
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

static size_t on_header(char *p, size_t size, size_t n, void *data)
{
    struct fetch *f = data;
    size_t len = size * n;
    struct lk_str line = lk_str_trim((struct lk_str){ p, len });
    if (lk_str_starts_with(line, LK_STR("HTTP/"))) {
        /* A new status line (after a 1xx): forget the headers so far. */
        lk_buf_reset(&f->hmem);
        f->n_headers = 0;
        return len;
    }
    long colon = lk_str_index(line, ':');
    if (colon <= 0)
        return len;
    struct lk_str name = { line.ptr, (size_t)colon };
    struct lk_str value =
        lk_str_trim((struct lk_str){ line.ptr + colon + 1, line.len - (size_t)colon - 1 });
    if (skip_response_header(name) || memchr(line.ptr, '\0', line.len) != NULL)
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

struct worker_cache *worker_cache_new(struct event_base *base, size_t max_bytes)
{
    struct worker_cache *c = lk_xcalloc(1, sizeof(*c));
    c->base = base;
    c->max_bytes = max_bytes;
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
 * headers; curl's own Accept is suppressed when the client sent none. */
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
    f->req_headers = curl_headers(lc, &f->spec);
    lc->easy_setopt(e, CURLOPT_URL, f->spec.url);
    lc->easy_setopt(e, CURLOPT_HTTPHEADER, f->req_headers);
    lc->easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    lc->easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
    lc->easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    lc->easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, WORKER_CACHE_CONNECT_MS);
    lc->easy_setopt(e, CURLOPT_TIMEOUT_MS, WORKER_CACHE_FETCH_MS);
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
    struct centry *e = lookup(c, key);
    if (e == NULL && (c->draining || !ensure_multi(c))) {
        proxy_or_502(ex, spec);
        return;
    }
    if (e != NULL) {
        respond_with_cors(ex, e->status, e->headers, e->n_headers, e->body, e->body_len);
        return;
    }
    struct fetch *f = lk_xcalloc(1, sizeof(*f));
    f->c = c;
    f->ex = ex;
    f->key = lk_xstrdup(key);
    copy_spec(ex, spec, &f->spec);
    start_fetch(c, f);
}
