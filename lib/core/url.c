/*
 * url.c - absolute URL parsing and WHATWG-style normalisation (url.h).
 *
 * The parser is a straight pass: scheme, authority, path, query, fragment.
 * Invariant: every field of a parsed struct lk_url is already normalised, so
 * serialising is plain concatenation.
 */
#include "core/url.h"

#include <idn2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/str.h"

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

int lk_url_default_port(const char *scheme)
{
    if (strcmp(scheme, "http") == 0 || strcmp(scheme, "ws") == 0)
        return 80;
    if (strcmp(scheme, "https") == 0 || strcmp(scheme, "wss") == 0)
        return 443;
    if (strcmp(scheme, "ftp") == 0)
        return 21;
    return -1;
}

static bool is_special(const char *scheme)
{
    return lk_url_default_port(scheme) != -1;
}

/* WHATWG counts "file" special too, without a port: its path always starts
 * with "/" and it always serialises with "//". */
static bool is_file(const char *scheme)
{
    return strcmp(scheme, "file") == 0;
}

/* WHATWG forbidden host code points (plus anything non-ASCII: a special
 * URL's domain has been through IDNA first, parse_domain()). */
static bool is_forbidden_host_char(unsigned char c)
{
    return c <= 0x20 || c >= 0x7f || strchr("#%/:<>?@[\\]^|", c) != NULL;
}

/* WHATWG forbidden host code points, which an opaque host (a non-special
 * URL's) must not contain; unlike a domain it may hold '%' and non-ASCII. */
static bool is_forbidden_opaque_host_char(unsigned char c)
{
    return c == 0 || strchr("\t\n\r #/:<>?@[\\]^|", c) != NULL;
}

enum pct_set {
    PCT_OPAQUE = 0, /* C0 controls and non-ASCII only */
    PCT_PATH,
    PCT_QUERY,
    PCT_SPECIAL_QUERY,
    PCT_FRAGMENT,
    PCT_USERINFO,
};

static bool needs_pct(unsigned char c, enum pct_set set)
{
    if (c < 0x21 || c >= 0x7f)
        return true;
    switch (set) {
    case PCT_OPAQUE:
        return false;
    case PCT_PATH:
        return strchr("\"#<>?`{}", c) != NULL;
    case PCT_QUERY:
        return strchr("\"#<>", c) != NULL;
    case PCT_SPECIAL_QUERY:
        return strchr("\"#<>'", c) != NULL;
    case PCT_FRAGMENT:
        return strchr("\"<>`", c) != NULL;
    case PCT_USERINFO:
        return strchr("\"#<>?`{}/:;=@[\\]^|", c) != NULL;
    }
    return false;
}

static void add_encoded(struct lk_buf *b, const char *p, size_t n, enum pct_set set)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (needs_pct(c, set)) {
            char e[3] = { '%', hex[c >> 4], hex[c & 15] };
            lk_buf_add(b, e, 3);
        } else {
            lk_buf_addch(b, (char)c);
        }
    }
}

static bool seg_is(const char *p, size_t n, int dots)
{
    /* "." / "%2e" and ".." / ".%2e" / "%2e." / "%2e%2e", case-insensitive. */
    size_t i = 0;
    int seen = 0;
    while (i < n) {
        if (p[i] == '.') {
            i++;
        } else if (n - i >= 3 && p[i] == '%' && p[i + 1] == '2' &&
                   (p[i + 2] == 'e' || p[i + 2] == 'E')) {
            i += 3;
        } else {
            return false;
        }
        seen++;
    }
    return seen == dots;
}

