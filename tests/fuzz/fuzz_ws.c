/*
 * fuzz_ws.c - the WebSocket upgrade checks of ws.h on request heads parsed by
 * lk_http1_parse_request().
 *
 * ws.c has no frame parser and computes no Sec-WebSocket-Accept (the proxy
 * passes the handshake through and tunnels the frames untouched), so the
 * checks are the whole surface. Invariants: both functions agree with an
 * independent byte-by-byte model of SPEC §5.4 / §4.4 written here (token
 * lists split on ',', OWS trimmed, names compared ASCII case-insensitively,
 * first Upgrade / Sec-WebSocket-Version field wins), an upgrade is always an
 * HTTP/1.1 GET, and the answer does not change when the fields are given in
 * a copy of the head (no pointer into other memory is kept or used).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "proto/http1.h"
#include "proto/ws.h"

#define MAX_HEADERS 100

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
}

static bool ws_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* Case-insensitive equality of p[0..n) (after trimming) and the lower-case
 * literal lit. */
static bool trimmed_ieq(const char *p, size_t n, const char *lit)
{
    while (n > 0 && ws_space(p[0])) {
        p++;
        n--;
    }
    while (n > 0 && ws_space(p[n - 1]))
        n--;
    size_t m = strlen(lit);
    if (n != m)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (lower(p[i]) != lit[i])
            return false;
    }
    return true;
}

static bool name_is(struct lk_str name, const char *lit)
{
    size_t m = strlen(lit);
    if (name.len != m)
        return false;
    for (size_t i = 0; i < m; i++) {
        if (lower(name.ptr[i]) != lit[i])
            return false;
    }
    return true;
}

static bool list_has(struct lk_str v, const char *tok)
{
    size_t start = 0;
    for (size_t i = 0; i <= v.len; i++) {
        if (i == v.len || v.ptr[i] == ',') {
            if (trimmed_ieq(v.ptr + start, i - start, tok))
                return true;
            start = i + 1;
        }
    }
    return false;
}

static const struct lk_http_header *first(const struct lk_http_header *h, size_t n, const char *lit)
{
    for (size_t i = 0; i < n; i++) {
        if (name_is(h[i].name, lit))
            return &h[i];
    }
    return NULL;
}

static bool model_is_upgrade(const struct lk_http1_request *req)
{
    const struct lk_http_header *h = req->headers;
    size_t n = req->n_headers;
    if (req->minor_version != 1 || req->method.len != 3 || memcmp(req->method.ptr, "GET", 3) != 0)
        return false;
    bool conn = false;
    for (size_t i = 0; i < n && !conn; i++)
        conn = name_is(h[i].name, "connection") && list_has(h[i].value, "upgrade");
    if (!conn)
        return false;
    const struct lk_http_header *u = first(h, n, "upgrade");
    if (u == NULL || !trimmed_ieq(u->value.ptr, u->value.len, "websocket"))
        return false;
    const struct lk_http_header *v = first(h, n, "sec-websocket-version");
    if (v == NULL)
        return false;
    /* "13" exactly after trimming: case cannot matter for digits. */
    if (!trimmed_ieq(v->value.ptr, v->value.len, "13"))
        return false;
    return first(h, n, "sec-websocket-key") != NULL;
}

static bool model_has_upgrade_websocket(const struct lk_http1_request *req)
{
    const struct lk_http_header *u = first(req->headers, req->n_headers, "upgrade");
    return u != NULL && u->value.len == 9 && memcmp(u->value.ptr, "websocket", 9) == 0;
}

static void check(const struct lk_http1_request *req)
{
    bool up =
        lk_ws_is_upgrade_request(req->method, req->minor_version, req->headers, req->n_headers);
    bool loose = lk_ws_has_upgrade_websocket(req->headers, req->n_headers);
    LK_ASSERT(up == model_is_upgrade(req));
    LK_ASSERT(loose == model_has_upgrade_websocket(req));
    if (up)
        LK_ASSERT(req->minor_version == 1 && lk_str_eq(req->method, LK_STR("GET")));

    /* The same fields copied elsewhere give the same answers. */
    size_t n = req->n_headers;
    struct lk_http_header *copy = lk_xcalloc(n ? n : 1, sizeof(*copy));
    char *mem = NULL;
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += req->headers[i].name.len + req->headers[i].value.len;
    mem = lk_xmalloc(total ? total : 1);
    char *p = mem;
    for (size_t i = 0; i < n; i++) {
        const struct lk_http_header *h = &req->headers[i];
        memcpy(p, h->name.ptr, h->name.len);
        copy[i].name = (struct lk_str){ p, h->name.len };
        p += h->name.len;
        if (h->value.len > 0)
            memcpy(p, h->value.ptr, h->value.len);
        copy[i].value = (struct lk_str){ p, h->value.len };
        p += h->value.len;
    }
    LK_ASSERT(lk_ws_is_upgrade_request(req->method, req->minor_version, copy, n) == up);
    LK_ASSERT(lk_ws_has_upgrade_websocket(copy, n) == loose);
    free(mem);
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct lk_http_header *h = lk_xcalloc(MAX_HEADERS, sizeof(*h));
    char *buf = lk_xmemdup(data, size ? size : 1);
    struct lk_http1_request req;
    memset(&req, 0, sizeof(req));
    req.headers = h;
    req.headers_cap = MAX_HEADERS;
    const char *why = NULL;
    int rc = lk_http1_parse_request(buf, size, NULL, &req, &why);
    if (rc > 0)
        check(&req);

    /* The checks on raw, unvalidated field lines too ("name:value" per line,
     * the first line being "METHOD 0|1"): the engine only calls them on parsed
     * heads, but they must not depend on the parser's validation. */
    const char *p = buf, *end = buf + size;
    const char *nl = memchr(p, '\n', size);
    const char *line_end = nl ? nl : end;
    const char *sp = memchr(p, ' ', (size_t)(line_end - p));
    memset(&req, 0, sizeof(req));
    req.headers = h;
    req.method = (struct lk_str){ p, sp ? (size_t)(sp - p) : (size_t)(line_end - p) };
    req.minor_version = sp && sp + 1 < line_end && sp[1] == '1' ? 1 : 0;
    p = nl ? nl + 1 : end;
    while (p < end && req.n_headers < MAX_HEADERS) {
        nl = memchr(p, '\n', (size_t)(end - p));
        line_end = nl ? nl : end;
        const char *colon = memchr(p, ':', (size_t)(line_end - p));
        struct lk_http_header *f = &h[req.n_headers++];
        f->name = (struct lk_str){ p, colon ? (size_t)(colon - p) : (size_t)(line_end - p) };
        f->value = colon ? (struct lk_str){ colon + 1, (size_t)(line_end - colon - 1) }
                         : (struct lk_str){ line_end, 0 };
        p = nl ? nl + 1 : end;
    }
    check(&req);
    free(buf);
    free(h);
    return 0;
}
