/*
 * fuzz_route.c - request routing (route.h, headers.h) against the fixed
 * session CONF-A of SPEC §8 stored as "tiny-cow".
 *
 * Input: the first line is the request URL, each further line (at most
 * MAX_HEADERS) is a header "name:value" (a line without ':' is a name with
 * an empty value). Invariants: every returned slice lies inside its input or
 * is the sentinel, a found target URL re-parses with lk_url_parse, extra
 * header values lie inside their buffer and a traceparent is 55 bytes, a
 * normalised Cookie value holds no ',', and the cache key of a target exists;
 * the outgoing header list (SPEC §3.10) fits its bound, has no Host, every
 * added header exactly once and one Cookie when it was replaced; routing
 * again with the same result (buffers reused) gives the same answer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/headers.h"
#include "core/route.h"
#include "core/session.h"
#include "core/url.h"

#define MAX_HEADERS 8

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char conf_a[] =
    "{\"session_token\":\"abcxyz\",\"services\":["
    "{\"name\":\"frontend\",\"location\":\"http://localhost:8000\","
    "\"rewrites\":[{\"source\":\"/foo/(.*)\",\"target\":\"/bar/$1\"}]},"
    "{\"name\":\"other-frontend\",\"location\":\"http://localhost:5000\"},"
    "{\"name\":\"backend\",\"location\":\"http://localhost:8001/\","
    "\"rewrites\":[{\"source\":\"/api/v2/(.*)\",\"target\":\"/$1\"}]}],"
    "\"domains\":[{\"domain\":\"example.com\",\"default_service\":\"frontend\","
    "\"routes\":[{\"path\":\"/api/v1/.*\",\"service\":\"backend\"},"
    "{\"path\":\"/api/v2/.*\",\"service\":\"backend\"}]},"
    "{\"domain\":\"api.example.com\",\"default_service\":\"backend\"},"
    "{\"domain\":\"other-example.com\",\"default_service\":\"other-frontend\"}],"
    "\"cache_routes\":[\"/static/.*\"]}";

static const struct lk_session *the_session(void)
{
    static struct lk_session *s; /* built once, lives for the process */
    if (s == NULL && lk_session_from_json(conf_a, sizeof(conf_a) - 1, &s, NULL) != 0)
        LK_BUG("CONF-A does not parse");
    return s;
}

static int lookup(void *ctx, struct lk_str name, const struct lk_session **out, struct lk_buf *err)
{
    (void)ctx;
    if (lk_str_eq(name, LK_STR("broken"))) {
        lk_buf_adds(err, "broken store");
        return LK_ESTORE;
    }
    if (!lk_str_eq(name, LK_STR("tiny-cow")))
        return LK_ENOTFOUND;
    *out = the_session();
    return 0;
}

static void fill_pattern(void *ctx, void *buf, size_t n)
{
    (void)ctx;
    memset(buf, 0xa5, n);
}

static bool inside(struct lk_str s, const char *base, size_t len)
{
    return s.len == 0 || (s.ptr >= base && s.ptr + s.len <= base + len);
}

static bool inside_or_sentinel(struct lk_str s, struct lk_str in)
{
    return inside(s, in.ptr, in.len) || lk_str_eq(s, LK_STR(LK_ROUTE_NO_SUBDOMAIN));
}

static size_t split(const uint8_t *data, size_t size, struct lk_str *url, struct lk_header *h)
{
    const char *p = (const char *)data, *end = p + size;
    const char *nl = memchr(p, '\n', size);
    *url = (struct lk_str){ p, nl ? (size_t)(nl - p) : size };
    size_t n = 0;
    p = nl ? nl + 1 : end;
    while (p < end && n < MAX_HEADERS) {
        nl = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = nl ? nl : end;
        const char *colon = memchr(p, ':', (size_t)(line_end - p));
        const char *name_end = colon ? colon : line_end;
        h[n].name = (struct lk_str){ p, (size_t)(name_end - p) };
        h[n].value = colon ? (struct lk_str){ colon + 1, (size_t)(line_end - colon - 1) }
                           : (struct lk_str){ line_end, 0 };
        n++;
        p = nl ? nl + 1 : end;
    }
    return n;
}

