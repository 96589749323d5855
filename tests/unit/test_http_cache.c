/*
 * test_http_cache.c - lib/proto/http_cache: Cache-Control directives,
 * delta-seconds, IMF-fixdate, Age and the storable lifetime of a response
 * (RFC 9111, SPEC §4.6).
 */
#include <string.h>

#include "harness.h"
#include "proto/http_cache.h"

#define S(s) lk_str_c(s)
#define H(n, v)              \
    {                        \
        LK_STR(n), LK_STR(v) \
    }
#define DEF 300000u /* the default lifetime of these tests, ms */

static void test_directives(void)
{
    struct lk_str arg;
    CHECK(lk_cc_directive(S("public, max-age=60"), S("max-age"), &arg));
    CHECK(lk_str_eq(arg, S("60")));
    CHECK(lk_cc_directive(S("MAX-AGE = 60 ,x"), S("max-age"), &arg));
    CHECK(lk_str_eq(arg, S("60")));
    CHECK(lk_cc_directive(S("max-age=0, max-age=60"), S("max-age"), &arg)); /* the first */
    CHECK(lk_str_eq(arg, S("0")));
    CHECK(lk_cc_directive(S("no-cache=\"a, b\", private"), S("private"), &arg));
    CHECK_INT_EQ((long)arg.len, 0);
    CHECK(lk_cc_directive(S("no-cache=\"a, b\", private"), S("no-cache"), &arg));
    CHECK(lk_str_eq(arg, S("a, b")));
    CHECK(!lk_cc_has(S("x=\"no-store, private\""), S("no-store"))); /* inside quotes */
    CHECK(!lk_cc_has(S("no-stored"), S("no-store")));
    CHECK(!lk_cc_has(S(""), S("no-store")));
    CHECK(lk_cc_has(S(",,no-store"), S("no-store")));
    CHECK(lk_cc_directive(S("x=\"unterminated"), S("x"), &arg));
    CHECK(lk_str_eq(arg, S("unterminated")));

    CHECK_INT_EQ(lk_cc_seconds(S("max-age=60"), S("max-age")), 60);
    CHECK_INT_EQ(lk_cc_seconds(S("max-age=\"60\""), S("max-age")), 60);
    CHECK_INT_EQ(lk_cc_seconds(S("public"), S("max-age")), -1);
    CHECK_INT_EQ(lk_cc_seconds(S("max-age"), S("max-age")), 0);
    CHECK_INT_EQ(lk_cc_delta_seconds(S("")), 0);
    CHECK_INT_EQ(lk_cc_delta_seconds(S("-1")), 0);
    CHECK_INT_EQ(lk_cc_delta_seconds(S("1e3")), 0);
    CHECK_INT_EQ(lk_cc_delta_seconds(S("99999999999999999999999")), LK_CC_SECONDS_MAX);
    CHECK_INT_EQ(lk_cc_delta_seconds(S("31536001")), LK_CC_SECONDS_MAX);
}

static void test_dates(void)
{
    int64_t t = 0;
    CHECK(lk_http_date_parse(S("Sun, 06 Nov 1994 08:49:37 GMT"), &t));
    CHECK_INT_EQ((long)t, 784111777L);
    CHECK(lk_http_date_parse(S(" Thu, 01 Jan 1970 00:00:00 GMT "), &t));
    CHECK_INT_EQ((long)t, 0);
    CHECK(lk_http_date_parse(S("Tue, 29 Feb 2000 23:59:60 GMT"), &t)); /* a leap second */
    CHECK_INT_EQ((long)t, 951868800L);
    CHECK(!lk_http_date_parse(S("Sunday, 06-Nov-94 08:49:37 GMT"), &t)); /* RFC 850 */
    CHECK(!lk_http_date_parse(S("Sun Nov  6 08:49:37 1994"), &t));       /* asctime */
    CHECK(!lk_http_date_parse(S("Sun, 06 Nov 1994 08:49:37 UTC"), &t));
    CHECK(!lk_http_date_parse(S("Sun, 06 Foo 1994 08:49:37 GMT"), &t));
    CHECK(!lk_http_date_parse(S("Sun, 32 Nov 1994 08:49:37 GMT"), &t));
    CHECK(!lk_http_date_parse(S("Sun, 06 Nov 1994 24:00:00 GMT"), &t));
    CHECK(!lk_http_date_parse(S("0"), &t));
}

