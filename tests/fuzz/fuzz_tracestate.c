/*
 * fuzz_tracestate.c - tracestate parsing and editing (headers.h
 * lk_headers_tracestate_session / _has, route.h lk_route_extra_headers).
 *
 * Input: the first line is the session name, each further line (at most
 * MAX_HEADERS) the value of one tracestate field. Invariants:
 *   - _session() and _has() agree with an independent model written here
 *     (entries split on ',', OWS trimmed as lk_str_trim does, first
 *     "linkup-session" key wins, exact byte-wise "linkup-session={name}");
 *   - the session slice lies inside its input, is trimmed, holds no ',';
 *   - the edited tracestate is absent exactly when the field in force (the
 *     last visible one, SPEC §3.1) already has the session entry, and is
 *     otherwise the old value + "," + "linkup-session={name}" (or just the
 *     entry when there was none);
 *   - editing is idempotent: the edited value, sent again, is left alone,
 *     and carries the session a later hop reads (unless the old value
 *     already had a "linkup-session" entry, even an empty one: the first
 *     entry wins, SPEC §3.4) - for names without ',' and
 *     without OWS at either end, the only names that can survive the
 *     comma-separated, trimmed syntax.
 * Baggage (DESIGN §7; every line is also read as a baggage value):
 *   - lk_headers_baggage_session() gives -1 or a non-empty name of visible
 *     ASCII without spaces that fits its buffer, and _has() agrees with it;
 *   - a name written with lk_headers_baggage_add_value() reads back as
 *     itself whenever it is such a name;
 *   - lk_route_extra_headers() (no baggage field in the input) adds baggage
 *     exactly when it adds tracestate, as "linkup-session=" + the encoded
 *     name.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/headers.h"
#include "core/route.h"

#define MAX_HEADERS 4

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool ows(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

static struct lk_str trim(struct lk_str s)
{
    while (s.len > 0 && ows(s.ptr[0])) {
        s.ptr++;
        s.len--;
    }
    while (s.len > 0 && ows(s.ptr[s.len - 1]))
        s.len--;
    return s;
}

static bool same(struct lk_str a, struct lk_str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* The model: calls fn on every ','-separated entry until it returns true. */
static bool each_entry(struct lk_str v, bool (*fn)(struct lk_str, void *), void *arg)
{
    size_t start = 0;
    for (size_t i = 0; i <= v.len; i++) {
        if (i == v.len || v.ptr[i] == ',') {
            if (fn((struct lk_str){ v.ptr + start, i - start }, arg))
                return true;
            start = i + 1;
        }
    }
    return false;
}

static bool find_session(struct lk_str entry, void *arg)
{
    const char *eq = entry.len ? memchr(entry.ptr, '=', entry.len) : NULL;
    if (eq == NULL)
        return false;
    struct lk_str key = trim((struct lk_str){ entry.ptr, (size_t)(eq - entry.ptr) });
    if (!same(key, LK_STR(LK_TRACESTATE_KEY)))
        return false;
    *(struct lk_str *)arg =
        trim((struct lk_str){ eq + 1, entry.len - (size_t)(eq - entry.ptr) - 1 });
    return true;
}

/* The session of v; *has_key (may be NULL) tells whether some entry had
 * the key at all (its value may be empty). */
static struct lk_str model_session(struct lk_str v, bool *has_key)
{
    struct lk_str out = { "", 0 };
    bool found = each_entry(v, find_session, &out);
    if (has_key != NULL)
        *has_key = found;
    return out;
}

static bool is_entry_for(struct lk_str entry, void *arg)
{
    const struct lk_str *name = arg;
    static const char key[] = LK_TRACESTATE_KEY "=";
    entry = trim(entry);
    return entry.len == sizeof(key) - 1 + name->len &&
           memcmp(entry.ptr, key, sizeof(key) - 1) == 0 &&
           (name->len == 0 || memcmp(entry.ptr + sizeof(key) - 1, name->ptr, name->len) == 0);
}

static bool model_has(struct lk_str v, struct lk_str name)
{
    return each_entry(v, is_entry_for, &name);
}

static bool visible(struct lk_str v)
{
    for (size_t i = 0; i < v.len; i++) {
        unsigned char c = (unsigned char)v.ptr[i];
        if (c != '\t' && (c < 0x20 || c > 0x7e))
            return false;
    }
    return true;
}

static void check_parse(struct lk_str v, struct lk_str name)
{
    struct lk_str s = lk_headers_tracestate_session(v);
    LK_ASSERT(same(s, model_session(v, NULL)));
    LK_ASSERT(s.len == 0 || (s.ptr >= v.ptr && s.ptr + s.len <= v.ptr + v.len));
    LK_ASSERT(same(s, trim(s)));
    LK_ASSERT(s.len == 0 || memchr(s.ptr, ',', s.len) == NULL);
    LK_ASSERT(lk_headers_tracestate_has(v, name) == model_has(v, name));
    LK_ASSERT(lk_headers_tracestate_has(v, s) == model_has(v, s));
}

/* A name a baggage linkup-session member can carry: not empty, no control
 * (the rest is escaped where baggage-octets do not allow it). */
static bool baggage_name(struct lk_str s)
{
    for (size_t i = 0; i < s.len; i++) {
        if ((unsigned char)s.ptr[i] < 0x20 || (unsigned char)s.ptr[i] == 0x7f)
            return false;
    }
    return s.len > 0;
}

