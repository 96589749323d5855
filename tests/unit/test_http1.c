/*
 * test_http1.c - the HTTP/1.1 head parsers and the chunked decoder
 * (lib/proto/http1.h) and WebSocket upgrade detection (lib/proto/ws.h).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "harness.h"
#include "proto/http1.h"
#include "proto/ws.h"

#define NH 128

static int parse_req(const char *s, size_t len, struct lk_http1_request *req,
                     struct lk_http_header *h, const struct lk_http1_limits *lim, const char **why)
{
    memset(req, 0, sizeof(*req));
    req->headers = h;
    req->headers_cap = NH;
    return lk_http1_parse_request(s, len, lim, req, why);
}

struct req_case {
    const char *name;
    const char *in;
    int rc;     /* > 0: expected full length (use -100 for "whole input") */
    int status; /* error status */
    const char *why;
};

#define WHOLE (-100)

static const struct req_case req_cases[] = {
    { "simple", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", WHOLE, 0, NULL },
    { "http10", "GET / HTTP/1.0\r\n\r\n", WHOLE, 0, NULL },
    { "leading crlf", "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", WHOLE, 0, NULL },
    { "partial", "GET / HTTP/1.1\r\nHost: a\r\n", LK_PARTIAL, 0, NULL },
    { "cl and te", "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
      LK_EPARSE, 400, "both Content-Length and Transfer-Encoding" },
    { "differing cl", "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
      LK_EPARSE, 400, "conflicting Content-Length values" },
    { "differing cl list", "POST / HTTP/1.1\r\nContent-Length: 3, 4\r\n\r\n", LK_EPARSE, 400,
      "conflicting Content-Length values" },
    { "bad cl", "POST / HTTP/1.1\r\nContent-Length: 3x\r\n\r\n", LK_EPARSE, 400,
      "invalid Content-Length" },
    { "negative cl", "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", LK_EPARSE, 400,
      "invalid Content-Length" },
    { "te gzip", "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", LK_EPARSE, 400,
      "unsupported Transfer-Encoding" },
    { "te chunked not final", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
      LK_EPARSE, 400, "unsupported Transfer-Encoding" },
    /* RFC 9112 §6.1: a coding not understood before the final chunked. */
    { "te gzip then chunked", "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
      LK_EPARSE, 501, "unsupported Transfer-Encoding" },
    { "te gzip line then chunked line",
      "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", LK_EPARSE,
      501, "unsupported Transfer-Encoding" },
    { "te gzip chunked and cl",
      "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 5\r\n\r\n", LK_EPARSE,
      400, "both Content-Length and Transfer-Encoding" },
    { "te chunked twice",
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
      "Transfer-Encoding: chunked\r\n\r\n",
      LK_EPARSE, 400, "unsupported Transfer-Encoding" },
    { "te in 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", LK_EPARSE, 400,
      "Transfer-Encoding in an HTTP/1.0 request" },
    { "obs-fold", "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", LK_EPARSE, 400,
      "obsolete line folding is not allowed" },
    { "space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", LK_EPARSE, 400,
      "whitespace before colon in header field" },
    { "bad name", "GET / HTTP/1.1\r\nHo(st: a\r\n\r\n", LK_EPARSE, 400,
      "invalid header field name" },
    { "empty name", "GET / HTTP/1.1\r\n: a\r\n\r\n", LK_EPARSE, 400, "empty header field name" },
    { "ctl in value",
      "GET / HTTP/1.1\r\nX: a\x01"
      "b\r\n\r\n",
      LK_EPARSE, 400, "invalid character in header field value" },
    { "del in value", "GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n", LK_EPARSE, 400,
      "invalid character in header field value" },
    { "bare cr", "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", LK_EPARSE, 400,
      "bare CR or LF in message head" },
    { "bare lf", "GET / HTTP/1.1\nHost: a\r\n\r\n", LK_EPARSE, 400,
      "bare CR or LF in message head" },
    { "bad method", "G(T / HTTP/1.1\r\n\r\n", LK_EPARSE, 400, "invalid request method" },
    { "empty method", " / HTTP/1.1\r\n\r\n", LK_EPARSE, 400, "invalid request method" },
    { "double space", "GET  / HTTP/1.1\r\n\r\n", LK_EPARSE, 400, "invalid request target" },
    /* RFC 9110 §15.6.6, RFC 9112 §2.3 (HTTP/1.2 is read as 1.1: test_version_read_as_1_1). */
    { "major version 2", "GET / HTTP/2.0\r\n\r\n", LK_EPARSE, 505, "unsupported HTTP version" },
    { "major version 0", "GET / HTTP/0.9\r\n\r\n", LK_EPARSE, 505, "unsupported HTTP version" },
    { "lowercase version", "GET / http/1.1\r\n\r\n", LK_EPARSE, 400, "invalid HTTP version" },
    { "two-digit minor", "GET / HTTP/1.10\r\n\r\n", LK_EPARSE, 400, "invalid HTTP version" },
    { "no minor", "GET / HTTP/1\r\n\r\n", LK_EPARSE, 400, "invalid HTTP version" },
    { "two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", LK_EPARSE, 400,
      "multiple Host header fields" },
    { "tab ok in value", "GET / HTTP/1.1\r\nX: a\tb\r\n\r\n", WHOLE, 0, NULL },
    { "obs-text ok", "GET / HTTP/1.1\r\nX: caf\xc3\xa9\r\n\r\n", WHOLE, 0, NULL },
    { "same cl twice ok", "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
      WHOLE, 0, NULL },
};

static void test_request_table(void)
{
    for (size_t i = 0; i < sizeof(req_cases) / sizeof(req_cases[0]); i++) {
        const struct req_case *tc = &req_cases[i];
        struct lk_http1_request req;
        struct lk_http_header h[NH];
        const char *why = NULL;
        size_t len = strlen(tc->in);
        int rc = parse_req(tc->in, len, &req, h, NULL, &why);
        int want = tc->rc == WHOLE ? (int)len : tc->rc;
        if (rc != want)
            fprintf(stderr, "  case %s\n", tc->name);
        CHECK_INT_EQ(rc, want);
        if (tc->status != 0) {
            CHECK_INT_EQ(req.err_status, tc->status);
            CHECK_STR_EQ(why, tc->why);
        }
    }
}

static void test_request_fields(void)
{
    const char *in = "POST /a?b=1 HTTP/1.1\r\nHost: example.com\r\nX-Empty:\r\n"
                     "Content-Length: 5\r\nX-Trim: \t v \t\r\nExpect: 100-continue\r\n\r\nhello";
    struct lk_http1_request req;
    struct lk_http_header h[NH];
    int rc = parse_req(in, strlen(in), &req, h, NULL, NULL);
    CHECK_INT_EQ(rc, (int)strlen(in) - 5);
    CHECK_MEM_EQ(req.method.ptr, req.method.len, "POST", 4);
    CHECK_MEM_EQ(req.target.ptr, req.target.len, "/a?b=1", 6);
    CHECK_INT_EQ(req.minor_version, 1);
    CHECK_INT_EQ(req.n_headers, 5);
    CHECK_INT_EQ(req.body_kind, LK_HTTP1_BODY_LENGTH);
    CHECK_INT_EQ(req.content_length, 5);
    CHECK(req.keep_alive);
    CHECK(req.expect_continue);
    CHECK_INT_EQ(h[1].value.len, 0);
    CHECK_MEM_EQ(h[3].value.ptr, h[3].value.len, "v", 1);
    const struct lk_http_header *f = lk_http1_find_header(h, req.n_headers, LK_STR("HOST"));
    CHECK(f != NULL && lk_str_eq(f->value, LK_STR("example.com")));
}

static void test_request_keep_alive(void)
{
    static const struct {
        const char *in;
        bool keep;
    } cases[] = {
        { "GET / HTTP/1.1\r\n\r\n", true },
        { "GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false },
        { "GET / HTTP/1.1\r\nConnection: foo, Close\r\n\r\n", false },
        { "GET / HTTP/1.0\r\n\r\n", false },
        { "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct lk_http1_request req;
        struct lk_http_header h[NH];
        CHECK(parse_req(cases[i].in, strlen(cases[i].in), &req, h, NULL, NULL) > 0);
        CHECK_INT_EQ(req.keep_alive, cases[i].keep);
    }
}

static int parse_resp(const char *s, bool head, struct lk_http1_response *r,
                      struct lk_http_header *h);

/* RFC 9112 §2.3: a later minor version of HTTP/1 is processed as 1.1. */
static void test_version_read_as_1_1(void)
{
    const char *in = "GET / HTTP/1.2\r\n\r\n";
    struct lk_http1_request req;
    struct lk_http_header h[NH];
    CHECK(parse_req(in, strlen(in), &req, h, NULL, NULL) > 0);
    CHECK_INT_EQ(req.minor_version, 1);
    CHECK(req.keep_alive);
    struct lk_http1_response resp;
    CHECK(parse_resp("HTTP/1.9 200 OK\r\nContent-Length: 0\r\n\r\n", false, &resp, h) > 0);
    CHECK_INT_EQ(resp.minor_version, 1);
    CHECK(parse_resp("HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", false, &resp, h) < 0);
}

static void test_request_chunked_kind(void)
{
    const char *in = "POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n";
    struct lk_http1_request req;
    struct lk_http_header h[NH];
    CHECK(parse_req(in, strlen(in), &req, h, NULL, NULL) > 0);
    CHECK_INT_EQ(req.body_kind, LK_HTTP1_BODY_CHUNKED);
}

static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

static void test_request_limits(void)
{
    struct lk_http1_request req;
    struct lk_http_header h[NH];
    const char *why = NULL;
    char buf[100000];
    /* target of exactly 8 KiB is fine, one more is 414 */
    char *t = repeat('a', 8191);
    snprintf(buf, sizeof(buf), "GET /%s HTTP/1.1\r\n\r\n", t);
    CHECK_INT_EQ(parse_req(buf, strlen(buf), &req, h, NULL, &why), (int)strlen(buf));
    snprintf(buf, sizeof(buf), "GET /%sb HTTP/1.1\r\n\r\n", t);
    CHECK_INT_EQ(parse_req(buf, strlen(buf), &req, h, NULL, &why), LK_ELIMIT);
    CHECK_INT_EQ(req.err_status, 414);
    free(t);
    /* a huge target without an end yet is 414 as soon as it is too long */
    t = repeat('a', 30000);
    snprintf(buf, sizeof(buf), "GET /%s", t);
    CHECK_INT_EQ(parse_req(buf, strlen(buf), &req, h, NULL, &why), LK_ELIMIT);
    CHECK_INT_EQ(req.err_status, 414);
    free(t);
    /* ... at its first byte past 8 KiB, long before the 16 KiB line limit;
     * until then, and with the whole target in but no CRLF, more is needed */
    t = repeat('a', 8191);
    snprintf(buf, sizeof(buf), "GET /%s", t);
    CHECK_INT_EQ(parse_req(buf, strlen(buf), &req, h, NULL, &why), LK_PARTIAL);
    snprintf(buf, sizeof(buf), "GET /%s HTTP/1.1", t);
    CHECK_INT_EQ(parse_req(buf, strlen(buf), &req, h, NULL, &why), LK_PARTIAL);
    snprintf(buf, sizeof(buf), "GET /%sb", t);
    CHECK_INT_EQ(parse_req(buf, strlen(buf), &req, h, NULL, &why), LK_ELIMIT);
    CHECK_INT_EQ(req.err_status, 414);
    snprintf(buf, sizeof(buf), "GET /%sb HTTP/1.", t);
    CHECK_INT_EQ(parse_req(buf, strlen(buf), &req, h, NULL, &why), LK_ELIMIT);
    CHECK_INT_EQ(req.err_status, 414);
    /* a target that a control byte ends early is not the long target the
     * rest of the line looks like: cut anywhere, the head needs more or
     * gets the 400 the whole head gets, as fuzz_http1_request found */
    memset(buf, 'a', 9000);
    memcpy(buf, "GET /x", 6);
    buf[6] = '\0';
    for (size_t k = 7; k <= 9000; k += 997)
        CHECK_INT_EQ(parse_req(buf, k, &req, h, NULL, &why), LK_PARTIAL);
    memcpy(buf + 9000, " HTTP/1.1\r\n\r\n", 14);
    CHECK_INT_EQ(parse_req(buf, 9014, &req, h, NULL, &why), LK_EPARSE);
    CHECK_INT_EQ(req.err_status, 400);
    /* a target already too long stays a 414 when a bare CR ends the line,
     * as every cut of it past the limit is; a bare CR or LF before the
     * first SP is a 400, whatever follows it (the first found by the fuzzer) */
    memset(buf, 'a', 9000);
    memcpy(buf, "GET /", 5);
    memcpy(buf + 9000, "\r\x10Host: x\r\n\r\n", 13);
    CHECK_INT_EQ(parse_req(buf, 8500, &req, h, NULL, &why), LK_ELIMIT);
    CHECK_INT_EQ(parse_req(buf, 9013, &req, h, NULL, &why), LK_ELIMIT);
    CHECK_INT_EQ(req.err_status, 414);
    memcpy(buf, "GE\nT /", 6);
    CHECK_INT_EQ(parse_req(buf, 3, &req, h, NULL, &why), LK_EPARSE);
    CHECK_INT_EQ(parse_req(buf, 9013, &req, h, NULL, &why), LK_EPARSE);
    CHECK_INT_EQ(req.err_status, 400);
    free(t);
    /* one header line over 16 KiB -> 431 */
    t = repeat('v', 16384);
    snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nX: %s\r\n\r\n", t);
    CHECK_INT_EQ(parse_req(buf, strlen(buf), &req, h, NULL, &why), LK_ELIMIT);
    CHECK_INT_EQ(req.err_status, 431);
    CHECK_STR_EQ(why, "header line too long");
    free(t);
    /* a field line of exactly max_line bytes is fine, one more is 431,
     * also when the CRLF has not arrived yet */
    t = repeat('v', 16384 - 3);
    snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nX: %s\r\n\r\n", t);
    CHECK_INT_EQ(parse_req(buf, strlen(buf), &req, h, NULL, &why), (int)strlen(buf));
    snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nX: %sw\r\n\r\n", t);
    CHECK_INT_EQ(parse_req(buf, strlen(buf), &req, h, NULL, &why), LK_ELIMIT);
    snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nX: %s", t);
    CHECK_INT_EQ(parse_req(buf, strlen(buf), &req, h, NULL, &why), LK_PARTIAL);
    snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nX: %sw", t);
    CHECK_INT_EQ(parse_req(buf, strlen(buf), &req, h, NULL, &why), LK_ELIMIT);
    free(t);
    /* no line limit at all (SIZE_MAX) still finds the lines */
    struct lk_http1_limits unl = LK_HTTP1_LIMITS_DEFAULT;
    unl.max_line = SIZE_MAX;
    snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n\r\n");
    CHECK_INT_EQ(parse_req(buf, strlen(buf), &req, h, &unl, &why), (int)strlen(buf));
    CHECK_INT_EQ(req.n_headers, 2);
    snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nX: a\nb\r\n\r\n");
    CHECK_INT_EQ(parse_req(buf, strlen(buf), &req, h, &unl, &why), LK_EPARSE);
    /* 101 headers -> 431, 100 ok */
    size_t n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\n");
    for (int i = 0; i < 100; i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "X%d: v\r\n", i);
    snprintf(buf + n, sizeof(buf) - n, "\r\n");
    CHECK(parse_req(buf, strlen(buf), &req, h, NULL, &why) > 0);
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "Y: v\r\n\r\n");
    CHECK_INT_EQ(parse_req(buf, strlen(buf), &req, h, NULL, &why), LK_ELIMIT);
    CHECK_INT_EQ(req.err_status, 431);
    CHECK_STR_EQ(why, "too many header fields");
    /* whole head over 64 KiB -> 431, even before it ends */
    struct lk_http1_limits lim = LK_HTTP1_LIMITS_DEFAULT;
    lim.max_headers = 1000;
    n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\n");
    t = repeat('v', 8000);
    for (int i = 0; i < 9; i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "X%d: %s\r\n", i, t);
    free(t);
    CHECK_INT_EQ(parse_req(buf, strlen(buf), &req, h, &lim, &why), LK_ELIMIT);
    CHECK_INT_EQ(req.err_status, 431);
    CHECK_STR_EQ(why, "message head too large");
}

/* A field line's end against the limits, at the bytes where the one-pass
 * field scan hands over to the line finder: its CR as the last byte the head
 * may hold, its LF one past the end of the input, the line limit met exactly
 * and passed by one, and a field past max_headers after valid ones. */
static void test_field_line_edges(void)
{
    struct lk_http1_request req;
    struct lk_http_header h[NH];
    const char *why = NULL;
    const char *in = "GET / HTTP/1.1\r\nAb: cd \r\nE:\r\n\r\n";
    size_t len = strlen(in), field_end = strlen("GET / HTTP/1.1\r\nAb: cd \r");
    struct lk_http1_limits lim = { 16, len, 2, 64 };
    CHECK_INT_EQ(parse_req(in, len, &req, h, &lim, &why), (int)len);
    CHECK_INT_EQ(req.n_headers, 2);
    CHECK_MEM_EQ(h[0].value.ptr, h[0].value.len, "cd", 2);
    CHECK_INT_EQ(h[1].value.len, 0);
    /* the first field's CR is the last byte of the allowed head */
    lim.max_head = field_end;
    CHECK_INT_EQ(parse_req(in, len, &req, h, &lim, &why), LK_ELIMIT);
    CHECK_STR_EQ(why, "message head too large");
    lim.max_head = len;
    /* its LF not in yet: more is needed, whatever the limits */
    CHECK_INT_EQ(parse_req(in, field_end, &req, h, &lim, &why), LK_PARTIAL);
    /* "Ab: cd " is 7 bytes: a line limit of 6 refuses it */
    lim.max_line = 7;
    CHECK_INT_EQ(parse_req(in, len, &req, h, &lim, &why), (int)len);
    lim.max_line = 6;
    CHECK_INT_EQ(parse_req(in, len, &req, h, &lim, &why), LK_ELIMIT);
    CHECK_STR_EQ(why, "header line too long");
    lim.max_line = 16;
    lim.max_headers = 1;
    CHECK_INT_EQ(parse_req(in, len, &req, h, &lim, &why), LK_ELIMIT);
    CHECK_STR_EQ(why, "too many header fields");
    /* a bad byte in a value still wins over the count */
    CHECK_INT_EQ(parse_req("GET / HTTP/1.1\r\nA: b\r\nC: \x01\r\n\r\n", 29, &req, h, &lim, &why),
                 LK_EPARSE);
    CHECK_STR_EQ(why, "invalid character in header field value");
}

/* Every prefix of a valid or invalid input is PARTIAL or the full result. */
/* Every byte value at every offset of a long field value (the parser skips
 * plain 8-byte words at once): control bytes but HTAB, and DEL, are refused
 * wherever they are; HTAB, visible ASCII and obs-text are kept verbatim. CR
 * and LF end the line and have their own tests. */
static void test_value_bytes_everywhere(void)
{
    struct lk_http1_limits lim = LK_HTTP1_LIMITS_DEFAULT;
    struct lk_http1_request req;
    struct lk_http_header h[NH];
    char buf[128];
    static const char pre[] = "GET / HTTP/1.1\r\nX: ";
    const size_t vlen = 40;
    int bad_ok = 0, good_bad = 0;
    for (int c = 0; c < 256; c++) {
        if (c == '\r' || c == '\n')
            continue;
        for (size_t at = 0; at < vlen; at++) {
            size_t n = sizeof(pre) - 1;
            memcpy(buf, pre, n);
            memset(buf + n, 'v', vlen);
            buf[n + at] = (char)c;
            memcpy(buf + n + vlen, "\r\n\r\n", 4);
            n += vlen + 4;
            const char *why = NULL;
            int rc = parse_req(buf, n, &req, h, &lim, &why);
            bool valid = c == '\t' || (c >= 0x20 && c != 0x7f);
            /* OWS at either end is trimmed; check the value only inside. */
            bool inner = at > 0 && at < vlen - 1;
            if (!valid) {
                if (rc != LK_EPARSE || why == NULL ||
                    strcmp(why, "invalid character in header field value") != 0)
                    bad_ok++;
            } else if (rc != (int)n || req.n_headers != 1 ||
                       (inner && (req.headers[0].value.len != vlen ||
                                  req.headers[0].value.ptr[at] != (char)c))) {
                good_bad++;
            }
        }
    }
    CHECK_INT_EQ(bad_ok, 0);
    CHECK_INT_EQ(good_bad, 0);
}

/* Every byte value inside a field name: only the tchars of RFC 9110 §5.6.2
 * make a name. (':' ends the name; CR and LF end the line.) */
static void test_name_bytes(void)
{
    static const char tchars[] = "!#$%&'*+-.^_`|~0123456789"
                                 "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    struct lk_http1_limits lim = LK_HTTP1_LIMITS_DEFAULT;
    struct lk_http1_request req;
    struct lk_http_header h[NH];
    int wrong = 0;
    for (int c = 1; c < 256; c++) {
        if (c == ':' || c == '\r' || c == '\n')
            continue;
        char buf[64];
        int n = snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nX%cY: v\r\n\r\n", c);
        const char *why = NULL;
        int rc = parse_req(buf, (size_t)n, &req, h, &lim, &why);
        bool tchar = strchr(tchars, c) != NULL;
        if (tchar ? rc != n || req.headers[0].name.len != 3 : rc != LK_EPARSE)
            wrong++;
    }
    CHECK_INT_EQ(wrong, 0);
}

static void test_request_prefixes(void)
{
    for (size_t i = 0; i < sizeof(req_cases) / sizeof(req_cases[0]); i++) {
        const char *in = req_cases[i].in;
        size_t len = strlen(in);
        struct lk_http1_request req;
        struct lk_http_header h[NH];
        int full = parse_req(in, len, &req, h, NULL, NULL);
        for (size_t k = 0; k < len; k++) {
            int rc = parse_req(in, k, &req, h, NULL, NULL);
            if (rc != LK_PARTIAL && rc != full) {
                fprintf(stderr, "  case %s prefix %zu: %d vs %d\n", req_cases[i].name, k, rc, full);
                CHECK(0);
            }
        }
    }
}

/* A byte that cannot be part of a method (RFC 9110 §5.6.2: a token) ends
 * the parse at once, before any CRLF: a TLS ClientHello (0x16 0x03 ...) or
 * other binary on a plain port is a 400 now, not after the head timeout. */
static void test_request_early_reject(void)
{
    static const struct {
        const char *in;
        size_t len;
    } bad[] = {
        { "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11 }, /* TLS ClientHello */
        { "\x16", 1 },
        { "\x00", 1 },
        { "G(", 2 },
        { "GET\x01", 4 },
        { " ", 1 },            /* empty method */
        { "\r\n\r\n\x16", 5 }, /* after the empty lines RFC 9112 §2.2 skips */
        { "GET\t/", 5 },
        { "\x80GET", 4 },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct lk_http1_request req;
        struct lk_http_header h[NH];
        const char *why = NULL;
        int rc = parse_req(bad[i].in, bad[i].len, &req, h, NULL, &why);
        if (rc != LK_EPARSE)
            fprintf(stderr, "  bad case %zu\n", i);
        CHECK_INT_EQ(rc, LK_EPARSE);
        CHECK_INT_EQ(req.err_status, 400);
        CHECK_STR_EQ(why, "invalid request method");
    }
    /* Bytes that may still become a valid head stay LK_PARTIAL. */
    static const char *const partial[] = {
        "", "G", "GET", "GET ", "GET /", "\r", "\r\n", "\r\n\r", "\r\n\r\nGE", "M-SEARCH",
    };
    for (size_t i = 0; i < sizeof(partial) / sizeof(partial[0]); i++) {
        struct lk_http1_request req;
        struct lk_http_header h[NH];
        if (parse_req(partial[i], strlen(partial[i]), &req, h, NULL, NULL) != LK_PARTIAL)
            fprintf(stderr, "  partial case %zu\n", i);
        CHECK_INT_EQ(parse_req(partial[i], strlen(partial[i]), &req, h, NULL, NULL), LK_PARTIAL);
    }
}

/* Valid heads fed byte by byte: every proper prefix is LK_PARTIAL (never an
 * early error), the whole is the head's length. */
static void test_request_byte_by_byte(void)
{
    static const char *const valid[] = {
        "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "\r\n\r\n\r\nPOST /x?y=1 HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
        "GET http://a.example:8080/p?q HTTP/1.1\r\nHost: a.example:8080\r\n\r\n",
        "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        "M-SEARCH! /#$%&'*+-.^_`|~ HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /caf%C3%A9 HTTP/1.1\r\nX: caf\xc3\xa9\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
        size_t len = strlen(valid[i]);
        char *buf = malloc(len);
        CHECK(buf != NULL);
        for (size_t k = 0; k <= len; k++) {
            struct lk_http1_request req;
            struct lk_http_header h[NH];
            memcpy(buf, valid[i], k); /* exactly k bytes: nothing past them is readable */
            int rc = parse_req(k ? buf : "", k, &req, h, NULL, NULL);
            int want = k < len ? LK_PARTIAL : (int)len;
            if (rc != want)
                fprintf(stderr, "  case %zu prefix %zu: %d\n", i, k, rc);
            CHECK_INT_EQ(rc, want);
        }
        free(buf);
    }
    /* Two pipelined heads arriving byte by byte: the first is found as soon
     * as its empty line is complete, whatever follows it. */
    const char *two = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
    size_t first = strlen(two) / 2;
    for (size_t k = first; k <= strlen(two); k++) {
        struct lk_http1_request req;
        struct lk_http_header h[NH];
        CHECK_INT_EQ(parse_req(two, k, &req, h, NULL, NULL), (int)first);
    }
}

static void test_pipelined(void)
{
    const char *in = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
    struct lk_http1_request req;
    struct lk_http_header h[NH];
    int rc = parse_req(in, strlen(in), &req, h, NULL, NULL);
    CHECK_INT_EQ(rc, (int)strlen(in) / 2);
    CHECK_MEM_EQ(req.target.ptr, req.target.len, "/1", 2);
    rc = parse_req(in + rc, strlen(in) - (size_t)rc, &req, h, NULL, NULL);
    CHECK_INT_EQ(rc, (int)strlen(in) / 2);
    CHECK_MEM_EQ(req.target.ptr, req.target.len, "/2", 2);
}

static int parse_resp(const char *s, bool head, struct lk_http1_response *r,
                      struct lk_http_header *h)
{
    memset(r, 0, sizeof(*r));
    r->headers = h;
    r->headers_cap = NH;
    return lk_http1_parse_response(s, strlen(s), NULL, head, r, NULL);
}

static void test_response_framing(void)
{
    static const struct {
        const char *in;
        bool head;
        int rc_sign; /* 1 ok, else the error */
        enum lk_http1_body_kind kind;
        bool keep;
    } cases[] = {
        { "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false, 1, LK_HTTP1_BODY_LENGTH, true },
        { "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true, 1, LK_HTTP1_BODY_NONE, true },
        { "HTTP/1.1 204 No Content\r\n\r\n", false, 1, LK_HTTP1_BODY_NONE, true },
        { "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", false, 1, LK_HTTP1_BODY_NONE,
          true },
        { "HTTP/1.1 100 Continue\r\n\r\n", false, 1, LK_HTTP1_BODY_NONE, true },
        { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, 1, LK_HTTP1_BODY_CHUNKED,
          true },
        { "HTTP/1.1 200 OK\r\n\r\n", false, 1, LK_HTTP1_BODY_UNTIL_CLOSE, false },
        { "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false, 1, LK_HTTP1_BODY_LENGTH, false },
        { "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n", false, 1,
          LK_HTTP1_BODY_LENGTH, false },
        { "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", false, 1, LK_HTTP1_BODY_LENGTH, true },
        { "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", false,
          LK_EPARSE, LK_HTTP1_BODY_NONE, false },
        { "HTTP/1.1 2000 OK\r\n\r\n", false, LK_EPARSE, LK_HTTP1_BODY_NONE, false },
        { "HTTP/1.1 099 OK\r\n\r\n", false, LK_EPARSE, LK_HTTP1_BODY_NONE, false },
        { "HTTP/1.1 200 OK\r\nSet-Cookie: a\r\nSet-Cookie: b\r\n\r\n", false, 1,
          LK_HTTP1_BODY_UNTIL_CLOSE, false },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct lk_http1_response r;
        struct lk_http_header h[NH];
        int rc = parse_resp(cases[i].in, cases[i].head, &r, h);
        if (cases[i].rc_sign == 1) {
            CHECK_INT_EQ(rc, (int)strlen(cases[i].in));
            CHECK_INT_EQ(r.body_kind, cases[i].kind);
            CHECK_INT_EQ(r.keep_alive, cases[i].keep);
        } else {
            CHECK_INT_EQ(rc, cases[i].rc_sign);
        }
    }
    struct lk_http1_response r;
    struct lk_http_header h[NH];
    CHECK(parse_resp("HTTP/1.1 404 Not Here\r\nA: 1\r\n\r\n", false, &r, h) > 0);
    CHECK_INT_EQ(r.status, 404);
    CHECK_MEM_EQ(r.reason.ptr, r.reason.len, "Not Here", 8);
    CHECK_INT_EQ(r.n_headers, 1);
}

/* RFC 9112 §2.2: a bare LF ends a line of a response head (the original's
 * clients accept it); a bare CR does not, and requests stay CRLF-only. */
static void test_response_bare_lf(void)
{
    struct lk_http1_response r;
    struct lk_http_header h[NH];
    const char *lf = "HTTP/1.1 200 OK\nContent-Length: 2\nX-A: b\n\nhi";
    CHECK_INT_EQ(parse_resp(lf, false, &r, h), (int)strlen(lf) - 2);
    CHECK_INT_EQ(r.status, 200);
    CHECK_MEM_EQ(r.reason.ptr, r.reason.len, "OK", 2);
    CHECK_INT_EQ(r.n_headers, 2);
    CHECK_MEM_EQ(h[1].name.ptr, h[1].name.len, "X-A", 3);
    CHECK_MEM_EQ(h[1].value.ptr, h[1].value.len, "b", 1);
    CHECK_INT_EQ(r.body_kind, LK_HTTP1_BODY_LENGTH);
    CHECK_INT_EQ((int)r.content_length, 2);
    /* Mixed line ends, and the empty line as a bare LF after CRLF lines. */
    const char *mixed = "HTTP/1.1 204 No Content\r\nA: 1\nB: 2\r\n\n";
    CHECK_INT_EQ(parse_resp(mixed, false, &r, h), (int)strlen(mixed));
    CHECK_INT_EQ(r.n_headers, 2);
    CHECK_MEM_EQ(h[0].value.ptr, h[0].value.len, "1", 1);
    /* Still partial until the empty line is in. */
    CHECK_INT_EQ(parse_resp("HTTP/1.1 200 OK\nA: 1\n", false, &r, h), LK_PARTIAL);
    CHECK_INT_EQ(parse_resp("HTTP/1.1 200 OK\r", false, &r, h), LK_PARTIAL);
    /* A bare CR is still an error, in the status line and in a field. */
    CHECK_INT_EQ(parse_resp("HTTP/1.1 200 OK\rA: 1\n\n", false, &r, h), LK_EPARSE);
    CHECK_INT_EQ(parse_resp("HTTP/1.1 200 OK\nA: 1\rB\n\n", false, &r, h), LK_EPARSE);
    /* Requests: a bare LF is the 400 of the request table above. */
    struct lk_http1_request q;
    memset(&q, 0, sizeof(q));
    q.headers = h;
    q.headers_cap = NH;
    const char *rq = "GET / HTTP/1.1\r\nHost: a\n\r\n";
    CHECK_INT_EQ(lk_http1_parse_request(rq, strlen(rq), NULL, &q, NULL), LK_EPARSE);
    CHECK_INT_EQ(q.err_status, 400);
}

/* ---- chunked ----------------------------------------------------------- */

/* Feeds in pieces of at most step bytes; collects data; returns 1 done, 0
 * incomplete, LK_EPARSE. *used is the bytes of in that belong to the body. */
static int decode_steps(const char *in, size_t len, size_t step, char *out, size_t *out_len,
                        size_t *used)
{
    struct lk_http1_chunked d;
    lk_http1_chunked_init(&d);
    size_t pos = 0;
    *out_len = 0;
    while (pos < len) {
        size_t n = len - pos < step ? len - pos : step;
        size_t off = 0;
        while (off < n) {
            size_t fr = 0, da = 0;
            int rc = lk_http1_chunked_decode(&d, in + pos + off, n - off, &fr, &da, NULL);
            if (rc < 0)
                return rc;
            CHECK(fr + da <= n - off);
            memcpy(out + *out_len, in + pos + off + fr, da);
            *out_len += da;
            off += fr + da;
            if (rc == 1) {
                *used = pos + off;
                CHECK(lk_http1_chunked_done(&d));
                return 1;
            }
            if (fr + da == 0)
                break;
        }
        pos += n;
    }
    *used = pos;
    return 0;
}

static void test_chunked_table(void)
{
    static const struct {
        const char *in;
        int rc;
        const char *data;
    } cases[] = {
        { "5\r\nhello\r\n0\r\n\r\n", 1, "hello" },
        { "5;ext=1;x=\"q\"\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", 1, "hello world" },
        { "A\r\n0123456789\r\n0\r\nTrailer: x\r\nT2: y\r\n\r\n", 1, "0123456789" },
        { "5 ; ext\r\nhello\r\n0\r\n\r\n", 1, "hello" },
        { "000\r\n\r\n", 1, "" },
        { "5\r\nhello\r\n", 0, "hello" },
        { "5\r\nhelloX\r\n0\r\n\r\n", LK_EPARSE, NULL },
        { "x\r\n", LK_EPARSE, NULL },
        { "\r\n", LK_EPARSE, NULL },
        { "5\nhello\r\n0\r\n\r\n", LK_EPARSE, NULL },
        { "5\r\nhello\r\n0\r\nbad trailer\r\n\r\n", LK_EPARSE, NULL },
        { "5\r\nhello\r\n0\r\n\n", LK_EPARSE, NULL },
        { "11111111111111111\r\n", LK_EPARSE, NULL },
        /* Leading zeros are no significant digits (1*HEXDIG). */
        { "00000000000000000000005\r\nhello\r\n0000000000000000000\r\n\r\n", 1, "hello" },
        { "0000ffffffffffffffff\r\n", 0, "" },
        { "00010000000000000000\r\n", LK_EPARSE, NULL },
        { "5;\x01\r\nhello\r\n0\r\n\r\n", LK_EPARSE, NULL },
        /* chunk-ext grammar (RFC 9112 §7.1.1): BWS around ';' and '=', token
         * or quoted-string values with quoted-pairs. */
        { "5 ;a ; b = c ;d=\"x\\\"y;z\"\t\r\nhello\r\n0;last\r\n\r\n", 1, "hello" },
        { "5;a=\"b\r\nhello\r\n0\r\n\r\n", LK_EPARSE, NULL }, /* unterminated quote */
        { "5;\r\nhello\r\n0\r\n\r\n", LK_EPARSE, NULL },      /* no name */
        { "5;a=\r\nhello\r\n0\r\n\r\n", LK_EPARSE, NULL },    /* no value */
        { "5;=b\r\nhello\r\n0\r\n\r\n", LK_EPARSE, NULL },
        { "5;a b\r\nhello\r\n0\r\n\r\n", LK_EPARSE, NULL }, /* two names */
        { "5;a=b c\r\nhello\r\n0\r\n\r\n", LK_EPARSE, NULL },
        { "5;a=\"b\"c\r\nhello\r\n0\r\n\r\n", LK_EPARSE, NULL },
        { "5;a==b\r\nhello\r\n0\r\n\r\n", LK_EPARSE, NULL },
        { "5;a@b\r\nhello\r\n0\r\n\r\n", LK_EPARSE, NULL },
        { "5;a=\"\x01\"\r\nhello\r\n0\r\n\r\n", LK_EPARSE, NULL },
        { "-5\r\n", LK_EPARSE, NULL },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *in = cases[i].in;
        size_t len = strlen(in);
        char whole[256];
        size_t whole_len = 0, used_whole = 0;
        int rc = decode_steps(in, len, len, whole, &whole_len, &used_whole);
        if (rc != cases[i].rc)
            fprintf(stderr, "  chunked case %zu\n", i);
        CHECK_INT_EQ(rc, cases[i].rc);
        if (cases[i].data != NULL)
            CHECK_MEM_EQ(whole, whole_len, cases[i].data, strlen(cases[i].data));
        /* Every split size gives the same outcome. */
        for (size_t step = 1; step < len; step++) {
            char part[256];
            size_t part_len = 0, used = 0;
            int r2 = decode_steps(in, len, step, part, &part_len, &used);
            CHECK_INT_EQ(r2, rc);
            if (rc >= 0) {
                CHECK_MEM_EQ(part, part_len, whole, whole_len);
                CHECK_INT_EQ(used, used_whole);
            }
        }
    }
}

/* The body ends exactly at the final CRLF; following bytes are not used. */
static void test_chunked_stops_at_end(void)
{
    const char *in = "3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
    char out[64];
    size_t out_len = 0, used = 0;
    CHECK_INT_EQ(decode_steps(in, strlen(in), strlen(in), out, &out_len, &used), 1);
    CHECK_INT_EQ(used, 13);
    CHECK_MEM_EQ(out, out_len, "abc", 3);
}

/* A size line of leading zeros is bounded like any other line, as soon as
 * the limit is crossed (not only when the line ends). */
static void test_chunked_size_line_limit(void)
{
    size_t n = LK_HTTP1_CHUNK_MAX_LINE + 1;
    char *in = malloc(n);
    CHECK(in != NULL);
    memset(in, '0', n);
    char out[8];
    size_t out_len = 0, used = 0;
    CHECK_INT_EQ(decode_steps(in, n - 1, n - 1, out, &out_len, &used), 0);
    CHECK_INT_EQ(decode_steps(in, n, n, out, &out_len, &used), LK_EPARSE);
    CHECK_INT_EQ(decode_steps(in, n, 1000, out, &out_len, &used), LK_EPARSE);
    const char *why = NULL;
    struct lk_http1_chunked d;
    size_t fr, da;
    lk_http1_chunked_init(&d);
    CHECK_INT_EQ(lk_http1_chunked_decode(&d, in, n, &fr, &da, &why), LK_EPARSE);
    CHECK_STR_EQ(why, "chunk size line too long");
    free(in);
}

static void test_ws_detection(void)
{
    struct lk_http_header h[] = {
        { LK_STR("Host"), LK_STR("x") },
        { LK_STR("Connection"), LK_STR("keep-alive, Upgrade") },
        { LK_STR("Upgrade"), LK_STR("WebSocket") },
        { LK_STR("Sec-WebSocket-Version"), LK_STR("13") },
        { LK_STR("Sec-WebSocket-Key"), LK_STR("dGhlIHNhbXBsZSBub25jZQ==") },
    };
    CHECK(lk_ws_is_upgrade_request(LK_STR("GET"), 1, h, 5));
    CHECK(!lk_ws_is_upgrade_request(LK_STR("POST"), 1, h, 5));
    CHECK(!lk_ws_is_upgrade_request(LK_STR("GET"), 0, h, 5));
    CHECK(!lk_ws_is_upgrade_request(LK_STR("GET"), 1, h, 4));
    CHECK(!lk_ws_has_upgrade_websocket(h, 5));
    h[3].value = LK_STR("8");
    CHECK(!lk_ws_is_upgrade_request(LK_STR("GET"), 1, h, 5));
    h[3].value = LK_STR("13");
    h[1].value = LK_STR("keep-alive");
    CHECK(!lk_ws_is_upgrade_request(LK_STR("GET"), 1, h, 5));
    h[2].value = LK_STR("websocket");
    CHECK(lk_ws_has_upgrade_websocket(h, 5));
}

static void test_misc(void)
{
    CHECK_STR_EQ(lk_http1_reason(404), "Not Found");
    CHECK_STR_EQ(lk_http1_reason(431), "Request Header Fields Too Large");
    /* The Rust http crate's names, as the original prints them (SPEC §5.2). */
    CHECK_STR_EQ(lk_http1_reason(413), "Payload Too Large");
    CHECK_STR_EQ(lk_http1_reason(422), "Unprocessable Entity");
    CHECK_STR_EQ(lk_http1_reason(799), "");
    CHECK_STR_EQ(lk_http1_reason(418), "I'm a teapot");
    CHECK_STR_EQ(lk_http1_reason(203), "Non Authoritative Information");
    CHECK_STR_EQ(lk_http1_reason(511), "Network Authentication Required");
    CHECK_STR_EQ(lk_http1_reason(306), "");
    /* Messages print an unknown reason the way Rust's StatusCode does. */
    CHECK_STR_EQ(lk_http1_status_reason(410), "Gone");
    CHECK_STR_EQ(lk_http1_status_reason(599), "<unknown status code>");
    CHECK(lk_http1_is_hop_by_hop(LK_STR("Transfer-Encoding")));
    CHECK(lk_http1_is_hop_by_hop(LK_STR("keep-alive")));
    CHECK(!lk_http1_is_hop_by_hop(LK_STR("set-cookie")));
}

int main(void)
{
    RUN(test_request_table);
    RUN(test_request_fields);
    RUN(test_request_keep_alive);
    RUN(test_version_read_as_1_1);
    RUN(test_request_chunked_kind);
    RUN(test_request_limits);
    RUN(test_request_prefixes);
    RUN(test_request_early_reject);
    RUN(test_request_byte_by_byte);
    RUN(test_value_bytes_everywhere);
    RUN(test_name_bytes);
    RUN(test_pipelined);
    RUN(test_response_framing);
    RUN(test_field_line_edges);
    RUN(test_response_bare_lf);
    RUN(test_chunked_table);
    RUN(test_chunked_stops_at_end);
    RUN(test_chunked_size_line_limit);
    RUN(test_ws_detection);
    RUN(test_misc);
    return DONE();
}
