/*
 * test_route.c - request routing (route.h): SPEC §3.2-§3.7, §4.6, §8.1.1-8.1.6,
 * §9 vectors, and the DESIGN §2.3/§2.4 differences.
 *
 * Sessions are built by hand from the fixtures of SPEC §8 (CONF-A, CONF-B), so
 * these tests depend only on the session struct layout, not on its parser.
 */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/headers.h"
#include "core/regex.h"
#include "core/route.h"
#include "core/session.h"
#include "core/url.h"
#include "harness.h"

#define S(lit) LK_STR(lit)
#define H(n, v)              \
    {                        \
        LK_STR(n), LK_STR(v) \
    }
#define NO_HEADERS       \
    {                    \
        {                \
            { NULL, 0 }, \
            {            \
                NULL, 0  \
            }            \
        }                \
    }
#define CHECK_LKSTR(s, lit) CHECK_MEM_EQ((s).ptr, (s).len, (lit), strlen(lit))

/* ---- hand-built sessions ------------------------------------------------------ */

static struct lk_regex *re(const char *src)
{
    struct lk_regex *r = NULL;
    if (lk_regex_compile(src, strlen(src), &r, NULL) != 0)
        abort();
    return r;
}

static void add_service(struct lk_session *s, const char *name, const char *loc, const char *rw_src,
                        const char *rw_tgt)
{
    s->services = lk_xrealloc(s->services, (s->n_services + 1) * sizeof(*s->services));
    struct lk_session_service *v = &s->services[s->n_services++];
    memset(v, 0, sizeof(*v));
    v->name = lk_xstrdup(name);
    if (lk_url_parse(loc, strlen(loc), &v->location, NULL) != 0)
        abort();
    v->location_str = lk_xstrdup(loc);
    if (rw_src != NULL) {
        v->has_rewrites = true;
        v->rewrites = lk_xcalloc(1, sizeof(*v->rewrites));
        v->rewrites[0].source = re(rw_src);
        v->rewrites[0].target = lk_xstrdup(rw_tgt);
        v->n_rewrites = 1;
    }
}

/* routes: pairs of (path regex, service), NULL-terminated. */
static void add_domain(struct lk_session *s, const char *domain, const char *def,
                       const char *const *routes)
{
    s->domains = lk_xrealloc(s->domains, (s->n_domains + 1) * sizeof(*s->domains));
    struct lk_domain *d = &s->domains[s->n_domains++];
    memset(d, 0, sizeof(*d));
    d->domain = lk_xstrdup(domain);
    d->default_service = lk_xstrdup(def);
    for (size_t i = 0; routes && routes[i]; i += 2) {
        d->has_routes = true;
        d->routes = lk_xrealloc(d->routes, (d->n_routes + 1) * sizeof(*d->routes));
        d->routes[d->n_routes].path = re(routes[i]);
        d->routes[d->n_routes++].service = lk_xstrdup(routes[i + 1]);
    }
}

static void add_cache_route(struct lk_session *s, const char *src)
{
    s->has_cache_routes = true;
    s->cache_routes =
        lk_xrealloc(s->cache_routes, (s->n_cache_routes + 1) * sizeof(*s->cache_routes));
    s->cache_routes[s->n_cache_routes++] = re(src);
}

static struct lk_session *new_session(void)
{
    struct lk_session *s = lk_xcalloc(1, sizeof(*s));
    s->session_token = lk_xstrdup("abcxyz");
    return s;
}

static void free_session(struct lk_session *s)
{
    for (size_t i = 0; i < s->n_services; i++) {
        struct lk_session_service *v = &s->services[i];
        free(v->name);
        lk_url_release(&v->location);
        free(v->location_str);
        for (size_t j = 0; j < v->n_rewrites; j++) {
            lk_regex_free(v->rewrites[j].source);
            free(v->rewrites[j].target);
        }
        free(v->rewrites);
    }
    for (size_t i = 0; i < s->n_domains; i++) {
        struct lk_domain *d = &s->domains[i];
        free(d->domain);
        free(d->default_service);
        for (size_t j = 0; j < d->n_routes; j++) {
            lk_regex_free(d->routes[j].path);
            free(d->routes[j].service);
        }
        free(d->routes);
    }
    for (size_t i = 0; i < s->n_cache_routes; i++)
        lk_regex_free(s->cache_routes[i]);
    free(s->cache_routes);
    free(s->services);
    free(s->domains);
    free(s->session_token);
    free(s);
}

/* SPEC §8 CONF-A. */
static struct lk_session *conf_a(void)
{
    static const char *const example_routes[] = { "/api/v1/.*", "backend", "/api/v2/.*", "backend",
                                                  NULL };
    struct lk_session *s = new_session();
    add_service(s, "frontend", "http://localhost:8000", "/foo/(.*)", "/bar/$1");
    add_service(s, "other-frontend", "http://localhost:5000", NULL, NULL);
    add_service(s, "backend", "http://localhost:8001/", "/api/v2/(.*)", "/$1");
    add_domain(s, "example.com", "frontend", example_routes);
    add_domain(s, "api.example.com", "backend", NULL);
    add_domain(s, "other-example.com", "other-frontend", NULL);
    return s;
}

/* SPEC §8 CONF-B. */
static struct lk_session *conf_b(void)
{
    static const char *const example_routes[] = { "/api/v1/.*", "backend", NULL };
    struct lk_session *s = new_session();
    add_service(s, "frontend", "http://localhost:8000", "/foo/(.*)", "/bar/$1");
    add_service(s, "backend", "http://localhost:8001/", NULL, NULL);
    add_domain(s, "example.com", "frontend", example_routes);
    add_domain(s, "api.example.com", "backend", NULL);
    add_cache_route(s, "/static/.*");
    return s;
}

/* ---- a fake store and a counting RNG ------------------------------------------- */

struct fake_store {
    const char *name;                 /* the one stored name */
    const struct lk_session *session; /* its session */
    const char *fail_name;            /* looking this up is a store error */
    char seen[8][64];                 /* names looked up, in order */
    size_t n_seen;
};

static int fake_lookup(void *ctx, struct lk_str name, const struct lk_session **out,
                       struct lk_buf *err)
{
    struct fake_store *st = ctx;
    if (st->n_seen < LK_ARRAY_LEN(st->seen) && name.len < sizeof(st->seen[0])) {
        memcpy(st->seen[st->n_seen], name.ptr, name.len);
        st->seen[st->n_seen][name.len] = '\0';
    }
    st->n_seen++;
    if (st->fail_name && lk_str_eq(name, lk_str_c(st->fail_name))) {
        lk_buf_adds(err, "Invalid stored config: broken");
        return LK_ESTORE;
    }
    if (st->name && lk_str_eq(name, lk_str_c(st->name))) {
        *out = st->session;
        return 0;
    }
    return LK_ENOTFOUND;
}

static void counting_fill(void *ctx, void *buf, size_t n)
{
    unsigned char *c = ctx, *p = buf;
    for (size_t i = 0; i < n; i++)
        p[i] = (*c)++;
}

/* ---- SPEC §3.1 header lookup ----------------------------------------------------- */