/* Normalises a path: percent-encoding, "\" as "/" (special), dot segments. */
static char *normalize_path(const char *p, size_t n, bool special)
{
    struct lk_buf out = LK_BUF_INIT;
    size_t i = (n && (p[0] == '/' || (special && p[0] == '\\'))) ? 1 : 0;
    lk_buf_addch(&out, '/');
    for (;;) {
        size_t j = i;
        while (j < n && p[j] != '/' && !(special && p[j] == '\\'))
            j++;
        bool last = j >= n;
        if (seg_is(p + i, j - i, 2)) {
            /* Pop the last segment: drop back to the previous "/". */
            if (out.len > 1) {
                size_t k = out.len - 1; /* out ends with "/" */
                while (k > 0 && out.data[k - 1] != '/')
                    k--;
                lk_buf_truncate(&out, k);
            }
        } else if (seg_is(p + i, j - i, 1)) {
            /* "." adds nothing. */
        } else {
            add_encoded(&out, p + i, j - i, PCT_PATH);
            if (!last)
                lk_buf_addch(&out, '/');
        }
        if (last)
            break;
        i = j + 1;
    }
    return lk_buf_detach(&out, NULL);
}

static char *encode_part(const char *p, size_t n, enum pct_set set)
{
    struct lk_buf out = LK_BUF_INIT;
    lk_buf_add(&out, "", 0);
    add_encoded(&out, p, n, set);
    return lk_buf_detach(&out, NULL);
}

/* "user:pass" with each half encoded on its own (the first ":" separates
 * them); NULL when both are empty, and no ":" when the password is. */
static char *encode_userinfo(const char *p, size_t n)
{
    const char *colon = memchr(p, ':', n);
    size_t user_n = colon ? (size_t)(colon - p) : n;
    size_t pass_n = colon ? n - user_n - 1 : 0;
    if (user_n == 0 && pass_n == 0)
        return NULL;
    struct lk_buf out = LK_BUF_INIT;
    add_encoded(&out, p, user_n, PCT_USERINFO);
    if (pass_n) {
        lk_buf_addch(&out, ':');
        add_encoded(&out, colon + 1, pass_n, PCT_USERINFO);
    }
    return lk_buf_detach(&out, NULL);
}

static int fail(const char **why, const char *msg)
{
    if (why)
        *why = msg;
    return LK_EPARSE;
}

/* Copies s without ASCII tab/newline and without leading/trailing C0+space. */
static char *clean_input(const char *s, size_t len, size_t *out_len)
{
    while (len && (unsigned char)s[0] <= 0x20) {
        s++;
        len--;
    }
    while (len && (unsigned char)s[len - 1] <= 0x20)
        len--;
    char *c = lk_xmalloc(len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
            c[n++] = s[i];
    }
    c[n] = '\0';
    *out_len = n;
    return c;
}

