/*
 * http_cache.h - the parts of HTTP caching (RFC 9111) the worker's response
 * cache reads from response and request heads: Cache-Control directives,
 * delta-seconds, IMF-fixdate dates, Age, and the freshness lifetime of a
 * response a shared cache may store (SPEC §4.6).
 *
 * Pure: the time is an argument. Any thread.
 */
#ifndef LK_PROTO_HTTP_CACHE_H
#define LK_PROTO_HTTP_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/http1.h"

/* RFC 9111 §1.2.2: delta-seconds (1*DIGIT, capped at LK_CC_SECONDS_MAX), or
 * 0 for anything else: a max-age or s-maxage whose argument is not
 * delta-seconds makes the response stale (§4.2.1). */
#define LK_CC_SECONDS_MAX 31536000L /* a year */
long lk_cc_delta_seconds(struct lk_str arg);

/* Finds directive name in a Cache-Control value cc; *arg is its argument
 * (empty without one; a quoted one without its quotes, escapes kept).
 * RFC 9111 §5.2: items are `token [ "=" ( token / quoted-string ) ]`
 * separated by commas (none inside quotes), names compared
 * case-insensitively; the first occurrence wins (§4.2.1). */
bool lk_cc_directive(struct lk_str cc, struct lk_str name, struct lk_str *arg);

/* Whether cc has directive name, with or without an argument. */
bool lk_cc_has(struct lk_str cc, struct lk_str name);

/* The seconds of directive name in cc (lk_cc_delta_seconds of its
 * argument), or -1 when it is absent. */
long lk_cc_seconds(struct lk_str cc, struct lk_str name);

/* An IMF-fixdate (RFC 9110 §5.6.7, "Sun, 06 Nov 1994 08:49:37 GMT"), blanks
 * around it allowed, in seconds since the epoch into *out; false for
 * anything else (the obsolete formats included). */
bool lk_http_date_parse(struct lk_str v, int64_t *out);

/* The last Age field's seconds (RFC 9111 §5.1): 0 when absent or not
 * digits, 2^31 when too large to hold (§1.2.2). */
uint64_t lk_http_cache_age(const struct lk_http_header *h, size_t n);

/* The lifetime in ms of a response with status and head h[0..n) that a
 * shared cache may store, or 0 when it may not: statuses of RFC 9111 §3
 * (RFC 9110 §15.1's heuristically cacheable ones, less 501); no Set-Cookie;
 * no no-store, private or no-cache (with field names too); the first
 * s-maxage, else max-age, across Cache-Control lines, else the first Expires
 * minus the first Date (now_s without a valid Date; 0 for an Expires that is
 * no date or past), else default_ms; less the response's Age (§4.2). */
uint64_t lk_http_cache_ttl_ms(int status, const struct lk_http_header *h, size_t n, int64_t now_s,
                              uint64_t default_ms);

#endif
