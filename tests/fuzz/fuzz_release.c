/*
 * fuzz_release.c - the release manifest and the release cache
 * (lib/core/release): the input is parsed both as a manifest (for two
 * platforms) and as a cache file. Invariants: a manifest yields at most one
 * release per channel, each with a 64-digit lower-case SHA-256 and an
 * absolute http(s) URL; a cache entry has the same or, in SPEC §6.5.9's
 * shape without "sha256", an empty digest; any release list survives a cache write + read
 * unchanged, and a parsed cache re-serialises to the same text twice.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/release.h"
#include "core/url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_release(const struct lk_release *r, bool digest_optional)
{
    struct lk_url u = { 0 };
    LK_ASSERT(strlen(r->sha256) == LK_RELEASE_SHA256_HEX ||
              (digest_optional && r->sha256[0] == '\0'));
    for (size_t i = 0; r->sha256[0] != '\0' && i < LK_RELEASE_SHA256_HEX; i++)
        LK_ASSERT((r->sha256[i] >= '0' && r->sha256[i] <= '9') ||
                  (r->sha256[i] >= 'a' && r->sha256[i] <= 'f'));
    LK_ASSERT(r->name != NULL && r->url != NULL);
    LK_ASSERT(lk_url_parse(r->url, strlen(r->url), &u, NULL) == 0 && lk_url_is_http(&u));
    lk_url_release(&u);
}

/* Writes the list as a cache, reads it back, and compares. */
static void round_trip(const struct lk_release_list *list)
{
    struct lk_release_cache cache = { 1, 2, *list };
    struct lk_release_cache back;
    struct lk_buf json = LK_BUF_INIT;
    struct lk_buf again = LK_BUF_INIT;

    lk_release_cache_to_json(&cache, &json);
    if (lk_release_cache_parse(json.data, json.len, &back, NULL) != 0)
        LK_BUG("a written release cache does not parse back");
    LK_ASSERT(back.releases.n == list->n);
    for (size_t i = 0; i < list->n; i++) {
        const struct lk_release *a = &list->items[i];
        const struct lk_release *b = &back.releases.items[i];
        LK_ASSERT(a->channel == b->channel && lk_version_eq(&a->version, &b->version));
        LK_ASSERT(strcmp(a->url, b->url) == 0 && strcmp(a->name, b->name) == 0);
        LK_ASSERT(strcmp(a->sha256, b->sha256) == 0);
    }
    lk_release_cache_to_json(&back, &again);
    LK_ASSERT(again.len == json.len && memcmp(again.data, json.data, json.len) == 0);
    lk_release_cache_release(&back);
    lk_buf_release(&again);
    lk_buf_release(&json);
}

static void fuzz_manifest(const char *text, size_t size, const char *os, const char *arch)
{
    struct lk_release_list list = LK_RELEASE_LIST_INIT;
    struct lk_buf why = LK_BUF_INIT;
    int rc = lk_release_manifest_parse(text, size, "http://127.0.0.1:8000/a/m.json", os, arch,
                                       &list, &why);
    if (rc != 0) {
        LK_ASSERT(rc == LK_EPARSE && why.len > 0 && list.n == 0);
        goto out;
    }
    LK_ASSERT(list.n <= 2);
    if (list.n == 2)
        LK_ASSERT(list.items[0].channel != list.items[1].channel);
    for (size_t i = 0; i < list.n; i++)
        check_release(&list.items[i], false);
    round_trip(&list);
out:
    lk_release_list_release(&list);
    lk_buf_release(&why);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    struct lk_release_cache cache;

    fuzz_manifest(text, size, "unknown-linux", "x86_64");
    fuzz_manifest(text, size, "apple-darwin", "aarch64");
    if (lk_release_cache_parse(text, size, &cache, NULL) == 0) {
        for (size_t i = 0; i < cache.releases.n; i++)
            check_release(&cache.releases.items[i], true);
        round_trip(&cache.releases);
    } else {
        LK_ASSERT(cache.releases.n == 0);
    }
    lk_release_cache_release(&cache);
    return 0;
}
