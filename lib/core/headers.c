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

bool lk_headers_value_ok(struct lk_str v)
{
    if (v.len == 0)
        return true;
    const char *end = v.ptr + v.len;
    for (const char *p = lk_skip_plain_words(v.ptr, end); p < end; p++) {
        unsigned char c = (unsigned char)*p;
        if ((c < 0x20 && c != '\t') || c == 0x7f)
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

/* The value (untrimmed) of the first ','-separated member of list whose key,
 * the text before its first '=' trimmed, is "linkup-session" (SPEC §3.4 step
 * 5 for tracestate; W3C baggage list-members alike). False when none. */
static bool session_member(struct lk_str list, struct lk_str *value)
{
    struct lk_str rest = list;
    bool more = list.len > 0;
    while (more) {
        more = lk_str_index(rest, ',') >= 0;
        struct lk_str item = next_item(&rest);
        long eq = lk_str_index(item, '=');
        if (eq < 0)
            continue;
        struct lk_str key = lk_str_trim((struct lk_str){ item.ptr, (size_t)eq });
        if (lk_str_eq(key, LK_STR(LK_TRACESTATE_KEY))) {
            *value = (struct lk_str){ item.ptr + eq + 1, item.len - (size_t)eq - 1 };
            return true;
        }
    }
    return false;
}

struct lk_str lk_headers_tracestate_session(struct lk_str tracestate)
{
    struct lk_str v;
    return session_member(tracestate, &v) ? lk_str_trim(v) : (struct lk_str){ "", 0 };
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

/* ---- baggage (DESIGN §7) ---- */

/* The raw value of the first "linkup-session" member: properties dropped,
 * trimmed. False when there is none. */
static bool baggage_raw(struct lk_str baggage, struct lk_str *value)
{
    struct lk_str v;
    if (!session_member(baggage, &v))
        return false;
    long semi = lk_str_index(v, ';');
    if (semi >= 0)
        v.len = (size_t)semi;
    *value = lk_str_trim(v);
    return true;
}

long lk_headers_baggage_session(struct lk_str baggage, char *out, size_t cap)
{
    struct lk_str v;
    if (!baggage_raw(baggage, &v) || v.len == 0 || cap == 0)
        return -1;
    size_t n = 0;
    for (size_t i = 0; i < v.len; i++) {
        int c = (unsigned char)v.ptr[i];
        bool bad = c <= 0x20 || c > 0x7e; /* a raw byte: a baggage-octet */
        if (c == '%') {
            int hi = i + 2 < v.len ? lk_hex_digit(v.ptr[i + 1]) : -1;
            int lo = hi >= 0 ? lk_hex_digit(v.ptr[i + 2]) : -1;
            if (lo < 0)
                return -1;
            c = hi * 16 + lo;
            i += 2;
            /* Any escaped byte but a control: what
             * lk_headers_baggage_add_value() writes for any name reads back. */
            bad = c < 0x20 || c == 0x7f;
        }
        if (bad || n + 1 >= cap)
            return -1;
        out[n++] = (char)c;
    }
    out[n] = '\0';
    return (long)n;
}

bool lk_headers_baggage_has(struct lk_str baggage, struct lk_str name)
{
    char buf[LK_HEADERS_BAGGAGE_NAME_MAX + 1];
    long n = lk_headers_baggage_session(baggage, buf, sizeof(buf));
    return n >= 0 && lk_str_eq((struct lk_str){ buf, (size_t)n }, name);
}

void lk_headers_baggage_add_value(struct lk_buf *b, struct lk_str name)
{
    static const char hex[] = "0123456789ABCDEF";
    if (name.len == 0)
        return;
    size_t from = 0; /* plain bytes are added a run at a time */
    for (size_t i = 0; i < name.len; i++) {
        unsigned char c = (unsigned char)name.ptr[i];
        /* W3C baggage-octet: %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E,
         * less '%' itself, which starts an escape. */
        bool plain =
            c >= 0x21 && c <= 0x7e && c != '"' && c != ',' && c != ';' && c != '\\' && c != '%';
        if (plain)
            continue;
        char esc[3] = { '%', hex[c >> 4], hex[c & 15] };
        lk_buf_add(b, name.ptr + from, i - from);
        lk_buf_add(b, esc, sizeof(esc));
        from = i + 1;
    }
    lk_buf_add(b, name.ptr + from, name.len - from);
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