static void check_baggage(struct lk_str v, struct lk_str name)
{
    char out[64];
    long n = lk_headers_baggage_session(v, out, sizeof(out));
    LK_ASSERT(n == -1 || (n > 0 && (size_t)n < sizeof(out) && out[n] == '\0'));
    if (n > 0) {
        LK_ASSERT(baggage_name((struct lk_str){ out, (size_t)n }));
        LK_ASSERT(lk_headers_baggage_has(v, (struct lk_str){ out, (size_t)n }));
    }
    struct lk_buf b = LK_BUF_INIT;
    lk_buf_adds(&b, "x=1, " LK_TRACESTATE_KEY " = ");
    lk_headers_baggage_add_value(&b, name);
    lk_buf_adds(&b, ";p=2");
    char back[512];
    long m = lk_headers_baggage_session(lk_buf_str(&b), back, sizeof(back));
    if (baggage_name(name) && name.len < sizeof(back))
        LK_ASSERT(m == (long)name.len && memcmp(back, name.ptr, name.len) == 0);
    else
        LK_ASSERT(m == -1);
    lk_buf_release(&b);
}

static void fill_pattern(void *ctx, void *buf, size_t n)
{
    (void)ctx;
    memset(buf, 0x5a, n);
}

/* The tracestate item of x, or NULL. */
static const struct lk_header *edited(const struct lk_route_extra *x)
{
    for (size_t i = 0; i < x->n; i++) {
        if (lk_str_eq(x->items[i].name, LK_STR("tracestate")))
            return &x->items[i];
    }
    return NULL;
}

static void check_edit(const struct lk_header *h, size_t n, struct lk_str name)
{
    static const struct lk_str url = LK_STR("http://tiny-cow.example.com:8080/x");
    struct lk_rng rng = { fill_pattern, NULL };
    struct lk_route_extra x;
    lk_route_extra_init(&x);
    lk_route_extra_headers(url, h, n, name, LK_STR("web"), &rng, &x);
    LK_ASSERT(x.n <= LK_ROUTE_MAX_EXTRA);

    /* The field in force: the last visible tracestate. */
    const struct lk_str *old = NULL;
    for (size_t i = n; i-- > 0 && old == NULL;) {
        if (visible(h[i].value))
            old = &h[i].value;
    }
    const struct lk_header *ts = edited(&x);
    const struct lk_header *bg = NULL;
    for (size_t i = 0; i < x.n; i++) {
        if (lk_str_eq(x.items[i].name, LK_STR("baggage")))
            bg = &x.items[i];
    }
    LK_ASSERT((bg != NULL) == (ts != NULL));
    if (old != NULL && model_has(*old, name)) {
        LK_ASSERT(ts == NULL);
        goto out;
    }
    LK_ASSERT(ts != NULL);
    struct lk_buf bwant = LK_BUF_INIT;
    lk_buf_adds(&bwant, LK_TRACESTATE_KEY "=");
    lk_headers_baggage_add_value(&bwant, name);
    LK_ASSERT(same(bg->value, lk_buf_str(&bwant)));
    lk_buf_release(&bwant);
    struct lk_buf want = LK_BUF_INIT;
    if (old != NULL) {
        lk_buf_addstr(&want, *old);
        lk_buf_addch(&want, ',');
    }
    lk_buf_adds(&want, LK_TRACESTATE_KEY "=");
    lk_buf_addstr(&want, name);
    LK_ASSERT(same(ts->value, lk_buf_str(&want)));
    lk_buf_release(&want);

    bool clean_name = name.len == 0 || (memchr(name.ptr, ',', name.len) == NULL &&
                                        !ows(name.ptr[0]) && !ows(name.ptr[name.len - 1]));
    if (clean_name && visible(name)) {
        /* A second hop with the edited value leaves it alone. */
        struct lk_header again = { LK_STR("tracestate"), ts->value };
        struct lk_route_extra y;
        lk_route_extra_init(&y);
        lk_route_extra_headers(url, &again, 1, name, LK_STR("web"), &rng, &y);
        LK_ASSERT(edited(&y) == NULL);
        lk_route_extra_release(&y);
        LK_ASSERT(lk_headers_tracestate_has(ts->value, name));
        bool old_key = false;
        if (old != NULL)
            (void)model_session(*old, &old_key);
        if (!old_key)
            LK_ASSERT(same(lk_headers_tracestate_session(ts->value), name));
    }
out:
    lk_route_extra_release(&x);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = lk_xmemdup(data, size ? size : 1);
    const char *p = buf, *end = buf + size;
    const char *nl = memchr(p, '\n', size);
    struct lk_str name = { p, nl ? (size_t)(nl - p) : size };
    struct lk_header h[MAX_HEADERS];
    size_t n = 0;
    p = nl ? nl + 1 : end;
    while (p < end && n < MAX_HEADERS) {
        nl = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = nl ? nl : end;
        h[n].name = LK_STR("tracestate");
        h[n].value = (struct lk_str){ p, (size_t)(line_end - p) };
        n++;
        p = nl ? nl + 1 : end;
    }
    check_parse(name, name);
    for (size_t i = 0; i < n; i++) {
        check_parse(h[i].value, name);
        check_baggage(h[i].value, name);
    }
    check_edit(h, n, name);
    free(buf);
    return 0;
}
