/*
 * test_session_auth.c - lib/core/session_auth: the secret, minted cookies
 * (round trip, expiry, tampering, malformed values), credentials in request
 * headers, stripping them from the outgoing headers, the sign-in `next`.
 */
#include <stdio.h>
#include <string.h>

#include "core/session_auth.h"
#include "harness.h"

#define SECRET "correct horse battery staple"

static struct lk_auth_key key(void)
{
    struct lk_auth_key k;
    lk_auth_key_init(&k, LK_STR(SECRET));
    return k;
}

static void test_secret(void)
{
    struct lk_auth_key k = key();
    CHECK(lk_auth_secret_ok(&k, LK_STR(SECRET)));
    CHECK(!lk_auth_secret_ok(&k, LK_STR(SECRET " ")));
    CHECK(!lk_auth_secret_ok(&k, LK_STR("")));
}

static void test_cookie_round_trip(void)
{
    struct lk_auth_key k = key();
    char v[LK_AUTH_COOKIE_MAX];
    size_t n = lk_auth_cookie_mint(&k, 1700000000, v);
    CHECK_INT_EQ(n, strlen(v));
    CHECK_INT_EQ(n, 3 + 10 + 1 + 64);
    CHECK(strncmp(v, "v1.1700000000.", 14) == 0);
    CHECK(lk_auth_cookie_ok(&k, (struct lk_str){ v, n }, 1699999999));
    /* Expired at and after its expiry. */
    CHECK(!lk_auth_cookie_ok(&k, (struct lk_str){ v, n }, 1700000000));
    CHECK(!lk_auth_cookie_ok(&k, (struct lk_str){ v, n }, 1800000000));
    /* Another secret's key refuses it. */
    struct lk_auth_key other;
    lk_auth_key_init(&other, LK_STR("another secret of enough length"));
    CHECK(!lk_auth_cookie_ok(&other, (struct lk_str){ v, n }, 0));
    /* The largest expiry fits. */
    n = lk_auth_cookie_mint(&k, UINT64_MAX, v);
    CHECK(n < LK_AUTH_COOKIE_MAX);
    CHECK(lk_auth_cookie_ok(&k, (struct lk_str){ v, n }, UINT64_MAX - 1));
}

static void test_cookie_tampered(void)
{
    struct lk_auth_key k = key();
    char v[LK_AUTH_COOKIE_MAX];
    size_t n = lk_auth_cookie_mint(&k, 1700000000, v);
    /* A later expiry with the old MAC. */
    char t[LK_AUTH_COOKIE_MAX];
    memcpy(t, v, n + 1);
    t[3] = '2';
    CHECK(!lk_auth_cookie_ok(&k, (struct lk_str){ t, n }, 0));
    /* One MAC digit changed, in each position. */
    for (size_t i = n - 64; i < n; i++) {
        memcpy(t, v, n + 1);
        t[i] = t[i] == '0' ? '1' : '0';
        CHECK(!lk_auth_cookie_ok(&k, (struct lk_str){ t, n }, 0));
    }
    /* Upper-case hex is not what was minted. */
    memcpy(t, v, n + 1);
    for (size_t i = n - 64; i < n; i++)
        t[i] = (char)(t[i] >= 'a' && t[i] <= 'f' ? t[i] - 32 : t[i]);
    if (strcmp(t, v) != 0)
        CHECK(!lk_auth_cookie_ok(&k, (struct lk_str){ t, n }, 0));
}

