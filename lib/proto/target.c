/*
 * target.c - request-target parts (see target.h).
 */
#include "proto/target.h"

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Length of the "scheme" of "scheme://..." (RFC 3986 §3.1), 0 when t does
 * not begin so. */
static size_t scheme_len(struct lk_str t)
{
    if (t.len == 0 || !is_alpha(t.ptr[0]))
        return 0;
    size_t i = 1;
    while (i < t.len && (is_alpha(t.ptr[i]) || (t.ptr[i] >= '0' && t.ptr[i] <= '9') ||
                         t.ptr[i] == '+' || t.ptr[i] == '-' || t.ptr[i] == '.'))
        i++;
    if (t.len - i < 3 || t.ptr[i] != ':' || t.ptr[i + 1] != '/' || t.ptr[i + 2] != '/')
        return 0;
    return i;
}

void lk_target_split(struct lk_str target, struct lk_target *out)
{
    struct lk_str rest = target;
    size_t n = scheme_len(target);
    out->is_absolute = n > 0;
    out->scheme = (struct lk_str){ target.ptr, n };
    out->authority = (struct lk_str){ target.ptr, 0 };
    if (n > 0) {
        size_t start = n + 3, end = start;
        while (end < target.len && target.ptr[end] != '/' && target.ptr[end] != '?' &&
               target.ptr[end] != '#')
            end++;
        out->authority = (struct lk_str){ target.ptr + start, end - start };
        rest = (struct lk_str){ target.ptr + end, target.len - end };
    }
    long q = lk_str_index(rest, '?');
    out->path = (struct lk_str){ rest.ptr, q < 0 ? rest.len : (size_t)q };
    out->query =
        q < 0 ? LK_STR_NULL : (struct lk_str){ rest.ptr + q + 1, rest.len - (size_t)q - 1 };
}
