/*
 * http_cache.c - Cache-Control, dates, Age and the storable lifetime of a
 * response (RFC 9111; see http_cache.h).
 */
#include "proto/http_cache.h"

#include <string.h>

long lk_cc_delta_seconds(struct lk_str arg)
{
    long v = 0;
    if (arg.len == 0)
        return 0;
    for (size_t i = 0; i < arg.len; i++) {
        if (arg.ptr[i] < '0' || arg.ptr[i] > '9')
            return 0;
        if (v < LK_CC_SECONDS_MAX)
            v = v * 10 + (arg.ptr[i] - '0');
    }
    return v > LK_CC_SECONDS_MAX ? LK_CC_SECONDS_MAX : v;
}

bool lk_cc_directive(struct lk_str cc, struct lk_str name, struct lk_str *arg)
{
    size_t i = 0;
    while (i < cc.len) {
        size_t start = i;
        while (i < cc.len && cc.ptr[i] != '=' && cc.ptr[i] != ',')
            i++;
        struct lk_str key = lk_str_trim((struct lk_str){ cc.ptr + start, i - start });
        *arg = (struct lk_str){ cc.ptr + i, 0 };
        if (i < cc.len && cc.ptr[i] == '=') {
            size_t from = ++i;
            while (i < cc.len && (cc.ptr[i] == ' ' || cc.ptr[i] == '\t'))
                i++;
            if (i < cc.len && cc.ptr[i] == '"') {
                from = ++i;
                while (i < cc.len && cc.ptr[i] != '"')
                    i += cc.ptr[i] == '\\' && i + 1 < cc.len ? 2 : 1;
                *arg = (struct lk_str){ cc.ptr + from, (i < cc.len ? i : cc.len) - from };
                while (i < cc.len && cc.ptr[i] != ',')
                    i++;
            } else {
                while (i < cc.len && cc.ptr[i] != ',')
                    i++;
                *arg = lk_str_trim((struct lk_str){ cc.ptr + from, i - from });
            }
        }
        if (lk_str_ieq(key, name))
            return true;
        i++; /* the comma */
    }
    return false;
}

bool lk_cc_has(struct lk_str cc, struct lk_str name)
{
    struct lk_str arg;
    return lk_cc_directive(cc, name, &arg);
}

long lk_cc_seconds(struct lk_str cc, struct lk_str name)
{
    struct lk_str arg;
    return lk_cc_directive(cc, name, &arg) ? lk_cc_delta_seconds(arg) : -1;
}

/* Two digits at p, or -1. */
static int two_digits(const char *p)
{
    if (p[0] < '0' || p[0] > '9' || p[1] < '0' || p[1] > '9')
        return -1;
    return (p[0] - '0') * 10 + (p[1] - '0');
}

bool lk_http_date_parse(struct lk_str v, int64_t *out)
{
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    v = lk_str_trim(v);
    if (v.len != 29 || v.ptr[3] != ',' || v.ptr[4] != ' ' || v.ptr[7] != ' ' || v.ptr[11] != ' ' ||
        v.ptr[16] != ' ' || v.ptr[19] != ':' || v.ptr[22] != ':' ||
        memcmp(v.ptr + 25, " GMT", 4) != 0)
        return false;
    int mon = -1;
    for (int m = 0; m < 12; m++) {
        if (memcmp(v.ptr + 8, months + 3 * m, 3) == 0)
            mon = m;
    }
    int day = two_digits(v.ptr + 5), y1 = two_digits(v.ptr + 12), y2 = two_digits(v.ptr + 14);
    int hh = two_digits(v.ptr + 17), mm = two_digits(v.ptr + 20), ss = two_digits(v.ptr + 23);
    if (mon < 0 || day < 1 || day > 31 || y1 < 0 || y2 < 0 || hh < 0 || hh > 23 || mm < 0 ||
        mm > 59 || ss < 0 || ss > 60)
        return false;
    /* Days from civil (Howard Hinnant's algorithm), March-based years. */
    int64_t y = y1 * 100 + y2 - (mon < 2);
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (mon + (mon > 1 ? -2 : 10)) + 2) / 5 + day - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    int64_t days = era * 146097 + doe - 719468;
    *out = days * 86400 + hh * 3600 + mm * 60 + ss;
    return true;
}

