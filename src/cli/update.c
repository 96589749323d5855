/*
 * update.c - the release cache, the manifest fetch and the update notice
 * (see update.h).
 *
 * The cache is the only shared state between runs: whatever happens, a
 * notice check leaves a cache valid until the next UTC midnight behind it,
 * so a broken or unreachable release server costs one 5 s attempt a day, not
 * one per command.
 */
#include "cli/update.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/home.h"
#include "cli/http.h"
#include "core/err.h"
#include "core/version.h"
#include "net/curl_dl.h"
#include "proto/http1.h"

#ifndef LK_RELEASE_URL
#define LK_RELEASE_URL ""
#endif

#define MANIFEST_TIMEOUT_MS 5000L
#define MANIFEST_MAX_BYTES  (4u * 1024u * 1024u)
#define CACHE_MAX_BYTES     (1u * 1024u * 1024u)

const char *cli_release_url(void)
{
    const char *env = getenv("LINKUP_RELEASE_URL");
    if (env != NULL && env[0] != '\0')
        return env;
    return LK_RELEASE_URL[0] != '\0' ? LK_RELEASE_URL : NULL;
}

void cli_platform(const char **os_part, const char **arch)
{
    static struct utsname uts;
    static const char *os;
    static bool done;
    if (!done) {
        if (uname(&uts) == -1) {
            memset(&uts, 0, sizeof(uts));
        }
        os = lk_release_os_part(uts.sysname);
        done = true;
    }
    *os_part = os ? os : "unsupported-os";
    *arch = lk_release_arch(uts.machine);
}

int cli_self_path(struct lk_buf *out)
{
    char *p = realpath("/proc/self/exe", NULL);
    if (p == NULL)
        return LK_EIO;
    lk_buf_adds(out, p);
    free(p);
    return 0;
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *data)
{
    size_t n = size * nmemb;
    return lk_buf_add(data, ptr, n) == 0 ? n : 0;
}

CURL *cli_release_curl(const char *url, long max_redirs, curl_write_callback write_cb, void *data,
                       const struct lk_curl **lc, struct lk_buf *err)
{
    const char *why = NULL;
    *lc = lk_curl(&why);
    if (*lc == NULL) {
        lk_buf_adds(err, why);
        return NULL;
    }
    CURL *c = (*lc)->easy_init();
    if (c == NULL) {
        lk_buf_adds(err, "cannot initialise libcurl");
        return NULL;
    }
    (*lc)->easy_setopt(c, CURLOPT_URL, url);
    (*lc)->easy_setopt(c, CURLOPT_USERAGENT, "linkup-cli");
    (*lc)->easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    (*lc)->easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    (*lc)->easy_setopt(c, CURLOPT_MAXREDIRS, max_redirs);
    (*lc)->easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    (*lc)->easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    (*lc)->easy_setopt(c, CURLOPT_WRITEFUNCTION, write_cb);
    (*lc)->easy_setopt(c, CURLOPT_WRITEDATA, data);
    return c;
}

/* GETs the manifest into body (redirects followed). 0 or LK_EIO with the
 * reason in err. */
static int fetch_manifest(const char *url, struct lk_buf *body, struct lk_buf *err)
{
    const struct lk_curl *lc;
    long status = 0;
    int rc = 0;

    CURL *c = cli_release_curl(url, 5L, on_body, body, &lc, err);
    if (c == NULL)
        return LK_EIO;
    struct curl_slist *list = lc->slist_append(NULL, "Accept: application/json");
    lc->easy_setopt(c, CURLOPT_HTTPHEADER, list);
    lc->easy_setopt(c, CURLOPT_TIMEOUT_MS, MANIFEST_TIMEOUT_MS);
    CURLcode cc = lc->easy_perform(c);
    if (cc != CURLE_OK) {
        lk_buf_adds(err, cc == CURLE_WRITE_ERROR ? "manifest too large" : lc->easy_strerror(cc));
        rc = LK_EIO;
        goto out;
    }
    lc->easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200 || status > 299) {
        const char *reason = lk_http1_reason((int)status);
        lk_buf_addf(err, "HTTP %ld%s%s", status, *reason ? " " : "", reason);
        rc = LK_EIO;
    }
out:
    lc->slist_free_all(list);
    lc->easy_cleanup(c);
    return rc;
}

/* Fetches and parses the manifest for this platform into list. Relative
 * asset URLs resolve against url as configured, as install.sh does. */
static int fetch_releases(const char *url, struct lk_release_list *list, struct lk_buf *err)
{
    struct lk_buf body = LK_BUF_INIT;
    const char *os_part;
    const char *arch;

    lk_buf_init(&body, MANIFEST_MAX_BYTES);
    int rc = fetch_manifest(url, &body, err);
    if (rc == 0) {
        cli_platform(&os_part, &arch);
        struct lk_buf why = LK_BUF_INIT;
        if (lk_release_manifest_parse(body.data, body.len, url, os_part, arch, list, &why) != 0) {
            lk_buf_addf(err, "malformed manifest: %s", why.data);
            rc = LK_EIO;
        }
        lk_buf_release(&why);
    }
    lk_buf_release(&body);
    return rc;
}

