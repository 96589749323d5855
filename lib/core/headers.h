/*
 * headers.h - request/response header rules of the routing core (SPEC §3.1,
 * §3.7 tracestate, §3.8 cookies, §3.9 CORS).
 *
 * Headers are an array of struct lk_header in arrival order (header.h); the
 * HTTP layer's parsed headers map onto it one to one, so nothing here copies
 * or builds a map. The SPEC §3.1 map semantics are reproduced by scanning:
 * names compare ASCII case-insensitively, the LAST occurrence whose value is
 * visible ASCII (0x20-0x7E or tab) wins, and occurrences with any other byte
 * in the value are ignored as if absent.
 *
 * Pure: no I/O, no clock, no randomness. No function here keeps a pointer
 * past its return; every returned struct lk_str borrows from the arguments
 * (or from static storage where stated).
 */
#ifndef LK_CORE_HEADERS_H
#define LK_CORE_HEADERS_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"
#include "core/header.h"
#include "core/str.h"

/* The tracestate entry key that carries the session name (SPEC §3.4, §3.7). */
#define LK_TRACESTATE_KEY "linkup-session"

/* Number of entries of lk_headers_cors (SPEC §3.9). */
#define LK_HEADERS_N_CORS 4

/*
 * The four CORS response headers of SPEC §3.9, names and values exactly as
 * the SPEC spells them, in SPEC order. Static storage. DESIGN §2.7: the proxy
 * engine adds each one only where the upstream response did not set a header
 * of that name (compare names with lk_str_ieq); this module only provides
 * the list.
 */
extern const struct lk_header lk_headers_cors[LK_HEADERS_N_CORS];

/* True when every byte of v is visible ASCII (0x20-0x7E) or a tab (SPEC §3.1).
 * The empty value is visible. */
bool lk_headers_is_visible(struct lk_str v);

/* True when v may be sent as a field value (RFC 9110 §5.5): no control
 * byte but HTAB (no CR, LF, NUL nor DEL); obs-text (0x80-0xFF) is allowed. */
bool lk_headers_value_ok(struct lk_str v);

/*
 * SPEC §3.1 lookup: finds the last header among h[0..n) whose name equals
 * name case-insensitively and whose value is visible ASCII. On success sets
 * *value (borrowed from h) and returns true; otherwise returns false and
 * leaves *value untouched. h may be NULL when n is 0.
 */
bool lk_headers_get(const struct lk_header *h, size_t n, struct lk_str name, struct lk_str *value);

/* True when lk_headers_get() would find name. */
bool lk_headers_has(const struct lk_header *h, size_t n, struct lk_str name);

/*
 * SPEC §3.4 step 5: the session name carried by a tracestate value: the value
 * of the first comma-separated entry whose key (the text before its first
 * '=', trimmed) is exactly "linkup-session", trimmed. Entries without '='
 * are skipped. When no entry matches, the empty string is returned (the SPEC
 * then looks the empty name up). Borrowed from tracestate.
 * Example: "a=1, linkup-session = tiny-cow ,b=2" gives "tiny-cow".
 */
struct lk_str lk_headers_tracestate_session(struct lk_str tracestate);

/*
 * DESIGN §2.3 (replaces the SPEC §3.7 substring test): true when some
 * comma-separated entry of tracestate, trimmed, equals exactly
 * "linkup-session={name}" (byte-wise). "linkup-session=tiny-cow2" does not
 * contain session "tiny-cow".
 */
bool lk_headers_tracestate_has(struct lk_str tracestate, struct lk_str name);

/*
 * DESIGN §7: W3C Baggage (https://www.w3.org/TR/baggage/) carries the session
 * next to tracestate, as the list member "linkup-session=<name>".
 *
 * lk_headers_baggage_session(): the value of the first list member whose key
 * (before its first '=', trimmed) is exactly "linkup-session", without its
 * properties (from the first ';') and trimmed, percent-decoded into out (cap
 * bytes, NUL-terminated). Returns the decoded length, or -1 when there is no
 * such member or its value is empty, is not valid percent-encoding (a '%'
 * not followed by two hex digits), decodes to a byte outside visible ASCII,
 * or does not fit in cap - 1 bytes.
 * Example: "k=v, linkup-session = tiny%2Dcow ;p=1" gives "tiny-cow".
 */
long lk_headers_baggage_session(struct lk_str baggage, char *out, size_t cap);

/* Longest session name read from baggage. SPEC §2.5 puts no limit on names
 * (tracestate carries any); this one only bounds the decoding buffers. */
#define LK_HEADERS_BAGGAGE_NAME_MAX 255

/*
 * True when lk_headers_baggage_session() of baggage (the first
 * "linkup-session" member, decoded into LK_HEADERS_BAGGAGE_NAME_MAX bytes)
 * equals name.
 */
bool lk_headers_baggage_has(struct lk_str baggage, struct lk_str name);

/*
 * Appends name to b as a baggage value: bytes outside the W3C
 * baggage-octet set (controls, space, '"', ',', ';', '\\', '%' and
 * non-ASCII) percent-encoded as %XX.
 */
void lk_headers_baggage_add_value(struct lk_buf *b, struct lk_str name);

/*
 * SPEC §3.8 cookie normalisation over the request headers h[0..n):
 * collects the visible-ASCII Cookie values (trimmed, empty ones dropped);
 * with none, or exactly one that contains no ',', the request is left as is.
 * Otherwise every value is split on ',', parts are trimmed and empty parts
 * dropped; at most one part left means "leave as is" too.
 *
 * Returns false for "leave the Cookie headers as they are" (out untouched).
 * Returns true for "remove EVERY Cookie header (including ignored,
 * non-visible ones) and add a single Cookie header whose value is out":
 * the parts joined with "; " are appended to out (caller-owned buffer).
 * Examples: "a=b" + "c=d" gives "a=b; c=d"; a single "a=b, c=d" gives
 * "a=b; c=d"; a single "a=b; c=d" is left as is.
 */
bool lk_headers_cookie_normalize(const struct lk_header *h, size_t n, struct lk_buf *out);

#endif
