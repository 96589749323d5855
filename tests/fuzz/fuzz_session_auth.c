/*
 * fuzz_session_auth.c - session-auth credentials (session_auth.h).
 *
 * Input: lines. The first is read as a cookie value and as a `next` target;
 * each further line (at most MAX_HEADERS) is a header "name: value", where
 * the token "@C" in a value stands for a freshly minted valid cookie value
 * and "@S" for the secret. Invariants:
 *   - lk_auth_cookie_ok() accepts the first line only when it is exactly the
 *     value minted for the expiry it spells (no other spelling verifies), and
 *     accepts every minted value before its expiry, never at or after it;
 *   - lk_auth_request_ok() agrees with a model written here (a header
 *     linkup-session-auth whose trimmed value is the secret, or a Cookie
 *     pair "linkup_session_auth=V", pairs split on ';' and ',' and trimmed,
 *     whose V verifies);
 *   - lk_auth_strip() writes at most n fields, none named
 *     linkup-session-auth, no Cookie pair named linkup_session_auth, keeps
 *     every other field in order, and keeps the other non-empty Cookie pairs
 *     in order (Cookie fields are untouched when none held the credential);
 *   - lk_auth_safe_next() returns "/" or its input, never a target that
 *     starts with "//" or "/\\" or holds a byte outside visible ASCII.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/session_auth.h"

#define MAX_HEADERS 6
#define NOW         1000000u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char secret[] = "fuzzing-secret-0123456789";

static struct lk_str next_line(struct lk_str *rest)
{
    long nl = lk_str_index(*rest, '\n');
    struct lk_str line = *rest;
    if (nl < 0) {
        *rest = (struct lk_str){ rest->ptr + rest->len, 0 };
        return line;
    }
    line.len = (size_t)nl;
    rest->ptr += nl + 1;
    rest->len -= (size_t)nl + 1;
    return line;
}

/* Replaces "@C" by cookie and "@S" by the secret (into out). */
static void expand(struct lk_str in, const char *cookie, struct lk_buf *out)
{
    for (size_t i = 0; i < in.len; i++) {
        if (in.ptr[i] == '@' && i + 1 < in.len && (in.ptr[i + 1] == 'C' || in.ptr[i + 1] == 'S')) {
            lk_buf_adds(out, in.ptr[i + 1] == 'C' ? cookie : secret);
            i++;
        } else {
            lk_buf_addch(out, in.ptr[i]);
        }
    }
}

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

static bool ieq(struct lk_str a, const char *b)
{
    size_t n = strlen(b);
    if (a.len != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = a.ptr[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c + 32);
        if (c != b[i])
            return false;
    }
    return true;
}

/* Calls fn on every trimmed pair of the Cookie fields of h[0..n). */
static void each_pair(const struct lk_header *h, size_t n,
                      void (*fn)(struct lk_str pair, void *arg), void *arg)
{
    for (size_t i = 0; i < n; i++) {
        if (!ieq(h[i].name, "cookie"))
            continue;
        size_t start = 0;
        for (size_t j = 0; j <= h[i].value.len; j++) {
            if (j == h[i].value.len || h[i].value.ptr[j] == ';' || h[i].value.ptr[j] == ',') {
                fn(trim((struct lk_str){ h[i].value.ptr + start, j - start }), arg);
                start = j + 1;
            }
        }
    }
}

static bool is_ours(struct lk_str pair)
{
    static const char name[] = LK_AUTH_COOKIE "=";
    return pair.len >= sizeof(name) - 1 && memcmp(pair.ptr, name, sizeof(name) - 1) == 0;
}

struct model {
    const struct lk_auth_key *key;
    bool ok, has_ours;
    struct lk_buf others; /* the other non-empty pairs, each followed by '\n' */
};

static void model_pair(struct lk_str pair, void *arg)
{
    struct model *m = arg;
    size_t name = sizeof(LK_AUTH_COOKIE "=") - 1;
    if (is_ours(pair)) {
        m->has_ours = true;
        m->ok |=
            lk_auth_cookie_ok(m->key, (struct lk_str){ pair.ptr + name, pair.len - name }, NOW);
    } else if (pair.len > 0) {
        lk_buf_addstr(&m->others, pair);
        lk_buf_addch(&m->others, '\n');
    }
}

static void collect_pair(struct lk_str pair, void *arg)
{
    struct lk_buf *b = arg;
    if (pair.len > 0) {
        lk_buf_addstr(b, pair);
        lk_buf_addch(b, '\n');
    }
}