static void test_header_lookup(void)
{
    static const struct lk_header hs[] = {
        H("Referer", "first"),   H("x-a", "one"),    H("REFERER", "second"),
        H("referer", "bad\x01"), H("x-tab", "a\tb"), H("x-hi", "caf\xc3\xa9"),
        H("X-Empty", ""),
    };
    static const struct {
        const char *name;
        bool found;
        const char *value;
    } cases[] = {
        { "referer", true, "second" }, /* last visible occurrence wins */
        { "x-A", true, "one" },        /* case-insensitive names */
        { "x-tab", true, "a\tb" },     /* tab counts as visible */
        { "x-hi", false, NULL },       /* non-ASCII value ignored as if absent */
        { "x-empty", true, "" },       { "origin", false, NULL },
    };
    for (size_t i = 0; i < LK_ARRAY_LEN(cases); i++) {
        struct lk_str v = S("untouched");
        bool found = lk_headers_get(hs, LK_ARRAY_LEN(hs), lk_str_c(cases[i].name), &v);
        CHECK_INT_EQ(found, cases[i].found);
        if (cases[i].found)
            CHECK_LKSTR(v, cases[i].value);
        else
            CHECK_LKSTR(v, "untouched");
    }
    CHECK(!lk_headers_has(NULL, 0, S("referer")));
    CHECK(lk_headers_is_visible(S(" ~\t")));
    CHECK(!lk_headers_is_visible(S("\x7f")));
    CHECK(lk_headers_value_ok(S(" ~\t\x80\xff")));
    CHECK(lk_headers_value_ok(S("")));
    CHECK(!lk_headers_value_ok(S("a\rb")));
    CHECK(!lk_headers_value_ok(S("a\nb")));
    CHECK(!lk_headers_value_ok((struct lk_str){ "a\0b", 3 }));
    CHECK(!lk_headers_value_ok(S("\x7f")));
    /* Long values go a word at a time: every position of a word and of the
     * tail, each byte the check refuses and some it accepts. */
    static const char bad[] = "\r\n\x01\x1f\x7f";
    static const char good[] = "\t \x80\xff~";
    char v[27];
    for (size_t at = 0; at < sizeof(v); at++) {
        for (size_t k = 0; k <= sizeof(bad) - 1; k++) { /* k == 5: NUL */
            memset(v, 'a', sizeof(v));
            v[at] = k < sizeof(bad) - 1 ? bad[k] : '\0';
            CHECK(!lk_headers_value_ok((struct lk_str){ v, sizeof(v) }));
        }
        for (size_t k = 0; k < sizeof(good) - 1; k++) {
            memset(v, 'a', sizeof(v));
            v[at] = good[k];
            CHECK(lk_headers_value_ok((struct lk_str){ v, sizeof(v) }));
        }
    }
}

/* ---- SPEC §3.2/§3.3 with DESIGN §2.4, §8.1.3, §9 ---------------------------------- */

static void test_host(void)
{
    static const struct {
        const char *in, *host, *port;
    } cases[] = {
        { "http://tiny-cow.example.com:8080/x", "tiny-cow.example.com", "8080" },
        { "tiny-cow.example.com", "tiny-cow.example.com", "" },
        { "https://u:p@a.b.c:1/x@y", "a.b.c", "1" },
        { "[::1]:8787/a.b.c", "[::1]", "8787" },
        { "http://[2001:db8::1]/", "[2001:db8::1]", "" },
        { "WSS://Host.Example.COM?q=a.b", "Host.Example.COM", "" },
        { "localhost:8787/anypath", "localhost", "8787" },
        { "a.b#frag.c.d", "a.b", "" },
        { "http://u@v@h.example.com:81?x@y", "h.example.com", "81" },
        { "http://@/p", "", "" },
        { "h.example.com:", "h.example.com", "" },
        { "", "", "" },
    };
    for (size_t i = 0; i < LK_ARRAY_LEN(cases); i++) {
        struct lk_str port;
        struct lk_str host = lk_route_host(lk_str_c(cases[i].in), &port);
        CHECK_LKSTR(host, cases[i].host);
        CHECK_LKSTR(port, cases[i].port);
    }
}

static void test_first_subdomain(void)
{
    static const struct {
        const char *in, *want;
    } cases[] = {
        { "tiny-cow.example.com", "tiny-cow" },
        { "http://example.com/x", LK_ROUTE_NO_SUBDOMAIN },
        { "http://127.0.0.1:8080/a", "127" },
        { "https://example.com/app.js", LK_ROUTE_NO_SUBDOMAIN }, /* DESIGN §2.4 fixes the quirk */
        { "localhost:8787/anypath", LK_ROUTE_NO_SUBDOMAIN },
        { "http://localhost:8787/anypath", LK_ROUTE_NO_SUBDOMAIN },
        { "https://tiny-cow.example.com/", "tiny-cow" },
        { "a.b", LK_ROUTE_NO_SUBDOMAIN },
        { "a.b.c", "a" },
        { "example.com?x=a.b.c", LK_ROUTE_NO_SUBDOMAIN },
        { "wss://tiny-cow.example.com:443/ws", "tiny-cow" },
        { "http://user@tiny-cow.example.com/", "tiny-cow" },
        { "[::1]:8080/a.b", LK_ROUTE_NO_SUBDOMAIN },
        { "HTTPS://Tiny-Cow.Example.com", "Tiny-Cow" },
        { "", LK_ROUTE_NO_SUBDOMAIN },
    };
    for (size_t i = 0; i < LK_ARRAY_LEN(cases); i++)
        CHECK_LKSTR(lk_route_first_subdomain(lk_str_c(cases[i].in)), cases[i].want);
}

static void test_target_domain(void)
{
    static const struct {
        const char *in, *name, *want;
    } cases[] = {
        /* SPEC §8.1.3 */
        { "tiny-cow.example.com/path/to/page.html", "tiny-cow", "example.com" },
        { "api.example.com", "tiny-cow", "api.example.com" },
        { "https://tiny-cow.example.com/a/b/c?a=b", "tiny-cow", "example.com" },
        /* DESIGN §2.4: host only, no port, case-insensitive session match */
        { "http://tiny-cow.example.com:8080/x", "tiny-cow", "example.com" },
        { "example.com?a=b", "tiny-cow", "example.com" },
        { "http://Tiny-Cow.Example.com/", "tiny-cow", "Example.com" },
        { "tiny-cowx.example.com", "tiny-cow", "tiny-cowx.example.com" },
        { "tiny-cow.api.example.com", "tiny-cow", "api.example.com" },
        { "does-not-exist", "tiny-cow", "does-not-exist" },
    };
    for (size_t i = 0; i < LK_ARRAY_LEN(cases); i++) {
        struct lk_str got = lk_route_target_domain(lk_str_c(cases[i].in), lk_str_c(cases[i].name));
        CHECK_LKSTR(got, cases[i].want);
    }
}

static void test_find_domain(void)
{
    struct lk_session *s = conf_a();
    const struct lk_domain *d = lk_route_find_domain(s, S("API.Example.COM"));
    CHECK(d != NULL && strcmp(d->domain, "api.example.com") == 0);
    CHECK(lk_route_find_domain(s, S("example.co")) == NULL);
    CHECK(lk_route_find_domain(s, S("example.com:8080")) == NULL);
    free_session(s);
}

/* ---- tracestate (SPEC §3.4 step 5, §9; DESIGN §2.3) -------------------------------- */

static void test_tracestate_session(void)
{
    static const struct {
        const char *in, *want;
    } cases[] = {
        { "a=1, linkup-session = tiny-cow ,b=2", "tiny-cow" }, /* §9: key and value trimmed */
        { "some-other=xyz,linkup-session=N", "N" },
        { "linkup-session=N", "N" },
        { "linkup-session=first,linkup-session=second", "first" },
        { "linkup-session=a=b", "a=b" },
        { "linkup-session", "" }, /* no '=': skipped */
        { "foo=bar", "" },
        { "linkup-sessions=x", "" },
        { "", "" },
    };
    for (size_t i = 0; i < LK_ARRAY_LEN(cases); i++)
        CHECK_LKSTR(lk_headers_tracestate_session(lk_str_c(cases[i].in)), cases[i].want);
}

