/*
 * http1.c - strict incremental HTTP/1.1 head parsers and chunked decoder.
 *
 * The head parsers scan strictly left to right and check every limit at the
 * byte position where it is crossed. That is what makes prefixes agree with
 * the whole input: a prefix either ends before the first decisive byte
 * (LK_PARTIAL) or contains it (the same result). Framing rules that need the
 * whole head (Content-Length vs Transfer-Encoding, ...) run only once the
 * final empty line has been seen.
 */
#include "proto/http1.h"

#include <ctype.h>
#include <stdint.h>
#include <string.h>

#include "core/err.h"

/* tchar of RFC 9110 §5.6.2 by byte value, 32 per row: DIGIT, ALPHA and
 * "!#$%&'*+-.^_`|~" (a byte table: one load per byte of every field name). */
static const unsigned char TCHAR[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 0, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

static bool is_tchar(unsigned char c)
{
    return TCHAR[c] != 0;
}

/* field-vchar / SP / HTAB / obs-text: every byte but CTLs (HTAB allowed) and DEL. */
static bool is_value_byte(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

void lk_http1_limits_default(struct lk_http1_limits *l)
{
    *l = (struct lk_http1_limits)LK_HTTP1_LIMITS_DEFAULT;
}

enum line_result {
    LINE_OK = 0,
    LINE_PARTIAL,
    LINE_BARE,      /* bare CR or LF */
    LINE_TOO_LONG,  /* content longer than max */
    LINE_HEAD_LONG, /* the line would end past hard_end */
};

/* Where find_line()'s scan of the line at p stops: the end of the input,
 * the head limit, or one byte past the line limit, whichever comes first.
 * p <= hard_end and p <= end (the previous line ended before both). */
static const char *line_lim(const char *p, const char *end, size_t max, const char *hard_end)
{
    const char *lim = end;
    if (hard_end < lim)
        lim = hard_end;
    size_t span = (size_t)(lim - p);
    if (span > max && span - max > 1)
        lim = p + max + 1;
    return lim;
}

/* Finds the CRLF ending the line at p. Content may be at most max bytes and
 * the CRLF must end at or before hard_end. Sets *eol to the CR. The result
 * is the one of a byte-by-byte scan that checks, at each position q: the
 * line limit (q - p > max), the head limit (q >= hard_end), the end of the
 * input, then the byte; the first CR or LF is found with memchr first.
 * With lf_ok (response heads, below) a bare LF ends a line too, and *eol is
 * that LF; eol_next() gives the start of the next line either way. */
static enum line_result find_line(const char *p, const char *end, size_t max, const char *hard_end,
                                  bool lf_ok, const char **eol)
{
    const char *lim = line_lim(p, end, max, hard_end);
    const char *q = lim > p ? memchr(p, '\r', (size_t)(lim - p)) : NULL;
    const char *lf = memchr(p, '\n', (size_t)((q != NULL ? q : lim) - p));
    if (lf != NULL) {
        if (!lf_ok)
            return LINE_BARE;
        *eol = lf; /* lf < lim <= hard_end: it ends within the head */
        return LINE_OK;
    }
    if (q == NULL) {
        if ((size_t)(lim - p) > max)
            return LINE_TOO_LONG;
        return lim >= hard_end ? LINE_HEAD_LONG : LINE_PARTIAL;
    }
    if (q + 1 >= hard_end)
        return LINE_HEAD_LONG;
    if (q + 1 == end)
        return LINE_PARTIAL;
    if (q[1] != '\n')
        return LINE_BARE;
    *eol = q;
    return LINE_OK;
}

/* The first byte after the line terminator at eol (CRLF, or a bare LF
 * where find_line() allowed one). */
static const char *eol_next(const char *eol)
{
    return eol + (*eol == '\r' ? 2 : 1);
}

/* Common state of one head parse. */
struct head {
    const struct lk_http1_limits *lim;
    struct lk_http_header *headers;
    size_t cap;
    size_t n;
    int status; /* error status */
    const char *why;
    bool lf_ok; /* a bare LF ends a line (responses) */
};

static int fail(struct head *h, int rc, int status, const char *why)
{
    h->status = status;
    h->why = why;
    return rc;
}

static int line_error(struct head *h, enum line_result r)
{
    switch (r) {
    case LINE_BARE:
        return fail(h, LK_EPARSE, 400, "bare CR or LF in message head");
    case LINE_TOO_LONG:
        return fail(h, LK_ELIMIT, 431, "header line too long");
    case LINE_HEAD_LONG:
        return fail(h, LK_ELIMIT, 431, "message head too large");
    default:
        return LK_PARTIAL;
    }
}

/* Stores the field name and the value [value, vend) without its trailing
 * whitespace as h->headers[h->n] (the caller checked there is room). */
static void add_field(struct head *h, const char *name, size_t name_len, const char *value,
                      const char *vend)
{
    while (vend > value && is_ows(vend[-1]))
        vend--;
    h->headers[h->n].name = (struct lk_str){ name, name_len };
    h->headers[h->n].value = (struct lk_str){ value, (size_t)(vend - value) };
    h->n++;
}

/* Parses one field line [p, eol) into h->headers. */
static int parse_field(struct head *h, const char *p, const char *eol)
{
    if (is_ows(*p))
        return fail(h, LK_EPARSE, 400, "obsolete line folding is not allowed");
    const char *name = p;
    while (p < eol && is_tchar((unsigned char)*p))
        p++;
    if (p == eol || *p != ':') {
        if (p < eol && p > name && is_ows(*p))
            return fail(h, LK_EPARSE, 400, "whitespace before colon in header field");
        return fail(h, LK_EPARSE, 400, "invalid header field name");
    }
    if (p == name)
        return fail(h, LK_EPARSE, 400, "empty header field name");
    size_t name_len = (size_t)(p - name);
    p++;
    while (p < eol && is_ows(*p))
        p++;
    const char *value = p;
    for (p = lk_skip_plain_words(p, eol); p < eol; p++) {
        if (!is_value_byte((unsigned char)*p))
            return fail(h, LK_EPARSE, 400, "invalid character in header field value");
    }
    if (h->n >= h->cap || h->n >= h->lim->max_headers)
        return fail(h, LK_ELIMIT, 431, "too many header fields");
    add_field(h, name, name_len, value, p);
    return 0;
}

/* The common field line in one pass: a token, ':', OWS, value bytes, then
 * CRLF (or, with lf_ok, a bare LF) ending before line_lim(), with room for
 * one more field. None of those bytes is a CR or LF, so find_line() would
 * end the line at the same byte and parse_field() would store the same
 * field: it is stored as h->headers[h->n] and the line's end (the CR or
 * LF) returned. Anything else gives NULL and is left to that exact path,
 * whose first check decides it (the empty line ending the head included). */
static const char *fast_field(struct head *h, const char *p, const char *end, const char *hard_end)
{
    if (h->n >= h->cap || h->n >= h->lim->max_headers)
        return NULL;
    const char *lim = line_lim(p, end, h->lim->max_line, hard_end);
    const char *name = p;
    while (p < lim && is_tchar((unsigned char)*p))
        p++;
    if (p == name || p == lim || *p != ':')
        return NULL;
    size_t name_len = (size_t)(p - name);
    p++;
    while (p < lim && is_ows(*p))
        p++;
    const char *value = p;
    for (p = lk_skip_plain_words(p, lim); p < lim && is_value_byte((unsigned char)*p); p++)
        ;
    if (p == lim)
        return NULL;
    const char *eol = p;
    if (*p == '\r') {
        if (p + 1 >= hard_end || p + 1 == end || p[1] != '\n')
            return NULL;
    } else if (*p != '\n' || !h->lf_ok) {
        return NULL;
    }
    add_field(h, name, name_len, value, p);
    return eol;
}

/* Parses the field lines starting at p up to and including the empty line.
 * Returns the total head length or an error. */
static int parse_fields(struct head *h, const char *buf, const char *p, const char *end)
{
    const char *hard_end = buf + h->lim->max_head;
    for (;;) {
        const char *eol = fast_field(h, p, end, hard_end);
        if (eol != NULL) {
            p = eol_next(eol);
            continue;
        }
        enum line_result r = find_line(p, end, h->lim->max_line, hard_end, h->lf_ok, &eol);
        if (r != LINE_OK)
            return line_error(h, r);
        if (eol == p)
            return (int)(eol_next(eol) - buf);
        int rc = parse_field(h, p, eol);
        if (rc != 0)
            return rc;
        p = eol_next(eol);
    }
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* HTTP-version = "HTTP/" DIGIT "." DIGIT (RFC 9112 §2.3). A later minor
 * version of HTTP/1 is read as 1.1, the highest we implement ("SHOULD
 * process the message as if it were in the highest minor version"). LK_EPARSE
 * when v is not a version, LK_EUNSUPPORTED for another major version. */
static int parse_version(struct lk_str v, int *minor)
{
    if (v.len != 8 || memcmp(v.ptr, "HTTP/", 5) != 0 || !is_digit(v.ptr[5]) || v.ptr[6] != '.' ||
        !is_digit(v.ptr[7]))
        return LK_EPARSE;
    if (v.ptr[5] != '1')
        return LK_EUNSUPPORTED;
    *minor = v.ptr[7] == '0' ? 0 : 1;
    return 0;
}

/* Host = uri-host [ ":" port ] (RFC 9110 §7.2, RFC 3986 §3.2.2): an
 * IP-literal in brackets or a reg-name of unreserved, pct-encoded and
 * sub-delims bytes. An empty value is allowed (RFC 9112 §3.2). A '/', '?',
 * '#', '@' or space would change the URL a proxy builds from it. */
static bool host_value_ok(struct lk_str v)
{
    size_t i = 0;
    if (v.len > 0 && v.ptr[0] == '[') {
        for (i = 1; i < v.len && v.ptr[i] != ']'; i++) {
            unsigned char c = (unsigned char)v.ptr[i];
            if (!isxdigit(c) && c != ':' && c != '.' && c != 'v' && c != 'V')
                return false;
        }
        if (i == v.len)
            return false;
        i++;
    } else {
        while (i < v.len && v.ptr[i] != ':') {
            unsigned char c = (unsigned char)v.ptr[i++];
            if (c == '%') {
                if (i + 2 > v.len || !isxdigit((unsigned char)v.ptr[i]) ||
                    !isxdigit((unsigned char)v.ptr[i + 1]))
                    return false;
                i += 2;
            } else if (c == '\0' || (!isalnum(c) && !strchr("-._~!$&'()*+,;=", c))) {
                return false;
            }
        }
    }
    if (i < v.len && v.ptr[i++] != ':')
        return false;
    for (; i < v.len; i++) {
        if (v.ptr[i] < '0' || v.ptr[i] > '9')
            return false;
    }
    return true;
}

/* Framing facts gathered from the fields once the head is complete. */
struct framing {
    bool has_cl, has_te, te_chunked, te_other, conn_close, conn_keep_alive, expect_continue;
    uint64_t content_length;
    size_t n_host;
};

/* Content-Length: 1*DIGIT, possibly repeated as an identical list ("5, 5"). */
static int add_content_length(struct head *h, struct framing *f, struct lk_str v)
{
    size_t i = 0;
    for (;;) {
        size_t j = i;
        while (j < v.len && v.ptr[j] != ',')
            j++;
        struct lk_str part = { v.ptr + i, j - i };
        while (part.len && is_ows(part.ptr[0])) {
            part.ptr++;
            part.len--;
        }
        while (part.len && is_ows(part.ptr[part.len - 1]))
            part.len--;
        uint64_t n = 0;
        if (part.len == 0 || lk_str_to_u64(part, UINT64_MAX / 2, &n) != 0)
            return fail(h, LK_EPARSE, 400, "invalid Content-Length");
        for (size_t k = 0; k < part.len; k++) {
            if (part.ptr[k] < '0' || part.ptr[k] > '9')
                return fail(h, LK_EPARSE, 400, "invalid Content-Length");
        }
        if (f->has_cl && n != f->content_length)
            return fail(h, LK_EPARSE, 400, "conflicting Content-Length values");
        f->has_cl = true;
        f->content_length = n;
        if (j >= v.len)
            return 0;
        i = j + 1;
    }
}

/* Transfer-Encoding: the only coding we implement is "chunked". A list in
 * which it is not the final coding, or appears twice, cannot be framed (RFC
 * 9112 §6.3: 400); other codings before a final "chunked" are noted
 * (te_other) for scan_fields(). */
static int add_transfer_encoding(struct head *h, struct framing *f, struct lk_str v)
{
    size_t i = 0;
    for (;;) {
        size_t j = i;
        while (j < v.len && v.ptr[j] != ',')
            j++;
        struct lk_str part = lk_str_trim((struct lk_str){ v.ptr + i, j - i });
        if (part.len > 0) {
            if (f->te_chunked)
                return fail(h, LK_EPARSE, 400, "unsupported Transfer-Encoding");
            if (lk_str_ieq(part, LK_STR("chunked")))
                f->te_chunked = true;
            else
                f->te_other = true;
        }
        if (j >= v.len)
            break;
        i = j + 1;
    }
    f->has_te = true;
    return 0;
}

static int scan_fields(struct head *h, struct framing *f)
{
    memset(f, 0, sizeof(*f));
    for (size_t i = 0; i < h->n; i++) {
        struct lk_str name = h->headers[i].name, value = h->headers[i].value;
        int rc = 0;
        /* Most fields are none of the five: their lengths tell at once. */
        switch (name.len) {
        case 4:  /* host */
        case 6:  /* expect */
        case 10: /* connection */
        case 14: /* content-length */
        case 17: /* transfer-encoding */
            break;
        default:
            continue;
        }
        if (lk_str_ieq(name, LK_STR("content-length"))) {
            rc = add_content_length(h, f, value);
        } else if (lk_str_ieq(name, LK_STR("transfer-encoding"))) {
            rc = add_transfer_encoding(h, f, value);
        } else if (lk_str_ieq(name, LK_STR("connection"))) {
            f->conn_close |= lk_str_has_token(value, LK_STR("close"));
            f->conn_keep_alive |= lk_str_has_token(value, LK_STR("keep-alive"));
        } else if (lk_str_ieq(name, LK_STR("host"))) {
            f->n_host++;
            if (!host_value_ok(value))
                rc = fail(h, LK_EPARSE, 400, "invalid Host header field");
        } else if (lk_str_ieq(name, LK_STR("expect"))) {
            f->expect_continue |= lk_str_ieq(value, LK_STR("100-continue"));
        }
        if (rc != 0)
            return rc;
    }
    if (f->has_te && !f->te_chunked)
        return fail(h, LK_EPARSE, 400, "unsupported Transfer-Encoding");
    if (f->has_te && f->has_cl)
        return fail(h, LK_EPARSE, 400, "both Content-Length and Transfer-Encoding");
    /* A coding we do not understand before the final chunked: the body can
     * be framed but not decoded (RFC 9112 §6.1: "SHOULD respond with 501"). */
    if (f->te_other)
        return fail(h, LK_EPARSE, 501, "unsupported Transfer-Encoding");
    return 0;
}

/* RFC 9112 §3.2: origin-form ("/..."), absolute-form ("scheme://..."),
 * authority-form (CONNECT only) or asterisk-form (OPTIONS only). Anything
 * else ("abc", "?q") would be glued to the Host by a proxy building a URL. */
static bool target_form_ok(struct lk_str method, struct lk_str t)
{
    if (t.ptr[0] == '/')
        return true;
    if (lk_str_eq(method, LK_STR("CONNECT")))
        return true;
    if (t.len == 1 && t.ptr[0] == '*')
        return lk_str_eq(method, LK_STR("OPTIONS"));
    size_t i = 0;
    while (i < t.len && (isalnum((unsigned char)t.ptr[i]) || t.ptr[i] == '+' || t.ptr[i] == '-' ||
                         t.ptr[i] == '.'))
        i++;
    return i > 0 && isalpha((unsigned char)t.ptr[0]) && t.len - i >= 3 && t.ptr[i] == ':' &&
           t.ptr[i + 1] == '/' && t.ptr[i + 2] == '/';
}

/* request-line = method SP request-target SP HTTP-version */
static int parse_request_line(struct head *h, const char *p, const char *eol,
                              struct lk_http1_request *req)
{
    const char *m = p;
    while (p < eol && is_tchar((unsigned char)*p))
        p++;
    if (p == m || p == eol || *p != ' ')
        return fail(h, LK_EPARSE, 400, "invalid request method");
    req->method = (struct lk_str){ m, (size_t)(p - m) };
    const char *t = ++p;
    while (p < eol && (unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f)
        p++;
    if ((size_t)(p - t) > h->lim->max_target)
        return fail(h, LK_ELIMIT, 414, "request target too long");
    if (p == t || p == eol || *p != ' ')
        return fail(h, LK_EPARSE, 400, "invalid request target");
    req->target = (struct lk_str){ t, (size_t)(p - t) };
    if (!target_form_ok(req->method, req->target))
        return fail(h, LK_EPARSE, 400, "invalid request target");
    p++;
    int vrc = parse_version((struct lk_str){ p, (size_t)(eol - p) }, &req->minor_version);
    if (vrc == LK_EUNSUPPORTED)
        return fail(h, LK_EPARSE, 505, "unsupported HTTP version");
    if (vrc != 0)
        return fail(h, LK_EPARSE, 400, "invalid HTTP version");
    return 0;
}

/* The request line gets the target limit: a line that is too long because
 * of its target is a 414, not a 431; so is an unfinished line whose target
 * has already grown past the limit, at once rather than at the line limit. */
static int request_line_error(struct head *h, const char *p, const char *end, enum line_result r)
{
    /* The target starts after the first SP, if one comes before any CR or
     * LF (a bare one is where the line's 400 is decided: what follows it
     * does not count), and ends where parse_request_line() ends it, so that
     * a head cut anywhere gets the answer the whole head gets. */
    const char *sp = p;
    while (sp < end && *sp != ' ' && *sp != '\r' && *sp != '\n')
        sp++;
    if (sp == end || *sp != ' ')
        return line_error(h, r);
    const char *t = sp + 1, *q = t;
    while (q < end && (unsigned char)*q > 0x20 && (unsigned char)*q < 0x7f)
        q++;
    if ((size_t)(q - t) > h->lim->max_target)
        return fail(h, LK_ELIMIT, 414, "request target too long");
    return line_error(h, r);
}

static int request_head(struct head *h, const char *buf, size_t len, struct lk_http1_request *req)
{
    const char *p = buf, *end = buf + len, *hard_end = buf + h->lim->max_head;
    /* RFC 9112 §2.2: ignore empty lines before the request line. */
    while (p + 1 < end && p + 2 <= hard_end && p[0] == '\r' && p[1] == '\n')
        p += 2;
    const char *eol = NULL;
    size_t max = h->lim->max_line;
    if (max < h->lim->max_target + 32)
        max = h->lim->max_target + 32;
    /* The method is a token (RFC 9110 §5.6.2): a byte that cannot be part of
     * one is an error as soon as it arrives, so a TLS ClientHello (0x16 0x03)
     * or other binary gets its 400 without waiting for a CRLF that may never
     * come. The scan stops where find_line() would decide first (the line or
     * head limit) and at SP, CR or LF, which it leaves to the checks below. */
    for (const char *q = p; q < end && (size_t)(q - p) <= max && q < hard_end; q++) {
        unsigned char c = (unsigned char)*q;
        if ((c == ' ' && q > p) || c == '\r' || c == '\n')
            break;
        if (!is_tchar(c))
            return fail(h, LK_EPARSE, 400, "invalid request method");
    }
    enum line_result r = find_line(p, end, max, hard_end, h->lf_ok, &eol);
    if (r != LINE_OK) {
        const char *stop = end < hard_end ? end : hard_end;
        if ((size_t)(stop - p) > max + 1)
            stop = p + max + 1;
        return request_line_error(h, p, stop, r);
    }
    int rc = parse_request_line(h, p, eol, req);
    if (rc != 0)
        return rc;
    return parse_fields(h, buf, eol + 2, end);
}

int lk_http1_parse_request(const char *buf, size_t len, const struct lk_http1_limits *lim,
                           struct lk_http1_request *req, const char **why)
{
    static const struct lk_http1_limits defaults = LK_HTTP1_LIMITS_DEFAULT;
    struct head h = { lim ? lim : &defaults, req->headers, req->headers_cap, 0, 0, NULL, false };
    req->n_headers = 0;
    req->err_status = 0;
    req->body_kind = LK_HTTP1_BODY_NONE;
    req->content_length = 0;
    int rc = request_head(&h, buf, len, req);
    if (rc > 0) {
        req->n_headers = h.n;
        struct framing f;
        int frc = scan_fields(&h, &f);
        if (frc == 0 && f.n_host > 1)
            frc = fail(&h, LK_EPARSE, 400, "multiple Host header fields");
        if (frc == 0 && f.has_te && req->minor_version == 0)
            frc = fail(&h, LK_EPARSE, 400, "Transfer-Encoding in an HTTP/1.0 request");
        if (frc != 0) {
            rc = frc;
        } else {
            req->body_kind = f.te_chunked ? LK_HTTP1_BODY_CHUNKED
                             : f.has_cl   ? LK_HTTP1_BODY_LENGTH
                                          : LK_HTTP1_BODY_NONE;
            req->content_length = f.has_cl ? f.content_length : 0;
            req->keep_alive = req->minor_version == 1 ? !f.conn_close : f.conn_keep_alive;
            req->expect_continue = f.expect_continue;
        }
    }
    if (rc < 0 && rc != LK_PARTIAL) {
        req->err_status = h.status;
        if (why != NULL)
            *why = h.why;
    }
    return rc;
}

/* status-line = HTTP-version SP status-code SP [ reason-phrase ] */
static int parse_status_line(struct head *h, const char *p, const char *eol,
                             struct lk_http1_response *resp)
{
    if (eol - p < 12 || p[8] != ' ' ||
        parse_version((struct lk_str){ p, 8 }, &resp->minor_version) != 0)
        return fail(h, LK_EPARSE, 400, "invalid status line");
    int status = 0;
    for (int i = 9; i < 12; i++) {
        if (p[i] < '0' || p[i] > '9')
            return fail(h, LK_EPARSE, 400, "invalid status code");
        status = status * 10 + (p[i] - '0');
    }
    if (status < 100)
        return fail(h, LK_EPARSE, 400, "invalid status code");
    resp->status = status;
    p += 12;
    if (p < eol && *p != ' ')
        return fail(h, LK_EPARSE, 400, "invalid status line");
    if (p < eol)
        p++;
    resp->reason = (struct lk_str){ p, (size_t)(eol - p) };
    for (; p < eol; p++) {
        if (!is_value_byte((unsigned char)*p))
            return fail(h, LK_EPARSE, 400, "invalid character in reason phrase");
    }
    return 0;
}

static void response_framing(struct lk_http1_response *resp, const struct framing *f,
                             bool request_was_head)
{
    int s = resp->status;
    resp->keep_alive = resp->minor_version == 1 ? !f->conn_close : f->conn_keep_alive;
    if (request_was_head || s < 200 || s == 204 || s == 304) {
        resp->body_kind = LK_HTTP1_BODY_NONE;
    } else if (f->te_chunked) {
        resp->body_kind = LK_HTTP1_BODY_CHUNKED;
    } else if (f->has_cl) {
        resp->body_kind = LK_HTTP1_BODY_LENGTH;
        resp->content_length = f->content_length;
    } else {
        resp->body_kind = LK_HTTP1_BODY_UNTIL_CLOSE;
        resp->keep_alive = false;
    }
}

int lk_http1_parse_response(const char *buf, size_t len, const struct lk_http1_limits *lim,
                            bool request_was_head, struct lk_http1_response *resp, const char **why)
{
    static const struct lk_http1_limits defaults = LK_HTTP1_LIMITS_DEFAULT;
    /* RFC 9112 §2.2: a recipient MAY take a bare LF for a line end. The
     * original's HTTP clients do for responses, and a response head is
     * rebuilt field by field before it goes on, so nothing downstream sees
     * the LF; requests stay CRLF-only (a proxy's smuggling surface). */
    struct head h = { lim ? lim : &defaults, resp->headers, resp->headers_cap, 0, 0, NULL, true };
    resp->n_headers = 0;
    resp->body_kind = LK_HTTP1_BODY_NONE;
    resp->content_length = 0;
    const char *eol = NULL;
    enum line_result r =
        find_line(buf, buf + len, h.lim->max_line, buf + h.lim->max_head, h.lf_ok, &eol);
    int rc;
    if (r != LINE_OK)
        rc = line_error(&h, r);
    else
        rc = parse_status_line(&h, buf, eol, resp);
    if (rc == 0)
        rc = parse_fields(&h, buf, eol_next(eol), buf + len);
    if (rc > 0) {
        resp->n_headers = h.n;
        struct framing f;
        int frc = scan_fields(&h, &f);
        if (frc != 0)
            rc = frc;
        else
            response_framing(resp, &f, request_was_head);
    }
    if (rc < 0 && rc != LK_PARTIAL && why != NULL)
        *why = h.why;
    return rc;
}

const struct lk_http_header *lk_http1_find_header(const struct lk_http_header *headers, size_t n,
                                                  struct lk_str name)
{
    for (size_t i = 0; i < n; i++) {
        if (lk_str_ieq(headers[i].name, name))
            return &headers[i];
    }
    return NULL;
}

bool lk_http1_is_hop_by_hop(struct lk_str name)
{
    /* Every forwarded field is checked: the length picks the one or two
     * candidates, so most names cost a switch. */
    switch (name.len) {
    case 2:
        return lk_str_ieq(name, LK_STR("te"));
    case 7:
        return lk_str_ieq(name, LK_STR("trailer")) || lk_str_ieq(name, LK_STR("upgrade"));
    case 10:
        return lk_str_ieq(name, LK_STR("connection")) || lk_str_ieq(name, LK_STR("keep-alive"));
    case 16:
        return lk_str_ieq(name, LK_STR("proxy-connection"));
    case 17:
        return lk_str_ieq(name, LK_STR("transfer-encoding"));
    default:
        return false;
    }
}

const char *lk_http1_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 102:
        return "Processing";
    case 103:
        return "Early Hints";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 203:
        return "Non Authoritative Information";
    case 204:
        return "No Content";
    case 205:
        return "Reset Content";
    case 206:
        return "Partial Content";
    case 207:
        return "Multi-Status";
    case 208:
        return "Already Reported";
    case 226:
        return "IM Used";
    case 300:
        return "Multiple Choices";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 305:
        return "Use Proxy";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 402:
        return "Payment Required";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 406:
        return "Not Acceptable";
    case 407:
        return "Proxy Authentication Required";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Payload Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 416:
        return "Range Not Satisfiable";
    case 417:
        return "Expectation Failed";
    case 418:
        return "I'm a teapot";
    case 421:
        return "Misdirected Request";
    case 422:
        return "Unprocessable Entity";
    case 423:
        return "Locked";
    case 424:
        return "Failed Dependency";
    case 425:
        return "Too Early";
    case 426:
        return "Upgrade Required";
    case 428:
        return "Precondition Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 451:
        return "Unavailable For Legal Reasons";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    case 506:
        return "Variant Also Negotiates";
    case 507:
        return "Insufficient Storage";
    case 508:
        return "Loop Detected";
    case 510:
        return "Not Extended";
    case 511:
        return "Network Authentication Required";
    default:
        return "";
    }
}

const char *lk_http1_status_reason(int status)
{
    const char *r = lk_http1_reason(status);
    return *r ? r : "<unknown status code>";
}

/* ---- chunked ----------------------------------------------------------- */

enum chunk_state {
    CS_SIZE = 0,  /* first hex digit of a chunk size */
    CS_SIZE_MORE, /* more hex digits, BWS, ';' or CR */
    CS_SIZE_BWS,  /* whitespace after the size: more BWS, ';' or CR */
    /* chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] ), value =
     * token / quoted-string (RFC 9112 §7.1.1) */
    CS_EXT,        /* after ';': BWS, then the first name byte */
    CS_EXT_NAME,   /* more name bytes, BWS, '=', ';' or CR */
    CS_EXT_EQ,     /* BWS after a name: '=', ';' or CR */
    CS_EXT_VAL,    /* after '=': BWS, then a token or '"' */
    CS_EXT_TOKEN,  /* more token bytes, BWS, ';' or CR */
    CS_EXT_QUOTED, /* inside a quoted-string */
    CS_EXT_QPAIR,  /* the byte after a backslash in it */
    CS_EXT_END,    /* after a value: BWS, ';' or CR */
    CS_SIZE_LF,    /* LF of the size line */
    CS_DATA,       /* chunk data */
    CS_DATA_CR,    /* CRLF after chunk data */
    CS_DATA_LF,
    CS_TRAILER,  /* start of a trailer line, or the final CR */
    CS_TR_NAME,  /* trailer field name */
    CS_TR_VALUE, /* trailer field value, until CR */
    CS_TR_LF,    /* LF of a trailer line */
    CS_END_LF,   /* LF of the final empty line */
    CS_DONE,
};

void lk_http1_chunked_init(struct lk_http1_chunked *d)
{
    memset(d, 0, sizeof(*d));
    d->state = CS_SIZE;
}

bool lk_http1_chunked_done(const struct lk_http1_chunked *d)
{
    return d->state == CS_DONE;
}

static int chunk_fail(const char **why, const char *msg)
{
    if (why != NULL)
        *why = msg;
    return LK_EPARSE;
}

static int size_digit(struct lk_http1_chunked *d, int v, const char **why)
{
    /* RFC 9112 §7.1: 1*HEXDIG; leading zeros add nothing (the line's own
     * length bound still applies), 16 significant digits fill 64 bits. */
    bool leading_zero = d->remaining == 0 && v == 0;
    if (!leading_zero && ++d->n_digits > 16)
        return chunk_fail(why, "chunk size too large");
    /* Checked at the byte that crosses it, so endless zeros stop here. */
    if (++d->line_len > LK_HTTP1_CHUNK_MAX_LINE)
        return chunk_fail(why, "chunk size line too long");
    d->remaining = d->remaining * 16 + (uint64_t)v;
    d->state = CS_SIZE_MORE;
    return 0;
}

/* After the size: BWS, then ';' (extensions) or CR. */
static int size_tail(struct lk_http1_chunked *d, unsigned char c, const char **why)
{
    if (is_ows((char)c))
        d->state = CS_SIZE_BWS;
    else if (c == ';')
        d->state = CS_EXT;
    else if (c == '\r')
        d->state = CS_SIZE_LF;
    else
        return chunk_fail(why, "invalid chunk size line");
    if (++d->line_len > LK_HTTP1_CHUNK_MAX_LINE)
        return chunk_fail(why, "chunk size line too long");
    return 0;
}

/* One byte of the chunk extensions of a size line (RFC 9112 §7.1.1). */
static int ext_byte(struct lk_http1_chunked *d, unsigned char c, const char **why)
{
    enum chunk_state s = d->state;
    bool ws = is_ows((char)c);
    if (s == CS_EXT_QUOTED) {
        if (c == '"')
            d->state = CS_EXT_END;
        else if (c == '\\')
            d->state = CS_EXT_QPAIR;
        else if (!is_value_byte(c))
            return chunk_fail(why, "invalid character in chunk extension");
        return 0;
    }
    if (s == CS_EXT_QPAIR) {
        if (!is_value_byte(c))
            return chunk_fail(why, "invalid character in chunk extension");
        d->state = CS_EXT_QUOTED;
        return 0;
    }
    /* Outside quotes: CR ends the line once a name has been seen. */
    if (c == '\r' && s != CS_EXT && s != CS_EXT_VAL) {
        d->state = CS_SIZE_LF;
        return 0;
    }
    if (s == CS_EXT || s == CS_EXT_VAL) { /* BWS, then a name or a value */
        if (ws)
            return 0;
        if (s == CS_EXT_VAL && c == '"')
            d->state = CS_EXT_QUOTED;
        else if (is_tchar(c))
            d->state = s == CS_EXT ? CS_EXT_NAME : CS_EXT_TOKEN;
        else
            return chunk_fail(why, "invalid chunk extension");
        return 0;
    }
    if ((s == CS_EXT_NAME || s == CS_EXT_TOKEN) && is_tchar(c))
        return 0;
    /* What may follow a name or a value. */
    if (ws)
        d->state = s == CS_EXT_NAME ? CS_EXT_EQ : s == CS_EXT_TOKEN ? CS_EXT_END : s;
    else if (c == ';')
        d->state = CS_EXT;
    else if (c == '=' && (s == CS_EXT_NAME || s == CS_EXT_EQ))
        d->state = CS_EXT_VAL;
    else
        return chunk_fail(why, "invalid chunk extension");
    return 0;
}

/* One framing byte; returns 0 or LK_EPARSE. */
static int chunk_byte(struct lk_http1_chunked *d, unsigned char c, const char **why)
{
    switch (d->state) {
    case CS_SIZE: {
        int v = lk_hex_digit(c);
        if (v < 0)
            return chunk_fail(why, "invalid chunk size");
        return size_digit(d, v, why);
    }
    case CS_SIZE_MORE: {
        int v = lk_hex_digit(c);
        if (v >= 0)
            return size_digit(d, v, why);
        return size_tail(d, c, why);
    }
    case CS_SIZE_BWS:
        return size_tail(d, c, why);
    case CS_EXT:
    case CS_EXT_NAME:
    case CS_EXT_EQ:
    case CS_EXT_VAL:
    case CS_EXT_TOKEN:
    case CS_EXT_QUOTED:
    case CS_EXT_QPAIR:
    case CS_EXT_END:
        if (++d->line_len > LK_HTTP1_CHUNK_MAX_LINE)
            return chunk_fail(why, "chunk extension too long");
        return ext_byte(d, c, why);
    case CS_SIZE_LF:
        if (c != '\n')
            return chunk_fail(why, "bare CR in chunk size line");
        d->line_len = 0;
        d->n_digits = 0;
        d->state = d->remaining == 0 ? CS_TRAILER : CS_DATA;
        return 0;
    case CS_DATA_CR:
        if (c != '\r')
            return chunk_fail(why, "missing CRLF after chunk data");
        d->state = CS_DATA_LF;
        return 0;
    case CS_DATA_LF:
        if (c != '\n')
            return chunk_fail(why, "missing CRLF after chunk data");
        d->state = CS_SIZE;
        return 0;
    case CS_TRAILER:
        if (c == '\r') {
            d->state = CS_END_LF;
        } else if (is_tchar(c)) {
            d->state = CS_TR_NAME;
        } else {
            return chunk_fail(why, "invalid trailer field");
        }
        break;
    case CS_TR_NAME:
        if (c == ':') {
            d->state = CS_TR_VALUE;
        } else if (!is_tchar(c)) {
            return chunk_fail(why, "invalid trailer field name");
        }
        break;
    case CS_TR_VALUE:
        if (c == '\r') {
            d->state = CS_TR_LF;
        } else if (!is_value_byte(c)) {
            return chunk_fail(why, "invalid character in trailer field");
        }
        break;
    case CS_TR_LF:
        if (c != '\n')
            return chunk_fail(why, "bare CR in trailer section");
        d->line_len = 0;
        d->state = CS_TRAILER;
        break;
    case CS_END_LF:
        if (c != '\n')
            return chunk_fail(why, "bare CR after last chunk");
        d->state = CS_DONE;
        return 0;
    default:
        return chunk_fail(why, "chunked decoder misuse");
    }
    /* Trailer bytes: bounded per line and in total. */
    if (++d->line_len > LK_HTTP1_CHUNK_MAX_LINE)
        return chunk_fail(why, "trailer field too long");
    if (++d->trailer_len > LK_HTTP1_CHUNK_MAX_TRAILERS)
        return chunk_fail(why, "trailer section too large");
    return 0;
}

int lk_http1_chunked_decode(struct lk_http1_chunked *d, const char *buf, size_t len,
                            size_t *framing, size_t *data, const char **why)
{
    size_t i = 0;
    *framing = 0;
    *data = 0;
    while (i < len && d->state != CS_DONE) {
        if (d->state == CS_DATA) {
            uint64_t n = len - i;
            if (n > d->remaining)
                n = d->remaining;
            d->remaining -= n;
            if (d->remaining == 0)
                d->state = CS_DATA_CR;
            *framing = i;
            *data = (size_t)n;
            return 0;
        }
        int rc = chunk_byte(d, (unsigned char)buf[i], why);
        if (rc != 0)
            return rc;
        i++;
    }
    *framing = i;
    return d->state == CS_DONE ? 1 : 0;
}