static bool is_hex(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static unsigned hex_val(char c)
{
    return is_digit(c) ? (unsigned)(c - '0') : (unsigned)(lk_ascii_lower(c) - 'a' + 10);
}

/* The dotted IPv4 tail of an IPv6 address fills two pieces. */
static bool parse_ipv6_v4(const char *p, size_t n, uint16_t *pieces)
{
    size_t i = 0;
    int seen = 0;
    while (i < n) {
        if (seen > 0) {
            if (p[i] != '.' || seen == 4)
                return false;
            i++;
        }
        if (i >= n || !is_digit(p[i]))
            return false;
        int v = -1;
        for (; i < n && is_digit(p[i]); i++) {
            if (v == 0)
                return false; /* no leading zeros */
            v = (v < 0 ? 0 : v * 10) + (p[i] - '0');
            if (v > 255)
                return false;
        }
        pieces[seen / 2] = (uint16_t)(pieces[seen / 2] * 0x100 + v);
        seen++;
    }
    return seen == 4;
}

/* The WHATWG IPv6 parser, on the text between the brackets. */
static bool parse_ipv6(const char *p, size_t n, uint16_t pieces[8])
{
    size_t i = 0;
    int piece = 0, compress = -1;
    memset(pieces, 0, 8 * sizeof(pieces[0]));
    if (i < n && p[i] == ':') {
        if (n - i < 2 || p[i + 1] != ':')
            return false;
        i += 2;
        compress = ++piece;
    }
    while (i < n) {
        if (piece == 8)
            return false;
        if (p[i] == ':') {
            if (compress != -1)
                return false;
            i++;
            compress = ++piece;
            continue;
        }
        unsigned value = 0;
        size_t len = 0;
        for (; len < 4 && i < n && is_hex(p[i]); len++, i++)
            value = value * 16 + hex_val(p[i]);
        if (i < n && p[i] == '.') {
            if (len == 0 || piece > 6 || !parse_ipv6_v4(p + i - len, n - i + len, &pieces[piece]))
                return false;
            piece += 2;
            break;
        }
        if (i < n && p[i] == ':') {
            if (++i == n)
                return false;
        } else if (i < n) {
            return false;
        }
        pieces[piece++] = (uint16_t)value;
    }
    if (compress == -1)
        return piece == 8;
    for (int swaps = piece - compress, k = 7; k != 0 && swaps > 0; k--, swaps--) {
        uint16_t t = pieces[k];
        pieces[k] = pieces[compress + swaps - 1];
        pieces[compress + swaps - 1] = t;
    }
    return true;
}

/* WHATWG serialisation: lower-case hex, the first longest run of two or more
 * zero pieces written as "::". */
static char *serialize_ipv6(const uint16_t pieces[8])
{
    int best = -1, best_len = 1;
    for (int i = 0; i < 8; i++) {
        int j = i;
        while (j < 8 && pieces[j] == 0)
            j++;
        if (j - i > best_len) {
            best = i;
            best_len = j - i;
        }
    }
    struct lk_buf out = LK_BUF_INIT;
    lk_buf_addch(&out, '[');
    for (int i = 0; i < 8; i++) {
        if (i == best) {
            lk_buf_adds(&out, i == 0 ? "::" : ":");
            i += best_len - 1;
            continue;
        }
        lk_buf_addf(&out, "%x%s", pieces[i], i < 7 ? ":" : "");
    }
    lk_buf_addch(&out, ']');
    return lk_buf_detach(&out, NULL);
}

/* WHATWG "IPv4 number parser": 0x/0X hex (may be empty), leading-0 octal,
 * else decimal. False when [p, p + n) is not such a number or overflows. */
static bool ipv4_number(const char *p, size_t n, uint64_t *out)
{
    unsigned base = 10;
    uint64_t v = 0;
    if (n >= 2 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        base = 16;
        p += 2;
        n -= 2;
    } else if (n >= 2 && p[0] == '0') {
        base = 8;
        p++;
        n--;
    } else if (n == 0) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        int d = lk_hex_digit(p[i]);
        if (d < 0 || (unsigned)d >= base || v > (UINT64_C(1) << 40))
            return false;
        v = v * base + (uint64_t)d;
    }
    *out = v;
    return true;
}

/* WHATWG "ends in a number" for a lower-cased domain h. */
static bool ends_in_number(const char *h)
{
    size_t n = strlen(h);
    if (n > 1 && h[n - 1] == '.')
        n--;
    size_t start = n;
    while (start > 0 && h[start - 1] != '.')
        start--;
    const char *last = h + start;
    size_t len = n - start;
    if (len == 0)
        return false;
    size_t i = 0;
    while (i < len && last[i] >= '0' && last[i] <= '9')
        i++;
    if (i == len)
        return true;
    if (len < 2 || last[0] != '0' || last[1] != 'x')
        return false;
    for (i = 2; i < len; i++) {
        if (lk_hex_digit(last[i]) < 0)
            return false;
    }
    return true;
}

/* WHATWG IPv4 parser over domain h (ends in a number): replaces *h with the
 * dotted-decimal form. Fails on anything that is not an IPv4 address. */
