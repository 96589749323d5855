/*
 * version.h - Linkup version strings (SPEC §3.11) for x-linkup-version and
 * self-update.
 *
 * Parsing: split on '-'; the first piece is exactly three '.'-separated
 * unsigned 16-bit decimal integers; the remaining pieces re-joined with '-'
 * form the pre-release (present, possibly empty, when there was a '-').
 * Ordering is the original's quirk, not SemVer: two pre-releases compare by
 * pre-release text only; a pre-release is below any stable version; two stable
 * versions compare major, minor, patch. Equality needs all four parts equal.
 */
#ifndef LK_CORE_VERSION_H
#define LK_CORE_VERSION_H

#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/str.h"

/* Minimum client version the worker accepts on /linkup/local-session (SPEC §4.2). */
#define LK_MIN_CLIENT_VERSION "2.1.0"

struct lk_version {
    uint16_t major, minor, patch;
    bool has_pre; /* a pre-release is present (possibly empty) */
    char *pre;    /* owned (lk_version_release); NULL when !has_pre */
};

enum lk_channel {
    LK_CHANNEL_STABLE = 0,
    LK_CHANNEL_BETA,
};

/* Parses s into v (release with lk_version_release). Returns 0, or LK_EPARSE
 * with "Failed to parse version '{s}'" appended to err (when non-NULL); v is
 * zeroed on failure. */
int lk_version_parse(struct lk_str s, struct lk_version *v, struct lk_buf *err);

void lk_version_release(struct lk_version *v);

/* Appends "M.m.p" or "M.m.p-{pre}". */
void lk_version_format(const struct lk_version *v, struct lk_buf *out);

/* beta when a pre-release is present, else stable. */
enum lk_channel lk_version_channel(const struct lk_version *v);

/* "stable" or "beta". */
const char *lk_channel_name(enum lk_channel ch);

/* <0, 0, >0 by the ordering above. Note: cmp == 0 does not imply equality
 * for two pre-releases with different numbers; use lk_version_eq. */
int lk_version_cmp(const struct lk_version *a, const struct lk_version *b);

bool lk_version_eq(const struct lk_version *a, const struct lk_version *b);

/*
 * Worker check of x-linkup-version (SPEC §4.2): true when v is older than
 * 2.1.0 and not on the beta channel (any pre-release passes).
 */
bool lk_version_is_outdated(const struct lk_version *v);

#endif
