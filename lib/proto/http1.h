/*
 * http1.h - strict, incremental HTTP/1.1 message parsing (RFC 9112).
 *
 * Three pure codecs used by the engine in lib/net and by the fuzz targets:
 *
 *   lk_http1_parse_request()   a request head (request line + header fields);
 *   lk_http1_parse_response()  a response head (status line + header fields);
 *   lk_http1_chunked_*()       a resumable chunked-body decoder.
 *
 * The head parsers work picohttpparser-style: each call parses from the start
 * of (buf, len) and returns the number of bytes the head occupies (including
 * the final empty line), LK_PARTIAL when the head is not complete yet, or an
 * error. Feeding a head in any number of growing prefixes gives LK_PARTIAL for
 * the prefixes and then the same result as feeding it whole, and a prefix
 * never returns an error the whole input would not return.
 *
 * Strictness (docs/internals/http1.md has the full list): lines end in CRLF
 * (a bare CR or LF is an error); no obs-fold; header names are tokens with no
 * whitespace before the colon; values are HTAB/SP/VCHAR/obs-text; the method
 * is a token; the version is HTTP/1.x (a minor version above 1 reads as
 * 1.1; another major version is a 505); requests with both Content-Length and
 * Transfer-Encoding, differing Content-Length values, a Transfer-Encoding
 * other than one final "chunked" (501 when an unknown coding precedes it), or
 * several Host fields are rejected.
 *
 * Slices: every struct lk_str filled in by the head parsers (method, target,
 * reason, header names and values) points into the caller's buffer. They stay
 * valid only as long as those bytes stay where they are: copy what must
 * outlive a buffer compaction or drain (the engine copies the head into the
 * request arena first).
 *
 * Pure: no I/O, no clock, no allocation. All functions are thread-safe.
 */
#ifndef LK_PROTO_HTTP1_H
#define LK_PROTO_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/header.h"
#include "core/str.h"

/* One header field: the core's struct lk_header under its HTTP-layer name, so
 * parsed headers go to the routing functions without conversion. Used both
 * for parsed heads (slices into the parsed buffer) and for headers a program
 * passes to the engine (borrowed). */
#define lk_http_header lk_header

/* Parsing limits (DESIGN §9). */
struct lk_http1_limits {
    size_t max_line;    /* one header line, CRLF excluded: 16 KiB -> 431 */
    size_t max_head;    /* whole head including the final CRLF: 64 KiB -> 431 */
    size_t max_headers; /* header fields: 100 -> 431 */
    size_t max_target;  /* request-target: 8 KiB -> 414 */
};

#define LK_HTTP1_MAX_LINE    16384
#define LK_HTTP1_MAX_HEAD    65536
#define LK_HTTP1_MAX_HEADERS 100
#define LK_HTTP1_MAX_TARGET  8192
#define LK_HTTP1_LIMITS_DEFAULT                                                         \
    {                                                                                   \
        LK_HTTP1_MAX_LINE, LK_HTTP1_MAX_HEAD, LK_HTTP1_MAX_HEADERS, LK_HTTP1_MAX_TARGET \
    }

/* How the body that follows a head is framed. */
enum lk_http1_body_kind {
    LK_HTTP1_BODY_NONE = 0,    /* no body */
    LK_HTTP1_BODY_LENGTH,      /* content_length bytes (may be 0) */
    LK_HTTP1_BODY_CHUNKED,     /* chunked transfer coding */
    LK_HTTP1_BODY_UNTIL_CLOSE, /* responses only: read until the connection closes */
};

/* A parsed request head. The caller sets headers/headers_cap (an array of at
 * least limits.max_headers entries is enough; fewer entries make the
 * smaller number the limit); everything else is output. */
struct lk_http1_request {
    struct lk_str method;
    struct lk_str target;
    int minor_version; /* 0 or 1 */
    struct lk_http_header *headers;
    size_t headers_cap;
    size_t n_headers;
    enum lk_http1_body_kind body_kind; /* NONE, LENGTH or CHUNKED */
    uint64_t content_length;           /* valid for LENGTH */
    bool keep_alive;                   /* 1.1 without "Connection: close", or 1.0 with keep-alive */
    bool expect_continue;              /* "Expect: 100-continue" */
    int err_status;                    /* on LK_EPARSE / LK_ELIMIT: 400, 414 or 431 */
};

/* A parsed response head; headers/headers_cap as for requests. */
struct lk_http1_response {
    int minor_version;
    int status; /* 100..999 */
    struct lk_str reason;
    struct lk_http_header *headers;
    size_t headers_cap;
    size_t n_headers;
    enum lk_http1_body_kind body_kind;
    uint64_t content_length;
    bool keep_alive; /* the connection may be reused after this response */
};