static int parse_ipv4(char **h, const char **why)
{
    uint64_t parts[4];
    size_t n_parts = 0;
    size_t len = strlen(*h);
    if (len > 1 && (*h)[len - 1] == '.')
        len--;
    const char *p = *h;
    const char *end = *h + len;
    while (p <= end) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        const char *part_end = dot ? dot : end;
        if (n_parts == 4 || !ipv4_number(p, (size_t)(part_end - p), &parts[n_parts]))
            return fail(why, "invalid IPv4 address");
        n_parts++;
        p = part_end + 1;
    }
    for (size_t i = 0; i + 1 < n_parts; i++) {
        if (parts[i] > 255)
            return fail(why, "invalid IPv4 address");
    }
    if (parts[n_parts - 1] >= (UINT64_C(1) << (8 * (5 - n_parts))))
        return fail(why, "invalid IPv4 address");
    uint64_t v = parts[n_parts - 1];
    for (size_t i = 0; i + 1 < n_parts; i++)
        v += parts[i] << (8 * (3 - i));
    /* Dotted decimal without printf (every upstream URL with an IPv4
     * address passes here). */
    char text[16];
    size_t t = 0;
    for (int shift = 24; shift >= 0; shift -= 8) {
        char dec[LK_U64_DEC_MAX];
        size_t k = lk_u64_to_dec((v >> shift) & 255u, dec);
        memcpy(text + t, dec, k);
        t += k;
        text[t++] = shift > 0 ? '.' : '\0';
    }
    free(*h);
    *h = lk_xstrdup(text);
    return 0;
}

/* WHATWG "domain to ASCII" for a host with non-ASCII bytes: UTS #46
 * non-transitional processing (libidn2), so "bücher.example" becomes
 * "xn--bcher-kva.example". Replaces *h; fails on invalid UTF-8 or a name
 * IDNA rejects. */
static int domain_to_ascii(char **h, size_t len, const char **why)
{
    if (strlen(*h) != len)
        return fail(why, "invalid host character"); /* a decoded %00 */
    char *ascii = NULL;
    /* libidn2 also refuses invalid UTF-8 (IDN2_ENCODING_ERROR). */
    if (idn2_to_ascii_8z(*h, &ascii, IDN2_NONTRANSITIONAL | IDN2_NFC_INPUT) != IDN2_OK)
        return fail(why, "invalid international domain name");
    free(*h);
    *h = lk_xstrdup(ascii);
    idn2_free(ascii);
    return 0;
}

/* A special URL's domain (WHATWG host parser): percent-decoded, through
 * IDNA when it is not ASCII, ASCII lower-cased, no forbidden code point,
 * and an IPv4 address when it ends in a number. Takes [p, p + n). */
static int parse_domain(const char *p, size_t n, char **out, const char **why)
{
    char *h = lk_xmalloc(n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '%' && i + 2 < n && lk_hex_digit(p[i + 1]) >= 0 &&
            lk_hex_digit(p[i + 2]) >= 0) {
            h[o++] = (char)(lk_hex_digit(p[i + 1]) * 16 + lk_hex_digit(p[i + 2]));
            i += 2;
        } else {
            h[o++] = p[i];
        }
    }
    h[o] = '\0';
    bool ascii = true;
    for (size_t i = 0; i < o; i++)
        ascii &= (unsigned char)h[i] < 0x80;
    if (!ascii) {
        if (domain_to_ascii(&h, o, why) != 0) {
            free(h);
            return LK_EPARSE;
        }
        o = strlen(h);
    }
    for (size_t i = 0; i < o; i++) {
        if (h[i] == '\0' || is_forbidden_host_char((unsigned char)h[i]) || h[i] == '%') {
            free(h);
            return fail(why, "invalid host character");
        }
        h[i] = lk_ascii_lower(h[i]);
    }
    if (o == 0) {
        free(h);
        return fail(why, "empty host");
    }
    if (ends_in_number(h) && parse_ipv4(&h, why) != 0) {
        free(h);
        return LK_EPARSE;
    }
    *out = h;
    return 0;
}