static void test_tracestate_has(void)
{
    static const struct {
        const char *in;
        bool want;
    } cases[] = {
        { "linkup-session=tiny-cow", true },
        { "a=1, linkup-session=tiny-cow ,b=2", true },
        { "linkup-session=tiny-cow2", false }, /* DESIGN §2.3: no substring test */
        { "xlinkup-session=tiny-cow", false },
        { "linkup-session = tiny-cow", false }, /* the entry must be exact */
        { "", false },
    };
    for (size_t i = 0; i < LK_ARRAY_LEN(cases); i++)
        CHECK_INT_EQ(lk_headers_tracestate_has(lk_str_c(cases[i].in), S("tiny-cow")),
                     cases[i].want);
}

/* ---- baggage (DESIGN §7, W3C Baggage) ------------------------------------------------ */

static void test_baggage_session(void)
{
    static const struct {
        const char *in, *want; /* want NULL: none */
    } cases[] = {
        { "linkup-session=tiny-cow", "tiny-cow" },
        { "userId=alice, linkup-session = tiny-cow ;prop=1;flag ,x=y", "tiny-cow" },
        { "linkup-session=tiny%2Dcow", "tiny-cow" },
        { "linkup-session=%74iny-cow", "tiny-cow" },
        { "linkup-session=first,linkup-session=second", "first" },
        { "linkup-session=a=b", "a=b" },
        { "linkup-session=", NULL },
        { "linkup-session= ;p", NULL },
        { "linkup-session=a%2", NULL },    /* truncated escape */
        { "linkup-session=a%zz", NULL },   /* not hex */
        { "linkup-session=a%20b", "a b" }, /* escaped: any byte but a control */
        { "linkup-session=caf%C3%A9", "caf\xc3\xa9" },
        { "linkup-session=a%00", NULL },        /* decodes to NUL */
        { "linkup-session=a%1F", NULL },        /* a control */
        { "linkup-session=a%7f", NULL },        /* DEL */
        { "linkup-session=caf\xc3\xa9", NULL }, /* raw: not a baggage-octet */
        { "linkup-session", NULL },
        { "linkup-sessions=x", NULL },
        { "", NULL },
    };
    char out[64];
    for (size_t i = 0; i < LK_ARRAY_LEN(cases); i++) {
        long n = lk_headers_baggage_session(lk_str_c(cases[i].in), out, sizeof(out));
        if (cases[i].want == NULL) {
            CHECK_INT_EQ(n, -1);
        } else {
            CHECK_INT_EQ(n, (long)strlen(cases[i].want));
            CHECK_STR_EQ(n >= 0 ? out : "", cases[i].want);
        }
    }
    /* The decoded name must fit with its NUL. */
    char small[9];
    CHECK_INT_EQ(lk_headers_baggage_session(S("linkup-session=tiny-cow"), small, sizeof(small)), 8);
    CHECK_INT_EQ(lk_headers_baggage_session(S("linkup-session=tiny-cows"), small, sizeof(small)),
                 -1);
    CHECK(lk_headers_baggage_has(S("a=1,linkup-session=tiny%2dcow;p"), S("tiny-cow")));
    CHECK(!lk_headers_baggage_has(S("linkup-session=tiny-cow2"), S("tiny-cow")));
    CHECK(!lk_headers_baggage_has(S("other=tiny-cow"), S("tiny-cow")));

    struct lk_buf b = LK_BUF_INIT;
    lk_headers_baggage_add_value(&b, S("tiny-cow"));
    CHECK_STR_EQ(b.data, "tiny-cow");
    lk_buf_reset(&b);
    lk_headers_baggage_add_value(&b, S("a b,c;d\\e\"f%g\x7f\xc3\xa9!~"));
    CHECK_STR_EQ(b.data, "a%20b%2Cc%3Bd%5Ce%22f%25g%7F%C3%A9!~");
    /* What is written reads back. */
    char back[64];
    lk_buf_reset(&b);
    lk_buf_adds(&b, "linkup-session=");
    lk_headers_baggage_add_value(&b, S("x,y;z"));
    CHECK_INT_EQ(lk_headers_baggage_session(lk_buf_str(&b), back, sizeof(back)), 5);
    CHECK_STR_EQ(back, "x,y;z");
    lk_buf_reset(&b);
    lk_buf_adds(&b, "linkup-session=");
    lk_headers_baggage_add_value(&b, S("a b \xc3\xa9"));
    CHECK_INT_EQ(lk_headers_baggage_session(lk_buf_str(&b), back, sizeof(back)), 6);
    CHECK_STR_EQ(back, "a b \xc3\xa9");
    lk_buf_release(&b);
}

/* ---- session extraction (SPEC §3.4, §8.1.1, §8.1.6) ------------------------------ */

static void test_find_session_8_1_1(void)
{
    struct lk_session *s = conf_a();
    static const struct {
        const char *url;
        struct lk_header h;
    } cases[] = {
        { "tiny-cow.example.com", H("x-none", "") },
        { "example.com", H("referer", "http://tiny-cow.example.com") },
        { "example.com", H("origin", "http://tiny-cow.example.com") },
        { "example.com", H("tracestate", "some-other=xyz,linkup-session=tiny-cow") },
        { "example.com", H("tracestate", "linkup-session=tiny-cow") },
        { "example.com", H("x-forwarded-host", "tiny-cow.example.com:8080") },
        { "example.com", H("baggage", "k=v,linkup-session=tiny%2Dcow;p") }, /* DESIGN §7 */
        { "http://other-example.com/", H("referer", "https://tiny-cow.example.com/") }, /* §8.1.6 */
    };
    for (size_t i = 0; i < LK_ARRAY_LEN(cases); i++) {
        struct fake_store st = { .name = "tiny-cow", .session = s };
        struct lk_route_session found;
        CHECK_INT_EQ(lk_route_find_session(lk_str_c(cases[i].url), &cases[i].h, 1, fake_lookup, &st,
                                           &found, NULL),
                     0);
        CHECK_LKSTR(found.name, "tiny-cow");
        CHECK(found.session == s);
    }
    free_session(s);
}

/* DESIGN §7: baggage names a session of any length tracestate could name,
 * up to LK_HEADERS_BAGGAGE_NAME_MAX bytes once decoded (longer than a DNS
 * label, the limit of the lower-cased host retry). */
static void test_find_session_long_baggage_name(void)
{
    static const size_t lens[] = { LK_ROUTE_MAX_LABEL + 1, 200, LK_HEADERS_BAGGAGE_NAME_MAX,
                                   LK_HEADERS_BAGGAGE_NAME_MAX + 1 };
    struct lk_session *s = conf_a();
    for (size_t i = 0; i < LK_ARRAY_LEN(lens); i++) {
        /* "nnn…n-", the '-' sent as "%2D" */
        char name[LK_HEADERS_BAGGAGE_NAME_MAX + 2];
        memset(name, 'n', lens[i] - 1);
        name[lens[i] - 1] = '-';
        name[lens[i]] = '\0';
        struct lk_buf v = LK_BUF_INIT;
        lk_buf_adds(&v, "k=v, linkup-session=");
        lk_buf_add(&v, name, lens[i] - 1);
        lk_buf_adds(&v, "%2D;p");
        struct lk_header h = { LK_STR("baggage"), lk_buf_str(&v) };
        struct fake_store st = { .name = name, .session = s };
        struct lk_route_session found;
        int rc = lk_route_find_session(S("example.com"), &h, 1, fake_lookup, &st, &found, NULL);
        bool fits = lens[i] <= LK_HEADERS_BAGGAGE_NAME_MAX;
        CHECK_INT_EQ(rc, fits ? 0 : LK_ENOTFOUND);
        CHECK(fits ? lk_str_eq(found.name, lk_str_c(name)) : found.name.len == 0);
        CHECK(lk_headers_baggage_has(lk_buf_str(&v), lk_str_c(name)) == fits);
        lk_buf_release(&v);
    }
    free_session(s);
}