static void check_helpers(struct lk_str in)
{
    struct lk_str port;
    struct lk_str host = lk_route_host(in, &port);
    LK_ASSERT(inside(host, in.ptr, in.len) && inside(port, in.ptr, in.len));
    LK_ASSERT(inside_or_sentinel(lk_route_first_subdomain(in), in));
    LK_ASSERT(inside(lk_route_target_domain(in, LK_STR("tiny-cow")), in.ptr, in.len));
    LK_ASSERT(inside(lk_headers_tracestate_session(in), in.ptr, in.len));
    (void)lk_headers_tracestate_has(in, LK_STR("tiny-cow"));
}

static void check_result(const struct lk_route_result *r)
{
    struct lk_url u;
    LK_ASSERT(r->target.service != NULL);
    LK_ASSERT(lk_url_parse(r->target.url.data, r->target.url.len, &u, NULL) == 0);
    (void)lk_route_is_cacheable(LK_STR("GET"), r->found.session, lk_str_c(u.path));
    lk_url_release(&u);
    struct lk_buf key = LK_BUF_INIT;
    LK_ASSERT(lk_route_cache_key(lk_buf_str(&r->target.url), r->found.name, &key) == 0);
    lk_buf_release(&key);
    LK_ASSERT(r->extra.n <= LK_ROUTE_MAX_EXTRA);
    for (size_t i = 0; i < r->extra.n; i++) {
        struct lk_str v = r->extra.items[i].value;
        LK_ASSERT(inside(v, r->extra.mem.data, r->extra.mem.len));
        if (lk_str_eq(r->extra.items[i].name, LK_STR("traceparent")))
            LK_ASSERT(v.len == 55);
    }
    if (r->replace_cookie)
        LK_ASSERT(memchr(r->cookie.data, ',', r->cookie.len) == NULL);
}

static size_t count_named(const struct lk_header *h, size_t n, struct lk_str name)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += lk_str_ieq(h[i].name, name);
    return k;
}

static void check_outgoing(const struct lk_header *in, size_t n_in, const struct lk_route_result *r)
{
    struct lk_header out[MAX_HEADERS + LK_ROUTE_MAX_EXTRA + 1];
    size_t n = lk_route_outgoing_headers(in, n_in, r, out);
    LK_ASSERT(n <= n_in + LK_ROUTE_MAX_EXTRA + 1);
    LK_ASSERT(count_named(out, n, LK_STR("host")) == 0);
    for (size_t i = 0; i < r->extra.n; i++)
        LK_ASSERT(count_named(out, n, r->extra.items[i].name) == 1);
    if (r->replace_cookie)
        LK_ASSERT(count_named(out, n, LK_STR("cookie")) == 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct lk_str url;
    struct lk_header h[MAX_HEADERS];
    size_t n = split(data, size, &url, h);
    check_helpers(url);
    for (size_t i = 0; i < n; i++)
        check_helpers(h[i].value);

    struct lk_rng rng = { fill_pattern, NULL };
    struct lk_route_result r;
    struct lk_buf err = LK_BUF_INIT;
    lk_route_result_init(&r);
    int rc = lk_route_request(url, h, n, lookup, NULL, &rng, &r, &err);
    if (rc == 0) {
        check_result(&r);
        check_outgoing(h, n, &r);
    } else {
        LK_ASSERT(rc == LK_ENOTFOUND || rc == LK_ESTORE || rc == LK_EPARSE);
    }
    struct lk_buf first = LK_BUF_INIT;
    lk_buf_addstr(&first, lk_buf_str(&r.target.url));
    const struct lk_session *first_session = r.found.session;
    LK_ASSERT(lk_route_request(url, h, n, lookup, NULL, &rng, &r, &err) == rc);
    LK_ASSERT(r.found.session == first_session);
    LK_ASSERT(lk_str_eq(lk_buf_str(&first), lk_buf_str(&r.target.url)));
    lk_buf_release(&first);
    lk_route_result_release(&r);
    lk_buf_release(&err);

    /* The target on its own, with the session forced. */
    struct lk_route_target t;
    lk_route_target_init(&t);
    if (lk_route_find_target(the_session(), LK_STR("tiny-cow"), url, h, n, &t) == 0) {
        struct lk_url u;
        LK_ASSERT(lk_url_parse(t.url.data, t.url.len, &u, NULL) == 0);
        lk_url_release(&u);
    }
    lk_route_target_release(&t);
    return 0;
}
