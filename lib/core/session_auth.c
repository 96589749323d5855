/*
 * session_auth.c - session-auth credentials (session_auth.h).
 */
#include "core/session_auth.h"

#include <string.h>

#define COOKIE_VERSION "v1."

static const char hex_digits[] = "0123456789abcdef";

void lk_auth_key_init(struct lk_auth_key *key, struct lk_str secret)
{
    lk_sha256(secret.ptr, secret.len, key->k);
}

bool lk_auth_secret_ok(const struct lk_auth_key *key, struct lk_str candidate)
{
    unsigned char d[LK_SHA256_LEN];
    lk_sha256(candidate.ptr, candidate.len, d);
    return lk_mem_ct_eq(d, sizeof(d), key->k, sizeof(key->k));
}

/* The hex MAC of signed[0..len) into hex (2 * LK_SHA256_LEN bytes, no NUL). */
static void mac_hex(const struct lk_auth_key *key, const char *signed_part, size_t len, char *hex)
{
    unsigned char mac[LK_SHA256_LEN];
    lk_hmac_sha256(key->k, sizeof(key->k), signed_part, len, mac);
    for (size_t i = 0; i < sizeof(mac); i++) {
        hex[2 * i] = hex_digits[mac[i] >> 4];
        hex[2 * i + 1] = hex_digits[mac[i] & 15];
    }
}

size_t lk_auth_cookie_mint(const struct lk_auth_key *key, uint64_t expiry,
                           char out[LK_AUTH_COOKIE_MAX])
{
    size_t n = sizeof(COOKIE_VERSION) - 1;
    memcpy(out, COOKIE_VERSION, n);
    n += lk_u64_to_dec(expiry, out + n);
    out[n] = '.';
    mac_hex(key, out, n, out + n + 1);
    n += 1 + 2 * LK_SHA256_LEN;
    out[n] = '\0';
    return n;
}

bool lk_auth_cookie_ok(const struct lk_auth_key *key, struct lk_str value, uint64_t now)
{
    struct lk_str prefix = LK_STR(COOKIE_VERSION);
    if (value.len <= prefix.len + 1 + 2 * LK_SHA256_LEN || value.len >= LK_AUTH_COOKIE_MAX ||
        !lk_str_starts_with(value, prefix))
        return false;
    size_t signed_len = value.len - 1 - 2 * LK_SHA256_LEN;
    if (value.ptr[signed_len] != '.')
        return false;
    /* Digits only: lk_str_to_u64 alone would also take a sign or spaces. */
    struct lk_str digits = { value.ptr + prefix.len, signed_len - prefix.len };
    for (size_t i = 0; i < digits.len; i++) {
        if (digits.ptr[i] < '0' || digits.ptr[i] > '9')
            return false;
    }
    uint64_t expiry = 0;
    if (lk_str_to_u64(digits, UINT64_MAX, &expiry) != 0)
        return false;
    char want[2 * LK_SHA256_LEN];
    mac_hex(key, value.ptr, signed_len, want);
    /* The MAC first, in constant time; the expiry of a forged value is
     * never looked at. */
    return lk_mem_ct_eq(want, sizeof(want), value.ptr + signed_len + 1, sizeof(want)) &&
           expiry > now;
}

/* ---- Cookie fields ----------------------------------------------------------- */

/* The next trimmed pair of a Cookie value (pairs end at ';' or ','). */
static struct lk_str next_pair(struct lk_str *rest)
{
    size_t i = 0;
    while (i < rest->len && rest->ptr[i] != ';' && rest->ptr[i] != ',')
        i++;
    struct lk_str pair = { rest->ptr, i };
    size_t skip = i < rest->len ? i + 1 : i;
    rest->ptr += skip;
    rest->len -= skip;
    return lk_str_trim(pair);
}

/* True when pair is "LK_AUTH_COOKIE=..." (the value into *value). */
static bool is_auth_pair(struct lk_str pair, struct lk_str *value)
{
    struct lk_str name = LK_STR(LK_AUTH_COOKIE "=");
    if (!lk_str_starts_with(pair, name))
        return false;
    *value = (struct lk_str){ pair.ptr + name.len, pair.len - name.len };
    return true;
}

static bool is_field(const struct lk_header *h, const char *name)
{
    return lk_str_ieq(h->name, lk_str_c(name));
}

bool lk_auth_request_ok(const struct lk_auth_key *key, const struct lk_header *h, size_t n,
                        uint64_t now)
{
    for (size_t i = 0; i < n; i++) {
        if (is_field(&h[i], LK_AUTH_HEADER) && lk_auth_secret_ok(key, lk_str_trim(h[i].value)))
            return true;
        if (!is_field(&h[i], "cookie"))
            continue;
        struct lk_str rest = h[i].value, v;
        while (rest.len > 0) {
            if (is_auth_pair(next_pair(&rest), &v) && lk_auth_cookie_ok(key, v, now))
                return true;
        }
    }
    return false;
}

static bool has_auth_pair(struct lk_str cookie)
{
    struct lk_str v;
    while (cookie.len > 0) {
        if (is_auth_pair(next_pair(&cookie), &v))
            return true;
    }
    return false;
}

size_t lk_auth_strip(const struct lk_header *h, size_t n, struct lk_header *out,
                     struct lk_buf *cookie)
{
    bool rewrite = false;
    for (size_t i = 0; i < n && !rewrite; i++)
        rewrite = is_field(&h[i], "cookie") && has_auth_pair(h[i].value);
    if (rewrite) {
        struct lk_str v;
        for (size_t i = 0; i < n; i++) {
            struct lk_str rest = is_field(&h[i], "cookie") ? h[i].value : LK_STR("");
            while (rest.len > 0) {
                struct lk_str pair = next_pair(&rest);
                if (pair.len == 0 || is_auth_pair(pair, &v))
                    continue;
                if (cookie->len > 0)
                    lk_buf_adds(cookie, "; ");
                lk_buf_addstr(cookie, pair);
            }
        }
    }
    size_t k = 0;
    bool cookie_placed = false;
    for (size_t i = 0; i < n; i++) {
        if (is_field(&h[i], LK_AUTH_HEADER))
            continue;
        if (rewrite && is_field(&h[i], "cookie")) {
            if (!cookie_placed && cookie->len > 0)
                out[k++] = (struct lk_header){ h[i].name, lk_buf_str(cookie) };
            cookie_placed = true;
            continue;
        }
        out[k++] = h[i];
    }
    return k;
}

struct lk_str lk_auth_safe_next(struct lk_str next)
{
    static const struct lk_str root = LK_STR("/");
    if (next.len == 0 || next.len > LK_AUTH_NEXT_MAX || next.ptr[0] != '/')
        return root;
    if (next.len > 1 && (next.ptr[1] == '/' || next.ptr[1] == '\\'))
        return root;
    for (size_t i = 0; i < next.len; i++) {
        unsigned char c = (unsigned char)next.ptr[i];
        if (c < 0x21 || c > 0x7e)
            return root;
    }
    return next;
}