static int parse_host_port(const char *p, size_t n, bool special, struct lk_url *u,
                           const char **why)
{
    size_t host_end = n;
    const char *port_p = NULL;
    size_t port_n = 0;
    uint16_t pieces[8];
    if (n && p[0] == '[') {
        const char *rb = memchr(p, ']', n);
        if (rb == NULL)
            return fail(why, "unterminated IPv6 address");
        host_end = (size_t)(rb - p) + 1;
        if (!parse_ipv6(p + 1, host_end - 2, pieces))
            return fail(why, "invalid IPv6 address");
        if (host_end < n) {
            if (p[host_end] != ':')
                return fail(why, "invalid host");
            port_p = p + host_end + 1;
            port_n = n - host_end - 1;
        }
    } else {
        const char *colon = memrchr(p, ':', n);
        if (colon) {
            host_end = (size_t)(colon - p);
            port_p = colon + 1;
            port_n = n - host_end - 1;
        }
    }
    if (special && host_end == 0)
        return fail(why, "empty host");
    if (p[0] != '[' && !special) {
        for (size_t i = 0; i < host_end; i++) {
            if (is_forbidden_opaque_host_char((unsigned char)p[i]))
                return fail(why, "invalid host character");
        }
    }
    u->port = -1;
    if (port_p && port_n) {
        uint64_t v;
        if (lk_str_to_u64((struct lk_str){ port_p, port_n }, 65535, &v) != 0)
            return fail(why, "invalid port number");
        u->port = (int)v;
    }
    if (n && p[0] == '[') {
        u->host = serialize_ipv6(pieces);
    } else if (special) {
        if (parse_domain(p, host_end, &u->host, why) != 0)
            return LK_EPARSE;
    } else {
        /* WHATWG opaque host: case kept, C0 controls and non-ASCII encoded. */
        u->host = encode_part(p, host_end, PCT_OPAQUE);
    }
    if (u->port == lk_url_default_port(u->scheme))
        u->port = -1;
    return 0;
}

int lk_url_parse(const char *s, size_t len, struct lk_url *url, const char **why)
{
    size_t n;
    char *in = clean_input(s, len, &n);
    struct lk_url u = { 0 };
    int rc = 0;
    size_t i = 0;

    if (n == 0 || !is_alpha(in[0])) {
        rc = fail(why, "relative URL without a base");
        goto out;
    }
    while (i < n &&
           (is_alpha(in[i]) || is_digit(in[i]) || in[i] == '+' || in[i] == '-' || in[i] == '.'))
        i++;
    if (i >= n || in[i] != ':') {
        rc = fail(why, "relative URL without a base");
        goto out;
    }
    u.scheme = lk_xstrndup(in, i);
    for (char *c = u.scheme; *c; c++)
        *c = lk_ascii_lower(*c);
    i++;
    bool special = is_special(u.scheme);
    bool file = is_file(u.scheme);
    bool has_authority = special || (n - i >= 2 && in[i] == '/' && in[i + 1] == '/');
    if (has_authority) {
        /* Special schemes skip any run of slashes; others exactly "//". */
        if (special) {
            while (i < n && (in[i] == '/' || in[i] == '\\'))
                i++;
        } else {
            i += 2;
        }
        size_t a = i;
        while (i < n && in[i] != '/' && in[i] != '?' && in[i] != '#' && !(special && in[i] == '\\'))
            i++;
        const char *auth = in + a;
        size_t auth_n = i - a;
        const char *at = memrchr(auth, '@', auth_n);
        if (at) {
            u.userinfo = encode_userinfo(auth, (size_t)(at - auth));
            auth_n -= (size_t)(at - auth) + 1;
            auth = at + 1;
        }
        rc = parse_host_port(auth, auth_n, special, &u, why);
        if (rc != 0)
            goto out;
    } else {
        u.host = lk_xstrdup("");
        u.port = -1;
    }
    size_t ps = i;
    while (i < n && in[i] != '?' && in[i] != '#')
        i++;
    if (special || file || (i > ps && in[ps] == '/'))
        u.path = normalize_path(in + ps, i - ps, special || file);
    else /* an opaque path ("mailto:a/b") is kept as written */
        u.path = encode_part(in + ps, i - ps, PCT_OPAQUE);
    if (i < n && in[i] == '?') {
        size_t qs = ++i;
        while (i < n && in[i] != '#')
            i++;
        u.query = encode_part(in + qs, i - qs, special ? PCT_SPECIAL_QUERY : PCT_QUERY);
    }
    if (i < n && in[i] == '#') {
        i++;
        u.fragment = encode_part(in + i, n - i, PCT_FRAGMENT);
    }
    *url = u;
    u = (struct lk_url){ 0 };
out:
    lk_url_release(&u);
    free(in);
    return rc;
}

