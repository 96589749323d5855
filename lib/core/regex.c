/*
 * regex.c - PCRE2 behind the Rust regex dialect (regex.h).
 *
 * The dialect check is a small scanner over the pattern that knows escapes and
 * character classes; everything else is left to PCRE2's own syntax errors.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "core/regex.h"

#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"

struct lk_regex {
    char *source;
    pcre2_code *code;
    pcre2_match_data *md;
    /* Every match starts with these bytes ("/api/" of "/api/v[0-9]"), at the
     * subject's start when anchored ("^/api/..."): a subject without them is
     * rejected before PCRE2, whose per-call set-up costs more than matching
     * most route patterns. */
    const char *lit;
    size_t lit_len;
    bool anchored;
};

/* A flag group "(?imsx-U)" or "(?i:" may only use flags Rust knows. */
static bool flags_ok(const char *g, size_t left)
{
    if (left == 0 || g[0] == 'P' || g[0] == '<' || g[0] == ':')
        return true;
    for (size_t i = 0; i < left && g[i] != ')' && g[i] != ':'; i++) {
        if (strchr("imsUux-", g[i]) == NULL)
            return false;
    }
    return true;
}

/* Returns a reason when the pattern uses syntax the Rust crate rejects. */
static const char *rust_incompatible(const char *p, size_t n)
{
    bool in_class = false;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '\\') {
            if (i + 1 >= n)
                return NULL; /* PCRE2 reports the trailing backslash */
            char e = p[++i];
            /* Rust has no octal escapes either, so a digit is never valid. */
            if (e >= '0' && e <= '9')
                return "back-references are not supported";
            if (e == 'k' || e == 'g')
                return "back-references are not supported";
            if (e == 'K')
                return "\\K is not supported";
            if (e == 'Z' || e == 'G' || e == 'R' || e == 'X' || e == 'C' || e == 'N' || e == 'h' ||
                e == 'H' || e == 'V' || e == 'o' || e == 'c' || e == 'Q' || e == 'E')
                return "unsupported escape sequence";
            continue;
        }
        if (in_class) {
            if (c == ']')
                in_class = false;
            continue;
        }
        if (c == '[') {
            in_class = true;
            /* A leading "]" or "^]" is a literal inside the class. */
            if (i + 1 < n && p[i + 1] == '^')
                i++;
            if (i + 1 < n && p[i + 1] == ']')
                i++;
            continue;
        }
        if (c == '(' && i + 1 < n && p[i + 1] == '?') {
            const char *g = p + i + 2;
            size_t left = n - i - 2;
            if (left >= 1 && (g[0] == '=' || g[0] == '!'))
                return "look-around is not supported";
            if (left >= 2 && g[0] == '<' && (g[1] == '=' || g[1] == '!'))
                return "look-around is not supported";
            if (left >= 1 && g[0] == '>')
                return "atomic groups are not supported";
            if (left >= 1 &&
                (g[0] == '(' || g[0] == 'R' || g[0] == '&' || g[0] == '|' || g[0] == 'C' ||
                 (g[0] >= '0' && g[0] <= '9') || g[0] == '+' || g[0] == '#' || g[0] == '\'' ||
                 (g[0] == '-' && left >= 2 && g[1] >= '0' && g[1] <= '9')))
                return "unsupported group syntax";
            if (!flags_ok(g, left))
                return "unsupported flag";
            if (left >= 2 && g[0] == 'P' && (g[1] == '=' || g[1] == '>'))
                return "back-references are not supported";
            continue;
        }
        if (c == '(' && i + 1 < n && p[i + 1] == '*')
            return "unsupported verb";
        if ((c == '*' || c == '+' || c == '?' || c == '}') && i + 1 < n && p[i + 1] == '+')
            return "possessive quantifiers are not supported";
    }
    return NULL;
}

/* True when c stands for itself in a pattern, outside any group or class:
 * printable ASCII that is neither a metacharacter nor a brace ("#" and the
 * space too, which the x flag would change). */
static bool is_plain_literal(char c)
{
    return c > ' ' && c < 0x7f && strchr("\\^$.|?*+()[]{}#", c) == NULL;
}

