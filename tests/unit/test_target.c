/*
 * test_target.c - lib/proto/target: the one request-target splitter of the
 * worker (endpoint paths, tunnel hostnames, the SPEC §4.4 request URL).
 */
#include <string.h>

#include "harness.h"
#include "proto/target.h"

static void check_part(struct lk_str got, const char *want)
{
    if (want == NULL) {
        CHECK(got.ptr == NULL && got.len == 0);
        return;
    }
    CHECK(got.ptr != NULL);
    CHECK_MEM_EQ(got.ptr, got.len, want, strlen(want));
}

static void test_split(void)
{
    static const struct {
        const char *in;
        bool absolute;
        const char *scheme, *authority, *path, *query; /* query NULL: no '?' */
    } cases[] = {
        /* origin-form */
        { "/", false, "", "", "/", NULL },
        { "/a/b?x=1&y", false, "", "", "/a/b", "x=1&y" },
        { "/a?", false, "", "", "/a", "" },
        { "/a?b?c", false, "", "", "/a", "b?c" },
        { "/x?u=http://h/", false, "", "", "/x", "u=http://h/" },
        { "/linkup/tunnel#x", false, "", "", "/linkup/tunnel#x", NULL },
        { "", false, "", "", "", NULL },
        /* absolute-form */
        { "http://h", true, "http", "h", "", NULL },
        { "http://h?x", true, "http", "h", "", "x" },
        { "http://h:8080/p?q", true, "http", "h:8080", "/p", "q" },
        { "https://tiny-cow.example.com/x/y", true, "https", "tiny-cow.example.com", "/x/y", NULL },
        { "https://h.example.com:443/?", true, "https", "h.example.com:443", "/", "" },
        { "HTTP://H/X", true, "HTTP", "H", "/X", NULL },
        { "hTtPs://h/", true, "hTtPs", "h", "/", NULL },
        { "http://u:p@h:1/x", true, "http", "u:p@h:1", "/x", NULL },
        { "http://[::1]:8080/x", true, "http", "[::1]:8080", "/x", NULL },
        { "http://", true, "http", "", "", NULL },
        { "ws+x.y-z://h/p", true, "ws+x.y-z", "h", "/p", NULL },
        { "ftp://h/x", true, "ftp", "h", "/x", NULL },
        /* The authority ends at '#' (RFC 3986 §3.2): no endpoint path follows. */
        { "http://h#x/linkup/tunnel", true, "http", "h", "#x/linkup/tunnel", NULL },
        /* asterisk-form, authority-form and what is no scheme */
        { "*", false, "", "", "*", NULL },
        { "h.example.com:443", false, "", "", "h.example.com:443", NULL },
        { "1http://h/", false, "", "", "1http://h/", NULL },
        { "http:/h", false, "", "", "http:/h", NULL },
        { "ht tp://h/", false, "", "", "ht tp://h/", NULL },
        { "://h/", false, "", "", "://h/", NULL },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct lk_target t;
        lk_target_split(lk_str_c(cases[i].in), &t);
        CHECK_INT_EQ(t.is_absolute, cases[i].absolute);
        check_part(t.scheme, cases[i].scheme);
        check_part(t.authority, cases[i].authority);
        check_part(t.path, cases[i].path);
        check_part(t.query, cases[i].query);
    }
}

/* Only len bytes are read: the target is a slice of a request head. */
static void test_slice(void)
{
    struct lk_target t;
    lk_target_split((struct lk_str){ "http://h/a?b HTTP/1.1", 12 }, &t);
    CHECK(t.is_absolute);
    check_part(t.authority, "h");
    check_part(t.path, "/a");
    check_part(t.query, "b");
    lk_target_split((struct lk_str){ "http://h", 6 }, &t);
    CHECK(!t.is_absolute);
    check_part(t.path, "http:/");
}

int main(void)
{
    RUN(test_split);
    RUN(test_slice);
    return DONE();
}
