/*
 * str.h - borrowed byte ranges and small string helpers.
 *
 * struct lk_str never owns its bytes and is never assumed NUL-terminated. All
 * helpers here are pure and work on (ptr, len).
 */
#ifndef LK_CORE_STR_H
#define LK_CORE_STR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct lk_str {
    const char *ptr;
    size_t len;
};

#define LK_STR(lit) ((struct lk_str){ (lit), sizeof(lit) - 1 })
#define LK_STR_NULL ((struct lk_str){ NULL, 0 })

/* Wraps a NUL-terminated string (NULL gives the empty range). */
struct lk_str lk_str_c(const char *s);
bool lk_str_eq(struct lk_str a, struct lk_str b);
bool lk_str_starts_with(struct lk_str s, struct lk_str prefix);
bool lk_str_ends_with(struct lk_str s, struct lk_str suffix);
/* Strips ASCII whitespace (space, tab, CR, LF, VT, FF) from both ends. */
struct lk_str lk_str_trim(struct lk_str s);
/* Index of the first occurrence of c, or -1. */
long lk_str_index(struct lk_str s, char c);
/* Index of the first occurrence of needle, or -1 (an empty needle is at 0). */
long lk_str_find(struct lk_str s, struct lk_str needle);
/* Returns true when the range contains the case-insensitive token tok in a
 * comma-separated list (as in Connection: keep-alive, Upgrade). */
bool lk_str_has_token(struct lk_str list, struct lk_str tok);

static inline char lk_ascii_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
}

/* The value of a hexadecimal digit (either case), or -1. */
static inline int lk_hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = lk_ascii_lower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Skips whole 8-byte words none of whose bytes is a control byte (< 0x20,
 * HTAB included) or DEL, and returns where it stopped: at most 7 bytes
 * before end, or in front of the word holding the first such byte. Callers
 * check the rest byte by byte, so it only skips bytes every field-value,
 * log-field or text check accepts. The word test is the exact "some byte
 * < n" test for n <= 128 (Bit Twiddling Hacks, "Determine if a word has a
 * byte less than n"), on x and on x ^ 0x7f..7f for DEL. */
static inline const char *lk_skip_plain_words(const char *p, const char *end)
{
    const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
    while (end - p >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        uint64_t ctl = (w - ones * 0x20) & ~w & highs;
        uint64_t del = w ^ (ones * 0x7f);
        del = (del - ones) & ~del & highs;
        if ((ctl | del) != 0)
            break;
        p += 8;
    }
    return p;
}

/* lk_ascii_lower() of each of the 8 bytes of w at once: a byte 'A'-'Z' gets
 * 0x20 added, every other byte (0x80-0xFF included) stays. On the low 7
 * bits of each byte, +0x3f carries into the byte's top bit from 'A' up and
 * +0x25 from '[' up, never into the next byte. */
static inline uint64_t lk_ascii_lower8(uint64_t w)
{
    const uint64_t ones = 0x0101010101010101u, highs = ones * 0x80;
    uint64_t low7 = w & ~highs;
    uint64_t from_a = low7 + ones * (0x80 - 'A');
    uint64_t past_z = low7 + ones * (0x7f - 'Z');
    uint64_t upper = from_a & ~past_z & ~w & highs;
    return w | upper >> 2;
}

/* ASCII case-insensitive equality. Inline: header filtering calls it some
 * hundreds of times per proxied request, mostly to find lengths differ.
 * Names mostly arrive in the same case: equal words and bytes skip the
 * folding. */
static inline bool lk_str_ieq(struct lk_str a, struct lk_str b)
{
    if (a.len != b.len)
        return false;
    size_t i = 0;
    for (; a.len - i >= 8; i += 8) {
        uint64_t x, y;
        memcpy(&x, a.ptr + i, 8);
        memcpy(&y, b.ptr + i, 8);
        if (x != y && lk_ascii_lower8(x) != lk_ascii_lower8(y))
            return false;
    }
    for (; i < a.len; i++) {
        if (a.ptr[i] != b.ptr[i] && lk_ascii_lower(a.ptr[i]) != lk_ascii_lower(b.ptr[i]))
            return false;
    }
    return true;
}

/* Compares a[0..alen) with b[0..blen) in time that depends only on the
 * lengths, not on where the bytes differ: for secrets (tokens). */
bool lk_mem_ct_eq(const void *a, size_t alen, const void *b, size_t blen);

/* Cursor-style parsing (curl strparse): advance *p only on success.
 * lk_parse_u64 reads 1..20 decimal digits without overflow; returns 0 or
 * LK_EPARSE. */
int lk_parse_u64(const char **p, const char *end, uint64_t *out);

/* Parses the whole range as a decimal unsigned number not above max. */
int lk_str_to_u64(struct lk_str s, uint64_t max, uint64_t *out);

/* Writes v in decimal to out (no NUL) without printf; returns the length. */
#define LK_U64_DEC_MAX 20
size_t lk_u64_to_dec(uint64_t v, char out[LK_U64_DEC_MAX]);

#endif