/* A top-level "|" would let a match start elsewhere ("^/a|b"). */
static bool has_top_level_alternative(const char *p, size_t n)
{
    int depth = 0;
    bool in_class = false;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '\\') {
            i++;
        } else if (in_class) {
            in_class = c != ']';
        } else if (c == '[') {
            in_class = true;
            if (i + 1 < n && p[i + 1] == '^')
                i++;
            if (i + 1 < n && p[i + 1] == ']')
                i++;
        } else if (c == '(') {
            depth++;
        } else if (c == ')') {
            depth--;
        } else if (c == '|' && depth <= 0) {
            return true;
        }
    }
    return false;
}

/* The literal bytes every match of p starts with, and whether that is at the
 * subject's start: p begins with them, or with "^" or \A and then them (start
 * of text: no multi-line flag can come before it), and has no top-level
 * alternative. The literal ends at the first character that is not plain
 * ASCII (so a UTF-8 sequence is never cut) and leaves out a character made
 * optional by the quantifier after it ("^/ab?" gives "/a"); "+" keeps it.
 * Returns the length, 0 when there is none. */
static size_t leading_literal(const char *p, size_t n, size_t *start, bool *anchored)
{
    size_t i = 0;
    if (n >= 1 && p[0] == '^')
        i = 1;
    else if (n >= 2 && p[0] == '\\' && p[1] == 'A')
        i = 2;
    *anchored = i > 0;
    *start = i;
    if (has_top_level_alternative(p, n))
        return 0;
    size_t end = i;
    while (end < n && is_plain_literal(p[end])) {
        char next = end + 1 < n ? p[end + 1] : '\0';
        if (next == '*' || next == '?' || next == '{')
            break;
        end++;
        if (next == '+')
            break;
    }
    return end - i;
}

int lk_regex_compile(const char *src, size_t len, struct lk_regex **out, struct lk_buf *err)
{
    const char *why = rust_incompatible(src, len);
    if (why) {
        if (err)
            lk_buf_adds(err, why);
        return LK_EPARSE;
    }
    int code;
    PCRE2_SIZE off;
    uint32_t opts = PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY | PCRE2_NO_UTF_CHECK;
    /* NO_UTF_CHECK is only safe on valid UTF-8: check the pattern first. */
    pcre2_code *re =
        pcre2_compile((PCRE2_SPTR)src, len, opts & ~PCRE2_NO_UTF_CHECK, &code, &off, NULL);
    if (re == NULL) {
        if (err) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(code, msg, sizeof(msg));
            lk_buf_addf(err, "%s at offset %zu", (const char *)msg, (size_t)off);
        }
        return LK_EPARSE;
    }
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter */
    struct lk_regex *r = lk_xcalloc(1, sizeof(*r));
    r->source = lk_xstrndup(src, len);
    size_t at = 0;
    r->lit_len = leading_literal(r->source, len, &at, &r->anchored);
    r->lit = r->source + at;
    r->code = re;
    r->md = pcre2_match_data_create_from_pattern(re, NULL);
    if (r->md == NULL)
        LK_BUG("pcre2_match_data_create_from_pattern");
    *out = r;
    return 0;
}

void lk_regex_free(struct lk_regex *re)
{
    if (re == NULL)
        return;
    pcre2_match_data_free(re->md);
    pcre2_code_free(re->code);
    free(re->source);
    free(re);
}

const char *lk_regex_source(const struct lk_regex *re)
{
    return re->source;
}

struct lk_str lk_regex_leading_literal(const struct lk_regex *re, bool *anchored)
{
    *anchored = re->anchored;
    return (struct lk_str){ re->lit, re->lit_len };
}

/* False when s cannot hold a match starting at or after start. */
static bool may_match(const struct lk_regex *re, const char *s, size_t len, size_t start)
{
    if (re->lit_len == 0)
        return true;
    if (re->anchored)
        return len >= re->lit_len && memcmp(s, re->lit, re->lit_len) == 0;
    return len - start >= re->lit_len &&
           memmem(s + start, len - start, re->lit, re->lit_len) != NULL;
}

/* Subjects may hold invalid UTF-8 (raw request paths): match them in a mode
 * that tolerates it by checking validity and refusing to match otherwise. */
