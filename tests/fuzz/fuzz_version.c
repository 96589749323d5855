/*
 * fuzz_version.c - lk_version_parse() (lib/core/version.h, SPEC §3.11), the
 * parser the worker runs on every x-linkup-version header (SPEC §4.2) and the
 * CLI on release manifests.
 *
 * The input is split at its first NUL byte into two version strings a and b.
 * Invariants: a rejected string leaves the version zeroed; an accepted one is
 * "M.m.p" before its first '-' and formats back to text that parses to an
 * equal version (and the same text again); a string without '+' or leading
 * zeros formats back to itself; the channel is beta exactly when there is a
 * pre-release; cmp is reflexive and antisymmetric, eq implies cmp == 0, and
 * is_outdated agrees with cmp against 2.1.0.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/version.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* True when s has no '+', no NUL and no number with a leading zero. */
static bool canonical(struct lk_str s)
{
    for (size_t i = 0; i < s.len; i++) {
        char c = s.ptr[i];
        if (c == '-')
            return true; /* the pre-release is kept as it is */
        if (c == '+' || c == '\0')
            return false;
        bool starts = i == 0 || s.ptr[i - 1] == '.';
        if (starts && c == '0' && i + 1 < s.len && s.ptr[i + 1] >= '0' && s.ptr[i + 1] <= '9')
            return false;
    }
    return true;
}

static bool one(struct lk_str s, struct lk_version *v)
{
    struct lk_buf err = LK_BUF_INIT;
    if (lk_version_parse(s, v, &err) != 0) {
        LK_ASSERT(v->major == 0 && v->minor == 0 && v->patch == 0 && !v->has_pre && !v->pre);
        LK_ASSERT(strncmp(err.data, "Failed to parse version '", 25) == 0);
        lk_buf_release(&err);
        return false;
    }
    lk_buf_release(&err);
    LK_ASSERT(v->has_pre == (v->pre != NULL));
    LK_ASSERT(v->has_pre == (memchr(s.ptr, '-', s.len) != NULL));
    LK_ASSERT(lk_version_channel(v) == (v->has_pre ? LK_CHANNEL_BETA : LK_CHANNEL_STABLE));

    struct lk_buf text = LK_BUF_INIT, again = LK_BUF_INIT;
    struct lk_version back;
    lk_version_format(v, &text);
    LK_ASSERT(lk_version_parse(lk_buf_str(&text), &back, NULL) == 0);
    LK_ASSERT(lk_version_eq(v, &back) && lk_version_cmp(v, &back) == 0);
    lk_version_format(&back, &again);
    LK_ASSERT(text.len == again.len && memcmp(text.data, again.data, text.len) == 0);
    if (canonical(s) && (!v->has_pre || strlen(v->pre) == s.len - (size_t)lk_str_index(s, '-') - 1))
        LK_ASSERT(text.len == s.len && memcmp(text.data, s.ptr, s.len) == 0);
    lk_version_release(&back);
    lk_buf_release(&text);
    lk_buf_release(&again);

    LK_ASSERT(lk_version_cmp(v, v) == 0 && lk_version_eq(v, v));
    struct lk_version min;
    LK_ASSERT(lk_version_parse(LK_STR(LK_MIN_CLIENT_VERSION), &min, NULL) == 0);
    LK_ASSERT(lk_version_is_outdated(v) == (!v->has_pre && lk_version_cmp(v, &min) < 0));
    lk_version_release(&min);
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    const char *nul = memchr(p, 0, size);
    struct lk_str a = { p, nul ? (size_t)(nul - p) : size };
    struct lk_str b = nul ? (struct lk_str){ nul + 1, size - a.len - 1 } : a;
    struct lk_version va, vb;
    bool oka = one(a, &va);
    bool okb = one(b, &vb);
    if (oka && okb) {
        int ab = lk_version_cmp(&va, &vb), ba = lk_version_cmp(&vb, &va);
        LK_ASSERT(ab >= -1 && ab <= 1 && ab == -ba);
        LK_ASSERT(lk_version_eq(&va, &vb) == lk_version_eq(&vb, &va));
        if (lk_version_eq(&va, &vb))
            LK_ASSERT(ab == 0);
    }
    if (oka)
        lk_version_release(&va);
    if (okb)
        lk_version_release(&vb);
    return 0;
}
