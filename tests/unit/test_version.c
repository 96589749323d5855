/*
 * test_version.c - lib/core/version: the 11 versioning tests of SPEC §8.1.9,
 * the quirky ordering of §3.11 and the worker's minimum-version rule (§4.2).
 */
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/version.h"
#include "harness.h"

static int parse(const char *s, struct lk_version *v)
{
    return lk_version_parse(lk_str_c(s), v, NULL);
}

/* <0, 0, >0 of lk_version_cmp on two strings that must parse. */
static int cmp(const char *a, const char *b)
{
    struct lk_version va, vb;
    CHECK_INT_EQ(parse(a, &va), 0);
    CHECK_INT_EQ(parse(b, &vb), 0);
    int c = lk_version_cmp(&va, &vb);
    lk_version_release(&va);
    lk_version_release(&vb);
    return c;
}

static void test_parse_ok(void)
{
    struct lk_version v;
    CHECK_INT_EQ(parse("1.2.3", &v), 0);
    CHECK_INT_EQ(v.major, 1);
    CHECK_INT_EQ(v.minor, 2);
    CHECK_INT_EQ(v.patch, 3);
    CHECK(!v.has_pre);
    CHECK_INT_EQ(lk_version_channel(&v), LK_CHANNEL_STABLE);
    lk_version_release(&v);

    CHECK_INT_EQ(parse("0.0.0-next-20250317-abc123", &v), 0);
    CHECK(v.has_pre);
    CHECK_STR_EQ(v.pre, "next-20250317-abc123");
    CHECK_STR_EQ(lk_channel_name(lk_version_channel(&v)), "beta");
    lk_version_release(&v);

    CHECK_INT_EQ(parse("65535.0.1-", &v), 0);
    CHECK_INT_EQ(v.major, 65535);
    CHECK(v.has_pre);
    CHECK_STR_EQ(v.pre, "");
    lk_version_release(&v);
}

static void test_parse_errors(void)
{
    static const char *bad[] = {
        "1.2",    "1.2.blah", "",       "1.2.3.4", "65536.0.0", "1..3", "a.b.c",
        "1.2.-3", "-1.2.3",   " 1.2.3", "1.2.3 ",  ".1.2",      "1.2.",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct lk_version v;
        struct lk_buf err = LK_BUF_INIT;
        struct lk_buf want = LK_BUF_INIT;
        lk_buf_addf(&want, "Failed to parse version '%s'", bad[i]);
        CHECK_INT_EQ(lk_version_parse(lk_str_c(bad[i]), &v, &err), LK_EPARSE);
        CHECK_STR_EQ(err.data, want.data);
        lk_buf_release(&err);
        lk_buf_release(&want);
    }
}

static void test_ordering(void)
{
    static const struct {
        const char *a, *b;
        int sign;
    } cases[] = {
        { "0.0.1", "0.0.0", 1 },
        { "0.1.0", "0.0.1", 1 },
        { "1.0.0", "0.1.2", 1 },
        { "1.2.3", "1.2.3", 0 },
        { "1.2.3", "0.0.0-next-20250317-abc123", 1 },
        { "0.0.0-next-20250317-abc123", "1.2.3", -1 },
        /* Quirk: two pre-releases compare by text only. */
        { "9.9.9-alpha", "0.0.1-beta", -1 },
        { "1.0.0-x", "2.0.0-x", 0 },
        { "2.10.0", "2.9.0", 1 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int c = cmp(cases[i].a, cases[i].b);
        CHECK_INT_EQ(c < 0 ? -1 : c > 0, cases[i].sign);
    }
}

static void test_equality(void)
{
    struct lk_version a, b, c;
    CHECK_INT_EQ(parse("1.2.3", &a), 0);
    CHECK_INT_EQ(parse("1.2.3", &b), 0);
    CHECK_INT_EQ(parse("1.2.3-x", &c), 0);
    CHECK(lk_version_eq(&a, &b));
    CHECK(lk_version_cmp(&a, &b) >= 0);
    CHECK(lk_version_cmp(&a, &b) <= 0);
    CHECK(!lk_version_eq(&a, &c));
    lk_version_release(&a);
    lk_version_release(&b);
    lk_version_release(&c);
    CHECK_INT_EQ(parse("1.0.0-x", &a), 0);
    CHECK_INT_EQ(parse("2.0.0-x", &b), 0);
    CHECK(!lk_version_eq(&a, &b)); /* cmp says 0, equality needs all parts */
    lk_version_release(&a);
    lk_version_release(&b);
}

static void test_display(void)
{
    static const char *vs[] = { "1.2.3", "1.2.3-next-20250317-abc123", "0.0.0-" };
    for (size_t i = 0; i < sizeof(vs) / sizeof(vs[0]); i++) {
        struct lk_version v;
        struct lk_buf out = LK_BUF_INIT;
        CHECK_INT_EQ(parse(vs[i], &v), 0);
        lk_version_format(&v, &out);
        CHECK_STR_EQ(out.data, vs[i]);
        lk_buf_release(&out);
        lk_version_release(&v);
    }
}

static void test_outdated(void)
{
    static const struct {
        const char *v;
        bool outdated;
    } cases[] = {
        { "2.0.9", true }, { "2.1.0", false },        { "0.0.0-next-x", false },
        { "1.9.9", true }, { "3.0.0", false },        { "2.1.1", false },
        { "0.0.1", true }, { "1.0.0-beta.1", false },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct lk_version v;
        CHECK_INT_EQ(parse(cases[i].v, &v), 0);
        CHECK_INT_EQ(lk_version_is_outdated(&v), cases[i].outdated);
        lk_version_release(&v);
    }
    CHECK_STR_EQ(LK_MIN_CLIENT_VERSION, "2.1.0");
}

int main(void)
{
    RUN(test_parse_ok);
    RUN(test_parse_errors);
    RUN(test_ordering);
    RUN(test_equality);
    RUN(test_display);
    RUN(test_outdated);
    return DONE();
}
