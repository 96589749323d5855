/*
 * headers.c - header lookup, tracestate parsing, cookie normalisation and
 * the CORS list of the routing core.
 *
 * Invariant: nothing here allocates except through the caller's lk_buf, and
 * every lookup is a linear scan of the caller's header array (requests carry
 * a bounded number of headers, see the HTTP layer's limits).
 */
#include "core/headers.h"

#include <string.h>

const struct lk_header lk_headers_cors[LK_HEADERS_N_CORS] = {
    { LK_STR("Access-Control-Allow-Methods"),
      LK_STR("GET, POST, PUT, PATCH, DELETE, HEAD, CONNECT, TRACE, OPTIONS") },
    { LK_STR("Access-Control-Allow-Origin"), LK_STR("*") },
    { LK_STR("Access-Control-Allow-Headers"), LK_STR("*") },
    { LK_STR("Access-Control-Max-Age"), LK_STR("86400") },
};

bool lk_headers_is_visible(struct lk_str v)
{
    for (size_t i = 0; i < v.len; i++) {
        unsigned char c = (unsigned char)v.ptr[i];
        if (c != '\t' && (c < 0x20 || c > 0x7e))
            return false;
    }
    return true;
}

bool lk_headers_get(const struct lk_header *h, size_t n, struct lk_str name, struct lk_str *value)
{
    /* SPEC §3.1: the last visible occurrence wins, so scan backwards. */
    for (size_t i = n; i-- > 0;) {
        if (lk_str_ieq(h[i].name, name) && lk_headers_is_visible(h[i].value)) {
            *value = h[i].value;
            return true;
        }
    }
    return false;
}

bool lk_headers_has(const struct lk_header *h, size_t n, struct lk_str name)
{
    struct lk_str unused;
    return lk_headers_get(h, n, name, &unused);
}

/* Splits off the next ','-separated item of *rest (which shrinks). */
static struct lk_str next_item(struct lk_str *rest)
{
    long comma = lk_str_index(*rest, ',');
    struct lk_str item = *rest;
    if (comma < 0) {
        rest->ptr += rest->len;
        rest->len = 0;
        return item;
    }
    item.len = (size_t)comma;
    rest->ptr += comma + 1;
    rest->len -= (size_t)comma + 1;
    return item;
}

struct lk_str lk_headers_tracestate_session(struct lk_str tracestate)
{
    struct lk_str rest = tracestate;
    bool more = tracestate.len > 0;
    while (more) {
        more = lk_str_index(rest, ',') >= 0;
        struct lk_str item = next_item(&rest);
        long eq = lk_str_index(item, '=');
        if (eq < 0)
            continue;
        struct lk_str key = lk_str_trim((struct lk_str){ item.ptr, (size_t)eq });
        if (lk_str_eq(key, LK_STR(LK_TRACESTATE_KEY)))
            return lk_str_trim((struct lk_str){ item.ptr + eq + 1, item.len - (size_t)eq - 1 });
    }
    return (struct lk_str){ "", 0 };
}

bool lk_headers_tracestate_has(struct lk_str tracestate, struct lk_str name)
{
    static const struct lk_str prefix = LK_STR(LK_TRACESTATE_KEY "=");
    struct lk_str rest = tracestate;
    bool more = true;
    while (more) {
        more = lk_str_index(rest, ',') >= 0;
        struct lk_str item = lk_str_trim(next_item(&rest));
        if (item.len == prefix.len + name.len && lk_str_starts_with(item, prefix) &&
            lk_str_eq((struct lk_str){ item.ptr + prefix.len, name.len }, name))
            return true;
    }
    return false;
}

/* Counts the non-empty trimmed ','-separated parts of v. */
static size_t count_parts(struct lk_str v)
{
    size_t n = 0;
    bool more = true;
    while (more) {
        more = lk_str_index(v, ',') >= 0;
        if (lk_str_trim(next_item(&v)).len > 0)
            n++;
    }
    return n;
}

/* Appends the non-empty trimmed parts of v to out, each preceded by "; "
 * unless out is still empty. */
static void add_parts(struct lk_str v, struct lk_buf *out, bool *first)
{
    bool more = true;
    while (more) {
        more = lk_str_index(v, ',') >= 0;
        struct lk_str part = lk_str_trim(next_item(&v));
        if (part.len == 0)
            continue;
        if (!*first)
            lk_buf_adds(out, "; ");
        lk_buf_addstr(out, part);
        *first = false;
    }
}

static bool is_cookie(const struct lk_header *hd)
{
    return lk_str_ieq(hd->name, LK_STR("cookie")) && lk_headers_is_visible(hd->value) &&
           lk_str_trim(hd->value).len > 0;
}

bool lk_headers_cookie_normalize(const struct lk_header *h, size_t n, struct lk_buf *out)
{
    size_t n_values = 0, n_parts = 0;
    struct lk_str only = { "", 0 };
    for (size_t i = 0; i < n; i++) {
        if (!is_cookie(&h[i]))
            continue;
        only = lk_str_trim(h[i].value);
        n_values++;
        n_parts += count_parts(only);
    }
    /* SPEC §3.8 steps 2 and 4: the "do nothing" cases. */
    if (n_values == 0 || (n_values == 1 && lk_str_index(only, ',') < 0) || n_parts <= 1)
        return false;
    bool first = true;
    for (size_t i = 0; i < n; i++) {
        if (is_cookie(&h[i]))
            add_parts(lk_str_trim(h[i].value), out, &first);
    }
    return true;
}