uint64_t lk_http_cache_age(const struct lk_http_header *h, size_t n)
{
    uint64_t age = 0;
    for (size_t i = 0; i < n; i++) {
        if (!lk_str_ieq(h[i].name, LK_STR("age")))
            continue;
        struct lk_str v = lk_str_trim(h[i].value);
        bool digits = v.len > 0;
        for (size_t k = 0; k < v.len && digits; k++)
            digits = v.ptr[k] >= '0' && v.ptr[k] <= '9';
        if (!digits)
            age = 0;
        else if (lk_str_to_u64(v, 2147483648u, &age) != 0)
            age = 2147483648u;
    }
    return age;
}

/* RFC 9111 §3 and RFC 9110 §15.1's heuristically cacheable statuses, less
 * 501 (SPEC §4.6 stores nothing above 499). Never 206 (a part of the
 * representation), 304 (an answer to a conditional request only) or 1xx. */
static bool storable_status(int status)
{
    switch (status) {
    case 200:
    case 203:
    case 204:
    case 300:
    case 301:
    case 308:
    case 404:
    case 405:
    case 410:
    case 414:
        return true;
    default:
        return false;
    }
}

/* RFC 9111 §4.2.1: the lifetime in ms that Expires gives, Expires minus
 * Date (or now_s); 0 when Expires is in the past or not a valid date (§5.3:
 * such as "0"). -1 without Expires. Of several fields the first counts. */
static int64_t expires_ttl_ms(const struct lk_http_header *h, size_t n, int64_t now_s)
{
    const struct lk_http_header *exp = NULL;
    const struct lk_http_header *date = NULL;
    for (size_t i = 0; i < n; i++) {
        if (exp == NULL && lk_str_ieq(h[i].name, LK_STR("expires")))
            exp = &h[i];
        else if (date == NULL && lk_str_ieq(h[i].name, LK_STR("date")))
            date = &h[i];
    }
    if (exp == NULL)
        return -1;
    int64_t e = 0;
    int64_t d = 0;
    if (!lk_http_date_parse(exp->value, &e))
        return 0;
    if (date == NULL || !lk_http_date_parse(date->value, &d))
        d = now_s;
    return e > d ? (e - d) * 1000 : 0;
}

uint64_t lk_http_cache_ttl_ms(int status, const struct lk_http_header *h, size_t n, int64_t now_s,
                              uint64_t default_ms)
{
    long smax = -1;
    long max = -1;
    if (!storable_status(status))
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (lk_str_ieq(h[i].name, LK_STR("set-cookie")))
            return 0;
        if (!lk_str_ieq(h[i].name, LK_STR("cache-control")))
            continue;
        struct lk_str v = h[i].value;
        /* private="X-User" and no-cache="X-User" (RFC 9111 §5.2.2.4,
         * §5.2.2.7) forbid what the plain directives do for the fields they
         * name; the cache, which strips no field, takes them as the plain
         * ones. */
        if (lk_cc_has(v, LK_STR("no-store")) || lk_cc_has(v, LK_STR("private")) ||
            lk_cc_has(v, LK_STR("no-cache")))
            return 0;
        /* RFC 9111 §4.2.1: the first occurrence counts, across lines too
         * (several lines are one list, RFC 9110 §5.3). */
        if (smax < 0)
            smax = lk_cc_seconds(v, LK_STR("s-maxage"));
        if (max < 0)
            max = lk_cc_seconds(v, LK_STR("max-age"));
    }
    long ttl = smax >= 0 ? smax : max;
    int64_t expires = ttl >= 0 ? -1 : expires_ttl_ms(h, n, now_s);
    uint64_t ms = ttl >= 0 ? (uint64_t)ttl * 1000u : expires >= 0 ? (uint64_t)expires : default_ms;
    uint64_t age_ms = lk_http_cache_age(h, n) * 1000u;
    return ms > age_ms ? ms - age_ms : 0;
}