static int match_at(const struct lk_regex *re, const char *s, size_t len, size_t start,
                    uint32_t flags)
{
    if (!may_match(re, s, len, start))
        return PCRE2_ERROR_NOMATCH;
    return pcre2_match(re->code, (PCRE2_SPTR)s, len, start, flags, re->md, NULL);
}

bool lk_regex_search(const struct lk_regex *re, const char *s, size_t len)
{
    return match_at(re, s, len, 0, 0) >= 0;
}

bool lk_regex_group(const struct lk_regex *re, const char *subject, unsigned i, struct lk_str *out)
{
    if (i >= pcre2_get_ovector_count(re->md))
        return false;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(re->md);
    if (ov[2 * i] == PCRE2_UNSET)
        return false;
    *out = (struct lk_str){ subject + ov[2 * i], ov[2 * i + 1] - ov[2 * i] };
    return true;
}

static bool is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

static void add_group(const struct lk_regex *re, const char *s, const char *name, size_t n,
                      struct lk_buf *out)
{
    struct lk_str g;
    uint64_t num;
    if (lk_str_to_u64((struct lk_str){ name, n }, 65535, &num) == 0) {
        if (lk_regex_group(re, s, (unsigned)num, &g))
            lk_buf_addstr(out, g);
        return;
    }
    char buf[128];
    if (n >= sizeof(buf))
        return;
    memcpy(buf, name, n);
    buf[n] = '\0';
    int idx = pcre2_substring_number_from_name(re->code, (PCRE2_SPTR)buf);
    if (idx > 0 && lk_regex_group(re, s, (unsigned)idx, &g))
        lk_buf_addstr(out, g);
}

static void expand(const struct lk_regex *re, const char *s, const char *t, size_t tn,
                   struct lk_buf *out)
{
    size_t i = 0;
    while (i < tn) {
        if (t[i] != '$') {
            lk_buf_addch(out, t[i++]);
            continue;
        }
        if (i + 1 < tn && t[i + 1] == '$') {
            lk_buf_addch(out, '$');
            i += 2;
            continue;
        }
        if (i + 1 < tn && t[i + 1] == '{') {
            const char *close = memchr(t + i + 2, '}', tn - i - 2);
            if (close && close > t + i + 2) {
                add_group(re, s, t + i + 2, (size_t)(close - (t + i + 2)), out);
                i = (size_t)(close - t) + 1;
                continue;
            }
            lk_buf_addch(out, '$');
            i++;
            continue;
        }
        size_t j = i + 1;
        while (j < tn && is_name_char(t[j]))
            j++;
        if (j == i + 1) {
            lk_buf_addch(out, '$');
            i++;
            continue;
        }
        add_group(re, s, t + i + 1, j - i - 1, out);
        i = j;
    }
}

int lk_regex_replace_all(const struct lk_regex *re, const char *s, size_t len, const char *tmpl,
                         size_t tlen, struct lk_buf *out)
{
    size_t pos = 0;             /* where the next search starts */
    size_t copy = 0;            /* subject bytes before this are already in out */
    size_t last_end = SIZE_MAX; /* end of the previous replaced match */
    int n = 0;
    while (pos <= len) {
        int rc = match_at(re, s, len, pos, 0);
        if (rc < 0)
            break;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(re->md);
        size_t ms = ov[0], me = ov[1];
        /* Like Rust, an empty match right where the previous match ended is
         * skipped: "a*" on "baaac" gives "-b-c-", not "-b--c-". */
        if (!(ms == me && ms == last_end)) {
            lk_buf_add(out, s + copy, ms - copy);
            expand(re, s, tmpl, tlen, out);
            copy = last_end = me;
            n++;
        }
        if (me > ms) {
            pos = me;
            continue;
        }
        /* Empty match: step over one UTF-8 character to make progress. */
        if (me >= len)
            break;
        size_t step = 1;
        while (me + step < len && ((unsigned char)s[me + step] & 0xC0) == 0x80)
            step++;
        pos = me + step;
    }
    if (n > 0 && copy < len)
        lk_buf_add(out, s + copy, len - copy);
    return n;
}
