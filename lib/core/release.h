/*
 * release.h - the release manifest and the release cache of `linkup update`
 * (DESIGN §2.15, SPEC §6.5.9, docs/releases.md).
 *
 * The manifest is a JSON document listing releases, each with a version, a
 * channel and one asset (URL + SHA-256) per platform. For a given platform
 * (an operating-system part such as "unknown-linux" and an architecture such
 * as "x86_64", both passed in by the caller, who asks uname) this module picks,
 * per channel, the highest version (SPEC §3.11 ordering) that has an asset for
 * the platform. The result is a release list with at most one entry per
 * channel; it is also what the cache file $LINKUP_HOME/releases_cache.json
 * holds, in SPEC §6.5.9's shape plus "sha256" inside "binary" (optional when
 * read, so a cache in the original's shape still tells of updates).
 *
 * Pure: no clock (times are arguments, epoch seconds), no I/O, no logging.
 * Memory comes from lk_x* (abort on OOM); parsing is bounded by the input.
 */
#ifndef LK_CORE_RELEASE_H
#define LK_CORE_RELEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/version.h"

/* Length of a SHA-256 digest in hex. */
#define LK_RELEASE_SHA256_HEX 64

/* One installable release for one platform. */
struct lk_release {
    enum lk_channel channel;
    struct lk_version version; /* owned (lk_version_release) */
    char *name;                /* owned: the asset's file name (last URL path segment) */
    char *url;                 /* owned: absolute download URL */
    char sha256[LK_RELEASE_SHA256_HEX + 1]; /* lower-case hex, NUL-terminated; "" when a
                                             * cache entry had none (SPEC §6.5.9 shape) */
};

/* A growable list of releases; embed it, zero it (or LK_RELEASE_LIST_INIT)
 * and free it with lk_release_list_release. Fields are read-only for
 * callers. */
struct lk_release_list {
    struct lk_release *items; /* owned */
    size_t n, cap;
};

#define LK_RELEASE_LIST_INIT \
    {                        \
        NULL, 0, 0           \
    }

/* The contents of releases_cache.json. */
struct lk_release_cache {
    int64_t fetched_at;    /* epoch seconds */
    int64_t next_fetch_at; /* epoch seconds; the cache is valid while now <= this */
    struct lk_release_list releases;
};

/* Frees every release and empties the list (it may be reused). */
void lk_release_list_release(struct lk_release_list *list);

/* Frees the cache's releases (the struct may be reused). */
void lk_release_cache_release(struct lk_release_cache *cache);

/*
 * Parses a release manifest (json[0..len)) fetched from manifest_url and
 * appends to out the release that counts for each channel on the platform
 * (os_part, arch): the highest version whose "assets" has a key containing
 * both strings (the first such key in document order). Relative asset URLs
 * are resolved against manifest_url. Releases that cannot be used (version
 * that does not parse, unknown channel, no asset for the platform, a "sha256"
 * that is not 64 hex digits, a URL that does not resolve to http(s)) are
 * skipped; unknown fields are ignored.
 *
 * Returns 0 (out may have gained 0, 1 or 2 entries, stable first), or
 * LK_EPARSE when the document is not JSON or has no "releases" array, with a
 * reason appended to why (when non-NULL). out is unchanged on failure.
 */
int lk_release_manifest_parse(const char *json, size_t len, const char *manifest_url,
                              const char *os_part, const char *arch, struct lk_release_list *out,
                              struct lk_buf *why);

/*
 * Parses the cache file's text into *out (zeroed first; release with
 * lk_release_cache_release). Returns 0, or LK_EPARSE with a reason appended
 * to why (when non-NULL) when the text is not a cache in the shape
 * lk_release_cache_to_json writes; *out is then empty.
 */
int lk_release_cache_parse(const char *json, size_t len, struct lk_release_cache *out,
                           struct lk_buf *why);

/* Appends the cache as pretty JSON (two-space indent, trailing newline). */
void lk_release_cache_to_json(const struct lk_release_cache *cache, struct lk_buf *out);

/* The first release of the channel in list, or NULL. Borrowed from list. */
const struct lk_release *lk_release_find(const struct lk_release_list *list, enum lk_channel ch);

/*
 * SPEC §6.5.9: an update exists when a release for the requested channel is
 * known (rel != NULL) and either the requested channel differs from the
 * current version's channel or rel's version is above current (§3.11).
 */
bool lk_release_is_update(const struct lk_release *rel, enum lk_channel requested,
                          const struct lk_version *current);

/* The epoch second of the next UTC midnight strictly after now. */
int64_t lk_release_next_midnight(int64_t now);

/*
 * Resolves ref against the absolute URL base (RFC 3986 §5.2 for the cases a
 * manifest needs: absolute "scheme:...", network-path "//host/...",
 * absolute-path "/...", query "?..." and relative paths, dot segments
 * removed) and appends the normalised result to out. Returns 0, or LK_EPARSE
 * when base or the result is not a URL (out unchanged).
 */
int lk_release_resolve_url(const char *base, const char *ref, struct lk_buf *out);

/* The OS part of an asset key for a uname sysname: "unknown-linux" for
 * Linux, "apple-darwin" for Darwin, else NULL. */
const char *lk_release_os_part(const char *sysname);

/* The architecture of an asset key for a uname machine: "x86_64" for x86_64
 * and amd64, "aarch64" for aarch64 and arm64, else machine itself. */
const char *lk_release_arch(const char *machine);

#endif
