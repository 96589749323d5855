/*
 * test_upsert.c - lib/core/upsert: the Named/Unnamed shapes of SPEC §2.3,
 * their error classes (400 / 422 / validation), conversion to a session and
 * re-serialisation.
 */
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/upsert.h"
#include "harness.h"

#define LISTS                                                                               \
    "\"services\":[{\"name\":\"frontend\",\"location\":\"https://frontend.example.com\"}]," \
    "\"domains\":[{\"domain\":\"example.com\",\"default_service\":\"frontend\"}]"
#define LISTS_OUT                                                                          \
    "\"services\":[{\"name\":\"frontend\",\"location\":\"https://frontend.example.com/\"," \
    "\"rewrites\":null}],\"domains\":[{\"domain\":\"example.com\",\"default_service\":"    \
    "\"frontend\",\"routes\":null}],\"cache_routes\":null"

static void test_shapes(void)
{
    static const struct {
        const char *json;
        bool named;
        const char *desired;
        enum lk_name_kind kind;
        const char *token; /* NULL: none */
        const char *reserialised;
    } cases[] = {
        { "{\"desired_name\":\"tiny-cow\",\"session_token\":\"AbC\"," LISTS
          ",\"cache_routes\":null}",
          true, "tiny-cow", LK_NAME_SIX_CHAR, "AbC",
          "{\"desired_name\":\"tiny-cow\",\"session_token\":\"AbC\"," LISTS_OUT "}" },
        { "{\"name_kind\":\"animal\",\"session_token\":null," LISTS "}", false, NULL,
          LK_NAME_ANIMAL, NULL, "{\"name_kind\":\"animal\",\"session_token\":null," LISTS_OUT "}" },
        { "{" LISTS "}", false, NULL, LK_NAME_SIX_CHAR, NULL,
          "{\"name_kind\":\"six_char\",\"session_token\":null," LISTS_OUT "}" },
        { "{\"name_kind\":\"six_char\",\"session_token\":\"x\"," LISTS "}", false, NULL,
          LK_NAME_SIX_CHAR, "x",
          "{\"name_kind\":\"six_char\",\"session_token\":\"x\"," LISTS_OUT "}" },
        /* Quirk: desired_name with a null token is Unnamed. */
        { "{\"desired_name\":\"tiny-cow\",\"session_token\":null," LISTS "}", false, NULL,
          LK_NAME_SIX_CHAR, NULL, NULL },
        /* desired_name of the wrong type just does not fit Named. */
        { "{\"desired_name\":5,\"name_kind\":\"animal\"," LISTS "}", false, NULL, LK_NAME_ANIMAL,
          NULL, NULL },
        /* Named wins and ignores an invalid name_kind. */
        { "{\"desired_name\":\"\",\"session_token\":\"t\",\"name_kind\":\"bogus\"," LISTS "}", true,
          "", LK_NAME_SIX_CHAR, "t", NULL },
        { "{\"session_token\":\"t\",\"kind\":\"whatever\",\"x\":1," LISTS ",\"cache_routes\":[]}",
          false, NULL, LK_NAME_SIX_CHAR, "t", NULL },
        /* serde ignores unknown keys even when repeated, at any depth, and
         * numbers of any size in them. */
        { "{\"x\":1,\"x\":{\"y\":2,\"y\":3},\"session_token\":\"t\","
          "\"services\":[{\"name\":\"frontend\",\"location\":\"https://frontend.example.com\","
          "\"z\":[],\"z\":null,\"rewrites\":[{\"source\":\"a\",\"target\":\"b\",\"q\":1,"
          "\"q\":2}]}],\"domains\":[{\"domain\":\"example.com\",\"default_service\":"
          "\"frontend\",\"w\":1,\"w\":2,\"routes\":[{\"path\":\"/\",\"service\":\"frontend\","
          "\"v\":1,\"v\":1}]}],\"big\":123456789012345678901234567890,\"neg\":-1e300}",
          false, NULL, LK_NAME_SIX_CHAR, "t", NULL },
        /* A field of one shape only, given twice, rules out that shape alone:
         * name_kind is unknown to Named, desired_name to Unnamed. */
        { "{\"desired_name\":\"n\",\"session_token\":\"t\",\"name_kind\":\"animal\","
          "\"name_kind\":\"six_char\"," LISTS "}",
          true, "n", LK_NAME_SIX_CHAR, "t", NULL },
        { "{\"desired_name\":\"n\",\"desired_name\":\"m\",\"session_token\":\"t\","
          "\"name_kind\":\"animal\"," LISTS "}",
          false, NULL, LK_NAME_ANIMAL, "t", NULL },
        /* An escaped spelling of an unknown key is still unknown. */
        { "{\"session_toke\\u006e2\":1,\"session_token2\":2,\"session_token\":\"t\"," LISTS "}",
          false, NULL, LK_NAME_SIX_CHAR, "t", NULL },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct lk_upsert req;
        struct lk_buf err = LK_BUF_INIT;
        CHECK_INT_EQ(lk_upsert_parse(cases[i].json, strlen(cases[i].json), &req, &err), 0);
        CHECK_INT_EQ(err.len, 0);
        CHECK_INT_EQ(req.named, cases[i].named);
        CHECK_STR_EQ(req.desired_name, cases[i].desired);
        CHECK_INT_EQ(req.name_kind, cases[i].kind);
        if (req.body)
            CHECK_STR_EQ(req.body->session_token, cases[i].token);
        if (cases[i].reserialised && req.body) {
            struct lk_buf out = LK_BUF_INIT;
            lk_upsert_to_json(&req, &out);
            CHECK_STR_EQ(out.data, cases[i].reserialised);
            lk_buf_release(&out);
        }
        lk_upsert_release(&req);
        lk_buf_release(&err);
    }
}