static void test_find_session_order(void)
{
    static const struct lk_header hs[] = {
        H("baggage", "linkup-session=b"),       H("tracestate", "x=1"),
        H("origin", "https://o.example.com"),   H("referer", "https://r.example.com/a"),
        H("x-forwarded-host", "x.example.com"),
    };
    static const char *const want[] = { LK_ROUTE_NO_SUBDOMAIN, "x", "r", "o", "", "b" };
    struct fake_store st = { 0 };
    struct lk_route_session found;
    CHECK_INT_EQ(lk_route_find_session(S("http://example.com/"), hs, LK_ARRAY_LEN(hs), fake_lookup,
                                       &st, &found, NULL),
                 LK_ENOTFOUND);
    CHECK(found.session == NULL);
    CHECK_INT_EQ(st.n_seen, LK_ARRAY_LEN(want));
    for (size_t i = 0; i < LK_ARRAY_LEN(want) && i < st.n_seen; i++)
        CHECK_STR_EQ(st.seen[i], want[i]);

    /* A baggage header without a linkup-session member: nothing looked up. */
    static const struct lk_header bg[] = { H("baggage", "k=v") };
    struct fake_store st3 = { 0 };
    CHECK_INT_EQ(lk_route_find_session(S("a.b.c"), bg, 1, fake_lookup, &st3, &found, NULL),
                 LK_ENOTFOUND);
    CHECK_INT_EQ(st3.n_seen, 1);

    /* No tracestate header: nothing is looked up for it. */
    struct fake_store st2 = { 0 };
    CHECK_INT_EQ(lk_route_find_session(S("a.b.c"), NULL, 0, fake_lookup, &st2, &found, NULL),
                 LK_ENOTFOUND);
    CHECK_INT_EQ(st2.n_seen, 1);
    CHECK_STR_EQ(st2.seen[0], "a");
}

static void test_find_session_store_error_aborts(void)
{
    struct lk_session *s = conf_a();
    static const struct lk_header hs[] = { H("referer", "http://tiny-cow.example.com/") };
    struct fake_store st = { .name = "tiny-cow", .session = s, .fail_name = "broken" };
    struct lk_buf err = LK_BUF_INIT;
    struct lk_route_session found;
    CHECK_INT_EQ(lk_route_find_session(S("http://broken.example.com/"), hs, 1, fake_lookup, &st,
                                       &found, &err),
                 LK_ESTORE);
    CHECK_INT_EQ(st.n_seen, 1); /* the referer was never tried */
    CHECK(found.session == NULL);
    CHECK_STR_EQ(err.data, "Invalid stored config: broken");
    lk_buf_release(&err);
    free_session(s);
}

static void test_find_session_case_and_visibility(void)
{
    struct lk_session *s = conf_a();
    struct fake_store st = { .name = "tiny-cow", .session = s };
    struct lk_route_session found;
    /* DESIGN §2.4: hosts are case-insensitive; the name is retried lower-cased. */
    CHECK_INT_EQ(lk_route_find_session(S("http://TINY-Cow.example.com/"), NULL, 0, fake_lookup, &st,
                                       &found, NULL),
                 0);
    CHECK_LKSTR(found.name, "tiny-cow");
    CHECK(found.session == s);
    /* SPEC §3.1: a referer with a non-visible byte is absent. */
    static const struct lk_header bad[] = { H("referer", "http://tiny-cow.example.com/\x80") };
    CHECK_INT_EQ(
        lk_route_find_session(S("http://example.com/"), bad, 1, fake_lookup, &st, &found, NULL),
        LK_ENOTFOUND);
    free_session(s);
}

/* ---- target resolution (SPEC §3.5, §3.6, §8.1.4-8.1.6) --------------------------- */

struct target_case {
    const char *url;
    struct lk_header h[2];
    size_t n_h;
    int rc;
    const char *service, *target;
};

static void run_target_cases(const struct lk_session *s, const struct target_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct lk_route_target t;
        lk_route_target_init(&t);
        int rc = lk_route_find_target(s, S("tiny-cow"), lk_str_c(cases[i].url), cases[i].h,
                                      cases[i].n_h, &t);
        CHECK_INT_EQ(rc, cases[i].rc);
        if (rc == 0 && cases[i].rc == 0) {
            CHECK_STR_EQ(t.service->name, cases[i].service);
            CHECK_STR_EQ(t.url.data, cases[i].target);
        } else {
            CHECK(t.service == NULL);
            CHECK_INT_EQ(t.url.len, 0);
        }
        lk_route_target_release(&t);
    }
}

static void test_target_8_1_4(void)
{
    static const struct target_case cases[] = {
        { "http://tiny-cow.example.com/?a=b", NO_HEADERS, 0, 0, "frontend",
          "http://localhost:8000/?a=b" },
        { "http://tiny-cow.example.com/a/b/c/?a=b", NO_HEADERS, 0, 0, "frontend",
          "http://localhost:8000/a/b/c/?a=b" },
        { "http://tiny-cow.example.com/foo/b/c/?a=b", NO_HEADERS, 0, 0, "frontend",
          "http://localhost:8000/bar/b/c/?a=b" },
        { "http://tiny-cow.example.com/api/v1/?a=b", NO_HEADERS, 0, 0, "backend",
          "http://localhost:8001/api/v1/?a=b" },
        { "http://api.example.com/api/v1/?a=b", NO_HEADERS, 0, 0, "backend",
          "http://localhost:8001/api/v1/?a=b" },
        /* §8.1.6 iframable */
        { "http://other-example.com/",
          { H("referer", "https://tiny-cow.example.com/") },
          1,
          0,
          "other-frontend",
          "http://localhost:5000/" },
    };
    struct lk_session *s = conf_a();
    run_target_cases(s, cases, LK_ARRAY_LEN(cases));
    free_session(s);
}

static void test_target_rules(void)
{
    static const struct target_case cases[] = {
        /* Destination short-cut: original path, no routes, no rewrites. */
        { "http://tiny-cow.example.com/foo/x?q",
          { H("linkup-destination", "frontend") },
          1,
          0,
          "frontend",
          "http://localhost:8000/foo/x?q" },
        { "http://tiny-cow.example.com/api/v1/x",
          { H("linkup-destination", "other-frontend") },
          1,
          0,
          "other-frontend",
          "http://localhost:5000/api/v1/x" },
        /* Unknown destination falls through to the routes. */
        { "http://tiny-cow.example.com/foo/x",
          { H("linkup-destination", "nope") },
          1,
          0,
          "frontend",
          "http://localhost:8000/bar/x" },
        /* Domain from the headers, in order; ports ignored (DESIGN §2.4). */
        { "http://localhost:9000/x",
          { H("x-forwarded-host", "tiny-cow.api.example.com:9000") },
          1,
          0,
          "backend",
          "http://localhost:8001/x" },
        { "http://localhost:9000/x",
          { H("referer", "http://api.example.com/"), H("origin", "http://example.com") },
          2,
          0,
          "backend",
          "http://localhost:8001/x" },
        { "http://localhost:9000/x",
          { H("origin", "http://tiny-cow.other-example.com") },
          1,
          0,
          "other-frontend",
          "http://localhost:5000/x" },
        /* Case-insensitive hosts (DESIGN §2.4). */
        { "http://TINY-COW.Example.COM/api/v1/", NO_HEADERS, 0, 0, "backend",
          "http://localhost:8001/api/v1/" },
        /* Incoming port dropped; fragment and query kept; https scheme replaced. */
        { "https://tiny-cow.example.com:8443/a?x=1#frag", NO_HEADERS, 0, 0, "frontend",
          "http://localhost:8000/a?x=1#frag" },
        /* Rewrites: second backend rewrite, route regexes are unanchored. */
        { "http://tiny-cow.example.com/api/v2/user", NO_HEADERS, 0, 0, "backend",
          "http://localhost:8001/user" },
        { "http://tiny-cow.example.com/x/api/v1/y", NO_HEADERS, 0, 0, "backend",
          "http://localhost:8001/x/api/v1/y" },
        /* Percent-encoded path is what routes and rewrites see. */
        { "http://tiny-cow.example.com/foo/a b", NO_HEADERS, 0, 0, "frontend",
          "http://localhost:8000/bar/a%20b" },
        /* No domain at all. */
        { "http://unknown.org/", NO_HEADERS, 0, LK_ENOTFOUND, NULL, NULL },
        { "http://localhost/", { H("referer", "garbage") }, 1, LK_ENOTFOUND, NULL, NULL },
        /* Not an absolute URL. */
        { "/relative", NO_HEADERS, 0, LK_EPARSE, NULL, NULL },
    };
    struct lk_session *s = conf_a();
    run_target_cases(s, cases, LK_ARRAY_LEN(cases));
    free_session(s);
}

