/*
 * fuzz_http_cache.c - lib/proto/http_cache.h: the Cache-Control, date and
 * Age parsers and the storable lifetime the worker's cache computes from
 * every upstream response head of a cache route (SPEC §4.6, RFC 9111).
 *
 * The input is a head: lines split at '\n', each "name:value" (a line
 * without ':' is a value of Cache-Control). Invariants: a directive's
 * argument lies inside the value; seconds are -1 or within
 * [0, LK_CC_SECONDS_MAX]; the first item's name is always found, and a name
 * with ',' '=' or '"' never is; an accepted date is 29 characters once
 * trimmed and between years 0 and 9999; the lifetime is 0 with Set-Cookie, a
 * status that is not storable, or no-store anywhere, and never more than the
 * largest of the default, a year and the widest span two dates can have.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "proto/http_cache.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_FIELDS 32
#define DATE_MIN   (-62167219200LL) /* 0000-01-01T00:00:00Z */
#define DATE_MAX   253402300800LL   /* 9999-12-31T23:59:60Z */

static void check_value(struct lk_str v)
{
    struct lk_str arg;
    static const char *names[] = { "max-age", "s-maxage", "no-store", "private", "no-cache", "" };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        struct lk_str name = lk_str_c(names[i]);
        if (lk_cc_directive(v, name, &arg))
            LK_ASSERT(arg.len == 0 || (arg.ptr >= v.ptr && arg.ptr + arg.len <= v.ptr + v.len));
        long s = lk_cc_seconds(v, name);
        LK_ASSERT(s >= -1 && s <= LK_CC_SECONDS_MAX);
        LK_ASSERT((s >= 0) == lk_cc_has(v, name));
    }
    /* The first item's name (up to '=' or ',', trimmed) is found. */
    size_t k = 0;
    while (k < v.len && v.ptr[k] != '=' && v.ptr[k] != ',')
        k++;
    struct lk_str first = lk_str_trim((struct lk_str){ v.ptr, k });
    LK_ASSERT(lk_cc_has(v, first) || first.len == 0);
    LK_ASSERT(!lk_cc_has(v, LK_STR("a,b")) && !lk_cc_has(v, LK_STR("a=b")));
    int64_t t = 0;
    if (lk_http_date_parse(v, &t)) {
        LK_ASSERT(lk_str_trim(v).len == 29);
        LK_ASSERT(t >= DATE_MIN && t <= DATE_MAX);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct lk_http_header h[MAX_FIELDS];
    size_t n = 0;
    bool cookie = false, no_store = false;
    const char *p = (const char *)data, *end = p + size;
    while (p < end && n < MAX_FIELDS) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        struct lk_str line = { p, (size_t)((nl ? nl : end) - p) };
        long colon = lk_str_index(line, ':');
        if (colon < 0) {
            h[n].name = LK_STR("Cache-Control");
            h[n].value = line;
        } else {
            h[n].name = (struct lk_str){ line.ptr, (size_t)colon };
            h[n].value = (struct lk_str){ line.ptr + colon + 1, line.len - (size_t)colon - 1 };
        }
        check_value(h[n].value);
        cookie |= lk_str_ieq(h[n].name, LK_STR("set-cookie"));
        no_store |= lk_str_ieq(h[n].name, LK_STR("cache-control")) &&
                    lk_cc_has(h[n].value, LK_STR("no-store"));
        n++;
        p = nl ? nl + 1 : end;
    }
    uint64_t age = lk_http_cache_age(h, n);
    LK_ASSERT(age <= 2147483648u);
    static const int statuses[] = { 200, 204, 206, 304, 404, 500, 501 };
    for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
        uint64_t ttl = lk_http_cache_ttl_ms(statuses[i], h, n, 1700000000, 300000);
        if (cookie || no_store || statuses[i] == 206 || statuses[i] == 304 || statuses[i] >= 500)
            LK_ASSERT(ttl == 0);
        LK_ASSERT(ttl <= 300000u || ttl <= (uint64_t)LK_CC_SECONDS_MAX * 1000u ||
                  ttl <= (uint64_t)(DATE_MAX - DATE_MIN) * 1000u);
    }
    return 0;
}
