/*
 * fuzz_config.c - lk_config_parse on arbitrary bytes (lib/core/config.h).
 *
 * Invariants checked beyond "no crash": a rejected input leaves *out alone and
 * gives a non-empty message with a sane position; an accepted config has
 * non-empty unique service names, every service reference resolves, URLs are
 * stored normalised, and at least one top-level domain exists when any domain
 * does.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/config.h"
#include "core/err.h"
#include "core/url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_normalised(const char *url)
{
    struct lk_buf again = LK_BUF_INIT;
    LK_ASSERT(lk_url_normalize(url, strlen(url), &again, NULL) == 0);
    LK_ASSERT(strcmp(again.data, url) == 0);
    lk_buf_release(&again);
}

static void check_config(const struct lk_config *cfg)
{
    check_normalised(cfg->worker_url);
    LK_ASSERT(cfg->worker_token != NULL);
    LK_ASSERT(cfg->has_cache_routes || cfg->n_cache_routes == 0);
    for (size_t i = 0; i < cfg->n_services; i++) {
        const struct lk_config_service *s = &cfg->services[i];
        LK_ASSERT(s->name != NULL && s->name[0] != '\0');
        LK_ASSERT(lk_config_find_service(cfg, s->name) == s); /* unique */
        check_normalised(s->remote);
        check_normalised(s->local);
        LK_ASSERT(s->has_rewrites || s->n_rewrites == 0);
        for (size_t j = 0; j < s->n_rewrites; j++)
            LK_ASSERT(s->rewrites[j].source != NULL && s->rewrites[j].target != NULL);
    }
    for (size_t i = 0; i < cfg->n_domains; i++) {
        const struct lk_config_domain *d = &cfg->domains[i];
        LK_ASSERT(d->domain[0] != '\0');
        LK_ASSERT(lk_config_find_service(cfg, d->default_service) != NULL);
        for (size_t j = 0; j < d->n_routes; j++)
            LK_ASSERT(lk_config_find_service(cfg, d->routes[j].service) != NULL);
    }
    const struct lk_config_domain **top = lk_xcalloc(cfg->n_domains + 1, sizeof(*top));
    size_t n_top = lk_config_top_level_domains(cfg, top);
    LK_ASSERT(n_top <= cfg->n_domains && (cfg->n_domains == 0 || n_top > 0));
    free(top);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct lk_config *cfg = NULL;
    struct lk_diag diag;
    int rc = lk_config_parse((const char *)data, size, "/fuzz/linkup.yaml", &cfg, &diag);
    if (rc == 0) {
        LK_ASSERT(cfg != NULL);
        check_config(cfg);
        lk_config_free(cfg);
        return 0;
    }
    LK_ASSERT(rc == LK_EPARSE || rc == LK_ELIMIT);
    LK_ASSERT(cfg == NULL);
    LK_ASSERT(memchr(diag.msg, '\0', sizeof(diag.msg)) != NULL && diag.msg[0] != '\0');
    LK_ASSERT(diag.line >= 0 && diag.col >= 0 && (diag.line == 0) == (diag.col == 0));
    struct lk_buf msg = LK_BUF_INIT;
    lk_config_format_error("/fuzz/linkup.yaml", &diag, &msg);
    LK_ASSERT(strncmp(msg.data, "Failed to deserialize config file ", 34) == 0);
    lk_buf_release(&msg);
    return 0;
}
