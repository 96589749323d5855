/*
 * test_session.c - lib/core/session: JSON parse + validation (SPEC §2.1-2.2),
 * compact serialisation and escaping (§2.6 step 2), CONF-B (§8.1.7), the
 * canonical hash vectors (§2.6, §9), building and cloning, garbage input.
 */
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/session.h"
#include "harness.h"

#define CONF_B                                                                                     \
    "{\"session_token\":\"abcxyz\",\"services\":[{\"name\":\"frontend\",\"location\":"             \
    "\"http://localhost:8000\",\"rewrites\":[{\"source\":\"/foo/(.*)\",\"target\":\"/bar/$1\"}]}," \
    "{\"name\":\"backend\",\"location\":\"http://localhost:8001/\"}],\"domains\":[{\"domain\":"    \
    "\"example.com\",\"default_service\":\"frontend\",\"routes\":[{\"path\":\"/api/v1/.*\","       \
    "\"service\":\"backend\"}]},{\"domain\":\"api.example.com\",\"default_service\":\"backend\"}]" \
    ","                                                                                            \
    "\"cache_routes\":[\"/static/.*\"]}"

#define CONF_B_OUT                                                                                 \
    "{\"kind\":\"tunneled\",\"session_token\":\"abcxyz\",\"services\":[{\"name\":\"frontend\","    \
    "\"location\":\"http://localhost:8000/\",\"rewrites\":[{\"source\":\"/foo/(.*)\",\"target\":"  \
    "\"/bar/$1\"}]},{\"name\":\"backend\",\"location\":\"http://localhost:8001/\",\"rewrites\":"   \
    "null}],\"domains\":[{\"domain\":\"example.com\",\"default_service\":\"frontend\",\"routes\":" \
    "[{\"path\":\"/api/v1/.*\",\"service\":\"backend\"}]},{\"domain\":\"api.example.com\","        \
    "\"default_service\":\"backend\",\"routes\":null}],\"cache_routes\":[\"/static/.*\"]}"

/* Wraps services and domains JSON into a session document. */
#define DOC(services, domains)                                                                     \
    "{\"kind\":\"preview\",\"session_token\":\"t\",\"services\":" services ",\"domains\":" domains \
    "}"
#define SVC(name, loc) "{\"name\":\"" name "\",\"location\":\"" loc "\"}"
#define DOM(d, def)    "{\"domain\":\"" d "\",\"default_service\":\"" def "\"}"

static int parse(const char *json, struct lk_session **s, struct lk_buf *err)
{
    return lk_session_from_json(json, strlen(json), s, err);
}

static char *to_json(const struct lk_session *s)
{
    struct lk_buf out = LK_BUF_INIT;
    lk_session_to_json(s, &out);
    return lk_buf_detach(&out, NULL);
}

static void test_conf_b(void)
{
    struct lk_session *s = NULL;
    struct lk_buf err = LK_BUF_INIT;
    CHECK_INT_EQ(parse(CONF_B, &s, &err), 0);
    CHECK_INT_EQ(err.len, 0);
    if (s == NULL)
        return;
    CHECK_INT_EQ(s->kind, LK_SESSION_TUNNELED);
    CHECK_STR_EQ(s->session_token, "abcxyz");
    CHECK_INT_EQ(s->n_services, 2);
    CHECK_STR_EQ(s->services[0].location_str, "http://localhost:8000/");
    CHECK_INT_EQ(s->services[0].n_rewrites, 1);
    CHECK_STR_EQ(lk_regex_source(s->services[0].rewrites[0].source), "/foo/(.*)");
    CHECK_STR_EQ(s->services[0].rewrites[0].target, "/bar/$1");
    CHECK_STR_EQ(s->services[1].location_str, "http://localhost:8001/");
    CHECK(!s->services[1].has_rewrites);
    CHECK_INT_EQ(s->n_domains, 2);
    CHECK_STR_EQ(s->domains[0].default_service, "frontend");
    CHECK_INT_EQ(s->domains[0].n_routes, 1);
    CHECK_STR_EQ(lk_regex_source(s->domains[0].routes[0].path), "/api/v1/.*");
    CHECK_STR_EQ(s->domains[0].routes[0].service, "backend");
    CHECK_STR_EQ(s->domains[1].default_service, "backend");
    CHECK(!s->domains[1].has_routes);
    CHECK_INT_EQ(s->n_cache_routes, 1);
    CHECK_STR_EQ(lk_regex_source(s->cache_routes[0]), "/static/.*");

    char *out = to_json(s);
    CHECK_STR_EQ(out, CONF_B_OUT);
    struct lk_session *again = NULL;
    CHECK_INT_EQ(parse(out, &again, NULL), 0);
    if (again) {
        char *out2 = to_json(again);
        CHECK_STR_EQ(out2, out);
        free(out2);
    }
    free(out);
    lk_session_free(again);
    lk_session_free(s);
    lk_buf_release(&err);
}