/* ---- the common URL without a parse (lk_url_split_plain) ---------------- */

/* Bytes that the path parse keeps as they are in an http(s) URL (no
 * percent-encoding, no "\\" -> "/", no percent-decoding of "%2e"):
 * unreserved, sub-delims, ":", "@" and "/"; by byte value, 32 per row. */
static const unsigned char PLAIN_PATH[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 0, 0, 1, 0, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

static bool is_plain_path_byte(unsigned char c)
{
    return PLAIN_PATH[c] != 0;
}

/* Bytes an http(s) query keeps as they are (WHATWG special-query set). */
static bool is_plain_query_byte(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != '"' && c != '#' && c != '<' && c != '>' && c != '\'';
}

/* True when the path [p, p + n) has a "." or ".." segment. */
static bool has_dot_segment(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '/')
            continue;
        size_t dots = 0;
        while (i + 1 + dots < n && p[i + 1 + dots] == '.')
            dots++;
        if ((dots == 1 || dots == 2) && (i + 1 + dots == n || p[i + 1 + dots] == '/'))
            return true;
    }
    return false;
}

/* Dotted decimal as parse_ipv4() writes it: four parts of 0-255 without
 * leading zeros. */
static bool is_dotted_quad(const char *h, size_t n)
{
    size_t parts = 0, i = 0;
    while (i < n) {
        size_t start = i;
        unsigned v = 0;
        while (i < n && is_digit(h[i]) && i - start < 3)
            v = v * 10 + (unsigned)(h[i++] - '0');
        size_t len = i - start;
        if (len == 0 || v > 255 || (len > 1 && h[start] == '0') || ++parts > 4)
            return false;
        if (i < n && (h[i] != '.' || i + 1 == n))
            return false;
        i += i < n;
    }
    return parts == 4;
}

bool lk_url_split_plain(struct lk_str s, char *mem, size_t cap, struct lk_url *url)
{
    const char *scheme = NULL;
    if (lk_str_starts_with(s, LK_STR("http://")))
        scheme = "http";
    else if (lk_str_starts_with(s, LK_STR("https://")))
        scheme = "https";
    if (scheme == NULL)
        return false;
    size_t scheme_len = strlen(scheme);
    size_t i = scheme_len + 3;
    size_t host_start = i;
    while (i < s.len && ((s.ptr[i] >= 'a' && s.ptr[i] <= 'z') || is_digit(s.ptr[i]) ||
                         s.ptr[i] == '.' || s.ptr[i] == '-'))
        i++;
    size_t host_len = i - host_start;
    if (host_len == 0 || host_len > 253)
        return false;
    int port = -1;
    if (i < s.len && s.ptr[i] == ':') {
        size_t port_start = ++i;
        while (i < s.len && is_digit(s.ptr[i]) && i - port_start < 5)
            i++;
        if (i < s.len && is_digit(s.ptr[i]))
            return false; /* six digits or more: lk_url_parse decides */
        if (i > port_start) {
            uint64_t v = 0;
            if (lk_str_to_u64((struct lk_str){ s.ptr + port_start, i - port_start }, 65535, &v) !=
                0)
                return false;
            port = (int)v == lk_url_default_port(scheme) ? -1 : (int)v;
        }
    }
    if (i >= s.len || s.ptr[i] != '/')
        return false;
    size_t path_start = i;
    while (i < s.len && s.ptr[i] != '?' && is_plain_path_byte((unsigned char)s.ptr[i]))
        i++;
    size_t path_len = i - path_start;
    size_t query_start = i + 1;
    if (i < s.len && s.ptr[i] == '?') {
        for (i = query_start; i < s.len && is_plain_query_byte((unsigned char)s.ptr[i]);)
            i++;
    }
    if (i != s.len || has_dot_segment(s.ptr + path_start, path_len))
        return false;
    size_t query_len = query_start <= s.len ? s.len - query_start : 0;
    if (scheme_len + host_len + path_len + query_len + 4 > cap)
        return false;
    /* The host as parse_domain() leaves it: what ends in a number is an IPv4
     * address, kept as it is only when written the way parse_ipv4() would. */
    char *host = mem + scheme_len + 1;
    memcpy(host, s.ptr + host_start, host_len);
    host[host_len] = '\0';
    if (ends_in_number(host) && !is_dotted_quad(host, host_len))
        return false;
    memset(url, 0, sizeof(*url));
    url->port = port;
    url->scheme = memcpy(mem, scheme, scheme_len + 1);
    url->host = host;
    url->path = host + host_len + 1;
    memcpy(url->path, s.ptr + path_start, path_len);
    url->path[path_len] = '\0';
    if (query_start <= s.len) {
        url->query = url->path + path_len + 1;
        memcpy(url->query, s.ptr + query_start, query_len);
        url->query[query_len] = '\0';
    }
    return true;
}

