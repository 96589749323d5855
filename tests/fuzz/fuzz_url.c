/*
 * fuzz_url.c - lk_url_parse on arbitrary bytes (lib/core/url.h).
 *
 * Beyond "no crash": normalisation is idempotent. An accepted URL is
 * serialised, the result parses again, and serialising that gives the same
 * bytes; lk_url_normalize agrees with parse + serialise, and a copy
 * serialises identically. Whatever lk_url_split_plain() takes, lk_url_parse
 * takes too, with the same fields.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct lk_url u, v, c, p;
    const char *why = NULL;
    char mem[512];
    bool plain =
        lk_url_split_plain((struct lk_str){ (const char *)data, size }, mem, sizeof(mem), &p);
    if (lk_url_parse((const char *)data, size, &u, &why) != 0) {
        LK_ASSERT(why != NULL);
        LK_ASSERT(!plain);
        return 0;
    }
    if (plain) {
        LK_ASSERT(same(p.scheme, u.scheme) && same(p.userinfo, u.userinfo) &&
                  same(p.host, u.host) && p.port == u.port && same(p.path, u.path) &&
                  same(p.query, u.query) && same(p.fragment, u.fragment));
    }
    struct lk_buf once = LK_BUF_INIT, twice = LK_BUF_INIT, norm = LK_BUF_INIT, copied = LK_BUF_INIT;
    lk_url_serialize(&u, &once);
    LK_ASSERT(u.scheme != NULL && u.host != NULL && u.path != NULL);
    LK_ASSERT(u.port >= -1 && u.port <= 65535);
    LK_ASSERT(u.port == -1 || u.port != lk_url_default_port(u.scheme));
    LK_ASSERT(lk_url_parse(once.data, once.len, &v, &why) == 0);
    lk_url_serialize(&v, &twice);
    LK_ASSERT(once.len == twice.len && memcmp(once.data, twice.data, once.len) == 0);
    LK_ASSERT(lk_url_normalize((const char *)data, size, &norm, NULL) == 0);
    LK_ASSERT(norm.len == once.len && memcmp(norm.data, once.data, once.len) == 0);
    lk_url_copy(&c, &u);
    lk_url_serialize(&c, &copied);
    LK_ASSERT(copied.len == once.len && memcmp(copied.data, once.data, once.len) == 0);
    lk_url_release(&c);
    lk_url_release(&v);
    lk_url_release(&u);
    lk_buf_release(&once);
    lk_buf_release(&twice);
    lk_buf_release(&norm);
    lk_buf_release(&copied);
    return 0;
}
