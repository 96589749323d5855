/*
 * route.h - request routing in the pure core (SPEC §3, DESIGN §2.3, §2.4,
 * §2.7; SPEC §4.6 cache key).
 *
 * Given the request URL (a string such as "http://tiny-cow.example.com/a?b")
 * and the request headers in arrival order, routing answers three questions,
 * the same way for the worker (SPEC §4.4) and the local server (SPEC §5.3):
 *
 *   1. which session?  lk_route_find_session (SPEC §3.4) - none means 422;
 *   2. which service and upstream URL?  lk_route_find_target (SPEC §3.5,
 *      §3.6) - none means 404;
 *   3. which headers to set on the outgoing request?  lk_route_extra_headers
 *      (SPEC §3.7 with DESIGN §2.3/§2.4).
 *
 * lk_route_request() does all three in one call; servers call it once per
 * request. It compiles no regex (sessions hold compiled ones), parses no
 * JSON and allocates only the target URL and one buffer for the extra header
 * values. Header-level rules (lookup, tracestate, cookies, CORS) are in
 * headers.h.
 *
 * DESIGN §2.4 replaces SPEC §3.2/§3.3: the session subdomain and the target
 * domain are computed from the HOST only (scheme, userinfo, port, path, query
 * and fragment removed first), and hosts compare case-insensitively.
 *
 * Pure: no I/O, no clock; randomness comes from the caller's struct lk_rng.
 * Single-threaded (sessions hold regex match data).
 */
#ifndef LK_CORE_ROUTE_H
#define LK_CORE_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"
#include "core/header.h"
#include "core/headers.h"
#include "core/rng.h"
#include "core/session.h"
#include "core/str.h"

/* The name first_subdomain yields when the host has two labels or fewer
 * (SPEC §3.2). It is looked up in the store like any other name. */
#define LK_ROUTE_NO_SUBDOMAIN "DOES-NOT-EXIST"

/* Stand-in for an absent header in the SPEC §3.5 domain candidates. */
#define LK_ROUTE_ABSENT_DOMAIN "does-not-exist"

/* Longest host-derived session name retried in lower case (a DNS label). */
#define LK_ROUTE_MAX_LABEL 63

/* Most headers lk_route_extra_headers sets (SPEC §3.7, and baggage). */
#define LK_ROUTE_MAX_EXTRA 5

/*
 * Session lookup callback (a store behind it). Looks up name and returns 0
 * with *out set (borrowed: valid at least until the caller's request is
 * done; the store's contract says exactly how long), LK_ENOTFOUND when no
 * session has that name, or another negative lk_err (a store error, or a
 * stored value that fails validation) after appending a message to err
 * (err may be NULL). Any error other than LK_ENOTFOUND aborts the search.
 * docs/internals/routing.md shows an adapter over lk_store_get_session.
 */
typedef int lk_session_lookup_fn(void *ctx, struct lk_str name, const struct lk_session **out,
                                 struct lk_buf *err);

/* ---- host helpers (DESIGN §2.4) -------------------------------------------- */

/*
 * The host of s, a URL or a bare "host[:port][/path]": a leading "http://",
 * "https://", "ws://" or "wss://" (ASCII case-insensitive) is removed, the
 * authority ends at the first '/', '?' or '#', userinfo (up to the last '@')
 * and the ":port" are dropped; "[v6]:port" keeps "[v6]". Borrowed from s.
 * When port is non-NULL it receives the port text without ':' (borrowed,
 * empty when the host carried no port; "host:" yields an empty port).
 */
struct lk_str lk_route_host(struct lk_str s, struct lk_str *port);

/*
 * first_subdomain (SPEC §3.2 with DESIGN §2.4): the first '.'-separated label
 * of lk_route_host(s) when the host has three labels or more, otherwise
 * LK_ROUTE_NO_SUBDOMAIN. Borrowed from s, or static storage for the sentinel.
 * "https://example.com/app.js" -> sentinel, "http://127.0.0.1:8080/a" -> "127".
 */
struct lk_str lk_route_first_subdomain(struct lk_str s);

/*
 * target_domain (SPEC §3.3 with DESIGN §2.4): lk_route_host(s), without its
 * leading "{session_name}." when first_subdomain(s) equals session_name
 * case-insensitively. Never includes a port. Borrowed from s.
 * ("http://tiny-cow.example.com:8080/x", "tiny-cow") -> "example.com".
 */
struct lk_str lk_route_target_domain(struct lk_str s, struct lk_str session_name);

/* The first domain of s whose name equals domain ASCII case-insensitively
 * (DESIGN §2.4), or NULL. Borrowed from s. */
const struct lk_domain *lk_route_find_domain(const struct lk_session *s, struct lk_str domain);

/* ---- session extraction (SPEC §3.4) ---------------------------------------- */