static void test_errors(void)
{
    static const struct {
        const char *json;
        int rc;
        const char *prefix;
    } cases[] = {
        { "", LK_EPARSE, "Failed to parse the request body as JSON: " },
        { "{\"services\":", LK_EPARSE, "Failed to parse the request body as JSON: " },
        { "{} x", LK_EPARSE, "Failed to parse the request body as JSON: " },
        { "[]", LK_EINVAL, "Failed to deserialize the JSON body into the target type: " },
        { "\"x\"", LK_EINVAL, "Failed to deserialize the JSON body into the target type: " },
        { "{}", LK_EINVAL, "Failed to deserialize the JSON body into the target type: " },
        { "{\"domains\":[]}", LK_EINVAL, "Failed to deserialize" },
        { "{\"services\":[],\"domains\":{}}", LK_EINVAL, "Failed to deserialize" },
        { "{\"name_kind\":\"Animal\"," LISTS "}", LK_EINVAL, "Failed to deserialize" },
        { "{\"session_token\":1," LISTS "}", LK_EINVAL, "Failed to deserialize" },
        { "{\"services\":[{\"name\":\"a\",\"location\":\"nope\"}],\"domains\":[]}", LK_EINVAL,
          "Failed to deserialize" },
        { "{\"services\":[],\"domains\":[],\"cache_routes\":[\"(?!x)\"]}", LK_EINVAL,
          "Failed to deserialize" },
        { "{\"desired_name\":\"n\",\"session_token\":\"t\",\"services\":[{\"name\":\"a\"}],"
          "\"domains\":[]}",
          LK_EINVAL, "Failed to deserialize" },
        /* A key given twice fits no shape (serde's "duplicate field"), at any depth. */
        { "{\"session_token\":\"t\",\"session_token\":\"u\"," LISTS "}", LK_EINVAL,
          "Failed to deserialize the JSON body into the target type: duplicate field" },
        { "{\"services\":[{\"name\":\"a\",\"name\":\"b\",\"location\":\"http://a/\"}],"
          "\"domains\":[]}",
          LK_EINVAL, "Failed to deserialize the JSON body into the target type: duplicate" },
        /* A known field given twice in either spelling, in any nested struct. */
        { "{\"session_token\":\"t\",\"session_\\u0074oken\":\"u\"," LISTS "}", LK_EINVAL,
          "Failed to deserialize the JSON body into the target type: duplicate field "
          "`session_token`" },
        { "{\"services\":[],\"domains\":[{\"domain\":\"d\",\"default_service\":\"a\","
          "\"routes\":[{\"path\":\"/\",\"service\":\"a\",\"path\":\"/x\"}]}]}",
          LK_EINVAL, "Failed to deserialize the JSON body into the target type: duplicate field" },
        { "{\"services\":[{\"name\":\"a\",\"location\":\"http://a/\",\"rewrites\":[{"
          "\"source\":\"a\",\"target\":\"b\",\"target\":\"c\"}]}],\"domains\":[]}",
          LK_EINVAL, "Failed to deserialize the JSON body into the target type: duplicate field" },
        { "{\"desired_name\":\"n\",\"session_token\":\"t\",\"services\":[],\"services\":[],"
          "\"domains\":[]}",
          LK_EINVAL, "Failed to deserialize the JSON body into the target type: duplicate field" },
        { "{\"x\":1e400," LISTS "}", LK_EPARSE, "Failed to parse the request body as JSON: " },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct lk_upsert req;
        struct lk_buf err = LK_BUF_INIT;
        CHECK_INT_EQ(lk_upsert_parse(cases[i].json, strlen(cases[i].json), &req, &err),
                     cases[i].rc);
        CHECK(err.len > 0 && strncmp(err.data, cases[i].prefix, strlen(cases[i].prefix)) == 0);
        CHECK(req.body == NULL);
        lk_upsert_release(&req);
        lk_buf_release(&err);
    }
}