/* §2.2 messages, one per case, in the documented order (first failure wins). */
static void test_validation(void)
{
    static const struct {
        const char *json;
        const char *msg;
    } cases[] = {
        { DOC("[]", "[]"), "empty config" },
        { DOC("[]", "[" DOM("x.com", "nope") "]"), "empty config" },
        { DOC("[" SVC("a", "ftp://x.com") "]", "[]"), "empty config" },
        { DOC("[" SVC("a", "ftp://x.com") "]", "[" DOM("x.com", "nope") "]"),
          "invalid url: ftp://x.com/" },
        { DOC("[" SVC("a", "http://ok.com") "," SVC("b", "ws://x.com:80") "]",
              "[" DOM("x.com", "nope") "]"),
          "invalid url: ws://x.com/" },
        { DOC("[" SVC("a", "HTTP://OK.com:80") "]", "[" DOM("x.com", "nope") "]"),
          "no such service: nope" },
        { DOC("[" SVC("a", "http://ok.com") "]",
              "[{\"domain\":\"x.com\",\"default_service\":\"a\",\"routes\":[{\"path\":\"/\","
              "\"service\":\"b\"}]}," DOM("y.com", "c") "]"),
          "no such service: b" },
        { DOC("[" SVC("a", "http://ok.com") "]", "[" DOM("x.com", "A") "]"), "no such service: A" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct lk_session *s = NULL;
        struct lk_buf err = LK_BUF_INIT;
        CHECK_INT_EQ(parse(cases[i].json, &s, &err), LK_EINVAL);
        CHECK_STR_EQ(err.data, cases[i].msg);
        CHECK(s == NULL);
        lk_buf_release(&err);
    }
}

/* Syntax, type, URL and regex errors are format errors with the prefix. */
static void test_format_errors(void)
{
    static const char *cases[] = {
        "",
        "{",
        "[]",
        "null",
        "{\"services\":[],\"domains\":[]}",
        "{\"session_token\":null,\"services\":[],\"domains\":[]}",
        "{\"kind\":\"local\",\"session_token\":\"t\",\"services\":[],\"domains\":[]}",
        "{\"kind\":null,\"session_token\":\"t\",\"services\":[],\"domains\":[]}",
        "{\"session_token\":\"t\",\"domains\":[]}",
        "{\"session_token\":\"t\",\"services\":{},\"domains\":[]}",
        "{\"session_token\":\"t\",\"services\":[],\"domains\":[],\"cache_routes\":\"x\"}",
        "{\"session_token\":\"t\",\"services\":[],\"domains\":[],\"cache_routes\":[1]}",
        "{\"session_token\":\"t\",\"services\":[],\"domains\":[],\"cache_routes\":[\"(\"]}",
        "{\"session_token\":\"t\",\"services\":[],\"domains\":[],\"cache_routes\":[\"(?=a)\"]}",
        DOC("[" SVC("a", "not a url") "]", "[" DOM("x.com", "a") "]"),
        DOC("[" SVC("a", "") "]", "[" DOM("x.com", "a") "]"),
        DOC("[{\"name\":\"a\"}]", "[" DOM("x.com", "a") "]"),
        DOC("[{\"name\":1,\"location\":\"http://x/\"}]", "[" DOM("x.com", "a") "]"),
        DOC("[{\"name\":\"a\",\"location\":\"http://x/\",\"rewrites\":[{\"source\":\"[\","
            "\"target\":\"\"}]}]",
            "[" DOM("x.com", "a") "]"),
        DOC("[{\"name\":\"a\",\"location\":\"http://x/\",\"rewrites\":{}}]",
            "[" DOM("x.com", "a") "]"),
        DOC("[" SVC("a", "http://x/") "]", "[{\"domain\":\"x.com\"}]"),
        DOC("[" SVC("a", "http://x/") "]",
            "[{\"domain\":\"x.com\",\"default_service\":\"a\",\"routes\":[{\"path\":\"/\"}]}]"),
        DOC("[" SVC("a", "http://x/") "]", "[" DOM("x.com", "a") "]") "garbage",
        "{\"session_token\":\"a\\u0000b\",\"services\":[],\"domains\":[]}",
        "{\"session_token\":\"\xff\",\"services\":[],\"domains\":[]}",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct lk_session *s = NULL;
        struct lk_buf err = LK_BUF_INIT;
        int rc = parse(cases[i], &s, &err);
        CHECK_INT_EQ(rc, LK_EPARSE);
        CHECK(strncmp(err.data, LK_SESSION_FORMAT_ERROR, strlen(LK_SESSION_FORMAT_ERROR)) == 0);
        CHECK(err.len > strlen(LK_SESSION_FORMAT_ERROR));
        if (rc != LK_EPARSE)
            fprintf(stderr, "  case %zu: %s\n", i, err.data);
        CHECK(s == NULL);
        lk_buf_release(&err);
    }
}

/* null, absent and [] survive parse -> serialise; absent becomes null. */
static void test_null_vs_empty(void)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        { "{\"kind\":\"preview\",\"session_token\":\"t\",\"services\":[{\"name\":\"a\","
          "\"location\":\"http://x\",\"rewrites\":[]}],\"domains\":[{\"domain\":\"d\","
          "\"default_service\":\"a\",\"routes\":[]}],\"cache_routes\":[]}",
          "{\"kind\":\"preview\",\"session_token\":\"t\",\"services\":[{\"name\":\"a\","
          "\"location\":\"http://x/\",\"rewrites\":[]}],\"domains\":[{\"domain\":\"d\","
          "\"default_service\":\"a\",\"routes\":[]}],\"cache_routes\":[]}" },
        { "{\"session_token\":\"t\",\"services\":[{\"name\":\"a\",\"location\":\"http://x\","
          "\"rewrites\":null}],\"domains\":[{\"domain\":\"d\",\"default_service\":\"a\","
          "\"routes\":null}],\"cache_routes\":null,\"extra\":{\"x\":[1,2]}}",
          "{\"kind\":\"tunneled\",\"session_token\":\"t\",\"services\":[{\"name\":\"a\","
          "\"location\":\"http://x/\",\"rewrites\":null}],\"domains\":[{\"domain\":\"d\","
          "\"default_service\":\"a\",\"routes\":null}],\"cache_routes\":null}" },
        { "{\"unknown\":1,\"session_token\":\"t\",\"domains\":[{\"routes\":null,\"x\":2,"
          "\"default_service\":\"a\",\"domain\":\"d\"}],\"services\":[{\"location\":"
          "\"https://X.COM:443/a/../b\",\"name\":\"a\"}],\"kind\":\"tunneled\"}",
          "{\"kind\":\"tunneled\",\"session_token\":\"t\",\"services\":[{\"name\":\"a\","
          "\"location\":\"https://x.com/b\",\"rewrites\":null}],\"domains\":[{\"domain\":\"d\","
          "\"default_service\":\"a\",\"routes\":null}],\"cache_routes\":null}" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct lk_session *s = NULL;
        struct lk_buf err = LK_BUF_INIT;
        CHECK_INT_EQ(parse(cases[i].in, &s, &err), 0);
        CHECK_INT_EQ(err.len, 0);
        if (s) {
            char *out = to_json(s);
            CHECK_STR_EQ(out, cases[i].out);
            free(out);
        }
        lk_session_free(s);
        lk_buf_release(&err);
    }
}

