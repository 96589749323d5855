/*
 * alloc.c - aborting allocators (the out-of-memory policy of alloc.h).
 */
#include "core/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Noreturn void oom(size_t n)
{
    fprintf(stderr, "linkup: out of memory allocating %zu bytes\n", n);
    abort();
}

void *lk_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        oom(n);
    return p;
}

void *lk_xcalloc(size_t nmemb, size_t size)
{
    void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);
    if (p == NULL)
        oom(nmemb * size);
    return p;
}

void *lk_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL)
        oom(n);
    return q;
}

char *lk_xstrndup(const char *p, size_t n)
{
    char *s = lk_xmalloc(n + 1);
    if (n)
        memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

char *lk_xstrdup(const char *s)
{
    return lk_xstrndup(s, strlen(s));
}

void *lk_xmemdup(const void *p, size_t n)
{
    void *q = lk_xmalloc(n);
    if (n)
        memcpy(q, p, n);
    return q;
}

void lk_bug(const char *file, int line, const char *msg)
{
    fprintf(stderr, "linkup: BUG at %s:%d: %s\n", file, line, msg);
    abort();
}

void lk_grow(void **arr, size_t elem, size_t *cap, size_t need)
{
    if (need <= *cap)
        return;
    size_t n = *cap ? *cap : 4;
    while (n < need)
        n *= 2;
    *arr = lk_xrealloc(*arr, n * elem);
    *cap = n;
}
