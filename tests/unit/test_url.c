/*
 * test_url.c - URL parsing and WHATWG-style normalisation (lib/core/url.h).
 */
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/url.h"
#include "harness.h"

static void test_normalize(void)
{
    static const struct {
        const char *in, *want;
    } cases[] = {
        { "http://localhost:8000", "http://localhost:8000/" },
        { "https://w.example.com", "https://w.example.com/" },
        { "HTTPS://W.Example.COM/Path", "https://w.example.com/Path" },
        { "https://x:443/a", "https://x/a" },
        { "http://x:80/", "http://x/" },
        { "http://x:0080/", "http://x/" },
        { "http://x:443/", "http://x:443/" },
        { "ws://x:80/", "ws://x/" },
        { "wss://x:443/s", "wss://x/s" },
        { "http://x:/", "http://x/" },
        { "http://x/a/./b/../c", "http://x/a/c" },
        { "http://x/a/b/..", "http://x/a/" },
        { "http://x/a/b/.", "http://x/a/b/" },
        { "http://x/../../a", "http://x/a" },
        { "http://x/a/%2e%2E/b", "http://x/b" },
        { "http://x/a/.%2e/b", "http://x/b" },
        { "http://x/a b", "http://x/a%20b" },
        { "http://x/a\"<>`{}", "http://x/a%22%3C%3E%60%7B%7D" },
        { "http://x/\xC3\xA9", "http://x/%C3%A9" },
        { "http://x/a?b c#d e", "http://x/a?b%20c#d%20e" },
        { "http://x/?q='1'", "http://x/?q=%271%27" },
        { "http://x/p?a=1&b=2#frag", "http://x/p?a=1&b=2#frag" },
        { "http://x?", "http://x/?" },
        { "http://x#", "http://x/#" },
        { "http://[::1]:8080/", "http://[::1]:8080/" },
        { "http://[::1]", "http://[::1]/" },
        { "http://[::FFFF:1.2.3.4]:80/", "http://[::ffff:102:304]/" },
        { "http://[0:0::1]/", "http://[::1]/" },
        { "http://[::]/", "http://[::]/" },
        { "http://[1:0:0:2::3]/", "http://[1:0:0:2::3]/" },
        { "http://[1:0:0:2:0:0:3:4]/", "http://[1::2:0:0:3:4]/" },
        { "http://[1:2:3:4:5:6:7::]/", "http://[1:2:3:4:5:6:7:0]/" },
        { "http://[ABCD:EF01::]/", "http://[abcd:ef01::]/" },
        { "  http://x/a\t\n  ", "http://x/a" },
        { "http://x/a\tb\nc", "http://x/abc" },
        { "http:\\\\x\\a\\b", "http://x/a/b" },
        { "http:x/a", "http://x/a" },
        { "http:///x/", "http://x/" },
        { "http://user:pass@x/", "http://user:pass@x/" },
        { "http://user@x/", "http://user@x/" },
        { "http://u s:p@x/", "http://u%20s:p@x/" },
        { "http://a@b@x/", "http://a%40b@x/" },
        { "http://user:@x/", "http://user@x/" },
        { "http://@x/", "http://x/" },
        { "foo://h:80/p", "foo://h:80/p" },
        { "mailto:a/../b", "mailto:a/../b" },
        { "foo:/.//p", "foo:/.//p" },
        /* WHATWG domain to ASCII: UTS #46 non-transitional (libidn2). */
        { "http://b\u00fccher.example/", "http://xn--bcher-kva.example/" },
        { "http://B\u00dcCHER.Example:8080", "http://xn--bcher-kva.example:8080/" },
        { "http://b%C3%BCcher.example/", "http://xn--bcher-kva.example/" },
        { "http://%C3%A9.com/", "http://xn--9ca.com/" },
        { "http://fa\u00df.de/", "http://xn--fa-hia.de/" },
        { "http://\uff25xample.com/", "http://example.com/" },
        { "http://\uff11\uff12\uff17.0.0.1/", "http://127.0.0.1/" },
        { "http://xn--bcher-kva.example/", "http://xn--bcher-kva.example/" },
        /* "file" is special to WHATWG: always "//", a path from "/". */
        { "file:///tmp", "file:///tmp" },
        { "FILE:///TMP/a/../b", "file:///TMP/b" },
        { "file:/tmp", "file:///tmp" },
        { "file:tmp", "file:///tmp" },
        { "file://host/x", "file://host/x" },
        { "http://127.0.0.1:3000", "http://127.0.0.1:3000/" },
        /* WHATWG host parser: percent-decoded domains, IPv4 numbers. */
        { "http://ex%41mple.com/", "http://example.com/" },
        { "http://127.1", "http://127.0.0.1/" },
        { "http://0x7f.1/", "http://127.0.0.1/" },
        { "http://0X7F.0.0.01:8080", "http://127.0.0.1:8080/" },
        { "http://2130706433/", "http://127.0.0.1/" },
        { "http://4294967295/", "http://255.255.255.255/" },
        { "http://0/", "http://0.0.0.0/" },
        { "http://10.0.200.9:1/", "http://10.0.200.9:1/" },
        { "http://0300.0250.1.1./", "http://192.168.1.1/" },
        { "http://0x/", "http://0.0.0.0/" },
        { "http://1.2.3.4.example/", "http://1.2.3.4.example/" },
        { "http://x.0xg/", "http://x.0xg/" },
        { "foo://127.1/", "foo://127.1/" },
        /* A non-special URL's host is opaque: case kept, '%' allowed, C0
         * controls and non-ASCII percent-encoded (WHATWG opaque-host parser). */
        { "foo://H:80/p", "foo://H:80/p" },
        { "git://GitHub.Example/x", "git://GitHub.Example/x" },
        { "foo://a%41b/", "foo://a%41b/" },
        { "foo://\xc3\xa9/", "foo://%C3%A9/" },
        { "foo://a\x01\x7f/", "foo://a%01%7F/" },
    };
    for (size_t i = 0; i < LK_ARRAY_LEN(cases); i++) {
        struct lk_buf out = LK_BUF_INIT;
        const char *why = NULL;
        int rc = lk_url_normalize(cases[i].in, strlen(cases[i].in), &out, &why);
        CHECK_INT_EQ(rc, 0);
        CHECK_STR_EQ(out.data, cases[i].want);
        if (rc != 0)
            fprintf(stderr, "  %s: %s\n", cases[i].in, why);
        lk_buf_release(&out);
    }
}

