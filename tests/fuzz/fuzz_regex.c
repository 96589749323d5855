/*
 * fuzz_regex.c - lk_regex_compile and matching on arbitrary bytes
 * (lib/core/regex.h).
 *
 * Input: a pattern, then optionally a NUL and a subject (else the pattern is
 * its own subject), then optionally a NUL and a replacement template (else
 * "<$0>"). Beyond "no crash": a pattern that starts with "^", \A or
 * a plain literal character gives the same search and replace_all results as
 * the same pattern behind "(?:)", which PCRE2 matches alike but which has no
 * leading literal, so the literal shortcut never changes an answer; and a
 * matching subject always holds the literal (at its start when anchored).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/regex.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void same_answers(const struct lk_regex *re, const struct lk_regex *ref, const char *s,
                         size_t n, const char *tmpl, size_t tlen)
{
    bool got = lk_regex_search(re, s, n);
    LK_ASSERT(got == lk_regex_search(ref, s, n));
    bool anchored;
    struct lk_str lit = lk_regex_leading_literal(re, &anchored);
    if (got && lit.len > 0 && anchored)
        LK_ASSERT(n >= lit.len && memcmp(s, lit.ptr, lit.len) == 0);
    if (got && lit.len > 0 && !anchored)
        LK_ASSERT(memmem(s, n, lit.ptr, lit.len) != NULL);
    struct lk_buf a = LK_BUF_INIT, b = LK_BUF_INIT;
    int na = lk_regex_replace_all(re, s, n, tmpl, tlen, &a);
    int nb = lk_regex_replace_all(ref, s, n, tmpl, tlen, &b);
    LK_ASSERT(na == nb && a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0));
    if (tlen > 0 && memchr(tmpl, '$', tlen) == NULL)
        LK_ASSERT(a.len >= (size_t)na * tlen);
    LK_ASSERT(na > 0 || a.len == 0);
    lk_buf_release(&a);
    lk_buf_release(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    const char *pat = (const char *)data;
    const uint8_t *nul = memchr(data, 0, size);
    size_t plen = nul ? (size_t)(nul - data) : size;
    const char *subj = nul ? (const char *)nul + 1 : pat;
    size_t slen = nul ? size - plen - 1 : size;
    const char *tmpl = "<$0>";
    size_t tlen = 4;
    const char *nul2 = nul ? memchr(subj, 0, slen) : NULL;
    if (nul2 != NULL) {
        tmpl = nul2 + 1;
        tlen = slen - (size_t)(nul2 - subj) - 1;
        slen = (size_t)(nul2 - subj);
    }
    struct lk_regex *re = NULL;
    if (lk_regex_compile(pat, plen, &re, NULL) != 0) {
        LK_ASSERT(re == NULL);
        return 0;
    }
    /* "(?:)" in front of a leading "*", "+", "?" or "{" would quantify it. */
    bool comparable = plen > 0 && strchr("*+?{", pat[0]) == NULL;
    struct lk_regex *ref = NULL;
    if (comparable) {
        char *wrapped = lk_xmalloc(plen + 4);
        memcpy(wrapped, "(?:)", 4);
        memcpy(wrapped + 4, pat, plen);
        LK_ASSERT(lk_regex_compile(wrapped, plen + 4, &ref, NULL) == 0);
        free(wrapped);
        bool anchored;
        LK_ASSERT(lk_regex_leading_literal(ref, &anchored).len == 0 && !anchored);
        same_answers(re, ref, subj, slen, tmpl, tlen);
        lk_regex_free(ref);
    } else {
        struct lk_buf out = LK_BUF_INIT;
        (void)lk_regex_search(re, subj, slen);
        (void)lk_regex_replace_all(re, subj, slen, tmpl, tlen, &out);
        lk_buf_release(&out);
    }
    lk_regex_free(re);
    return 0;
}