static void test_age(void)
{
    const struct lk_http_header a[] = { H("Age", "10"), H("age", " 20 ") };
    CHECK_INT_EQ((long)lk_http_cache_age(a, 2), 20); /* the last */
    const struct lk_http_header b[] = { H("Age", "x") };
    CHECK_INT_EQ((long)lk_http_cache_age(b, 1), 0);
    const struct lk_http_header c[] = { H("Age", "99999999999") };
    CHECK_INT_EQ((long)lk_http_cache_age(c, 1), 2147483648L);
    CHECK_INT_EQ((long)lk_http_cache_age(NULL, 0), 0);
}

static void test_ttl(void)
{
    int64_t now = 784111777; /* Sun, 06 Nov 1994 08:49:37 GMT */
    CHECK_INT_EQ((long)lk_http_cache_ttl_ms(200, NULL, 0, now, DEF), (long)DEF);
    CHECK_INT_EQ((long)lk_http_cache_ttl_ms(206, NULL, 0, now, DEF), 0);
    CHECK_INT_EQ((long)lk_http_cache_ttl_ms(304, NULL, 0, now, DEF), 0);
    CHECK_INT_EQ((long)lk_http_cache_ttl_ms(500, NULL, 0, now, DEF), 0);
    CHECK_INT_EQ((long)lk_http_cache_ttl_ms(404, NULL, 0, now, DEF), (long)DEF);
    const struct lk_http_header cookie[] = { H("Set-Cookie", "a=1") };
    CHECK_INT_EQ((long)lk_http_cache_ttl_ms(200, cookie, 1, now, DEF), 0);
    static const char *refused[] = { "no-store",
                                     "private",
                                     "no-cache",
                                     "private=\"X-User\"",
                                     "no-cache=\"X-User\"",
                                     "max-age=60, NO-STORE" };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        const struct lk_http_header h[] = { { LK_STR("Cache-Control"), S(refused[i]) } };
        CHECK_INT_EQ((long)lk_http_cache_ttl_ms(200, h, 1, now, DEF), 0);
    }
    const struct lk_http_header two[] = { H("Cache-Control", "max-age=0"),
                                          H("cache-control", "max-age=60") };
    CHECK_INT_EQ((long)lk_http_cache_ttl_ms(200, two, 2, now, DEF), 0);
    const struct lk_http_header smax[] = { H("Cache-Control", "max-age=60, s-maxage=5") };
    CHECK_INT_EQ((long)lk_http_cache_ttl_ms(200, smax, 1, now, DEF), 5000);
    const struct lk_http_header aged[] = { H("Cache-Control", "max-age=60"), H("Age", "50") };
    CHECK_INT_EQ((long)lk_http_cache_ttl_ms(200, aged, 2, now, DEF), 10000);
    const struct lk_http_header stale[] = { H("Cache-Control", "max-age=60"), H("Age", "60") };
    CHECK_INT_EQ((long)lk_http_cache_ttl_ms(200, stale, 2, now, DEF), 0);
    /* Expires minus Date; without a valid Date, minus now. */
    const struct lk_http_header exp[] = { H("Date", "Sun, 06 Nov 1994 08:49:37 GMT"),
                                          H("Expires", "Sun, 06 Nov 1994 08:50:37 GMT") };
    CHECK_INT_EQ((long)lk_http_cache_ttl_ms(200, exp, 2, 0, DEF), 60000);
    const struct lk_http_header exp_now[] = { H("Expires", "Sun, 06 Nov 1994 08:49:47 GMT") };
    CHECK_INT_EQ((long)lk_http_cache_ttl_ms(200, exp_now, 1, now, DEF), 10000);
    const struct lk_http_header exp_bad[] = { H("Expires", "0") };
    CHECK_INT_EQ((long)lk_http_cache_ttl_ms(200, exp_bad, 1, now, DEF), 0);
    const struct lk_http_header exp_first[] = { H("Expires", "Sun, 06 Nov 1994 08:49:27 GMT"),
                                                H("Expires", "Sun, 06 Nov 1994 08:59:37 GMT") };
    CHECK_INT_EQ((long)lk_http_cache_ttl_ms(200, exp_first, 2, now, DEF), 0);
    /* max-age wins over Expires. */
    const struct lk_http_header both[] = { H("Expires", "0"), H("Cache-Control", "max-age=7") };
    CHECK_INT_EQ((long)lk_http_cache_ttl_ms(200, both, 2, now, DEF), 7000);
}

int main(void)
{
    RUN(test_directives);
    RUN(test_dates);
    RUN(test_age);
    RUN(test_ttl);
    return DONE();
}