static void test_reject(void)
{
    static const struct {
        const char *in, *why;
    } cases[] = {
        { "", "relative URL without a base" },
        { "localhost", "relative URL without a base" },
        { "/path/only", "relative URL without a base" },
        { "1http://x/", "relative URL without a base" },
        { "http://", "empty host" },
        { "http:///", "empty host" },
        { "http://:80/", "empty host" },
        { "http://user@/", "empty host" },
        { "http://x:65536/", "invalid port number" },
        { "http://x:99999999999999999999/", "invalid port number" },
        { "http://x:8a/", "invalid port number" },
        { "http://x:-1/", "invalid port number" },
        { "http://a b/", "invalid host character" },
        { "http://a<b/", "invalid host character" },
        { "http://a^b/", "invalid host character" },
        { "http://a%20b/", "invalid host character" },
        { "http://a%2fb/", "invalid host character" },
        { "http://a%25b/", "invalid host character" },
        { "http://a%00b/", "invalid host character" },
        /* The opaque host's forbidden code points (WHATWG). */
        { "foo://a b/", "invalid host character" },
        { "foo://a<b/", "invalid host character" },
        { "foo://a|b/", "invalid host character" },
        { "foo://a^b/", "invalid host character" },
        { "http://\xFF.com/", "invalid international domain name" },
        { "http://a\xC3.com/", "invalid international domain name" },
        { "http://1.2.3.4.5/", "invalid IPv4 address" },
        { "http://1.256.3.4/", "invalid IPv4 address" },
        { "http://1.2.65536/", "invalid IPv4 address" },
        { "http://4294967296/", "invalid IPv4 address" },
        { "http://x.09/", "invalid IPv4 address" },
        { "http://a.b.1/", "invalid IPv4 address" },
        { "http://1..2/", "invalid IPv4 address" },
        { "http://[::1/", "unterminated IPv6 address" },
        { "http://[::g]/", "invalid IPv6 address" },
        { "http://[]/", "invalid IPv6 address" },
        { "http://[1:2:3:4:5:6:7:8:9]/", "invalid IPv6 address" },
        { "http://[1::2::3]/", "invalid IPv6 address" },
        { "http://[::1]x/", "invalid host" },
        { "http://[:1]/", "invalid IPv6 address" },
        { "http://[1:]/", "invalid IPv6 address" },
        { "http://[12345::]/", "invalid IPv6 address" },
        { "http://[::1.2.3]/", "invalid IPv6 address" },
        { "http://[::1.2.3.04]/", "invalid IPv6 address" },
        { "http://[::1.2.3.256]/", "invalid IPv6 address" },
        { "http://[1:2:3:4:5:6:7:1.2.3.4]/", "invalid IPv6 address" },
    };
    for (size_t i = 0; i < LK_ARRAY_LEN(cases); i++) {
        struct lk_url u = { 0 };
        const char *why = NULL;
        int rc = lk_url_parse(cases[i].in, strlen(cases[i].in), &u, &why);
        CHECK_INT_EQ(rc, LK_EPARSE);
        CHECK_STR_EQ(why, cases[i].why);
        CHECK(u.scheme == NULL);
        if (rc != LK_EPARSE)
            fprintf(stderr, "  accepted %s\n", cases[i].in);
        lk_url_release(&u);
    }
}