static void check_cookie_value(const struct lk_auth_key *key, struct lk_str v)
{
    if (!lk_auth_cookie_ok(key, v, 0))
        return;
    /* It verified: it must be the canonical minting of its own expiry. */
    LK_ASSERT(v.len > 3 && memcmp(v.ptr, "v1.", 3) == 0);
    uint64_t expiry = 0;
    size_t i = 3;
    while (i < v.len && v.ptr[i] >= '0' && v.ptr[i] <= '9')
        expiry = expiry * 10 + (uint64_t)(v.ptr[i++] - '0');
    char minted[LK_AUTH_COOKIE_MAX];
    size_t n = lk_auth_cookie_mint(key, expiry, minted);
    LK_ASSERT(n == v.len && memcmp(minted, v.ptr, n) == 0);
}

static void check_next(struct lk_str in)
{
    struct lk_str got = lk_auth_safe_next(in);
    LK_ASSERT((got.len == 1 && got.ptr[0] == '/') || (got.ptr == in.ptr && got.len == in.len));
    LK_ASSERT(got.len >= 1 && got.ptr[0] == '/');
    LK_ASSERT(got.len < 2 || (got.ptr[1] != '/' && got.ptr[1] != '\\'));
    for (size_t i = 0; i < got.len; i++)
        LK_ASSERT(got.ptr[i] > 0x20 && got.ptr[i] < 0x7f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct lk_auth_key key;
    lk_auth_key_init(&key, LK_STR(secret));
    struct lk_str rest = { (const char *)data, size };
    struct lk_str first = next_line(&rest);
    check_cookie_value(&key, first);
    check_next(first);

    char cookie[LK_AUTH_COOKIE_MAX];
    /* The expiry from the input length: sometimes already past NOW. */
    size_t n_cookie = lk_auth_cookie_mint(&key, NOW - 8 + size % 16, cookie);
    LK_ASSERT(lk_auth_cookie_ok(&key, (struct lk_str){ cookie, n_cookie }, NOW - 9));
    LK_ASSERT(!lk_auth_cookie_ok(&key, (struct lk_str){ cookie, n_cookie }, NOW - 8 + size % 16));

    struct lk_buf lines[MAX_HEADERS];
    struct lk_header h[MAX_HEADERS];
    size_t n = 0;
    while (rest.len > 0 && n < MAX_HEADERS) {
        struct lk_str line = next_line(&rest);
        long colon = lk_str_index(line, ':');
        if (colon < 0)
            continue;
        lk_buf_init(&lines[n], 0);
        expand((struct lk_str){ line.ptr + colon + 1, line.len - (size_t)colon - 1 }, cookie,
               &lines[n]);
        h[n] = (struct lk_header){ { line.ptr, (size_t)colon }, lk_buf_str(&lines[n]) };
        n++;
    }

    /* lk_auth_request_ok against the model. */
    struct model m = { &key, false, false, LK_BUF_INIT };
    for (size_t i = 0; i < n; i++) {
        if (ieq(h[i].name, LK_AUTH_HEADER) && trim(h[i].value).len == sizeof(secret) - 1 &&
            memcmp(trim(h[i].value).ptr, secret, sizeof(secret) - 1) == 0)
            m.ok = true;
    }
    each_pair(h, n, model_pair, &m);
    LK_ASSERT(lk_auth_request_ok(&key, h, n, NOW) == m.ok);

    /* lk_auth_strip. */
    struct lk_header out[MAX_HEADERS];
    struct lk_buf rewritten = LK_BUF_INIT;
    size_t k = lk_auth_strip(h, n, out, &rewritten);
    LK_ASSERT(k <= n);
    size_t j = 0;
    for (size_t i = 0; i < k; i++) {
        LK_ASSERT(!ieq(out[i].name, LK_AUTH_HEADER));
        if (m.has_ours && ieq(out[i].name, "cookie"))
            continue;
        /* Every other field, in order, untouched. */
        while (j < n &&
               (ieq(h[j].name, LK_AUTH_HEADER) || (m.has_ours && ieq(h[j].name, "cookie"))))
            j++;
        LK_ASSERT(j < n && out[i].name.ptr == h[j].name.ptr && out[i].value.ptr == h[j].value.ptr);
        j++;
    }
    struct lk_buf after = LK_BUF_INIT;
    each_pair(out, k, collect_pair, &after);
    if (m.has_ours) {
        LK_ASSERT(after.len == m.others.len &&
                  (after.len == 0 || memcmp(after.data, m.others.data, after.len) == 0));
    }
    struct model again = { &key, false, false, LK_BUF_INIT };
    each_pair(out, k, model_pair, &again);
    LK_ASSERT(!again.has_ours);
    lk_buf_release(&again.others);
    lk_buf_release(&after);
    lk_buf_release(&rewritten);
    lk_buf_release(&m.others);
    for (size_t i = 0; i < n; i++)
        lk_buf_release(&lines[i]);
    return 0;
}
