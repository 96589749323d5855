/*
 * curl_dl.c - dlopen()s libcurl on first use and resolves the functions of
 * struct lk_curl by name.
 *
 * Invariant: the library is never dlclose()d, so a table handed out stays
 * valid until exit; a failed load is remembered and not retried.
 */
#include "net/curl_dl.h"

#include <dlfcn.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "core/err.h"

#define FN(name)                                      \
    {                                                 \
        "curl_" #name, offsetof(struct lk_curl, name) \
    }

static const struct {
    const char *symbol;
    size_t offset;
} functions[] = {
    FN(global_init),      FN(global_cleanup),      FN(easy_init),    FN(easy_cleanup),
    FN(easy_setopt),      FN(easy_getinfo),        FN(easy_perform), FN(easy_strerror),
    FN(slist_append),     FN(slist_free_all),      FN(multi_init),   FN(multi_cleanup),
    FN(multi_add_handle), FN(multi_remove_handle), FN(multi_setopt), FN(multi_assign),
    FN(multi_info_read),  FN(multi_perform),       FN(multi_poll),   FN(multi_socket_action),
};

int lk_curl_open(const char *soname, struct lk_curl *out, char *err, size_t errlen)
{
    /* RTLD_LOCAL: libcurl's symbols (and those of its TLS backends) stay out
     * of the global namespace, so they cannot shadow anything of ours. */
    void *h = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        snprintf(err, errlen, "%s not found: install libcurl4", soname);
        return LK_ENOTFOUND;
    }
    struct lk_curl t;
    for (size_t i = 0; i < sizeof(functions) / sizeof(functions[0]); i++) {
        void *sym = dlsym(h, functions[i].symbol);
        if (sym == NULL) {
            snprintf(err, errlen, "%s has no %s: install a newer libcurl4", soname,
                     functions[i].symbol);
            dlclose(h);
            return LK_ENOTFOUND;
        }
        /* POSIX guarantees function pointers have the representation of void *. */
        memcpy((char *)&t + functions[i].offset, &sym, sizeof(sym));
    }
    *out = t;
    return 0;
}

static struct {
    struct lk_curl table;
    char why[160];
    int state; /* 0 not tried, 1 loaded, -1 failed */
    int initialised;
} loaded;

const struct lk_curl *lk_curl(const char **why)
{
    if (loaded.state == 0)
        loaded.state =
            lk_curl_open(LK_CURL_SONAME, &loaded.table, loaded.why, sizeof(loaded.why)) == 0 ? 1
                                                                                             : -1;
    if (loaded.state == 1 && !loaded.initialised) {
        if (loaded.table.global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK) {
            loaded.initialised = 1;
        } else {
            snprintf(loaded.why, sizeof(loaded.why), "libcurl failed to initialise");
            loaded.state = -1;
        }
    }
    if (loaded.state == 1)
        return &loaded.table;
    if (why != NULL)
        *why = loaded.why;
    return NULL;
}

void lk_curl_cleanup(void)
{
    if (loaded.initialised) {
        loaded.table.global_cleanup();
        loaded.initialised = 0;
    }
}