static void test_fields(void)
{
    static const char in[] = "HTTP://Us:Pw@Host.Example:8080/a/../b?x=1#top";
    struct lk_url u;
    CHECK_INT_EQ(lk_url_parse(in, strlen(in), &u, NULL), 0);
    CHECK_STR_EQ(u.scheme, "http");
    CHECK_STR_EQ(u.userinfo, "Us:Pw");
    CHECK_STR_EQ(u.host, "host.example");
    CHECK_INT_EQ(u.port, 8080);
    CHECK_STR_EQ(u.path, "/b");
    CHECK_STR_EQ(u.query, "x=1");
    CHECK_STR_EQ(u.fragment, "top");
    CHECK_INT_EQ(lk_url_effective_port(&u), 8080);
    CHECK(lk_url_is_http(&u));
    struct lk_buf hp = LK_BUF_INIT;
    lk_url_host_port(&u, &hp);
    CHECK_STR_EQ(hp.data, "host.example:8080");
    struct lk_url c;
    lk_url_copy(&c, &u);
    lk_url_release(&u);
    struct lk_buf s = LK_BUF_INIT;
    lk_url_serialize(&c, &s);
    CHECK_STR_EQ(s.data, "http://Us:Pw@host.example:8080/b?x=1#top");
    lk_url_release(&c);
    lk_buf_release(&hp);
    lk_buf_release(&s);

    static const char in2[] = "https://x.test";
    CHECK_INT_EQ(lk_url_parse(in2, strlen(in2), &u, NULL), 0);
    CHECK_INT_EQ(u.port, -1);
    CHECK_INT_EQ(lk_url_effective_port(&u), 443);
    CHECK(u.query == NULL);
    CHECK(u.fragment == NULL);
    CHECK(u.userinfo == NULL);
    lk_buf_init(&hp, 0);
    lk_url_host_port(&u, &hp);
    CHECK_STR_EQ(hp.data, "x.test");
    lk_buf_release(&hp);
    lk_url_release(&u);

    static const char in3[] = "ftp://x/";
    CHECK_INT_EQ(lk_url_parse(in3, strlen(in3), &u, NULL), 0);
    CHECK(!lk_url_is_http(&u));
    lk_url_release(&u);
}

static void test_default_port(void)
{
    CHECK_INT_EQ(lk_url_default_port("http"), 80);
    CHECK_INT_EQ(lk_url_default_port("ws"), 80);
    CHECK_INT_EQ(lk_url_default_port("https"), 443);
    CHECK_INT_EQ(lk_url_default_port("wss"), 443);
    CHECK_INT_EQ(lk_url_default_port("gopher"), -1);
}

/* Normalising is idempotent: the output of normalize normalises to itself. */
/* CHECK(cond), naming the input it failed for. */
#define CHECK_FOR(cond, what)                           \
    do {                                                \
        if (!(cond))                                    \
            fprintf(stderr, "  for \"%s\":\n", (what)); \
        CHECK(cond);                                    \
    } while (0)