struct lk_route_session {
    /* The name the session was found under. Borrowed from the url or a header
     * value given to lk_route_find_session, or from name_buf (see there), or
     * static storage (the sentinel). */
    struct lk_str name;
    /* Borrowed from the lookup callback (see lk_session_lookup_fn). */
    const struct lk_session *session;
    /* private: a lower-cased copy of a host-derived name (at most
     * LK_ROUTE_MAX_LABEL bytes), or the name decoded from baggage (at most
     * LK_HEADERS_BAGGAGE_NAME_MAX, DESIGN §7: as long as tracestate allows).
     * Because name may point here, do not copy a struct lk_route_session by
     * value. */
    char name_buf[LK_HEADERS_BAGGAGE_NAME_MAX + 1];
};

/*
 * SPEC §3.4: tries, in order, first_subdomain(url), then first_subdomain of
 * the x-forwarded-host, referer and origin headers (each only if present),
 * then the tracestate "linkup-session" entry (only if tracestate is present;
 * the empty name when it has no such entry), then (DESIGN §7) the baggage
 * "linkup-session" member (only when baggage has one, percent-decoded into
 * out->name_buf: lk_headers_baggage_session()). The first name the lookup
 * finds wins. DESIGN §2.4: when a host-derived name (other than the sentinel)
 * holds upper-case ASCII and is not found as written, its lower-case form (if at most
 * LK_ROUTE_MAX_LABEL bytes) is tried before moving on.
 *
 * Returns 0 and fills *out; LK_ENOTFOUND when no candidate exists; or the
 * lookup's own error (message in err), which stops the search at once.
 * Servers map every failure to 422. *out is zeroed first.
 */
int lk_route_find_session(struct lk_str url, const struct lk_header *h, size_t n,
                          lk_session_lookup_fn *lookup, void *ctx, struct lk_route_session *out,
                          struct lk_buf *err);

/* ---- target service and URL (SPEC §3.5, §3.6) ------------------------------ */

struct lk_route_target {
    /* The target service, borrowed from the session given to
     * lk_route_find_target (valid while that session is). */
    const struct lk_session_service *service;
    /* The target URL, serialised normalised; owned, release with
     * lk_route_target_release. */
    struct lk_buf url;
};

/*
 * SPEC §3.5/§3.6: with url parsed (lk_url_parse), a linkup-destination header
 * naming a service of s selects that service with the original path (no
 * routes, no rewrites). Otherwise the domain is the first of
 * target_domain(url), target_domain(x-forwarded-host), target_domain(referer)
 * and target_domain(origin) (absent headers: "does-not-exist") found by
 * lk_route_find_domain; the service is that of the first route whose regex
 * matches the percent-encoded path (unanchored), else the default service;
 * the service's rewrites run in order with replace-all semantics; the target
 * URL is the request URL with the location's scheme, host and explicit
 * non-default port, the computed path, and the request's query and fragment
 * (the location's path is ignored).
 *
 * Returns 0 and fills *out (initialise it with lk_route_target_init or
 * zero it first; its url buffer is reset), LK_ENOTFOUND when there is no
 * target (404), or LK_EPARSE when url is not an absolute URL.
 */
int lk_route_find_target(const struct lk_session *s, struct lk_str session_name, struct lk_str url,
                         const struct lk_header *h, size_t n, struct lk_route_target *out);

void lk_route_target_init(struct lk_route_target *t);
/* Frees the URL buffer; the struct may be reused. */
void lk_route_target_release(struct lk_route_target *t);

/* ---- additional headers (SPEC §3.7, DESIGN §2.3, §2.4) ---------------------- */

struct lk_route_extra {
    /* Headers to SET on the outgoing request, each replacing every header of
     * that name: items[0..n). Names are static lower-case strings; values
     * point into mem (owned by this struct; valid until release). */
    struct lk_header items[LK_ROUTE_MAX_EXTRA];
    size_t n;
    struct lk_buf mem; /* private */
};

void lk_route_extra_init(struct lk_route_extra *x);
void lk_route_extra_release(struct lk_route_extra *x);

/*
 * Fills *x (reset first) with, in this order and each only when the rule
 * asks for it:
 *   traceparent         absent: "00-{32 hex}-{16 hex}-00", lower-case hex
 *                       from rng (55 characters);
 *   tracestate          absent: "linkup-session={name}"; present: unchanged
 *                       when an entry equals "linkup-session={name}" exactly
 *                       (DESIGN §2.3), else "{existing},linkup-session={name}";
 *   baggage             (DESIGN §7) only when tracestate is set above:
 *                       absent: "linkup-session={name}" (name
 *                       percent-encoded where W3C baggage asks); present:
 *                       unchanged when its "linkup-session" member already
 *                       names the session, else "{existing},linkup-session=…";
 *   linkup-destination  absent: service_name;
 *   x-forwarded-host    absent: "{name}.{target_domain(url, name)}", plus
 *                       ":{port}" when url's host carried a port (DESIGN §2.4).
 * "Absent" follows SPEC §3.1 (a non-visible value counts as absent).
 */
void lk_route_extra_headers(struct lk_str url, const struct lk_header *h, size_t n,
                            struct lk_str session_name, struct lk_str service_name,
                            const struct lk_rng *rng, struct lk_route_extra *x);

