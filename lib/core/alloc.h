/*
 * alloc.h - allocation and invariants.
 *
 * Out-of-memory policy (STYLE §3.4): every allocation goes through lk_x*(),
 * which abort with a message when memory is exhausted. Callers never check for
 * NULL. Memory a peer can drive upward is bounded by explicit limits instead.
 *
 * LK_BUG() and LK_ASSERT() are always compiled in: they print file:line and
 * abort.
 */
#ifndef LK_CORE_ALLOC_H
#define LK_CORE_ALLOC_H

#include <stddef.h>

void *lk_xmalloc(size_t n);
void *lk_xcalloc(size_t nmemb, size_t size);
void *lk_xrealloc(void *p, size_t n);
/* Returns an owned NUL-terminated copy of s (freed with free()). */
char *lk_xstrdup(const char *s);
/* Returns an owned NUL-terminated copy of the first n bytes of p. */
char *lk_xstrndup(const char *p, size_t n);
/* Returns an owned copy of n bytes. */
void *lk_xmemdup(const void *p, size_t n);

_Noreturn void lk_bug(const char *file, int line, const char *msg);

#define LK_BUG(msg) lk_bug(__FILE__, __LINE__, (msg))
#define LK_ASSERT(cond)                                             \
    do {                                                            \
        if (!(cond))                                                \
            lk_bug(__FILE__, __LINE__, "assertion failed: " #cond); \
    } while (0)

#define LK_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Grows *arr (element size elem) so that it holds at least need elements;
 * *cap is updated. Doubling growth. */
void lk_grow(void **arr, size_t elem, size_t *cap, size_t need);
#define LK_GROW(arr, cap, need) lk_grow((void **)&(arr), sizeof(*(arr)), &(cap), (need))

#endif