static void cache_path(struct lk_buf *out)
{
    cli_home_file(CLI_RELEASES_CACHE, out);
}

/* Saves the cache; failures only cost another fetch later. */
static void write_cache(const struct lk_release_cache *cache)
{
    struct lk_buf path = LK_BUF_INIT;
    struct lk_buf json = LK_BUF_INIT;
    cache_path(&path);
    lk_release_cache_to_json(cache, &json);
    if (mkdir(cli_home(), 0755) == -1 && errno != EEXIST) {
        /* The command itself reports an unusable Linkup directory. */
    } else if (cli_write_file(path.data, json.data, json.len) != 0) {
        cli_log(LK_LOG_WARN, "Failed to save %s: %s", path.data, strerror(errno));
    }
    lk_buf_release(&json);
    lk_buf_release(&path);
}

/* Reads a still-valid cache into out: 0, or LK_ENOTFOUND when there is none
 * (an unparseable or expired file is deleted). */
static int read_cache(int64_t now, struct lk_release_cache *out)
{
    struct lk_buf path = LK_BUF_INIT;
    struct lk_buf text = LK_BUF_INIT;
    int rc;

    memset(out, 0, sizeof(*out));
    cache_path(&path);
    rc = cli_read_file(path.data, &text, CACHE_MAX_BYTES);
    if (rc == 0) {
        rc = lk_release_cache_parse(text.data, text.len, out, NULL);
        if (rc == 0 && now > out->next_fetch_at) {
            lk_release_cache_release(out);
            rc = LK_ENOTFOUND;
        }
        if (rc != 0)
            unlink(path.data);
    }
    lk_buf_release(&text);
    lk_buf_release(&path);
    return rc == 0 ? 0 : LK_ENOTFOUND;
}

/* True when every release carries a SHA-256: an update only installs what it
 * can verify, so a cache entry without one (SPEC §6.5.9's shape) is fetched
 * again first when there is a manifest to fetch it from. */
static bool all_have_digests(const struct lk_release_list *list)
{
    for (size_t i = 0; i < list->n; i++)
        if (list->items[i].sha256[0] == '\0')
            return false;
    return true;
}

int cli_releases_get(const char *url, bool for_update, struct lk_release_cache *out,
                     struct lk_buf *err)
{
    int64_t now = (int64_t)time(NULL);

    if (read_cache(now, out) == 0) {
        /* Without a release URL a valid cache is all there is (SPEC §6.1: a
         * pre-seeded cache answers); `update` refuses to install a release
         * of it that has no digest. With one, `update` fetches again when
         * the cache is empty (a failed check of the notice) or unverifiable. */
        if (!for_update || url == NULL || (out->releases.n > 0 && all_have_digests(&out->releases)))
            return 0;
        lk_release_cache_release(out);
    }
    if (url == NULL) {
        lk_buf_adds(err, "No release manifest configured: set LINKUP_RELEASE_URL");
        return LK_ENOTFOUND;
    }
    out->fetched_at = now;
    out->next_fetch_at = lk_release_next_midnight(now);
    int rc = fetch_releases(url, &out->releases, err);
    if (rc != 0) {
        lk_release_list_release(&out->releases);
        if (!for_update)
            write_cache(out);
        return rc;
    }
    write_cache(out);
    return 0;
}

/* True when LINKUP_NO_UPDATE_CHECK asks for no checks. */
static bool checks_disabled(void)
{
    const char *v = getenv("LINKUP_NO_UPDATE_CHECK");
    return v != NULL && v[0] != '\0' && strcmp(v, "0") != 0;
}

/* True when the path has a directory component named exactly "Cellar". */
static bool under_cellar(const char *path)
{
    return strstr(path, "/Cellar/") != NULL;
}

void cli_args_done(struct cli_ctx *ctx)
{
    if (ctx->update_notice) {
        ctx->update_notice = false;
        cli_update_notice();
    }
}

void cli_update_notice(void)
{
    struct lk_release_cache cache;
    struct lk_version cur;
    struct lk_buf err = LK_BUF_INIT;
    struct lk_buf self = LK_BUF_INIT;
    const char *url = cli_release_url();

    if (checks_disabled())
        return;
    if (lk_version_parse(lk_str_c(LK_VERSION), &cur, NULL) != 0)
        return;
    if (cli_releases_get(url, false, &cache, &err) == 0) {
        enum lk_channel ch = lk_version_channel(&cur);
        if (lk_release_is_update(lk_release_find(&cache.releases, ch), ch, &cur)) {
            bool brew = cli_self_path(&self) == 0 && under_cellar(self.data);
            printf("⚠️ New version of linkup is available! Run `%s` to update it.\n\n",
                   brew ? "brew upgrade linkup" : "linkup update");
            fflush(stdout);
        }
        lk_release_cache_release(&cache);
    }
    lk_version_release(&cur);
    lk_buf_release(&self);
    lk_buf_release(&err);
}
