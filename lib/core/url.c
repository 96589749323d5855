/*
 * url.c - absolute URL parsing and WHATWG-style normalisation (url.h).
 *
 * The parser is a straight pass: scheme, authority, path, query, fragment.
 * Invariant: every field of a parsed struct lk_url is already normalised, so
 * serialising is plain concatenation.
 */
#include "core/url.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"

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

/* WHATWG forbidden host code points (plus anything non-ASCII: no IDNA here). */
static bool is_forbidden_host_char(unsigned char c)
{
    return c <= 0x20 || c >= 0x7f || strchr("#%/:<>?@[\\]^|", c) != NULL;
}

enum pct_set {
    PCT_PATH = 0,
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
        } else if (n - i >= 3 && p[i] == '%' && p[i + 1] == '2' && (p[i + 2] == 'e' || p[i + 2] == 'E')) {
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

static int parse_host_port(const char *p, size_t n, bool special, struct lk_url *u,
                           const char **why)
{
    size_t host_end = n;
    const char *port_p = NULL;
    size_t port_n = 0;
    if (n && p[0] == '[') {
        const char *rb = memchr(p, ']', n);
        if (rb == NULL)
            return fail(why, "unterminated IPv6 address");
        host_end = (size_t)(rb - p) + 1;
        for (size_t i = 1; i + 1 < host_end; i++) {
            char c = p[i];
            if (!(is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' ||
                  c == '.'))
                return fail(why, "invalid IPv6 address");
        }
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
    if (p[0] != '[') {
        for (size_t i = 0; i < host_end; i++) {
            if (is_forbidden_host_char((unsigned char)p[i]))
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
    u->host = lk_xstrndup(p, host_end);
    for (char *h = u->host; *h; h++)
        *h = lk_ascii_lower(*h);
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
    while (i < n && (is_alpha(in[i]) || is_digit(in[i]) || in[i] == '+' || in[i] == '-' ||
                     in[i] == '.'))
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
    bool has_authority = special || (n - i >= 2 && in[i] == '/' && in[i + 1] == '/');
    if (has_authority) {
        while (i < n && (in[i] == '/' || (special && in[i] == '\\')))
            i++;
        size_t a = i;
        while (i < n && in[i] != '/' && in[i] != '?' && in[i] != '#' && !(special && in[i] == '\\'))
            i++;
        const char *auth = in + a;
        size_t auth_n = i - a;
        const char *at = memrchr(auth, '@', auth_n);
        if (at) {
            u.userinfo = encode_part(auth, (size_t)(at - auth), PCT_USERINFO);
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
    if (special || i > ps)
        u.path = normalize_path(in + ps, i - ps, special);
    else
        u.path = lk_xstrdup("");
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
    if (url->port >= 0)
        lk_buf_addf(out, ":%d", url->port);
}

void lk_url_serialize(const struct lk_url *url, struct lk_buf *out)
{
    lk_buf_adds(out, url->scheme);
    lk_buf_addch(out, ':');
    if (is_special(url->scheme) || (url->host && url->host[0])) {
        lk_buf_adds(out, "//");
        if (url->userinfo) {
            lk_buf_adds(out, url->userinfo);
            lk_buf_addch(out, '@');
        }
        lk_url_host_port(url, out);
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
