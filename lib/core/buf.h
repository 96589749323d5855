/*
 * buf.h - owned, growable, always NUL-terminated byte strings with a cap.
 *
 * Invariants (git strbuf + curl dynbuf): after lk_buf_init() data is never
 * NULL and data[len] == '\0'. max bounds len (0 means no cap); an append that
 * would pass it fails with LK_ELIMIT and leaves the buffer unchanged.
 * Fields are private; use the API.
 */
#ifndef LK_CORE_BUF_H
#define LK_CORE_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include "core/str.h"

struct lk_buf {
    char *data;
    size_t len, cap, max;
};

#define LK_BUF_INIT   \
    {                 \
        NULL, 0, 0, 0 \
    }

/* Initialises an empty buffer with the given cap (0 = unlimited). */
void lk_buf_init(struct lk_buf *b, size_t max);
/* Frees the bytes; the buffer may be re-initialised. Safe on LK_BUF_INIT. */
void lk_buf_release(struct lk_buf *b);
/* Empties the buffer, keeping its memory. */
void lk_buf_reset(struct lk_buf *b);
/* Returns the bytes (owned by the caller, free()) and re-initialises b. */
char *lk_buf_detach(struct lk_buf *b, size_t *len);

/* Appends; 0 or LK_ELIMIT. A buffer still at LK_BUF_INIT works (no cap). */
int lk_buf_add(struct lk_buf *b, const void *p, size_t n);
int lk_buf_adds(struct lk_buf *b, const char *s);
int lk_buf_addstr(struct lk_buf *b, struct lk_str s);
/* Appends s with ASCII letters lower-cased (host names); 0 or LK_ELIMIT. */
int lk_buf_addstr_lower(struct lk_buf *b, struct lk_str s);
int lk_buf_addch(struct lk_buf *b, char c);
/* Appends n bytes for the caller to fill and returns where they start (the
 * terminating NUL is already after them); NULL (nothing appended) past the
 * cap. For writers that know a piece's whole length up front. */
char *lk_buf_grow(struct lk_buf *b, size_t n);
/* Appends v in decimal (lk_u64_to_dec). */
int lk_buf_add_u64(struct lk_buf *b, uint64_t v);
int lk_buf_addf(struct lk_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int lk_buf_vaddf(struct lk_buf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* Shortens the buffer to n bytes (n <= len). */
void lk_buf_truncate(struct lk_buf *b, size_t n);

static inline struct lk_str lk_buf_str(const struct lk_buf *b)
{
    return (struct lk_str){ b->data ? b->data : "", b->len };
}

#endif