/* jansson ends a number at a NUL byte; JSON (and serde_json) has no place
 * for a raw NUL, so such a body is malformed. */
static void test_nul_byte_is_malformed(void)
{
    static const char json[] = "{\"x\":[1\0]," LISTS "}";
    struct lk_upsert req;
    struct lk_buf err = LK_BUF_INIT;
    CHECK_INT_EQ(lk_upsert_parse(json, sizeof(json) - 1, &req, &err), LK_EPARSE);
    CHECK(strncmp(err.data, "Failed to parse the request body as JSON: ", 42) == 0);
    CHECK(req.body == NULL);
    lk_upsert_release(&req);
    lk_buf_release(&err);
    /* An escaped NUL is valid JSON, but names and tokens are C strings. */
    static const char esc[] = "{\"desired_name\":\"a\\u0000b\",\"session_token\":\"t\"," LISTS "}";
    CHECK_INT_EQ(lk_upsert_parse(esc, sizeof(esc) - 1, &req, &err), LK_EPARSE);
    CHECK(strstr(err.data, "Failed to parse the request body as JSON: \\u0000 in a string is "
                           "not supported at line 1") == err.data);
    lk_upsert_release(&req);
    lk_buf_release(&err);
}

/* serde_json stops at 128 nested arrays/objects: a syntax error (400), not
 * a shape error (422); 128 levels are still read. Brackets inside strings
 * do not count. */
static void test_nesting_limit(void)
{
    for (int depth = 127; depth <= 129; depth++) {
        struct lk_buf json = LK_BUF_INIT;
        lk_buf_adds(&json, "{\"s\":\"[[[{{\\\"\",\"x\":");
        for (int i = 1; i < depth; i++)
            lk_buf_adds(&json, "[");
        for (int i = 1; i < depth; i++)
            lk_buf_adds(&json, "]");
        lk_buf_adds(&json, "," LISTS "}");
        struct lk_upsert req;
        struct lk_buf err = LK_BUF_INIT;
        int rc = lk_upsert_parse(json.data, json.len, &req, &err);
        if (depth <= 128) {
            CHECK_INT_EQ(rc, 0);
        } else {
            CHECK_INT_EQ(rc, LK_EPARSE);
            CHECK(strstr(err.data, "Failed to parse the request body as JSON: recursion limit") ==
                  err.data);
        }
        lk_upsert_release(&req);
        lk_buf_release(&err);
        lk_buf_release(&json);
    }
}

