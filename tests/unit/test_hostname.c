/*
 * test_hostname.c - lib/proto/hostname: the one DNS-name rule of the worker's
 * --tunnel-domain/--tunnel-prefix and the local server's registered names.
 */
#include <string.h>

#include "harness.h"
#include "proto/hostname.h"

static bool valid(const char *s, unsigned flags)
{
    return lk_hostname_valid(s, strlen(s), flags);
}

/* "x" repeated n times, dots every 63 when dotted. */
static const char *run_of(char *buf, size_t n, bool dotted)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = dotted && i % 64 == 63 ? '.' : 'x';
    buf[n] = '\0';
    return buf;
}

static void test_both_rules(void)
{
    static const struct {
        const char *in;
        bool want;
    } cases[] = {
        { "localhost", true },
        { "tiny-cow.example.com", true },
        { "Tiny-Cow.EXAMPLE.com", true },
        { "127.0.0.1", true },
        { "a", true },
        { "-a.b-", true }, /* leading/trailing '-' were always taken */
        { "a--b.c", true },
        { "", false },
        { ".", false },
        { "a.", false }, /* trailing dot */
        { ".a", false },
        { "a..b", false },
        { "a b", false },
        { "a/b", false },
        { "a:80", false },
        { "a\r\nb", false },
        { "a*b", false },
        { "*.example.com", false },
        { "caf\xc3\xa9.fr", false },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        CHECK_INT_EQ(valid(cases[i].in, LK_HOSTNAME_HOST), cases[i].want);
        CHECK_INT_EQ(valid(cases[i].in, LK_HOSTNAME_UNDERSCORE), cases[i].want);
    }
    CHECK(!lk_hostname_valid("a\0b", 3, LK_HOSTNAME_UNDERSCORE));
    CHECK(lk_hostname_valid("ab.c", 2, LK_HOSTNAME_HOST)); /* only len bytes are read */
}

static void test_underscore_only_with_the_flag(void)
{
    CHECK(!valid("my_app.example.com", LK_HOSTNAME_HOST));
    CHECK(valid("my_app.example.com", LK_HOSTNAME_UNDERSCORE));
    CHECK(!valid("_srv._tcp.example.com", LK_HOSTNAME_HOST));
    CHECK(valid("_srv._tcp.example.com", LK_HOSTNAME_UNDERSCORE));
    CHECK(valid("_", LK_HOSTNAME_UNDERSCORE));
    CHECK(!valid("_.", LK_HOSTNAME_UNDERSCORE));
}

static void test_limits(void)
{
    char buf[300];
    CHECK(valid(run_of(buf, 63, false), LK_HOSTNAME_HOST));
    CHECK(!valid(run_of(buf, 64, false), LK_HOSTNAME_HOST));
    CHECK(!valid(run_of(buf, 64, false), LK_HOSTNAME_UNDERSCORE));
    /* 253 bytes: three labels of 63 and one of 61, dots between. */
    CHECK(valid(run_of(buf, 253, true), LK_HOSTNAME_HOST));
    CHECK(valid(run_of(buf, 253, true), LK_HOSTNAME_UNDERSCORE));
    CHECK(!valid(run_of(buf, 254, true), LK_HOSTNAME_HOST));
    CHECK(!valid(run_of(buf, 254, true), LK_HOSTNAME_UNDERSCORE));
    /* 253 bytes that end with a dot: the last label is empty. */
    run_of(buf, 253, true);
    buf[252] = '.';
    CHECK(!valid(buf, LK_HOSTNAME_HOST));
    CHECK(!valid(buf, LK_HOSTNAME_UNDERSCORE));
}

int main(void)
{
    RUN(test_both_rules);
    RUN(test_underscore_only_with_the_flag);
    RUN(test_limits);
    return DONE();
}
