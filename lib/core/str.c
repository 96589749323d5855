/*
 * str.c - borrowed byte-range helpers.
 */
#include "core/str.h"

#include <string.h>

#include "core/err.h"

struct lk_str lk_str_c(const char *s)
{
    return s ? (struct lk_str){ s, strlen(s) } : (struct lk_str){ "", 0 };
}

bool lk_str_eq(struct lk_str a, struct lk_str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

bool lk_str_starts_with(struct lk_str s, struct lk_str prefix)
{
    return s.len >= prefix.len && (prefix.len == 0 || memcmp(s.ptr, prefix.ptr, prefix.len) == 0);
}

bool lk_str_ends_with(struct lk_str s, struct lk_str suffix)
{
    return s.len >= suffix.len &&
           (suffix.len == 0 || memcmp(s.ptr + s.len - suffix.len, suffix.ptr, suffix.len) == 0);
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

struct lk_str lk_str_trim(struct lk_str s)
{
    while (s.len && is_space(s.ptr[0])) {
        s.ptr++;
        s.len--;
    }
    while (s.len && is_space(s.ptr[s.len - 1]))
        s.len--;
    return s;
}

long lk_str_index(struct lk_str s, char c)
{
    const char *q = s.len ? memchr(s.ptr, c, s.len) : NULL;
    return q ? (long)(q - s.ptr) : -1;
}

long lk_str_find(struct lk_str s, struct lk_str needle)
{
    if (needle.len == 0)
        return 0;
    if (s.len < needle.len)
        return -1;
    const char *q = memmem(s.ptr, s.len, needle.ptr, needle.len);
    return q ? (long)(q - s.ptr) : -1;
}

bool lk_str_has_token(struct lk_str list, struct lk_str tok)
{
    if (tok.len > list.len) /* no item is longer than the list */
        return false;
    size_t i = 0;
    while (i <= list.len) {
        size_t j = i;
        while (j < list.len && list.ptr[j] != ',')
            j++;
        struct lk_str part = lk_str_trim((struct lk_str){ list.ptr + i, j - i });
        if (lk_str_ieq(part, tok))
            return true;
        i = j + 1;
    }
    return false;
}

int lk_parse_u64(const char **p, const char *end, uint64_t *out)
{
    const char *q = *p;
    uint64_t v = 0;
    if (q >= end || *q < '0' || *q > '9')
        return LK_EPARSE;
    while (q < end && *q >= '0' && *q <= '9') {
        uint64_t d = (uint64_t)(*q - '0');
        if (v > (UINT64_MAX - d) / 10)
            return LK_EPARSE;
        v = v * 10 + d;
        q++;
    }
    *p = q;
    *out = v;
    return 0;
}

int lk_str_to_u64(struct lk_str s, uint64_t max, uint64_t *out)
{
    const char *p = s.ptr;
    const char *end = s.ptr + s.len;
    uint64_t v;
    if (lk_parse_u64(&p, end, &v) != 0 || p != end || v > max)
        return LK_EPARSE;
    *out = v;
    return 0;
}

bool lk_mem_ct_eq(const void *a, size_t alen, const void *b, size_t blen)
{
    /* Walk the longer input whole so the time depends on the lengths only. */
    const volatile unsigned char *pa = a;
    const volatile unsigned char *pb = b;
    size_t n = alen > blen ? alen : blen;
    unsigned char diff = (unsigned char)(alen != blen);
    for (size_t i = 0; i < n; i++) {
        unsigned char x = i < alen ? pa[i] : 0;
        unsigned char y = i < blen ? pb[i] : 0;
        diff |= (unsigned char)(x ^ y);
    }
    return diff == 0;
}

size_t lk_u64_to_dec(uint64_t v, char out[LK_U64_DEC_MAX])
{
    char tmp[LK_U64_DEC_MAX];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    memcpy(out, tmp + i, sizeof(tmp) - i);
    return sizeof(tmp) - i;
}