static void test_escaping(void)
{
    static const struct {
        const char *in;
        size_t len;
        const char *out;
    } cases[] = {
        { "plain", 5, "\"plain\"" },
        { "a\"b\\c", 5, "\"a\\\"b\\\\c\"" },
        { "\b\f\n\r\t", 5, "\"\\b\\f\\n\\r\\t\"" },
        { "\x01\x1f\x0b", 3, "\"\\u0001\\u001f\\u000b\"" },
        { "\0", 1, "\"\\u0000\"" },
        { "a/b", 3, "\"a/b\"" },
        { "\x7f", 1, "\"\x7f\"" },
        { "caf\xc3\xa9 \xe2\x82\xac", 9, "\"caf\xc3\xa9 \xe2\x82\xac\"" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct lk_buf out = LK_BUF_INIT;
        lk_json_add_string(&out, cases[i].in, cases[i].len);
        CHECK_STR_EQ(out.data, cases[i].out);
        lk_buf_release(&out);
    }
    /* End to end: escapes in a token and a regex survive a round trip. */
    const char *json = "{\"session_token\":\"\\u001F\\/x\\u00e9\",\"services\":[{\"name\":"
                       "\"a\\\"b\",\"location\":\"http://x\"}],\"domains\":[{\"domain\":\"d\","
                       "\"default_service\":\"a\\\"b\",\"routes\":[{\"path\":\"\\\\d+\\t\","
                       "\"service\":\"a\\\"b\"}]}]}";
    struct lk_session *s = NULL;
    CHECK_INT_EQ(parse(json, &s, NULL), 0);
    if (s) {
        char *out = to_json(s);
        CHECK_STR_EQ(out,
                     "{\"kind\":\"tunneled\",\"session_token\":\"\\u001f/x\xc3\xa9\","
                     "\"services\":[{\"name\":\"a\\\"b\",\"location\":\"http://x/\","
                     "\"rewrites\":null}],\"domains\":[{\"domain\":\"d\",\"default_service\":"
                     "\"a\\\"b\",\"routes\":[{\"path\":\"\\\\d+\\t\",\"service\":\"a\\\"b\"}]}],"
                     "\"cache_routes\":null}");
        free(out);
    }
    lk_session_free(s);
}

static void test_hash_vectors(void)
{
    static const struct {
        const char *json, *canonical, *hash6;
    } cases[] = {
        /* SPEC §9. */
        { DOC("[" SVC("frontend", "http://example.com") "]",
              "[" DOM("example.com", "frontend") "]"),
          NULL, "2551b2" },
        /* SPEC §2.6 / §8.1.8, services in both orders. */
        { "{\"kind\":\"preview\",\"session_token\":\"preview_session\",\"services\":[" SVC(
              "frontend",
              "https://frontend.example.com") "," SVC("backend",
                                                      "https://backend.example.com") "],"
                                                                                     "\"domains\":["
                                                                                     "{\"domain\":"
                                                                                     "\"example."
                                                                                     "com\","
                                                                                     "\"default_"
                                                                                     "service\":"
                                                                                     "\"frontend\","
                                                                                     "\"routes\":[{"
                                                                                     "\"path\":\"^/"
                                                                                     "api(?:/"
                                                                                     "|$)\","
                                                                                     "\"service\":"
                                                                                     "\"backend\"}]"
                                                                                     "}],\"cache_"
                                                                                     "routes\":"
                                                                                     "null}",
          "{\"kind\":\"preview\",\"session_token\":\"preview_session\",\"services\":[{\"name\":"
          "\"backend\",\"location\":\"https://backend.example.com/\",\"rewrites\":null},{\"name\":"
          "\"frontend\",\"location\":\"https://frontend.example.com/\",\"rewrites\":null}],"
          "\"domains\":[{\"domain\":\"example.com\",\"default_service\":\"frontend\",\"routes\":[{"
          "\"path\":\"^/api(?:/|$)\",\"service\":\"backend\"}]}],\"cache_routes\":null}",
          "45201d" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct lk_session *s = NULL;
        const char *json = cases[i].json;
        /* The first case needs the §9 token. */
        char buf[1024];
        if (i == 0) {
            const char *t = strstr(json, "\"t\"");
            snprintf(buf, sizeof(buf), "%.*s\"preview_session\"%s", (int)(t - json), json, t + 3);
            json = buf;
        }
        CHECK_INT_EQ(parse(json, &s, NULL), 0);
        if (s == NULL)
            continue;
        if (cases[i].canonical) {
            struct lk_buf canon = LK_BUF_INIT;
            lk_session_canonical_json(s, &canon);
            CHECK_STR_EQ(canon.data, cases[i].canonical);
            lk_buf_release(&canon);
        }
        char hex[65];
        lk_session_hash(s, hex);
        CHECK_MEM_EQ(hex, 6, cases[i].hash6, 6);
        CHECK_INT_EQ(strlen(hex), 64);
        lk_session_free(s);
    }
}

/* Sorting is stable and by bytes; routes and rewrites keep their order. */
static void test_canonical_order(void)
{
    struct lk_session *s = lk_session_new(LK_SESSION_PREVIEW, "t");
    CHECK_INT_EQ(lk_session_add_service(s, "b", "http://b2", 9, NULL), 0);
    CHECK_INT_EQ(lk_session_add_service(s, "B", "http://B", 8, NULL), 0);
    CHECK_INT_EQ(lk_session_add_service(s, "b", "http://b1", 9, NULL), 0);
    lk_session_add_domain(s, "z.com", "b");
    lk_session_add_domain(s, "a.com", "b");
    CHECK_INT_EQ(lk_session_add_route(s, 0, "/z", "b", NULL), 0);
    CHECK_INT_EQ(lk_session_add_route(s, 0, "/a", "b", NULL), 0);
    CHECK_INT_EQ(lk_session_add_cache_route(s, "b", NULL), 0);
    CHECK_INT_EQ(lk_session_add_cache_route(s, "a", NULL), 0);
    struct lk_buf canon = LK_BUF_INIT;
    lk_session_canonical_json(s, &canon);
    CHECK_STR_EQ(canon.data,
                 "{\"kind\":\"preview\",\"session_token\":\"t\",\"services\":[{\"name\":\"B\","
                 "\"location\":\"http://b/\",\"rewrites\":null},{\"name\":\"b\",\"location\":"
                 "\"http://b2/\",\"rewrites\":null},{\"name\":\"b\",\"location\":\"http://b1/\","
                 "\"rewrites\":null}],\"domains\":[{\"domain\":\"a.com\",\"default_service\":"
                 "\"b\",\"routes\":null},{\"domain\":\"z.com\",\"default_service\":\"b\","
                 "\"routes\":[{\"path\":\"/z\",\"service\":\"b\"},{\"path\":\"/a\",\"service\":"
                 "\"b\"}]}],\"cache_routes\":[\"a\",\"b\"]}");
    /* The session itself is not reordered. */
    CHECK_STR_EQ(s->services[0].location_str, "http://b2/");
    lk_buf_release(&canon);
    lk_session_free(s);
}

static void test_build_find_clone(void)
{
    struct lk_buf err = LK_BUF_INIT;
    struct lk_session *s = lk_session_new(LK_SESSION_TUNNELED, "tok");
    CHECK_INT_EQ(lk_session_validate(s, &err), LK_EINVAL);
    CHECK_STR_EQ(err.data, "empty config");
    lk_buf_reset(&err);
    CHECK_INT_EQ(lk_session_add_service(s, "web", "http://localhost:3000", 21, &err), 0);
    CHECK_INT_EQ(lk_session_add_service(s, "bad", "::", 2, &err), LK_EPARSE);
    CHECK(strncmp(err.data, LK_SESSION_FORMAT_ERROR, strlen(LK_SESSION_FORMAT_ERROR)) == 0);
    CHECK_INT_EQ(s->n_services, 1);
    lk_buf_reset(&err);
    CHECK_INT_EQ(lk_session_add_rewrite(s, 0, "^/old/(.*)$", "/new/$1", &err), 0);
    CHECK_INT_EQ(lk_session_add_rewrite(s, 0, "(?<=x)", "", &err), LK_EPARSE);
    CHECK_INT_EQ(s->services[0].n_rewrites, 1);
    lk_buf_reset(&err);
    lk_session_add_domain(s, "example.com", "web");
    lk_session_add_domain(s, "example.com", "web");
    CHECK_INT_EQ(lk_session_validate(s, &err), 0);

    const struct lk_session_service *svc = lk_session_find_service(s, LK_STR("web"));
    CHECK(svc == &s->services[0]);
    CHECK(lk_session_find_service(s, LK_STR("WEB")) == NULL);
    CHECK(lk_session_find_service(s, LK_STR("we")) == NULL);
    const struct lk_domain *d = lk_session_find_domain(s, LK_STR("example.com"));
    CHECK(d == &s->domains[0]); /* first match */
    CHECK(lk_session_find_domain(s, LK_STR("Example.com")) == NULL);

    struct lk_session *c = lk_session_clone(s);
    char *a = to_json(s);
    char *b = to_json(c);
    CHECK_STR_EQ(a, b);
    CHECK(c->services[0].rewrites[0].source != s->services[0].rewrites[0].source);
    free(a);
    free(b);

    /* References: the clone survives one extra free. */
    CHECK(lk_session_ref(c) == c);
    lk_session_free(c);
    CHECK_STR_EQ(c->session_token, "tok");
    lk_session_free(c);
    lk_session_free(s);
    lk_session_free(NULL);
    lk_buf_release(&err);
    CHECK_STR_EQ(lk_session_kind_name(LK_SESSION_PREVIEW), "preview");
    enum lk_session_kind k;
    CHECK_INT_EQ(lk_session_kind_parse(LK_STR("Preview"), &k), LK_EPARSE);
}

/* Garbage and a 1 MiB input give clean errors; a 1 MiB valid session parses. */
static void test_garbage(void)
{
    size_t n = 1 << 20;
    char *big = malloc(n + 1);
    unsigned x = 12345;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        big[i] = (char)(x >> 16);
    }
    struct lk_session *s = NULL;
    struct lk_buf err = LK_BUF_INIT;
    CHECK_INT_EQ(lk_session_from_json(big, n, &s, &err), LK_EPARSE);
    CHECK(s == NULL);
    lk_buf_release(&err);

    memset(big, '[', n);
    CHECK_INT_EQ(lk_session_from_json(big, n, &s, NULL), LK_EPARSE);

    /* A long token: 1 MiB of 'a' inside a valid document. */
    struct lk_buf doc = LK_BUF_INIT;
    lk_buf_adds(&doc, "{\"session_token\":\"");
    memset(big, 'a', n);
    lk_buf_add(&doc, big, n);
    lk_buf_adds(&doc,
                "\",\"services\":[" SVC("a", "http://x") "],\"domains\":[" DOM("d", "a") "]}");
    CHECK_INT_EQ(lk_session_from_json(doc.data, doc.len, &s, NULL), 0);
    if (s)
        CHECK_INT_EQ(strlen(s->session_token), n);
    lk_session_free(s);
    lk_buf_release(&doc);
    free(big);
}

int main(void)
{
    RUN(test_conf_b);
    RUN(test_validation);
    RUN(test_format_errors);
    RUN(test_null_vs_empty);
    RUN(test_escaping);
    RUN(test_hash_vectors);
    RUN(test_canonical_order);
    RUN(test_build_find_clone);
    RUN(test_garbage);
    return DONE();
}
