/*
 * fuzz_http1_request.c - lk_http1_parse_request() invariants: the result is
 * at most the input length, every slice lies inside the input, an error
 * carries a 400/414/431/501/505 status and a reason, every prefix gives
 * LK_PARTIAL or the same result as the whole input, and a first byte that
 * cannot start a request line is a 400. The fields found are the ones a
 * second, line-by-line reading finds (http1_fields.h).
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "http1_fields.h"
#include "proto/http1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_slice(const char *buf, size_t len, struct lk_str s)
{
    if (s.len > 0)
        LK_ASSERT(s.ptr >= buf && s.ptr + s.len <= buf + len);
}

static int parse(const char *buf, size_t len, struct lk_http1_request *req,
                 struct lk_http_header *h, const struct lk_http1_limits *lim)
{
    memset(req, 0, sizeof(*req));
    req->headers = h;
    req->headers_cap = 16;
    const char *why = NULL;
    int rc = lk_http1_parse_request(buf, len, lim, req, &why);
    LK_ASSERT(rc == LK_PARTIAL || rc == LK_EPARSE || rc == LK_ELIMIT || rc > 0);
    if (rc > 0) {
        LK_ASSERT((size_t)rc <= len);
        check_slice(buf, len, req->method);
        check_slice(buf, len, req->target);
        LK_ASSERT(req->n_headers <= 16);
        for (size_t i = 0; i < req->n_headers; i++) {
            check_slice(buf, (size_t)rc, h[i].name);
            check_slice(buf, (size_t)rc, h[i].value);
        }
        const char *head = buf;
        while (head + 2 <= buf + rc && head[0] == '\r' && head[1] == '\n')
            head += 2;
        check_fields(head, buf + rc, h, req->n_headers);
    } else if (rc != LK_PARTIAL) {
        LK_ASSERT(why != NULL);
        LK_ASSERT(req->err_status == 400 || req->err_status == 414 || req->err_status == 431 ||
                  req->err_status == 501 || req->err_status == 505);
    }
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Small limits so that the fuzzer reaches them. */
    struct lk_http1_limits lim = { 64, 256, 8, 32 };
    char *buf = lk_xmemdup(data, size ? size : 1);
    struct lk_http1_request req;
    struct lk_http_header h[16];
    int full = parse(buf, size, &req, h, &lim);
    /* A first byte that can start neither a method (a token, RFC 9110
     * §5.6.2) nor an empty line is refused at once, whatever follows. */
    if (size > 0) {
        unsigned char c0 = (unsigned char)buf[0];
        bool may_start = isalnum(c0) || (c0 != 0 && strchr("!#$%&'*+-.^_`|~\r\n", c0) != NULL);
        if (!may_start)
            LK_ASSERT(full == LK_EPARSE && req.err_status == 400);
    }
    for (size_t k = 0; k < size; k++) {
        char *pre = lk_xmemdup(buf, k ? k : 1);
        int rc = parse(pre, k, &req, h, &lim);
        LK_ASSERT(rc == LK_PARTIAL || rc == full);
        free(pre);
    }
    parse(buf, size, &req, h, NULL);
    free(buf);
    return 0;
}
