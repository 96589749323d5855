/*
 * version.c - Linkup version strings (SPEC §3.11).
 *
 * The ordering deliberately reproduces the original's quirk (pre-releases
 * compare by text only and sort below every stable version); see version.h.
 */
#include "core/version.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"

/* Parses one decimal u16 piece: digits only, at least one, no overflow. */
static int parse_u16(struct lk_str s, uint16_t *out)
{
    uint64_t v;
    /* Rust's u16::from_str accepts one leading '+'. */
    if (s.len > 1 && s.ptr[0] == '+') {
        s.ptr++;
        s.len--;
    }
    if (s.len == 0 || lk_str_to_u64(s, UINT16_MAX, &v) != 0)
        return LK_EPARSE;
    *out = (uint16_t)v;
    return 0;
}

/* Parses "M.m.p" exactly (three pieces). */
static int parse_core(struct lk_str s, struct lk_version *v)
{
    uint16_t parts[3];
    const char *p = s.ptr;
    const char *end = s.ptr + s.len;
    for (int i = 0; i < 3; i++) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        const char *stop = (i < 2) ? dot : end;
        if (stop == NULL || (i == 2 && dot != NULL))
            return LK_EPARSE;
        if (parse_u16((struct lk_str){ p, (size_t)(stop - p) }, &parts[i]) != 0)
            return LK_EPARSE;
        p = stop + 1;
    }
    v->major = parts[0];
    v->minor = parts[1];
    v->patch = parts[2];
    return 0;
}

int lk_version_parse(struct lk_str s, struct lk_version *v, struct lk_buf *err)
{
    memset(v, 0, sizeof(*v));
    long dash = lk_str_index(s, '-');
    struct lk_str core = { s.ptr, dash < 0 ? s.len : (size_t)dash };
    if (parse_core(core, v) != 0) {
        memset(v, 0, sizeof(*v));
        if (err)
            lk_buf_addf(err, "Failed to parse version '%.*s'", (int)s.len, s.ptr ? s.ptr : "");
        return LK_EPARSE;
    }
    if (dash >= 0) {
        v->has_pre = true;
        v->pre = lk_xstrndup(s.ptr + dash + 1, s.len - (size_t)dash - 1);
    }
    return 0;
}

void lk_version_release(struct lk_version *v)
{
    free(v->pre);
    memset(v, 0, sizeof(*v));
}

void lk_version_format(const struct lk_version *v, struct lk_buf *out)
{
    lk_buf_addf(out, "%u.%u.%u", (unsigned)v->major, (unsigned)v->minor, (unsigned)v->patch);
    if (v->has_pre) {
        lk_buf_addch(out, '-');
        lk_buf_adds(out, v->pre ? v->pre : "");
    }
}

enum lk_channel lk_version_channel(const struct lk_version *v)
{
    return v->has_pre ? LK_CHANNEL_BETA : LK_CHANNEL_STABLE;
}

const char *lk_channel_name(enum lk_channel ch)
{
    return ch == LK_CHANNEL_BETA ? "beta" : "stable";
}

static int cmp_u16(uint16_t a, uint16_t b)
{
    return a < b ? -1 : a > b;
}

int lk_version_cmp(const struct lk_version *a, const struct lk_version *b)
{
    if (a->has_pre && b->has_pre) {
        int c = strcmp(a->pre ? a->pre : "", b->pre ? b->pre : "");
        return c < 0 ? -1 : c > 0;
    }
    if (a->has_pre != b->has_pre)
        return a->has_pre ? -1 : 1;
    if (a->major != b->major)
        return cmp_u16(a->major, b->major);
    if (a->minor != b->minor)
        return cmp_u16(a->minor, b->minor);
    return cmp_u16(a->patch, b->patch);
}

bool lk_version_eq(const struct lk_version *a, const struct lk_version *b)
{
    if (a->major != b->major || a->minor != b->minor || a->patch != b->patch)
        return false;
    if (a->has_pre != b->has_pre)
        return false;
    return !a->has_pre || strcmp(a->pre ? a->pre : "", b->pre ? b->pre : "") == 0;
}

bool lk_version_is_outdated(const struct lk_version *v)
{
    const struct lk_version min = { 2, 1, 0, false, NULL };
    return lk_version_channel(v) != LK_CHANNEL_BETA && lk_version_cmp(v, &min) < 0;
}