static void test_target_locations_and_rewrites(void)
{
    static const char *const routes[] = { "^/ghost", "ghost", NULL };
    struct lk_session *s = new_session();
    add_service(s, "prefixed", "https://svc.example.com:8443/prefix/", "^/q/(.*)", "/x?$1#");
    add_service(s, "defport", "https://svc.example.com:443/p", "^/dots/(.*)", "/a/../$1");
    add_service(s, "empty", "http://127.0.0.1:9/", "^/all$", "");
    add_domain(s, "prefixed.test", "prefixed", routes);
    add_domain(s, "defport.test", "defport", NULL);
    add_domain(s, "empty.test", "empty", NULL);
    static const struct target_case cases[] = {
        /* Location path ignored, explicit non-default port kept. */
        { "http://prefixed.test/a?b", NO_HEADERS, 0, 0, "prefixed",
          "https://svc.example.com:8443/a?b" },
        /* A rewrite producing '?' and '#' keeps them in the path (Url::set_path). */
        { "http://prefixed.test/q/1?z", NO_HEADERS, 0, 0, "prefixed",
          "https://svc.example.com:8443/x%3F1%23?z" },
        /* Default port dropped; dot segments of a rewritten path resolved. */
        { "http://defport.test/dots/b", NO_HEADERS, 0, 0, "defport", "https://svc.example.com/b" },
        /* A rewrite to "" gives "/". */
        { "http://empty.test/all", NO_HEADERS, 0, 0, "empty", "http://127.0.0.1:9/" },
        /* A route naming no service: no target (SPEC §3.5 step 5). */
        { "http://prefixed.test/ghost", NO_HEADERS, 0, LK_ENOTFOUND, NULL, NULL },
    };
    run_target_cases(s, cases, LK_ARRAY_LEN(cases));
    free_session(s);
}

/* lk_route_find_target splits the common "http(s)://host[:port]/path?query"
 * itself and parses every other URL in full (lk_url_parse): both must give
 * the URL the full parse gives, for URLs on either side of the boundary. */
static void test_target_plain_urls_match_full_parse(void)
{
    static const char *const paths[] = {
        "/",
        "/a/b/c",
        "/a/b/",
        "//a//b",
        "/a/./b",
        "/a/../b",
        "/a/.",
        "/a/..",
        "/.a/..b/...",
        "/%2e/x",
        "/a%20b",
        "/a b",
        "/a\\b",
        "/a\"b",
        "/{x}`y",
        "/a#frag",
        "/-._~!$&()*+,;=:@",
        "/?",
        "/?a=b&c=d/e?f",
        "/?q='x'",
        "/?q=\"x\"",
        "/?q=<x>",
        "/p?%41%zz",
        "/caf\xc3\xa9",
        "/?caf\xc3\xa9",
        "/a\tb",
    };
    static const char *const hosts[] = {
        "http://tiny-cow.example.com",
        "https://tiny-cow.example.com",
        "http://tiny-cow.example.com:8080",
        "http://tiny-cow.example.com:80",
        "https://tiny-cow.example.com:443",
        "http://tiny-cow.example.com:",
        "http://tiny-cow.example.com:65535",
        "http://tiny-cow.example.com:65536",
        "http://tiny-cow.example.com:123456",
        "http://Tiny-Cow.Example.COM",
        "HTTP://tiny-cow.example.com",
        "http://u:p@tiny-cow.example.com",
        "http://[::1]",
    };
    struct lk_session *s = new_session();
    add_service(s, "web", "http://localhost:8000", NULL, NULL);
    add_domain(s, "example.com", "web", NULL);
    struct lk_buf url = LK_BUF_INIT, want = LK_BUF_INIT;
    for (size_t i = 0; i < LK_ARRAY_LEN(hosts); i++) {
        for (size_t j = 0; j < LK_ARRAY_LEN(paths); j++) {
            lk_buf_reset(&url);
            lk_buf_adds(&url, hosts[i]);
            lk_buf_adds(&url, paths[j]);
            struct lk_url u;
            int want_rc = lk_url_parse(url.data, url.len, &u, NULL);
            lk_buf_reset(&want);
            if (want_rc == 0) {
                struct lk_url t = u;
                t.scheme = s->services[0].location.scheme;
                t.host = s->services[0].location.host;
                t.port = s->services[0].location.port;
                lk_url_serialize(&t, &want);
                lk_url_release(&u);
            }
            struct lk_route_target got;
            lk_route_target_init(&got);
            /* linkup-destination: the target no matter which host the URL names. */
            static const struct lk_header dest[] = { H("linkup-destination", "web") };
            int rc = lk_route_find_target(s, S("tiny-cow"), lk_buf_str(&url), dest, 1, &got);
            if (rc != (want_rc == 0 ? 0 : LK_EPARSE))
                printf("# %s\n", url.data);
            CHECK_INT_EQ(rc, want_rc == 0 ? 0 : LK_EPARSE);
            if (rc == 0 && want_rc == 0 && strcmp(got.url.data, want.data) != 0) {
                printf("# %s\n", url.data);
                CHECK_STR_EQ(got.url.data, want.data);
            }
            lk_route_target_release(&got);
        }
    }
    lk_buf_release(&want);
    lk_buf_release(&url);
    free_session(s);
}

/* ---- additional headers (SPEC §3.7, §8.1.2, DESIGN §2.3, §2.4) -------------------- */

struct extra_case {
    const char *url;
    struct lk_header h[4];
    size_t n_h;
    const char *want[LK_ROUTE_MAX_EXTRA][2]; /* name, value ("*55" = a new traceparent) */
};

