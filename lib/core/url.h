/*
 * url.h - parsing and normalising absolute URLs (SPEC §2 intro, WHATWG-style).
 *
 * Linkup only ever needs absolute http(s) and ws(s) URLs. Normalisation, as
 * the original's WHATWG parser does it: lower-case scheme and host (a
 * non-ASCII host of a special scheme goes through UTS #46 to its punycode
 * form, "bücher.de" -> "xn--bcher-kva.de", with libidn2), default
 * port dropped (http/ws 80, https/wss 443), empty path becomes "/", dot
 * segments resolved, `\` read as `/`, and bytes outside the URL code points
 * percent-encoded in path, query and fragment. IPv6 hosts are parsed and
 * re-serialised canonically ("[0:0::1]" -> "[::1]"); user and password are
 * encoded separately and dropped when empty. Other schemes parse too
 * (scheme://authority/path, or an opaque path kept as written as in
 * "mailto:a/b") but get no default port. Normalising is idempotent
 * (tests/fuzz/fuzz_url.c).
 *
 * Pure: no allocation other than through lk_x* (and libidn2's own, freed
 * before returning), no I/O.
 */
#ifndef LK_CORE_URL_H
#define LK_CORE_URL_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"

struct lk_url {
    char *scheme;   /* owned, lower-case, never NULL after a successful parse */
    char *userinfo; /* owned, NULL when absent ("user:pass" without "@") */
    char *host;     /* owned, lower-case; IPv6 kept with its brackets; "" only for non-special */
    int port;       /* explicit non-default port, or -1 */
    char *path;     /* owned, starts with "/" for special schemes */
    char *query;    /* owned, without "?", NULL when absent */
    char *fragment; /* owned, without "#", NULL when absent */
};

/* Parses and normalises s[0..len). On success fills *url (the caller releases
 * it with lk_url_release) and returns 0; otherwise returns LK_EPARSE and sets
 * *why (static text) when why is non-NULL. *url is untouched on failure. */
int lk_url_parse(const char *s, size_t len, struct lk_url *url, const char **why);

/* The common URL, "http(s)://host[:port]/path[?query]", whose lk_url_parse
 * would leave every part as it is (a lower-case ASCII host that is not an
 * IPv4 address in another form than dotted decimal, a path without
 * percent-encoding work or dot segments, a plain query), split into *url
 * without allocating: scheme, host, path and query are copied into mem (cap
 * bytes), which must outlive *url; port, userinfo and fragment as
 * lk_url_parse sets them. Do not lk_url_release() the result. False (and
 * *url untouched) for anything else; lk_url_parse then gives the answer. */
bool lk_url_split_plain(struct lk_str s, char *mem, size_t cap, struct lk_url *url);

/* Frees the owned strings; the struct may be reused. Safe on a zeroed struct. */
void lk_url_release(struct lk_url *url);

/* Deep copy: dst receives owned copies of src's fields. */
void lk_url_copy(struct lk_url *dst, const struct lk_url *src);

/* Appends the serialised URL (scheme://[userinfo@]host[:port]path[?query][#fragment]). */
void lk_url_serialize(const struct lk_url *url, struct lk_buf *out);

/* Appends the authority for a Host header: host, plus ":port" when explicit. */
void lk_url_host_port(const struct lk_url *url, struct lk_buf *out);

/* The default port of a scheme (80 for http/ws, 443 for https/wss), or -1. */
int lk_url_default_port(const char *scheme);

/* The effective port: explicit port or the scheme's default. */
int lk_url_effective_port(const struct lk_url *url);

/* True for http and https with a non-empty host (SPEC §2.2 rule 3). */
bool lk_url_is_http(const struct lk_url *url);

/* Normalises s into out (appending); returns 0 or LK_EPARSE like lk_url_parse. */
int lk_url_normalize(const char *s, size_t len, struct lk_buf *out, const char **why);

#endif