void lk_url_release(struct lk_url *url)
{
    free(url->scheme);
    free(url->userinfo);
    free(url->host);
    free(url->path);
    free(url->query);
    free(url->fragment);
    *url = (struct lk_url){ 0 };
    url->port = -1;
}

static char *dup_or_null(const char *s)
{
    return s ? lk_xstrdup(s) : NULL;
}

void lk_url_copy(struct lk_url *dst, const struct lk_url *src)
{
    dst->scheme = dup_or_null(src->scheme);
    dst->userinfo = dup_or_null(src->userinfo);
    dst->host = dup_or_null(src->host);
    dst->port = src->port;
    dst->path = dup_or_null(src->path);
    dst->query = dup_or_null(src->query);
    dst->fragment = dup_or_null(src->fragment);
}

void lk_url_host_port(const struct lk_url *url, struct lk_buf *out)
{
    lk_buf_adds(out, url->host ? url->host : "");
    if (url->port >= 0) {
        /* Without printf: this runs twice for every proxied request. */
        lk_buf_addch(out, ':');
        lk_buf_add_u64(out, (uint64_t)url->port);
    }
}

void lk_url_serialize(const struct lk_url *url, struct lk_buf *out)
{
    lk_buf_adds(out, url->scheme);
    lk_buf_addch(out, ':');
    if (is_special(url->scheme) || is_file(url->scheme) || (url->host && url->host[0])) {
        lk_buf_adds(out, "//");
        if (url->userinfo) {
            lk_buf_adds(out, url->userinfo);
            lk_buf_addch(out, '@');
        }
        lk_url_host_port(url, out);
    } else if (url->path && url->path[0] == '/' && url->path[1] == '/') {
        /* Without a host, "//" would read back as an authority (WHATWG). */
        lk_buf_adds(out, "/.");
    }
    lk_buf_adds(out, url->path ? url->path : "");
    if (url->query) {
        lk_buf_addch(out, '?');
        lk_buf_adds(out, url->query);
    }
    if (url->fragment) {
        lk_buf_addch(out, '#');
        lk_buf_adds(out, url->fragment);
    }
}

int lk_url_effective_port(const struct lk_url *url)
{
    return url->port >= 0 ? url->port : lk_url_default_port(url->scheme);
}

bool lk_url_is_http(const struct lk_url *url)
{
    return url->scheme && (strcmp(url->scheme, "http") == 0 || strcmp(url->scheme, "https") == 0) &&
           url->host && url->host[0];
}

int lk_url_normalize(const char *s, size_t len, struct lk_buf *out, const char **why)
{
    struct lk_url u;
    int rc = lk_url_parse(s, len, &u, why);
    if (rc != 0)
        return rc;
    lk_url_serialize(&u, out);
    lk_url_release(&u);
    return 0;
}