static void test_to_session(void)
{
    static const struct {
        const char *json;
        enum lk_session_kind kind;
        int rc;
        const char *token_or_msg;
    } cases[] = {
        { "{\"name_kind\":\"animal\"," LISTS "}", LK_SESSION_TUNNELED, 0, "preview_session" },
        { "{\"desired_name\":\"n\",\"session_token\":\"abc\"," LISTS "}", LK_SESSION_PREVIEW, 0,
          "abc" },
        { "{\"services\":[],\"domains\":[]}", LK_SESSION_PREVIEW, LK_EVALIDATE, "empty config" },
        { "{\"services\":[{\"name\":\"a\",\"location\":\"ftp://h\"}],\"domains\":[{\"domain\":"
          "\"d\",\"default_service\":\"a\"}]}",
          LK_SESSION_PREVIEW, LK_EVALIDATE, "invalid url: ftp://h/" },
        { "{\"services\":[{\"name\":\"a\",\"location\":\"http://h\"}],\"domains\":[{\"domain\":"
          "\"d\",\"default_service\":\"b\"}]}",
          LK_SESSION_TUNNELED, LK_EVALIDATE, "no such service: b" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct lk_upsert req;
        struct lk_session *s = NULL;
        struct lk_buf err = LK_BUF_INIT;
        CHECK_INT_EQ(lk_upsert_parse(cases[i].json, strlen(cases[i].json), &req, NULL), 0);
        if (req.body == NULL)
            continue;
        CHECK_INT_EQ(lk_upsert_to_session(&req, cases[i].kind, &s, &err), cases[i].rc);
        if (cases[i].rc == 0 && s) {
            CHECK_INT_EQ(s->kind, cases[i].kind);
            CHECK_STR_EQ(s->session_token, cases[i].token_or_msg);
        } else {
            CHECK_STR_EQ(err.data, cases[i].token_or_msg);
            CHECK(s == NULL);
        }
        lk_session_free(s);
        lk_upsert_release(&req);
        lk_buf_release(&err);
    }
}

/* Requests built from a session (the CLI's path) re-parse to the same thing. */
static void test_init_from_session(void)
{
    struct lk_session *s = lk_session_new(LK_SESSION_TUNNELED, "tok");
    CHECK_INT_EQ(lk_session_add_service(s, "web", "http://localhost:3000", 21, NULL), 0);
    lk_session_add_domain(s, "example.com", "web");
    CHECK_INT_EQ(lk_session_add_cache_route(s, "/static/.*", NULL), 0);
    static const char *desired[] = { "tiny-cow", NULL };
    for (size_t i = 0; i < 2; i++) {
        struct lk_upsert req, again;
        struct lk_buf a = LK_BUF_INIT, b = LK_BUF_INIT;
        lk_upsert_init_from_session(&req, desired[i], LK_NAME_ANIMAL, s);
        lk_upsert_to_json(&req, &a);
        CHECK_INT_EQ(lk_upsert_parse(a.data, a.len, &again, NULL), 0);
        CHECK_INT_EQ(again.named, desired[i] != NULL);
        if (again.body)
            lk_upsert_to_json(&again, &b);
        CHECK_STR_EQ(a.data, b.data);
        lk_upsert_release(&again);
        lk_upsert_release(&req);
        lk_buf_release(&a);
        lk_buf_release(&b);
    }
    CHECK_STR_EQ(lk_name_kind_name(LK_NAME_ANIMAL), "animal");
    CHECK_STR_EQ(lk_name_kind_name(LK_NAME_SIX_CHAR), "six_char");
    lk_session_free(s);
}

int main(void)
{
    RUN(test_shapes);
    RUN(test_errors);
    RUN(test_nul_byte_is_malformed);
    RUN(test_nesting_limit);
    RUN(test_to_session);
    RUN(test_init_from_session);
    return DONE();
}