/* The name of the first header of x whose value cannot be sent
 * (lk_headers_value_ok), or an empty string. Service names have no syntax
 * rules (SPEC §2.5) and go out as linkup-destination, so a name holding CR
 * or LF would add header lines, or a whole request, to what the upstream
 * reads: the servers refuse such a request (SPEC §4.4 step 5). */
struct lk_str lk_route_extra_invalid(const struct lk_route_extra *x);

/* ---- caching (SPEC §4.6) --------------------------------------------------- */

/* True when method is exactly "GET" and some cache_routes regex of s matches
 * upstream_path (the path of the target URL, after rewrites) anywhere. */
bool lk_route_is_cacheable(struct lk_str method, const struct lk_session *s,
                           struct lk_str upstream_path);

/*
 * Appends the cache key of upstream_url to out: the URL with its host replaced
 * by "{session_name}.{host}", where an IP-address host is first replaced by
 * "example.com"; port, path and query kept. Returns 0 or LK_EPARSE (url does
 * not parse; out untouched).
 */
int lk_route_cache_key(struct lk_str upstream_url, struct lk_str session_name, struct lk_buf *out);

/* ---- all in one ------------------------------------------------------------ */

struct lk_route_result {
    struct lk_route_session found; /* session and name; see there */
    struct lk_route_target target; /* owned URL */
    struct lk_route_extra extra;   /* owned header values */
    /* Cookie normalisation (SPEC §3.8): when replace_cookie is true, remove
     * every Cookie header and add one with value cookie (owned). */
    bool replace_cookie;
    struct lk_buf cookie;
    struct lk_buf routed_to; /* lk_route_routed_to()'s value (owned) */
};

/* The outgoing request header list of SPEC §3.10 / §4.4 step 5: the incoming
 * headers in order minus Host, minus every header r replaces (the additional
 * headers of §3.7 and, when replace_cookie, every Cookie), then the
 * replacements. Writes at most n_in + LK_ROUTE_MAX_EXTRA + 1 entries to out
 * (the caller's array, e.g. from the request arena) and returns how many.
 * The entries borrow from in and from r. Shared by the worker and the local
 * server so both forward exactly the same headers. */
size_t lk_route_outgoing_headers(const struct lk_header *in, size_t n_in,
                                 const struct lk_route_result *r, struct lk_header *out);

/* Prepares r for lk_route_request (no allocation). */
void lk_route_result_init(struct lk_route_result *r);
/* Frees everything r owns; r may be reused after lk_route_result_init. */
void lk_route_result_release(struct lk_route_result *r);

/* A program's route result kept from one request to the next, so that its
 * buffers keep their capacity. lk_route_slot_take() hands it out, or, while
 * it is in use (a re-entrant call), initialises *local and hands that out;
 * lk_route_slot_give() takes back what take handed out (releasing *local). */
struct lk_route_slot {
    struct lk_route_result r;
    bool busy;
};
void lk_route_slot_init(struct lk_route_slot *s);
void lk_route_slot_release(struct lk_route_slot *s);
struct lk_route_result *lk_route_slot_take(struct lk_route_slot *s, struct lk_route_result *local);
void lk_route_slot_give(struct lk_route_slot *s, struct lk_route_result *r);

/* The response header that tells the client where a request was routed
 * (DESIGN §7). */
#define LK_ROUTE_ROUTED_TO "linkup-routed-to"

/*
 * The value of LK_ROUTE_ROUTED_TO for r, a routed request (session found,
 * target resolved): "{service}; session={name}; via={via}", the names
 * percent-encoded where they hold anything but visible ASCII other than '"',
 * ',', ';', '\\' and '%' (as lk_headers_baggage_add_value()). via names the
 * hop that chose the target: "local-server", "worker" or "tunnel".
 * Example: "web; session=tiny-cow; via=local-server". Borrowed from r
 * (r->routed_to) until r is routed again or released.
 */
struct lk_str lk_route_routed_to(struct lk_route_result *r, const char *via);

/*
 * Routes one request: lk_route_find_session, lk_route_find_target,
 * lk_route_extra_headers and lk_headers_cookie_normalize, with the same
 * arguments. r must have been initialised (lk_route_result_init); it may be
 * passed again without a release in between, which reuses its buffers
 * (everything from the previous call is overwritten).
 *
 * Returns 0 with r filled. Otherwise r->found.session tells the servers which
 * answer to give: NULL means "no session" (422; the return value is
 * LK_ENOTFOUND or the lookup's error, message in err); non-NULL means
 * "no target" (404; LK_ENOTFOUND, or LK_EPARSE for a URL that does not
 * parse). Release r in every case.
 */
int lk_route_request(struct lk_str url, const struct lk_header *h, size_t n,
                     lk_session_lookup_fn *lookup, void *ctx, const struct lk_rng *rng,
                     struct lk_route_result *r, struct lk_buf *err);

#endif
