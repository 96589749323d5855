/*
 * curl_dl.h - libcurl loaded at run time (docs/performance.md, finding 10).
 *
 * The `linkup` binary does not link libcurl: libcurl and the libraries it
 * pulls in (GnuTLS, p11-kit, nettle, krb5, LDAP, libssh2, ...) cost ~3.5 MiB
 * of resident pages in every process, and only the CLI's HTTP client and
 * the worker's cache fetcher use it. Those two call lk_curl() when they
 * first need it; it dlopen()s "libcurl.so.4" (Debian package libcurl4),
 * resolves the functions Linkup uses into one table and runs
 * curl_global_init(CURL_GLOBAL_DEFAULT). The local server never calls it.
 *
 * Types and constants still come from <curl/curl.h> (libcurl4-openssl-dev
 * at build time); calls go through the table: `lc->easy_setopt(e, CURLOPT_URL,
 * url)`. curl's compile-time checks of setopt argument types do not apply to
 * the table's variadic pointers: pass long literals as `1L`, as curl requires.
 *
 * Lifetime: the library stays loaded until the process exits (unloading
 * libcurl and its TLS backends is not safe). Threading: call from one
 * thread (the main or loop thread); curl_global_init is not thread-safe.
 */
#ifndef LK_NET_CURL_DL_H
#define LK_NET_CURL_DL_H

#include <curl/curl.h>
#include <stddef.h>

/* The soname loaded by lk_curl(). */
#define LK_CURL_SONAME "libcurl.so.4"

/* The libcurl functions Linkup calls; each member is the libcurl function
 * of the same name without its "curl_" prefix. */
struct lk_curl {
    CURLcode (*global_init)(long flags);
    void (*global_cleanup)(void);
    CURL *(*easy_init)(void);
    void (*easy_cleanup)(CURL *e);
    CURLcode (*easy_setopt)(CURL *e, CURLoption opt, ...);
    CURLcode (*easy_getinfo)(CURL *e, CURLINFO info, ...);
    CURLcode (*easy_perform)(CURL *e);
    const char *(*easy_strerror)(CURLcode code);
    struct curl_slist *(*slist_append)(struct curl_slist *list, const char *s);
    void (*slist_free_all)(struct curl_slist *list);
    CURLM *(*multi_init)(void);
    CURLMcode (*multi_cleanup)(CURLM *m);
    CURLMcode (*multi_add_handle)(CURLM *m, CURL *e);
    CURLMcode (*multi_remove_handle)(CURLM *m, CURL *e);
    CURLMcode (*multi_setopt)(CURLM *m, CURLMoption opt, ...);
    CURLMcode (*multi_assign)(CURLM *m, curl_socket_t s, void *p);
    CURLMsg *(*multi_info_read)(CURLM *m, int *left);
    CURLMcode (*multi_perform)(CURLM *m, int *running);
    CURLMcode (*multi_poll)(CURLM *m, struct curl_waitfd *fds, unsigned n, int timeout_ms,
                            int *numfds);
    CURLMcode (*multi_socket_action)(CURLM *m, curl_socket_t s, int ev_bitmask, int *running);
};

/*
 * The process-wide libcurl table, loading LK_CURL_SONAME and initialising
 * libcurl on the first call. Returns NULL when it cannot be loaded, with
 * *why (when why is not NULL) pointing to a static message for the user,
 * e.g. "libcurl.so.4 not found: install libcurl4"; the failure is
 * remembered, later calls return NULL with the same message at no cost.
 * The table is borrowed and valid until exit.
 */
const struct lk_curl *lk_curl(const char **why);

/*
 * The loader behind lk_curl(), without caching and without
 * curl_global_init: dlopen()s soname and fills *out. Returns 0, or
 * LK_ENOTFOUND with a message in err[0..errlen) ("<soname> not found:
 * install libcurl4", or which function is missing). On success the library
 * handle is kept for the life of the process.
 */
int lk_curl_open(const char *soname, struct lk_curl *out, char *err, size_t errlen);

/* Calls curl_global_cleanup() when lk_curl() initialised libcurl, so that
 * leak checkers see libcurl's global state freed; the table stays usable
 * only after another lk_curl(). Call at shutdown only. */
void lk_curl_cleanup(void);

#endif
