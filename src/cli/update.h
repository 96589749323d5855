/*
 * update.h - release look-up for `linkup update` and the update notice
 * (SPEC §6.1, §6.5.9, DESIGN §2.15, docs/releases.md).
 *
 * The release manifest lives at LINKUP_RELEASE_URL, else at the compile-time
 * default LK_RELEASE_URL (empty in source builds: no URL, no network). Its
 * answer for this platform is cached in $LINKUP_HOME/releases_cache.json until
 * the next UTC midnight, so the notice costs at most one request a day.
 *
 * Blocking; not thread-safe. Everything here prints nothing unless said so.
 */
#ifndef LK_CLI_UPDATE_H
#define LK_CLI_UPDATE_H

#include <stdbool.h>

#include "core/buf.h"
#include "core/release.h"
#include "net/curl_dl.h"

/* File name of the cache inside the Linkup directory. */
#define CLI_RELEASES_CACHE "releases_cache.json"

/* The manifest URL (LINKUP_RELEASE_URL, else LK_RELEASE_URL), or NULL when
 * neither is set to a non-empty value. Borrowed. */
const char *cli_release_url(void);

/*
 * Fills *out (zeroed first; release with lk_release_cache_release) with the
 * releases for this platform: from the cache when it parses and has not
 * expired, else from the manifest at url (5 s timeout, User-Agent:
 * linkup-cli), saving the answer as the new cache. An unparseable or expired
 * cache is deleted.
 *
 * for_update (the `update` command): a cache with an empty release list
 * counts as absent, and a failed fetch writes no cache. Otherwise (the notice)
 * a failed fetch writes a cache with an empty list valid until the next UTC
 * midnight, so the network is tried at most once a day.
 *
 * url NULL (no release URL configured): only a still-valid cache answers;
 * else LK_ENOTFOUND with "No release manifest configured: set
 * LINKUP_RELEASE_URL" in err and no cache written.
 *
 * Returns 0, or LK_EIO with the reason (transport error, "HTTP 404 Not Found",
 * malformed manifest) appended to err.
 */
int cli_releases_get(const char *url, bool for_update, struct lk_release_cache *out,
                     struct lk_buf *err);

/* The running platform's asset key parts (uname): OS part ("unknown-linux",
 * "apple-darwin", or "unsupported-os") and architecture. Borrowed, static. */
void cli_platform(const char **os_part, const char **arch);

/*
 * A libcurl easy handle for the release server: GET url with User-Agent:
 * linkup-cli, over http(s) only (redirects too, at most max_redirs of them),
 * no signals, the body handed to write_cb(ptr, size, nmemb, data). *lc
 * receives the libcurl table (borrowed). The caller sets its own timeouts,
 * performs the transfer and frees the handle with (*lc)->easy_cleanup.
 * Returns NULL with the reason appended to err when libcurl cannot be loaded
 * or initialised.
 */
CURL *cli_release_curl(const char *url, long max_redirs, curl_write_callback write_cb, void *data,
                       const struct lk_curl **lc, struct lk_buf *err);

/* Absolute, symlink-resolved path of the running binary into out; 0 or
 * LK_EIO (errno kept). */
int cli_self_path(struct lk_buf *out);

/*
 * The update notice of SPEC §6.1: unless LINKUP_NO_UPDATE_CHECK is set (to
 * anything but "" or "0") or no manifest URL is configured, looks the releases
 * up (cache first, as above) and, when a newer release exists on the current
 * channel, prints to stdout "⚠️ New version of linkup is available! Run
 * `linkup update` to update it." (`brew upgrade linkup` for a binary under a
 * Cellar directory) and an empty line. Failures are silent.
 */
void cli_update_notice(void);

#endif