static bool same_field(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* lk_url_split_plain: takes exactly the URLs it claims to, and gives for each
 * what lk_url_parse gives. */
static void test_split_plain(void)
{
    static const struct {
        const char *in;
        bool plain;
    } cases[] = {
        { "http://localhost:8080/", true },
        { "http://localhost:80/a/b?x=1&y=%20", true },
        { "https://api.example.com/v1/items?", true },
        { "https://api.example.com:443/", true },
        { "http://127.0.0.1:3000/x", true },
        { "http://10.0.0.255/", true },
        { "http://h:/p", true },
        { "http://h:0/p", true },
        { "http://a-b.c-d.example/~u/!$&()*+,;=:@-._", true },
        { "http://localhost:8080", false }, /* no path: the parse adds "/" */
        { "http://LocalHost/", false },     /* upper case: the parse lowers it */
        { "http://127.1/", false },         /* IPv4 shorthand */
        { "http://0x7f.0.0.1/", false },    /* hex IPv4 */
        { "http://010.0.0.1/", false },     /* octal IPv4 */
        { "http://256.0.0.1/", false },     /* invalid IPv4 */
        { "http://1.2.3.4.5/", false },     /* ends in a number */
        { "http://example.123/", false },   /* ends in a number */
        { "http://h/a/../b", false },       /* dot segment */
        { "http://h/a/./b", false },        /* dot segment */
        { "http://h/%2e%2E/b", false },     /* percent-encoded */
        { "http://h/a b", false },          /* encoded by the parse */
        { "http://h/a\\b", false },         /* "\\" becomes "/" */
        { "http://h/a#f", false },          /* fragment */
        { "http://h/?a#f", false },         /* fragment */
        { "http://u:p@h/", false },         /* userinfo */
        { "http://[::1]:8080/", false },    /* IPv6 */
        { "http://h:65536/", false },       /* bad port */
        { "http://h:000080/", false },      /* six digits: the parse decides */
        { "ws://h/", false },
        { "HTTP://h/", false },
        { "http:/h/", false },
        { "", false },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char mem[256];
        struct lk_url a, b;
        struct lk_str in = lk_str_c(cases[i].in);
        bool plain = lk_url_split_plain(in, mem, sizeof(mem), &a);
        CHECK_FOR(plain == cases[i].plain, cases[i].in);
        if (!plain)
            continue;
        CHECK_INT_EQ(lk_url_parse(in.ptr, in.len, &b, NULL), 0);
        CHECK_FOR(same_field(a.scheme, b.scheme) && same_field(a.userinfo, b.userinfo) &&
                      same_field(a.host, b.host) && a.port == b.port &&
                      same_field(a.path, b.path) && same_field(a.query, b.query) &&
                      same_field(a.fragment, b.fragment),
                  cases[i].in);
        lk_url_release(&b);
    }
    /* Every byte value in a path: the plain ones are split, and whatever is
     * split equals the parse. */
    static const char plain_path[] = "-._~!$&()*+,;=:@/0123456789"
                                     "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    int wrong = 0;
    for (int c = 1; c < 256; c++) {
        char in[32], mem[64];
        int n = snprintf(in, sizeof(in), "http://h/a%cb", c);
        struct lk_url a, b;
        bool split = lk_url_split_plain((struct lk_str){ in, (size_t)n }, mem, sizeof(mem), &a);
        bool plain = strchr(plain_path, c) != NULL;
        if (split != plain && c != '?') /* "?" starts a query: split, and right */
            wrong++;
        if (split) {
            if (lk_url_parse(in, (size_t)n, &b, NULL) != 0)
                wrong++;
            else if (!same_field(a.path, b.path) || !same_field(a.query, b.query))
                wrong++;
            else
                lk_url_release(&b);
        }
    }
    CHECK_INT_EQ(wrong, 0);
    /* Too small a buffer: not split (the caller parses). */
    char tiny[8];
    struct lk_url u;
    CHECK(!lk_url_split_plain(LK_STR("http://localhost/"), tiny, sizeof(tiny), &u));
}

static void test_idempotent(void)
{
    static const char *const inputs[] = {
        "HTTP://X:80/a/./b/../%2e/c d?q r#f g",
        "foo:/.//p",
        "foo://h//p",
        "http://a@b@x/",
        "http://[::1]:1/",
        "mailto:x/../y",
        "http://x/a%2",
        "foo:",
    };
    for (size_t i = 0; i < LK_ARRAY_LEN(inputs); i++) {
        struct lk_buf once = LK_BUF_INIT, twice = LK_BUF_INIT;
        CHECK_INT_EQ(lk_url_normalize(inputs[i], strlen(inputs[i]), &once, NULL), 0);
        CHECK_INT_EQ(lk_url_normalize(once.data, once.len, &twice, NULL), 0);
        CHECK_STR_EQ(twice.data, once.data);
        lk_buf_release(&once);
        lk_buf_release(&twice);
    }
}

int main(void)
{
    RUN(test_normalize);
    RUN(test_reject);
    RUN(test_fields);
    RUN(test_default_port);
    RUN(test_idempotent);
    RUN(test_split_plain);
    return DONE();
}