/* Fills l with the DESIGN §9 defaults. */
void lk_http1_limits_default(struct lk_http1_limits *l);

/* Parses a request head at the start of (buf, len). lim NULL means the
 * defaults. Returns the head's length in bytes (> 0), LK_PARTIAL, LK_EPARSE
 * (req->err_status 400) or LK_ELIMIT (414 for the target, 431 for a line, the
 * head or the header count). why (optional) receives a static, human-readable
 * reason on errors, suitable as the 400/414/431 body. req's slices point into
 * buf. */
int lk_http1_parse_request(const char *buf, size_t len, const struct lk_http1_limits *lim,
                           struct lk_http1_request *req, const char **why);

/* Parses a response head at the start of (buf, len). request_was_head tells
 * the framing rules that the request was HEAD (no body). Framing: HEAD, 1xx,
 * 204 and 304 have no body; then Transfer-Encoding: chunked; then
 * Content-Length; else read until close. A response with both
 * Content-Length and Transfer-Encoding, differing Content-Lengths, or a
 * Transfer-Encoding other than "chunked" is rejected (LK_EPARSE: a proxy
 * answers 502). Returns the head's length (> 0), LK_PARTIAL, LK_EPARSE or
 * LK_ELIMIT; why as for requests. resp's slices point into buf. */
int lk_http1_parse_response(const char *buf, size_t len, const struct lk_http1_limits *lim,
                            bool request_was_head, struct lk_http1_response *resp,
                            const char **why);

/* First header called name (ASCII case-insensitive) in headers[0..n), or
 * NULL. The result is borrowed from the array. */
const struct lk_http_header *lk_http1_find_header(const struct lk_http_header *headers, size_t n,
                                                  struct lk_str name);

/* True for the hop-by-hop header names of RFC 9110 §7.6.1 that a proxy must
 * not forward: Connection, Keep-Alive, Proxy-Connection, TE, Trailer,
 * Transfer-Encoding, Upgrade (callers keep Upgrade for WebSocket). */
bool lk_http1_is_hop_by_hop(struct lk_str name);

/* Standard reason phrase for a status ("Not Found"), "" when unknown: the
 * canonical reasons of the original's Rust `http` crate (413 "Payload Too
 * Large", 422 "Unprocessable Entity", 418 "I'm a teapot"), as status lines
 * carry them. Never NULL; static storage. */
const char *lk_http1_reason(int status);
/* The reason as the original's messages "request failed with status {code}
 * {reason}: {body}" print it (SPEC §5.2, §6.5.6; Rust's StatusCode Display):
 * lk_http1_reason(), or "<unknown status code>" when it has none. */
const char *lk_http1_status_reason(int status);

/* ---- chunked transfer coding ------------------------------------------ */

/* Decoder state; private, use the API. Embed it and lk_http1_chunked_init()
 * it before each body. */
struct lk_http1_chunked {
    int state;
    uint64_t remaining; /* data bytes left in the current chunk */
    size_t line_len;    /* bytes of the current size/extension/trailer line */
    size_t trailer_len; /* bytes of the trailer section so far */
    unsigned n_digits;
};

/* Limits of the decoder: chunk extensions and trailer lines share the head's
 * line limit; the trailer section is capped like a head. */
#define LK_HTTP1_CHUNK_MAX_LINE     LK_HTTP1_MAX_LINE
#define LK_HTTP1_CHUNK_MAX_TRAILERS LK_HTTP1_MAX_HEAD

void lk_http1_chunked_init(struct lk_http1_chunked *d);

/* Feeds the next bytes of a chunked body. The decoder consumes framing (chunk
 * size lines, extensions, CRLFs, the last chunk and the trailer section,
 * whose fields are checked and discarded) from the start of (buf, len) until
 * it reaches chunk data, the end of the body, or the end of the input. It
 * sets *framing to the number of framing bytes at the start of buf and *data
 * to the number of chunk-data bytes that follow them in buf (the caller moves
 * these bytes elsewhere, e.g. with evbuffer_remove_buffer, and drains the
 * framing bytes; data bytes are never inspected). framing + data <= len.
 * Returns 1 when the body is complete (the rest of buf is not part of it),
 * 0 when more input is needed or more of buf remains to be fed (call again
 * with the bytes after framing + data), or LK_EPARSE (why, optional, gets the
 * reason). State is byte-level: any split of the input gives the same data
 * and result. */
int lk_http1_chunked_decode(struct lk_http1_chunked *d, const char *buf, size_t len,
                            size_t *framing, size_t *data, const char **why);

/* True when the decoder has seen the whole body. */
bool lk_http1_chunked_done(const struct lk_http1_chunked *d);

#endif
