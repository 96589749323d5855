/*
 * test_buf.c - lk_buf, lk_str and lk_strerror.
 */
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/err.h"
#include "core/str.h"
#include "harness.h"

static void test_buf_append_and_cap(void)
{
    struct lk_buf b;
    lk_buf_init(&b, 8);
    CHECK_STR_EQ(b.data, "");
    CHECK_INT_EQ(lk_buf_adds(&b, "abc"), 0);
    CHECK_INT_EQ(lk_buf_addf(&b, "%d%s", 12, "x"), 0);
    CHECK_STR_EQ(b.data, "abc12x");
    CHECK_INT_EQ(lk_buf_adds(&b, "xyz"), LK_ELIMIT);
    CHECK_STR_EQ(b.data, "abc12x");
    CHECK_INT_EQ(lk_buf_addch(&b, '!'), 0);
    CHECK_INT_EQ(b.len, 7);
    lk_buf_truncate(&b, 2);
    CHECK_STR_EQ(b.data, "ab");
    size_t len;
    char *p = lk_buf_detach(&b, &len);
    CHECK_STR_EQ(p, "ab");
    CHECK_INT_EQ(len, 2);
    CHECK_STR_EQ(b.data, "");
    free(p);
    lk_buf_release(&b);
}

static void test_buf_static_init(void)
{
    struct lk_buf b = LK_BUF_INIT;
    CHECK_INT_EQ(lk_buf_add(&b, "", 0), 0);
    CHECK_STR_EQ(b.data, "");
    for (int i = 0; i < 1000; i++)
        CHECK_INT_EQ(lk_buf_addch(&b, 'a'), 0);
    CHECK_INT_EQ(b.len, 1000);
    lk_buf_release(&b);
}

static void test_buf_addstr_lower(void)
{
    struct lk_buf b = LK_BUF_INIT;
    lk_buf_adds(&b, "Keep:");
    CHECK_INT_EQ(lk_buf_addstr_lower(&b, LK_STR("Big-Cow.EXAMPLE.com\xC3\x89")), 0);
    CHECK_STR_EQ(b.data, "Keep:big-cow.example.com\xC3\x89"); /* ASCII only */
    lk_buf_release(&b);
    struct lk_buf capped;
    lk_buf_init(&capped, 4);
    CHECK_INT_EQ(lk_buf_addstr_lower(&capped, LK_STR("ABCDEF")), LK_ELIMIT);
    lk_buf_release(&capped);
}

static void test_buf_grow(void)
{
    struct lk_buf b;
    lk_buf_init(&b, 8);
    char *p = lk_buf_grow(&b, 3);
    CHECK(p != NULL);
    memcpy(p, "abc", 3);
    CHECK_INT_EQ(b.len, 3);
    CHECK_STR_EQ(b.data, "abc");
    CHECK(lk_buf_grow(&b, 0) == b.data + 3);
    /* Past the cap: nothing is appended, not even part of it. */
    CHECK(lk_buf_grow(&b, 6) == NULL);
    CHECK_INT_EQ(b.len, 3);
    CHECK_STR_EQ(b.data, "abc");
    p = lk_buf_grow(&b, 5);
    CHECK(p != NULL);
    memcpy(p, "defgh", 5);
    CHECK_STR_EQ(b.data, "abcdefgh");
    lk_buf_release(&b);
}

