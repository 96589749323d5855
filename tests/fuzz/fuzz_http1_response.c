/*
 * fuzz_http1_response.c - lk_http1_parse_response() invariants: bounded
 * result, slices inside the input and free of CR/LF, consistent framing,
 * prefixes agree, and the fields found are the ones a second, line-by-line
 * reading finds (http1_fields.h).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "http1_fields.h"
#include "proto/http1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Inside the input, and no CR or LF: a bare LF may end a line of a response
 * head, but never lands inside a reason, name or value. */
static void check_slice(const char *buf, size_t len, struct lk_str s)
{
    if (s.len > 0) {
        LK_ASSERT(s.ptr >= buf && s.ptr + s.len <= buf + len);
        LK_ASSERT(memchr(s.ptr, '\r', s.len) == NULL && memchr(s.ptr, '\n', s.len) == NULL);
    }
}

static int parse(const char *buf, size_t len, bool head, const struct lk_http1_limits *lim)
{
    struct lk_http1_response r;
    struct lk_http_header h[16];
    memset(&r, 0, sizeof(r));
    r.headers = h;
    r.headers_cap = 16;
    int rc = lk_http1_parse_response(buf, len, lim, head, &r, NULL);
    LK_ASSERT(rc == LK_PARTIAL || rc == LK_EPARSE || rc == LK_ELIMIT || rc > 0);
    if (rc > 0) {
        LK_ASSERT((size_t)rc <= len);
        LK_ASSERT(r.status >= 100 && r.status <= 999);
        check_slice(buf, len, r.reason);
        for (size_t i = 0; i < r.n_headers; i++) {
            check_slice(buf, (size_t)rc, h[i].name);
            check_slice(buf, (size_t)rc, h[i].value);
        }
        check_fields(buf, buf + rc, h, r.n_headers);
        if (head || r.status < 200 || r.status == 204 || r.status == 304)
            LK_ASSERT(r.body_kind == LK_HTTP1_BODY_NONE);
        if (r.body_kind == LK_HTTP1_BODY_UNTIL_CLOSE)
            LK_ASSERT(!r.keep_alive);
    }
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct lk_http1_limits lim = { 64, 256, 8, 32 };
    bool head = size > 0 && (data[0] & 1);
    char *buf = lk_xmemdup(data, size ? size : 1);
    int full = parse(buf, size, head, &lim);
    for (size_t k = 0; k < size; k++) {
        int rc = parse(buf, k, head, &lim);
        LK_ASSERT(rc == LK_PARTIAL || rc == full);
    }
    parse(buf, size, head, NULL);
    free(buf);
    return 0;
}
