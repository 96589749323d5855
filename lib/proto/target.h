/*
 * target.h - the parts of an HTTP request target (RFC 9112 §3.2): the
 * worker's endpoints look at its path, its tunnel hostnames at the host of
 * an absolute-form target, and SPEC §4.4 step 1 takes an absolute-form
 * target verbatim as the request URL.
 *
 * Pure; any thread. Results are slices of the target; nothing is allocated.
 */
#ifndef LK_PROTO_TARGET_H
#define LK_PROTO_TARGET_H

#include <stdbool.h>

#include "core/str.h"

struct lk_target {
    /* absolute-form: "scheme://authority[path][?query]", the scheme as in
     * RFC 3986 §3.1 (a letter, then letters, digits, '+', '-', '.'; any
     * case), as the HTTP/1 parser takes it. */
    bool is_absolute;
    struct lk_str scheme;    /* absolute-form: as sent ("HTTP"); else empty */
    struct lk_str authority; /* absolute-form: "[userinfo@]host[:port]" as sent, up to the
                              * first '/', '?' or '#' (RFC 3986 §3.2); else empty */
    struct lk_str path;      /* what follows the authority (the whole target for
                              * origin-form, '*' and authority-form), up to the first
                              * '?'; may be empty. '#' is not special here: a request
                              * target has no fragment (RFC 9112 §3.2) */
    struct lk_str query;     /* after the first '?' of the rest; LK_STR_NULL without '?' */
};

/* Splits target into *out (every field set). Never fails: a target that is
 * not absolute-form is all path and query. */
void lk_target_split(struct lk_str target, struct lk_target *out);

#endif