static void test_cookie_malformed(void)
{
    struct lk_auth_key k = key();
    char v[LK_AUTH_COOKIE_MAX];
    size_t n = lk_auth_cookie_mint(&k, 1700000000, v);
    char mac[65];
    memcpy(mac, v + n - 64, 65);
    const char *bad[] = {
        "",
        "v1.",
        "v1.1700000000",
        "v1.1700000000.",
        "v2.1700000000.0000000000000000000000000000000000000000000000000000000000000000",
        "v1..0000000000000000000000000000000000000000000000000000000000000000",
        "v1.-1.0000000000000000000000000000000000000000000000000000000000000000",
        "v1.+17.0000000000000000000000000000000000000000000000000000000000000000",
        "v1.99999999999999999999.0000000000000000000000000000000000000000000000000000000000000000",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK(!lk_auth_cookie_ok(&k, lk_str_c(bad[i]), 0));
    /* The right MAC glued to other expiry spellings. */
    char t[LK_AUTH_COOKIE_MAX * 2];
    snprintf(t, sizeof(t), "v1. 1700000000.%s", mac);
    CHECK(!lk_auth_cookie_ok(&k, lk_str_c(t), 0));
    snprintf(t, sizeof(t), "v1.01700000000.%s", mac);
    CHECK(!lk_auth_cookie_ok(&k, lk_str_c(t), 0));
    snprintf(t, sizeof(t), "%s0", v);
    CHECK(!lk_auth_cookie_ok(&k, lk_str_c(t), 0));
}

static struct lk_header hd(const char *name, const char *value)
{
    return (struct lk_header){ lk_str_c(name), lk_str_c(value) };
}

static void test_request_ok(void)
{
    struct lk_auth_key k = key();
    char v[LK_AUTH_COOKIE_MAX];
    lk_auth_cookie_mint(&k, 2000, v);
    char cookie[256];
    snprintf(cookie, sizeof(cookie), "a=b; " LK_AUTH_COOKIE "=%s; c=d", v);
    char comma[256];
    snprintf(comma, sizeof(comma), "a=b, " LK_AUTH_COOKIE "=%s", v);

    struct lk_header none[] = { hd("Host", "x"), hd("Cookie", "a=b") };
    CHECK(!lk_auth_request_ok(&k, none, 2, 1000));
    struct lk_header by_header[] = { hd("Host", "x"), hd("Linkup-Session-Auth", " " SECRET " ") };
    CHECK(lk_auth_request_ok(&k, by_header, 2, 1000));
    struct lk_header wrong[] = { hd("linkup-session-auth", "nope") };
    CHECK(!lk_auth_request_ok(&k, wrong, 1, 1000));
    struct lk_header by_cookie[] = { hd("cookie", "x=1"), hd("Cookie", cookie) };
    CHECK(lk_auth_request_ok(&k, by_cookie, 2, 1000));
    CHECK(!lk_auth_request_ok(&k, by_cookie, 2, 2000)); /* expired */
    struct lk_header by_comma[] = { hd("Cookie", comma) };
    CHECK(lk_auth_request_ok(&k, by_comma, 1, 1000));
    /* The cookie name is case-sensitive; a value in another header counts not. */
    char upper[256];
    snprintf(upper, sizeof(upper), "LINKUP_SESSION_AUTH=%s", v);
    struct lk_header wrong_name[] = { hd("Cookie", upper), hd("x-cookie", cookie) };
    CHECK(!lk_auth_request_ok(&k, wrong_name, 2, 1000));
    /* One bad cookie does not hide a good one after it. */
    char two[256];
    snprintf(two, sizeof(two), LK_AUTH_COOKIE "=junk; " LK_AUTH_COOKIE "=%s", v);
    struct lk_header both[] = { hd("Cookie", two) };
    CHECK(lk_auth_request_ok(&k, both, 1, 1000));
}

static void check_strip(const struct lk_header *in, size_t n, const char *want_cookie,
                        size_t want_n)
{
    struct lk_header out[8];
    struct lk_buf cookie = LK_BUF_INIT;
    size_t k = lk_auth_strip(in, n, out, &cookie);
    CHECK_INT_EQ(k, want_n);
    size_t n_cookie = 0;
    for (size_t i = 0; i < k; i++) {
        CHECK(!lk_str_ieq(out[i].name, LK_STR(LK_AUTH_HEADER)));
        if (lk_str_ieq(out[i].name, LK_STR("cookie"))) {
            n_cookie++;
            if (want_cookie != NULL)
                CHECK_MEM_EQ(out[i].value.ptr, out[i].value.len, want_cookie, strlen(want_cookie));
        }
    }
    CHECK_INT_EQ(n_cookie, want_cookie != NULL ? 1 : 0);
    lk_buf_release(&cookie);
}

static void test_strip(void)
{
    struct lk_header plain[] = { hd("Host", "x"), hd("Cookie", "a=b, c=d"), hd("Accept", "*/*") };
    check_strip(plain, 3, "a=b, c=d", 3); /* untouched: no credential in it */
    struct lk_header hdr[] = { hd("Linkup-Session-Auth", SECRET), hd("Accept", "*/*") };
    check_strip(hdr, 2, NULL, 1);
    struct lk_header mixed[] = { hd("Cookie", "a=b"), hd("Accept", "*/*"),
                                 hd("Cookie", " " LK_AUTH_COOKIE "=v1.x ;c=d,, e=f ") };
    check_strip(mixed, 3, "a=b; c=d; e=f", 2);
    struct lk_header only[] = { hd("Cookie", LK_AUTH_COOKIE "=v1.x"), hd("Accept", "*/*") };
    check_strip(only, 2, NULL, 1);
    /* The rewritten Cookie takes the place of the first one. */
    struct lk_header order[] = { hd("A", "1"), hd("Cookie", "a=b; " LK_AUTH_COOKIE "=z"),
                                 hd("B", "2") };
    struct lk_header out[3];
    struct lk_buf cookie = LK_BUF_INIT;
    CHECK_INT_EQ(lk_auth_strip(order, 3, out, &cookie), 3);
    CHECK(lk_str_eq(out[1].name, LK_STR("Cookie")));
    CHECK(lk_str_eq(out[1].value, LK_STR("a=b")));
    CHECK(lk_str_eq(out[2].name, LK_STR("B")));
    lk_buf_release(&cookie);
}

static void test_safe_next(void)
{
    static const struct {
        const char *in, *want;
    } cases[] = {
        { "/", "/" },
        { "/app?x=1#y", "/app?x=1#y" },
        { "", "/" },
        { "app", "/" },
        { "//evil.example", "/" },
        { "/\\evil.example", "/" },
        { "https://evil.example/", "/" },
        { "/a b", "/" },
        { "/a\r\nSet-Cookie: x", "/" },
        { "/caf\xc3\xa9", "/" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct lk_str got = lk_auth_safe_next(lk_str_c(cases[i].in));
        CHECK_MEM_EQ(got.ptr, got.len, cases[i].want, strlen(cases[i].want));
    }
    char long_next[LK_AUTH_NEXT_MAX + 2];
    memset(long_next, 'a', sizeof(long_next));
    long_next[0] = '/';
    CHECK(lk_str_eq(lk_auth_safe_next((struct lk_str){ long_next, LK_AUTH_NEXT_MAX }),
                    (struct lk_str){ long_next, LK_AUTH_NEXT_MAX }));
    CHECK(lk_str_eq(lk_auth_safe_next((struct lk_str){ long_next, LK_AUTH_NEXT_MAX + 1 }),
                    LK_STR("/")));
}

int main(void)
{
    RUN(test_secret);
    RUN(test_cookie_round_trip);
    RUN(test_cookie_tampered);
    RUN(test_cookie_malformed);
    RUN(test_request_ok);
    RUN(test_strip);
    RUN(test_safe_next);
    return DONE();
}