static void test_str_helpers(void)
{
    CHECK(lk_str_ieq(LK_STR("Host"), LK_STR("hOST")));
    CHECK(!lk_str_ieq(LK_STR("Host"), LK_STR("Hos")));
    struct lk_str t = lk_str_trim(LK_STR("  a b \t"));
    CHECK_MEM_EQ(t.ptr, t.len, "a b", 3);
    CHECK(lk_str_has_token(LK_STR("keep-alive, Upgrade"), LK_STR("upgrade")));
    CHECK(!lk_str_has_token(LK_STR("keep-alive, Upgrades"), LK_STR("upgrade")));
    CHECK_INT_EQ(lk_str_find(LK_STR("abcabc"), LK_STR("ca")), 2);
    CHECK_INT_EQ(lk_str_find(LK_STR("abc"), LK_STR("x")), -1);
    uint64_t v = 0;
    CHECK_INT_EQ(lk_str_to_u64(LK_STR("65535"), 65535, &v), 0);
    CHECK_INT_EQ(v, 65535);
    CHECK_INT_EQ(lk_str_to_u64(LK_STR("65536"), 65535, &v), LK_EPARSE);
    CHECK_INT_EQ(lk_str_to_u64(LK_STR("99999999999999999999999"), UINT64_MAX, &v), LK_EPARSE);
    CHECK_INT_EQ(lk_str_to_u64(LK_STR(""), 1, &v), LK_EPARSE);
    CHECK_INT_EQ(lk_str_to_u64(LK_STR("1x"), 10, &v), LK_EPARSE);
}

/* lk_str_ieq() folds 8 bytes at a time: every pair of byte values, at each
 * place of a word and in the bytes after the last whole word, compares as
 * lk_ascii_lower() byte by byte says. */
static void test_str_ieq_all_bytes(void)
{
    char a[11], b[11];
    size_t wrong = 0;
    for (size_t at = 0; at < sizeof(a); at++) {
        for (int x = 0; x < 256; x++) {
            for (int y = 0; y < 256; y++) {
                memset(a, 'k', sizeof(a));
                memset(b, 'K', sizeof(b));
                a[at] = (char)x;
                b[at] = (char)y;
                bool want = lk_ascii_lower((char)x) == lk_ascii_lower((char)y);
                wrong += lk_str_ieq((struct lk_str){ a, sizeof(a) },
                                    (struct lk_str){ b, sizeof(b) }) != want;
            }
        }
    }
    CHECK_INT_EQ(wrong, 0);
    for (int x = 0; x < 256; x++) {
        uint64_t w = 0, want = 0;
        for (int k = 0; k < 8; k++) {
            w |= (uint64_t)(unsigned char)(x + k * 31) << (8 * k);
            want |= (uint64_t)(unsigned char)lk_ascii_lower((char)(x + k * 31)) << (8 * k);
        }
        CHECK(lk_ascii_lower8(w) == want);
    }
}

static void test_mem_ct_eq(void)
{
    CHECK(lk_mem_ct_eq("token", 5, "token", 5));
    CHECK(lk_mem_ct_eq("", 0, "", 0));
    CHECK(!lk_mem_ct_eq("token", 5, "tokeN", 5));
    CHECK(!lk_mem_ct_eq("token", 5, "toke", 4));
    CHECK(!lk_mem_ct_eq("toke", 4, "token", 5));
    CHECK(!lk_mem_ct_eq("a\0", 2, "a", 1));
}

static void test_u64_to_dec(void)
{
    char d[LK_U64_DEC_MAX];
    CHECK_MEM_EQ(d, lk_u64_to_dec(0, d), "0", 1);
    CHECK_MEM_EQ(d, lk_u64_to_dec(65535, d), "65535", 5);
    CHECK_MEM_EQ(d, lk_u64_to_dec(UINT64_MAX, d), "18446744073709551615", 20);
    struct lk_buf b = LK_BUF_INIT;
    lk_buf_adds(&b, "port ");
    CHECK_INT_EQ(lk_buf_add_u64(&b, 8080), 0);
    CHECK_MEM_EQ(b.data, b.len, "port 8080", 9);
    lk_buf_release(&b);
}

static void test_strerror(void)
{
    CHECK_STR_EQ(lk_strerror(0), "success");
    CHECK_STR_EQ(lk_strerror(LK_ELIMIT), "limit exceeded");
    CHECK_STR_EQ(lk_strerror(12345), "unknown error");
}

int main(void)
{
    RUN(test_buf_append_and_cap);
    RUN(test_buf_static_init);
    RUN(test_buf_addstr_lower);
    RUN(test_buf_grow);
    RUN(test_str_helpers);
    RUN(test_str_ieq_all_bytes);
    RUN(test_mem_ct_eq);
    RUN(test_u64_to_dec);
    RUN(test_strerror);
    return DONE();
}