static void check_traceparent(struct lk_str v)
{
    CHECK_INT_EQ(v.len, 55);
    if (v.len != 55)
        return;
    CHECK(memcmp(v.ptr, "00-", 3) == 0 && v.ptr[35] == '-' && memcmp(v.ptr + 52, "-00", 3) == 0);
    for (size_t i = 3; i < 52; i++) {
        if (i == 35)
            continue;
        char c = v.ptr[i];
        CHECK((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
    }
}

static void test_extra_headers(void)
{
    static const struct extra_case cases[] = {
        /* §8.1.2 (a) */
        { "https://tiny-cow.example.com/abc-xyz",
          NO_HEADERS,
          0,
          { { "traceparent", "*55" },
            { "tracestate", "linkup-session=tiny-cow" },
            { "baggage", "linkup-session=tiny-cow" },
            { "linkup-destination", "frontend" },
            { "x-forwarded-host", "tiny-cow.example.com" } } },
        /* §8.1.2 (b) */
        { "https://abc.some-tunnel.com/abc-xyz",
          { H("traceparent", "anything"), H("tracestate", "linkup-session=tiny-cow"),
            H("linkup-destination", "frontend"), H("x-forwarded-host", "tiny-cow.example.com") },
          4,
          { { NULL, NULL } } },
        /* §8.1.2 (c) */
        { "https://tiny-cow.example.com/abc-xyz",
          { H("traceparent", "anything"), H("tracestate", "other-service=32"),
            H("x-forwarded-host", "tiny-cow.example.com") },
          3,
          { { "tracestate", "other-service=32,linkup-session=tiny-cow" },
            { "baggage", "linkup-session=tiny-cow" },
            { "linkup-destination", "frontend" } } },
        /* §8.1.2 (d) */
        { "https://tiny-cow.example.com/abc-xyz",
          { H("x-forwarded-host", "tiny-cow.example.com") },
          1,
          { { "traceparent", "*55" },
            { "tracestate", "linkup-session=tiny-cow" },
            { "baggage", "linkup-session=tiny-cow" },
            { "linkup-destination", "frontend" } } },
        /* DESIGN §2.3: a different session's entry does not suppress ours. */
        { "https://tiny-cow.example.com/",
          { H("traceparent", "t"), H("tracestate", "linkup-session=tiny-cow2"),
            H("linkup-destination", "d"), H("x-forwarded-host", "h") },
          4,
          { { "tracestate", "linkup-session=tiny-cow2,linkup-session=tiny-cow" },
            { "baggage", "linkup-session=tiny-cow" } } },
        /* DESIGN §7: baggage goes with tracestate: appended to a list
         * without the session, left alone when a member already names it
         * (percent-decoded, properties dropped). */
        { "https://tiny-cow.example.com/",
          { H("traceparent", "t"), H("baggage", "userId=alice,isProduction=false"),
            H("linkup-destination", "d"), H("x-forwarded-host", "h") },
          4,
          { { "tracestate", "linkup-session=tiny-cow" },
            { "baggage", "userId=alice,isProduction=false,linkup-session=tiny-cow" } } },
        { "https://tiny-cow.example.com/",
          { H("traceparent", "t"), H("baggage", "a=1, linkup-session = tiny%2Dcow;p=2"),
            H("linkup-destination", "d"), H("x-forwarded-host", "h") },
          4,
          { { "tracestate", "linkup-session=tiny-cow" } } },
        { "https://tiny-cow.example.com/",
          { H("traceparent", "t"), H("tracestate", "linkup-session=tiny-cow"), H("baggage", "k=v"),
            H("x-forwarded-host", "h") },
          4,
          { { "linkup-destination", "frontend" } } },
        /* DESIGN §2.4: the port of the request host is kept; referer-identified request. */
        { "http://127.0.0.1:8080/x?q=1",
          { H("traceparent", "t"), H("tracestate", "linkup-session=tiny-cow"),
            H("Linkup-Destination", "d") },
          3,
          { { "x-forwarded-host", "tiny-cow.127.0.0.1:8080" } } },
        { "http://api.example.com/a.js",
          { H("traceparent", "t"), H("tracestate", "linkup-session=tiny-cow"),
            H("linkup-destination", "d") },
          3,
          { { "x-forwarded-host", "tiny-cow.api.example.com" } } },
        /* The host as a URL parser leaves it: lower case, no default port. */
        { "http://TINY-COW.Example.COM:80/x",
          { H("traceparent", "t"), H("tracestate", "linkup-session=tiny-cow"),
            H("linkup-destination", "d") },
          3,
          { { "x-forwarded-host", "tiny-cow.example.com" } } },
        { "https://tiny-cow.example.com:443/x",
          { H("traceparent", "t"), H("tracestate", "linkup-session=tiny-cow"),
            H("linkup-destination", "d") },
          3,
          { { "x-forwarded-host", "tiny-cow.example.com" } } },
        { "https://tiny-cow.example.com:80/x",
          { H("traceparent", "t"), H("tracestate", "linkup-session=tiny-cow"),
            H("linkup-destination", "d") },
          3,
          { { "x-forwarded-host", "tiny-cow.example.com:80" } } },
        /* An odd spelling of a default port is still the default (WHATWG
         * URL: scheme case-insensitive, port a number). */
        { "HTTP://tiny-cow.example.com:080/x",
          { H("traceparent", "t"), H("tracestate", "linkup-session=tiny-cow"),
            H("linkup-destination", "d") },
          3,
          { { "x-forwarded-host", "tiny-cow.example.com" } } },
        { "http://tiny-cow.example.com:08080/x",
          { H("traceparent", "t"), H("tracestate", "linkup-session=tiny-cow"),
            H("linkup-destination", "d") },
          3,
          { { "x-forwarded-host", "tiny-cow.example.com:8080" } } },
        /* SPEC §3.10: fields a Connection field lists do not reach the next
         * hop, so for it they are absent (SPEC §3.7) and Linkup's are sent. */
        { "http://tiny-cow.example.com/",
          { H("Connection", "x-forwarded-host, TraceState"), H("traceparent", "t"),
            H("x-forwarded-host", "tiny-cow.example.com"),
            H("tracestate", "linkup-session=tiny-cow") },
          4,
          { { "tracestate", "linkup-session=tiny-cow" },
            { "baggage", "linkup-session=tiny-cow" },
            { "linkup-destination", "frontend" },
            { "x-forwarded-host", "tiny-cow.example.com" } } },
        { "http://tiny-cow.example.com/",
          { H("tracestate", "a=1,linkup-session=tiny-cow"), H("linkup-destination", "d"),
            H("traceparent", "t"), H("connection", "keep-alive,linkup-destination ,traceparent") },
          4,
          { { "traceparent", "*55" },
            { "linkup-destination", "frontend" },
            { "x-forwarded-host", "tiny-cow.example.com" } } },
        /* W3C Baggage: several baggage fields are one list. */
        { "http://tiny-cow.example.com/",
          { H("baggage", "a=1"), H("traceparent", "t"), H("Baggage", "b=2"),
            H("x-forwarded-host", "h") },
          4,
          { { "tracestate", "linkup-session=tiny-cow" },
            { "baggage", "a=1,b=2,linkup-session=tiny-cow" },
            { "linkup-destination", "frontend" } } },
        { "http://tiny-cow.example.com/",
          { H("baggage", "linkup-session=tiny-cow"), H("traceparent", "t"), H("baggage", "b=2"),
            H("x-forwarded-host", "h") },
          4,
          { { "tracestate", "linkup-session=tiny-cow" }, { "linkup-destination", "frontend" } } },
        /* SPEC §3.1: non-visible values count as absent. */
        { "http://tiny-cow.example.com:8787/",
          { H("traceparent", "t\x01"), H("tracestate", "linkup-session=tiny-cow"),
            H("linkup-destination", "d"), H("x-forwarded-host", "\xff") },
          4,
          { { "traceparent", "*55" }, { "x-forwarded-host", "tiny-cow.example.com:8787" } } },
        { "http://tiny-cow.example.com/",
          { H("traceparent", "t"), H("tracestate", "x=1"), H("baggage", "linkup-session=a\x01"),
            H("x-forwarded-host", "h") },
          4,
          { { "tracestate", "x=1,linkup-session=tiny-cow" },
            { "baggage", "linkup-session=tiny-cow" },
            { "linkup-destination", "frontend" } } },
    };
    unsigned char counter = 0;
    struct lk_rng rng = { counting_fill, &counter };
    struct lk_route_extra x;
    lk_route_extra_init(&x);
    for (size_t i = 0; i < LK_ARRAY_LEN(cases); i++) {
        lk_route_extra_headers(lk_str_c(cases[i].url), cases[i].h, cases[i].n_h, S("tiny-cow"),
                               S("frontend"), &rng, &x);
        size_t n_want = 0;
        while (n_want < LK_ROUTE_MAX_EXTRA && cases[i].want[n_want][0])
            n_want++;
        CHECK_INT_EQ(x.n, n_want);
        for (size_t j = 0; j < n_want && j < x.n; j++) {
            CHECK_LKSTR(x.items[j].name, cases[i].want[j][0]);
            if (strcmp(cases[i].want[j][1], "*55") == 0)
                check_traceparent(x.items[j].value);
            else
                CHECK_LKSTR(x.items[j].value, cases[i].want[j][1]);
        }
    }
    lk_route_extra_release(&x);
}

static void test_traceparent_from_rng(void)
{
    unsigned char counter = 0;
    struct lk_rng rng = { counting_fill, &counter };
    struct lk_route_extra x;
    lk_route_extra_init(&x);
    lk_route_extra_headers(S("http://a.b.c/"), NULL, 0, S("a"), S("f"), &rng, &x);
    CHECK_LKSTR(x.items[0].value, "00-000102030405060708090a0b0c0d0e0f-1011121314151617-00");
    lk_route_extra_release(&x);
}

/* A service name that cannot go out as linkup-destination is named (the
 * servers refuse the request, SPEC §4.4 step 5); others are not. */
static void test_extra_invalid(void)
{
    unsigned char counter = 0;
    struct lk_rng rng = { counting_fill, &counter };
    struct lk_route_extra x;
    lk_route_extra_init(&x);
    lk_route_extra_headers(S("http://a.b.c/"), NULL, 0, S("a"), S("fé\t ok"), &rng, &x);
    CHECK_LKSTR(lk_route_extra_invalid(&x), "");
    lk_route_extra_headers(S("http://a.b.c/"), NULL, 0, S("a"), S("f\r\nX-Injected: 1"), &rng, &x);
    CHECK_LKSTR(lk_route_extra_invalid(&x), "linkup-destination");
    lk_route_extra_release(&x);
}

/* §8.1.5: a rewritten request fed back with its additional headers is not
 * rewritten twice. */
static void test_repeatable_rewritten_routes(void)
{
    struct lk_session *s = conf_a();
    unsigned char counter = 0;
    struct lk_rng rng = { counting_fill, &counter };
    struct lk_route_target t;
    struct lk_route_extra x;
    lk_route_target_init(&t);
    lk_route_extra_init(&x);
    CHECK_INT_EQ(
        lk_route_find_target(s, S("tiny-cow"), S("http://example.com/api/v2/user"), NULL, 0, &t),
        0);
    CHECK_STR_EQ(t.service->name, "backend");
    CHECK_STR_EQ(t.url.data, "http://localhost:8001/user");
    lk_route_extra_headers(S("http://example.com/api/v2/user"), NULL, 0, S("tiny-cow"),
                           S("backend"), &rng, &x);
    CHECK_INT_EQ(x.n, 5); /* traceparent, tracestate, baggage, linkup-destination, x-f-h */
    CHECK_LKSTR(x.items[4].value, "tiny-cow.example.com");

    CHECK_INT_EQ(
        lk_route_find_target(s, S("tiny-cow"), S("http://localhost:8001/user"), x.items, x.n, &t),
        0);
    CHECK_STR_EQ(t.service->name, "backend");
    CHECK_STR_EQ(t.url.data, "http://localhost:8001/user");
    lk_route_extra_release(&x);
    lk_route_target_release(&t);
    free_session(s);
}

/* ---- cookies (SPEC §3.8, §8.1.10) ------------------------------------------------ */

static void test_cookies(void)
{
    static const struct {
        struct lk_header h[3];
        size_t n;
        const char *want; /* NULL: leave as is */
    } cases[] = {
        { { H("Cookie", "a=b"), H("cookie", "c=d") }, 2, "a=b; c=d" },
        { { H("Cookie", "a=b; c=d") }, 1, NULL },
        { { H("Cookie", "a=b, c=d") }, 1, "a=b; c=d" },
        /* Do-nothing cases. */
        { { H("x", "y") }, 1, NULL },
        { { H("Cookie", "  ") }, 1, NULL },
        { { H("Cookie", "a=b"), H("Cookie", "") }, 2, NULL },
        { { H("Cookie", "a=b, "), H("Cookie", " ,") }, 2, NULL },   /* one part left */
        { { H("Cookie", "a=b"), H("Cookie", "c=\x80") }, 2, NULL }, /* invisible ignored */
        /* Parts are trimmed, empty ones dropped, ';' is not a separator. */
        { { H("Cookie", " a=b; x=y ,, "), H("COOKIE", "c=d"), H("Cookie", "e=f,g=h") },
          3,
          "a=b; x=y; c=d; e=f; g=h" },
    };
    for (size_t i = 0; i < LK_ARRAY_LEN(cases); i++) {
        struct lk_buf out = LK_BUF_INIT;
        bool replace = lk_headers_cookie_normalize(cases[i].h, cases[i].n, &out);
        CHECK_INT_EQ(replace, cases[i].want != NULL);
        CHECK_STR_EQ(out.data ? out.data : "", cases[i].want ? cases[i].want : "");
        lk_buf_release(&out);
    }
}

/* ---- CORS (SPEC §3.9) ------------------------------------------------------------- */

static void test_cors(void)
{
    static const char *const want[][2] = {
        { "Access-Control-Allow-Methods",
          "GET, POST, PUT, PATCH, DELETE, HEAD, CONNECT, TRACE, OPTIONS" },
        { "Access-Control-Allow-Origin", "*" },
        { "Access-Control-Allow-Headers", "*" },
        { "Access-Control-Max-Age", "86400" },
    };
    CHECK_INT_EQ(LK_HEADERS_N_CORS, LK_ARRAY_LEN(want));
    for (size_t i = 0; i < LK_ARRAY_LEN(want); i++) {
        CHECK_LKSTR(lk_headers_cors[i].name, want[i][0]);
        CHECK_LKSTR(lk_headers_cors[i].value, want[i][1]);
    }
}

/* ---- caching (SPEC §4.6) ---------------------------------------------------------- */

static void test_cache(void)
{
    struct lk_session *b = conf_b(), *a = conf_a();
    CHECK(lk_route_is_cacheable(S("GET"), b, S("/static/app.js")));
    CHECK(lk_route_is_cacheable(S("GET"), b, S("/x/static/y"))); /* unanchored */
    CHECK(!lk_route_is_cacheable(S("POST"), b, S("/static/app.js")));
    CHECK(!lk_route_is_cacheable(S("get"), b, S("/static/app.js")));
    CHECK(!lk_route_is_cacheable(S("GET"), b, S("/api/static")));
    CHECK(!lk_route_is_cacheable(S("GET"), a, S("/static/app.js"))); /* cache_routes null */

    static const struct {
        const char *url, *want;
    } cases[] = {
        { "http://localhost:8000/static/a.js?v=1",
          "http://tiny-cow.localhost:8000/static/a.js?v=1" },
        { "http://127.0.0.1:8000/x", "http://tiny-cow.example.com:8000/x" },
        { "https://[::1]/x", "https://tiny-cow.example.com/x" },
        { "https://cdn.example.org/a", "https://tiny-cow.cdn.example.org/a" },
    };
    for (size_t i = 0; i < LK_ARRAY_LEN(cases); i++) {
        struct lk_buf key = LK_BUF_INIT;
        CHECK_INT_EQ(lk_route_cache_key(lk_str_c(cases[i].url), S("tiny-cow"), &key), 0);
        CHECK_STR_EQ(key.data, cases[i].want);
        lk_buf_release(&key);
    }
    struct lk_buf key = LK_BUF_INIT;
    CHECK_INT_EQ(lk_route_cache_key(S("not a url"), S("tiny-cow"), &key), LK_EPARSE);
    CHECK_INT_EQ(key.len, 0);
    lk_buf_release(&key);
    free_session(a);
    free_session(b);
}

/* ---- all in one (SPEC §4.4 steps 2-5, §9 local-server vector) ---------------------- */

static void test_route_request(void)
{
    struct lk_session *s = new_session();
    add_service(s, "frontend", "http://127.0.0.1:4001", NULL, NULL);
    add_domain(s, "example.com", "frontend", NULL);
    struct fake_store st = { .name = "N", .session = s };
    unsigned char counter = 0;
    struct lk_rng rng = { counting_fill, &counter };
    struct lk_route_result r;

    /* §9: session from tracestate, domain from a bare referer, port kept. */
    static const struct lk_header hs[] = {
        H("tracestate", "linkup-session=N"),
        H("Referer", "example.com"),
        H("Cookie", "a=b"),
        H("Cookie", "c=d"),
    };
    lk_route_result_init(&r);
    CHECK_INT_EQ(lk_route_request(S("http://127.0.0.1:4000/x?q=1"), hs, LK_ARRAY_LEN(hs),
                                  fake_lookup, &st, &rng, &r, NULL),
                 0);
    CHECK_LKSTR(r.found.name, "N");
    CHECK_STR_EQ(r.target.url.data, "http://127.0.0.1:4001/x?q=1");
    CHECK_INT_EQ(r.extra.n, 3);
    CHECK_LKSTR(r.extra.items[0].name, "traceparent");
    CHECK_LKSTR(r.extra.items[1].value, "frontend");
    CHECK_LKSTR(r.extra.items[2].value, "N.127.0.0.1:4000");
    CHECK(r.replace_cookie);
    CHECK_STR_EQ(r.cookie.data, "a=b; c=d");
    /* DESIGN §7: where it went. */
    CHECK_LKSTR(lk_route_routed_to(&r, "worker"), "frontend; session=N; via=worker");
    CHECK_LKSTR(lk_route_routed_to(&r, "tunnel"), "frontend; session=N; via=tunnel");

    /* SPEC §3.10: the forwarded list keeps order, drops Host and the replaced
     * headers (both Cookie lines, an incoming traceparent), then appends the
     * replacements. */
    static const struct lk_header in[] = {
        H("Host", "127.0.0.1:4000"), H("Accept", "*/*"), H("Cookie", "a=b"),
        H("TRACEPARENT", "other"),   H("Cookie", "c=d"), H("X-Custom", "1"),
    };
    struct lk_header out[LK_ARRAY_LEN(in) + LK_ROUTE_MAX_EXTRA + 1];
    size_t n = lk_route_outgoing_headers(in, LK_ARRAY_LEN(in), &r, out);
    CHECK_INT_EQ(n, 2 + r.extra.n + 1);
    CHECK_LKSTR(out[0].name, "Accept");
    CHECK_LKSTR(out[1].name, "X-Custom");
    for (size_t i = 0; i < r.extra.n; i++)
        CHECK(lk_str_eq(out[2 + i].name, r.extra.items[i].name));
    CHECK_LKSTR(out[n - 1].name, "Cookie");
    CHECK_LKSTR(out[n - 1].value, "a=b; c=d");
    lk_route_result_release(&r);

    /* No session: 422. */
    lk_route_result_init(&r);
    CHECK_INT_EQ(
        lk_route_request(S("http://example.com/"), NULL, 0, fake_lookup, &st, &rng, &r, NULL),
        LK_ENOTFOUND);
    CHECK(r.found.session == NULL);
    lk_route_result_release(&r);

    /* Session but no target: 404. */
    lk_route_result_init(&r);
    CHECK_INT_EQ(
        lk_route_request(S("http://N.nowhere.org/"), NULL, 0, fake_lookup, &st, &rng, &r, NULL),
        LK_ENOTFOUND);
    CHECK(r.found.session == s);
    CHECK(!r.replace_cookie);
    lk_route_result_release(&r);
    free_session(s);
}

/* SPEC §3.1 through lk_route_request, which reads its fields in one pass:
 * names in any case, the last visible occurrence of each, a field whose
 * every occurrence is invisible absent; a name of the same length as one it
 * reads (x-forwarded-hxst) is not it. */
static void test_route_request_fields(void)
{
    struct lk_session *s = new_session();
    add_service(s, "frontend", "http://127.0.0.1:4001", NULL, NULL);
    add_service(s, "api", "http://127.0.0.1:4002", NULL, NULL);
    add_domain(s, "example.com", "frontend", NULL);
    struct fake_store st = { .name = "N", .session = s };
    unsigned char counter = 0;
    struct lk_rng rng = { counting_fill, &counter };
    static const struct lk_header hs[] = {
        H("X-FORWARDED-HOST", "M.example.com"),
        H("x-forwarded-host", "N.example.com"),
        H("x-forwarded-hxst", "Q.example.com"),
        H("X-Forwarded-Host", "gone.example.com\x01"),
        H("Linkup-Destination", "frontend"),
        H("LINKUP-DESTINATION", "api"),
        H("Baggage", "k=v"),
        H("traceparent", "bad\x7f"),
        H("TraceState", "a=1"),
    };
    struct lk_route_result r;
    lk_route_result_init(&r);
    CHECK_INT_EQ(lk_route_request(S("http://127.0.0.1:4000/y"), hs, LK_ARRAY_LEN(hs), fake_lookup,
                                  &st, &rng, &r, NULL),
                 0);
    CHECK_LKSTR(r.found.name, "N");
    CHECK_STR_EQ(r.target.url.data, "http://127.0.0.1:4002/y");
    /* traceparent absent (invisible): added; tracestate and baggage
     * extended; linkup-destination and x-forwarded-host present: kept */
    CHECK_INT_EQ(r.extra.n, 3);
    CHECK_LKSTR(r.extra.items[0].name, "traceparent");
    CHECK_LKSTR(r.extra.items[1].value, "a=1,linkup-session=N");
    CHECK_LKSTR(r.extra.items[2].value, "k=v,linkup-session=N");
    lk_route_result_release(&r);
    free_session(s);
}

/* The reused route result: handed out once at a time; a re-entrant caller
 * gets its own, released on the way back. */
static void test_route_slot(void)
{
    struct lk_route_slot slot;
    struct lk_route_result local, local2;
    lk_route_slot_init(&slot);
    struct lk_route_result *a = lk_route_slot_take(&slot, &local);
    CHECK(a == &slot.r);
    lk_buf_adds(&a->cookie, "kept capacity");
    struct lk_route_result *b = lk_route_slot_take(&slot, &local);
    CHECK(b == &local);
    lk_buf_adds(&b->cookie, "freed on give");
    lk_route_slot_give(&slot, b);
    lk_route_slot_give(&slot, a);
    CHECK(slot.r.cookie.cap > 0); /* the slot keeps its buffers */
    CHECK(lk_route_slot_take(&slot, &local2) == &slot.r);
    lk_route_slot_give(&slot, &slot.r);
    lk_route_slot_release(&slot);
}

int main(void)
{
    RUN(test_route_slot);
    RUN(test_route_request_fields);
    RUN(test_header_lookup);
    RUN(test_host);
    RUN(test_extra_invalid);
    RUN(test_first_subdomain);
    RUN(test_target_domain);
    RUN(test_find_domain);
    RUN(test_tracestate_session);
    RUN(test_tracestate_has);
    RUN(test_baggage_session);
    RUN(test_find_session_long_baggage_name);
    RUN(test_find_session_8_1_1);
    RUN(test_find_session_order);
    RUN(test_find_session_store_error_aborts);
    RUN(test_find_session_case_and_visibility);
    RUN(test_target_8_1_4);
    RUN(test_target_rules);
    RUN(test_target_locations_and_rewrites);
    RUN(test_target_plain_urls_match_full_parse);
    RUN(test_extra_headers);
    RUN(test_traceparent_from_rng);
    RUN(test_repeatable_rewritten_routes);
    RUN(test_cookies);
    RUN(test_cors);
    RUN(test_cache);
    RUN(test_route_request);
    return DONE();
}
