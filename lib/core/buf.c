/*
 * buf.c - growable byte strings (see buf.h for the invariants).
 */
#include "core/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"

static char empty_buf[1];

void lk_buf_init(struct lk_buf *b, size_t max)
{
    b->data = empty_buf;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void lk_buf_release(struct lk_buf *b)
{
    if (b->cap)
        free(b->data);
    lk_buf_init(b, b->max);
}

void lk_buf_reset(struct lk_buf *b)
{
    lk_buf_truncate(b, 0);
}

char *lk_buf_detach(struct lk_buf *b, size_t *len)
{
    char *p = b->cap ? b->data : lk_xstrdup("");
    if (len)
        *len = b->len;
    lk_buf_init(b, b->max);
    return p;
}

static int reserve(struct lk_buf *b, size_t n)
{
    if (b->data == NULL)
        lk_buf_init(b, 0);
    if (n > SIZE_MAX - b->len - 1 || (b->max && b->len + n > b->max))
        return LK_ELIMIT;
    size_t need = b->len + n + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (b->cap) {
        b->data = lk_xrealloc(b->data, cap);
    } else {
        b->data = lk_xmalloc(cap);
        b->data[0] = '\0';
    }
    b->cap = cap;
    return 0;
}

int lk_buf_add(struct lk_buf *b, const void *p, size_t n)
{
    int rc = reserve(b, n);
    if (rc != 0)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

char *lk_buf_grow(struct lk_buf *b, size_t n)
{
    if (reserve(b, n) != 0)
        return NULL;
    char *p = b->data + b->len;
    b->len += n;
    b->data[b->len] = '\0';
    return p;
}

int lk_buf_adds(struct lk_buf *b, const char *s)
{
    return lk_buf_add(b, s, strlen(s));
}

int lk_buf_addstr(struct lk_buf *b, struct lk_str s)
{
    return lk_buf_add(b, s.ptr, s.len);
}

int lk_buf_addstr_lower(struct lk_buf *b, struct lk_str s)
{
    size_t at = b->len;
    int rc = lk_buf_add(b, s.ptr, s.len);
    for (size_t i = at; rc == 0 && i < b->len; i++)
        b->data[i] = lk_ascii_lower(b->data[i]);
    return rc;
}

int lk_buf_addch(struct lk_buf *b, char c)
{
    return lk_buf_add(b, &c, 1);
}

int lk_buf_add_u64(struct lk_buf *b, uint64_t v)
{
    char text[LK_U64_DEC_MAX];
    return lk_buf_add(b, text, lk_u64_to_dec(v, text));
}

int lk_buf_vaddf(struct lk_buf *b, const char *fmt, va_list ap)
{
    va_list cp;
    va_copy(cp, ap);
    int n = vsnprintf(NULL, 0, fmt, cp);
    va_end(cp);
    if (n < 0)
        return LK_EINVAL;
    int rc = reserve(b, (size_t)n);
    if (rc != 0)
        return rc;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int lk_buf_addf(struct lk_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = lk_buf_vaddf(b, fmt, ap);
    va_end(ap);
    return rc;
}

void lk_buf_truncate(struct lk_buf *b, size_t n)
{
    if (b->data == NULL)
        lk_buf_init(b, 0);
    if (n < b->len) {
        b->len = n;
        if (b->cap)
            b->data[n] = '\0';
    }
}
