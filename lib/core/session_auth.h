/*
 * session_auth.h - the credentials of the worker's optional session auth
 * (DESIGN §7 "optional auth in front of session URLs"; docs/worker.md).
 *
 * A worker started with --session-auth SECRET lets a request reach a session
 * only when it carries one of:
 *   - the header LK_AUTH_HEADER with SECRET itself (scripts and services);
 *   - the cookie LK_AUTH_COOKIE set by the sign-in form (browsers), whose
 *     value is "v1.{expiry}.{mac}": expiry in Unix seconds (decimal), mac
 *     the lower-case hex HMAC-SHA256 of "v1.{expiry}" keyed with
 *     SHA-256(SECRET). Workers sharing a secret accept each other's cookies,
 *     nothing is stored, and a new secret signs everyone out.
 * Neither ever reaches an upstream: lk_auth_strip() removes both.
 *
 * Pure: no clock and no I/O; the caller passes the time.
 */
#ifndef LK_CORE_SESSION_AUTH_H
#define LK_CORE_SESSION_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/header.h"
#include "core/sha256.h"
#include "core/str.h"

#define LK_AUTH_HEADER "linkup-session-auth"
#define LK_AUTH_COOKIE "linkup_session_auth"

/* Shortest secret a worker accepts (a guessable secret is no gate). */
#define LK_AUTH_SECRET_MIN 16

/* Room for a cookie value: "v1." + 20 digits + "." + 64 hex digits + NUL. */
#define LK_AUTH_COOKIE_MAX 96

/* The longest `next` path the sign-in form keeps (longer ones become "/"). */
#define LK_AUTH_NEXT_MAX 4096

struct lk_auth_key {
    unsigned char k[LK_SHA256_LEN]; /* SHA-256 of the secret; never the secret */
};

void lk_auth_key_init(struct lk_auth_key *key, struct lk_str secret);

/* True when candidate is the secret (constant time over the digests). */
bool lk_auth_secret_ok(const struct lk_auth_key *key, struct lk_str candidate);

/* Writes the NUL-terminated cookie value valid until expiry (Unix seconds)
 * into out and returns its length. */
size_t lk_auth_cookie_mint(const struct lk_auth_key *key, uint64_t expiry,
                           char out[LK_AUTH_COOKIE_MAX]);

/* True when value is a cookie value minted with key whose expiry is after
 * now. Anything malformed is false. */
bool lk_auth_cookie_ok(const struct lk_auth_key *key, struct lk_str value, uint64_t now);

/* True when the request headers h[0..n) carry a valid credential: an
 * LK_AUTH_HEADER field holding the secret, or an LK_AUTH_COOKIE pair in any
 * Cookie field (pairs split on ';' and ',', SPEC §3.8) that
 * lk_auth_cookie_ok() accepts. */
bool lk_auth_request_ok(const struct lk_auth_key *key, const struct lk_header *h, size_t n,
                        uint64_t now);

/*
 * Copies h[0..n) to out (room for n entries) without the credentials and
 * returns how many were written: LK_AUTH_HEADER fields are dropped; when
 * some Cookie field holds an LK_AUTH_COOKIE pair, every Cookie field is
 * dropped and, unless no other pair is left, one Cookie field whose value
 * (appended to cookie, which must be empty, and borrowed by out) is the
 * other non-empty pairs joined with "; " takes the place of the first.
 * Otherwise Cookie fields are copied untouched.
 */
size_t lk_auth_strip(const struct lk_header *h, size_t n, struct lk_header *out,
                     struct lk_buf *cookie);

/* The sign-in form's `next` when it is a safe local target: "/" followed by
 * anything but '/' or '\\' (no other host), visible ASCII only, at most
 * LK_AUTH_NEXT_MAX bytes. Anything else gives "/". */
struct lk_str lk_auth_safe_next(struct lk_str next);

#endif
