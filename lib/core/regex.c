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
#include "core/str.h"

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

/* The PCRE2 text of a Rust pattern, built by rust_to_pcre2(): out holds the
 * pattern, at[k] the source offset of out byte k (for PCRE2's error
 * offsets), at[out.len] the source length. */
struct xlat {
    struct lk_buf out;
    size_t *at;
    size_t cap;
};

/* Appends s[0..n) to the translation, standing for source offset src_at. */
static void put(struct xlat *x, const char *s, size_t n, size_t src_at)
{
    if (x->out.len + n + 1 > x->cap) {
        size_t cap = x->cap ? x->cap : 64;
        while (cap < x->out.len + n + 1)
            cap *= 2;
        x->at = lk_xrealloc(x->at, cap * sizeof(*x->at));
        x->cap = cap;
    }
    for (size_t k = 0; k < n; k++)
        x->at[x->out.len + k] = src_at;
    lk_buf_add(&x->out, s, n);
}

/* Appends the source bytes p[i..i+n) unchanged. */
static void copy(struct xlat *x, const char *p, size_t i, size_t n)
{
    size_t from = x->out.len;
    put(x, p + i, n, i);
    for (size_t k = 1; k < n; k++)
        x->at[from + k] = i + k;
}

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Rust's \u and \U escapes at p[i] ("\u0041", "\u{41}", "\U00000041",
 * "\U{41}") as PCRE2's "\x{41}". Returns the length taken, 0 if invalid. */
static size_t unicode_escape(const char *p, size_t n, size_t i, struct xlat *x)
{
    size_t j = i + 2, digits;
    if (j < n && p[j] == '{') {
        size_t k = j + 1;
        while (k < n && is_hex(p[k]))
            k++;
        if (k == j + 1 || k - j - 1 > 8 || k >= n || p[k] != '}')
            return 0;
        j++;
        digits = k - j;
    } else {
        digits = p[i + 1] == 'u' ? 4 : 8;
        for (size_t k = 0; k < digits; k++) {
            if (j + k >= n || !is_hex(p[j + k]))
                return 0;
        }
    }
    put(x, "\\x{", 3, i);
    put(x, p + j, digits, i);
    put(x, "}", 1, i);
    return (p[i + 2] == '{' ? digits + 2 : digits) + 2;
}

/* Copies the braced part of "\p{Greek}" / "\x{2F}" at p[j] == '{' through
 * its '}' (PCRE2 judges the content). Returns the index after it. */
static size_t copy_braces(const char *p, size_t n, size_t j, struct xlat *x)
{
    const char *close = memchr(p + j, '}', n - j);
    size_t end = close ? (size_t)(close - p) + 1 : n;
    copy(x, p, j, end - j);
    return end;
}

/* A flag group "(?imsx-U)" or "(?i:" at p[i] == '(' with the Unicode flag u
 * left out (PCRE2 has no such flag; patterns are always compiled with
 * Unicode semantics). Returns the index after what it took, 0 when the
 * group is not a plain flag group. */
static size_t flag_group(const char *p, size_t n, size_t i, struct xlat *x)
{
    size_t j = i + 2, end = j;
    while (end < n && p[end] != ')' && p[end] != ':')
        end++;
    if (end >= n || memchr(p + j, 'u', end - j) == NULL)
        return 0;
    char flags[16];
    size_t m = 0;
    for (size_t k = j; k < end && m < sizeof(flags) - 1; k++) {
        if (p[k] != 'u')
            flags[m++] = p[k];
    }
    if (m > 0 && flags[m - 1] == '-')
        m--;
    /* "(?u)" becomes "(?)", not nothing: a quantifier after it must stay an
     * error ("(?u)*" is one in Rust and "(?)*" in PCRE2), not repeat the
     * atom before the group. */
    put(x, "(?", 2, i);
    put(x, flags, m, j);
    put(x, p + end, 1, end);
    return end + 1;
}

/* Appends y's translation from its byte skip on to x, offsets included. */
static void append_from(struct xlat *x, const struct xlat *y, size_t skip)
{
    size_t from = x->out.len;
    if (y->out.len <= skip)
        return;
    put(x, y->out.data + skip, y->out.len - skip, 0);
    memcpy(x->at + from, y->at + skip, (y->out.len - skip) * sizeof(*x->at));
}

static void append(struct xlat *x, const struct xlat *y)
{
    append_from(x, y, 0);
}

static void xlat_release(struct xlat *x)
{
    lk_buf_release(&x->out);
    free(x->at);
    *x = (struct xlat){ .out = LK_BUF_INIT };
}

/* Unicode general categories by their long names and aliases
 * (PropertyValueAliases.txt), which Rust accepts in \p{...} and PCRE2 does
 * not: keys in loose form (lower case, without ' ', '_' and '-'). */
static const struct {
    const char *loose, *pcre;
} GENERAL_CATEGORIES[] = {
    { "other", "C" },
    { "control", "Cc" },
    { "cntrl", "Cc" },
    { "format", "Cf" },
    { "unassigned", "Cn" },
    { "privateuse", "Co" },
    { "surrogate", "Cs" },
    { "letter", "L" },
    { "casedletter", "LC" },
    { "lowercaseletter", "Ll" },
    { "modifierletter", "Lm" },
    { "otherletter", "Lo" },
    { "titlecaseletter", "Lt" },
    { "uppercaseletter", "Lu" },
    { "mark", "M" },
    { "combiningmark", "M" },
    { "spacingmark", "Mc" },
    { "enclosingmark", "Me" },
    { "nonspacingmark", "Mn" },
    { "number", "N" },
    { "decimalnumber", "Nd" },
    { "digit", "Nd" },
    { "letternumber", "Nl" },
    { "othernumber", "No" },
    { "punctuation", "P" },
    { "punct", "P" },
    { "connectorpunctuation", "Pc" },
    { "dashpunctuation", "Pd" },
    { "closepunctuation", "Pe" },
    { "finalpunctuation", "Pf" },
    { "initialpunctuation", "Pi" },
    { "otherpunctuation", "Po" },
    { "openpunctuation", "Ps" },
    { "symbol", "S" },
    { "currencysymbol", "Sc" },
    { "modifiersymbol", "Sk" },
    { "mathsymbol", "Sm" },
    { "othersymbol", "So" },
    { "separator", "Z" },
    { "lineseparator", "Zl" },
    { "paragraphseparator", "Zp" },
    { "spaceseparator", "Zs" },
};

/* The loose form of name[0..n) in out (cap bytes); false when too long. */
static bool loose_name(const char *name, size_t n, char *out, size_t cap)
{
    size_t m = 0;
    for (size_t k = 0; k < n; k++) {
        char c = name[k];
        if (c == ' ' || c == '_' || c == '-')
            continue;
        if (m + 1 >= cap)
            return false;
        out[m++] = lk_ascii_lower(c);
    }
    out[m] = '\0';
    return true;
}

/* "\p{NAME}" or "\P{NAME}" at p[i] with the '}' at p[close]: a general
 * category by a name PCRE2 lacks ("Letter", "gc=Uppercase_Letter",
 * "Decimal_Number") is written with its short name, "Assigned" as the
 * complement of Cn. Returns false, writing nothing, for every other name
 * (PCRE2 judges those: short categories, scripts with their sc= and scx=
 * prefixes, binary properties). */
static bool general_category(const char *p, size_t i, size_t close, struct xlat *x)
{
    char name[48];
    if (!loose_name(p + i + 3, close - i - 3, name, sizeof(name)))
        return false;
    const char *v = name;
    if (strncmp(v, "gc=", 3) == 0)
        v += 3;
    else if (strncmp(v, "generalcategory=", 16) == 0)
        v += 16;
    bool negated = p[i + 1] == 'P';
    const char *pcre = NULL;
    if (strcmp(v, "assigned") == 0) {
        pcre = "Cn";
        negated = !negated;
    }
    for (size_t k = 0; pcre == NULL && k < LK_ARRAY_LEN(GENERAL_CATEGORIES); k++) {
        if (strcmp(v, GENERAL_CATEGORIES[k].loose) == 0)
            pcre = GENERAL_CATEGORIES[k].pcre;
    }
    if (pcre == NULL && v != name && v[0] != '\0' && strlen(v) <= 2)
        pcre = v; /* "gc=L", "gc=lu": a short name (PCRE2 takes any case) */
    if (pcre == NULL)
        return false;
    put(x, negated ? "\\P{" : "\\p{", 3, i);
    put(x, pcre, strlen(pcre), i);
    put(x, "}", 1, i);
    return true;
}

/* The escape at p[*i] == '\\' (inside a class when in_class), translated
 * into x; moves *i past it. Returns NULL, or why Rust rejects it or PCRE2
 * has no equivalent. */
static const char *escape(const char *p, size_t n, size_t *i_io, bool in_class, struct xlat *x)
{
    size_t i = *i_io;
    if (i + 1 >= n) {
        copy(x, p, i, 1); /* PCRE2 reports the trailing backslash */
        *i_io = n;
        return NULL;
    }
    char e = p[i + 1];
    /* Rust has no octal escapes either, so a digit is never valid. */
    if ((e >= '0' && e <= '9') || e == 'k' || e == 'g')
        return "back-references are not supported";
    if (e == 'K')
        return "\\K is not supported";
    if (strchr("ZGRXCNhHVocQEe", e) != NULL)
        return "unsupported escape sequence";
    if (e == 'u' || e == 'U') {
        size_t took = unicode_escape(p, n, i, x);
        if (took == 0)
            return "invalid Unicode escape";
        i += took;
    } else if (e == 'v') { /* Rust: the vertical tab; PCRE2: a class */
        put(x, "\\x{0B}", 6, i);
        i += 2;
    } else if ((e == 'p' || e == 'P') && i + 2 < n && p[i + 2] == '{') {
        const char *close = memchr(p + i + 3, '}', n - i - 3);
        if (close != NULL && general_category(p, i, (size_t)(close - p), x)) {
            i = (size_t)(close - p) + 1;
        } else {
            copy(x, p, i, 2);
            i = copy_braces(p, n, i + 2, x);
        }
    } else if (e == 'x' && i + 2 < n && p[i + 2] == '{') {
        copy(x, p, i, 2);
        i = copy_braces(p, n, i + 2, x);
    } else if (e == 'x') {
        /* Rust: exactly two hex digits (PCRE2 takes zero to two). */
        if (i + 3 >= n || !is_hex(p[i + 2]) || !is_hex(p[i + 3]))
            return "invalid hexadecimal escape";
        copy(x, p, i, 4);
        i += 4;
    } else if (!in_class && (e == '<' || e == '>')) {
        /* Word-start and word-end assertions (regex 1.10). */
        const char *b = e == '<' ? "\\b(?=\\w)" : "\\b(?<=\\w)";
        put(x, b, strlen(b), i);
        i += 2;
    } else if (!in_class && e == 'b' && i + 2 < n && p[i + 2] == '{') {
        static const struct {
            const char *name, *pcre;
        } bounds[] = { { "{start}", "\\b(?=\\w)" },
                       { "{end}", "\\b(?<=\\w)" },
                       { "{start-half}", "(?<!\\w)" },
                       { "{end-half}", "(?!\\w)" } };
        size_t k = 0;
        while (k < LK_ARRAY_LEN(bounds) &&
               (n - i - 2 < strlen(bounds[k].name) ||
                memcmp(p + i + 2, bounds[k].name, strlen(bounds[k].name)) != 0))
            k++;
        if (k == LK_ARRAY_LEN(bounds))
            return "unsupported escape sequence";
        put(x, bounds[k].pcre, strlen(bounds[k].pcre), i);
        i += 2 + strlen(bounds[k].name);
    } else {
        copy(x, p, i, 2);
        i += 2;
    }
    *i_io = i;
    return NULL;
}

/* The length of an ASCII class "[:alpha:]" or "[:^alpha:]" at p[i], or 0
 * when p[i] starts no such form (Rust then reads a nested class). */
static size_t posix_class(const char *p, size_t n, size_t i)
{
    if (i + 1 >= n || p[i] != '[' || p[i + 1] != ':')
        return 0;
    size_t j = i + 2;
    if (j < n && p[j] == '^')
        j++;
    size_t name = j;
    while (j < n && p[j] >= 'a' && p[j] <= 'z')
        j++;
    if (j == name || j + 1 >= n || p[j] != ':' || p[j + 1] != ']')
        return 0;
    return j + 2 - i;
}

/* Nesting and size bounds of a class: the Rust crate refuses a pattern
 * nested deeper than its nest limit; symmetric differences copy both
 * operands, so a chain of them could grow the translation exponentially. */
#define CLASS_DEPTH_MAX 64
#define CLASS_OUT_MAX   (64 * 1024)

/* The index of the ']' closing the class at p[i] == '[' (a leading ']' is
 * a literal, nested classes are skipped), or n when it is not closed. */
static size_t class_end(const char *p, size_t n, size_t i)
{
    size_t depth = 0, j = i;
    while (j < n) {
        size_t posix = j > i ? posix_class(p, n, j) : 0;
        if (posix > 0) {
            j += posix;
        } else if (p[j] == '\\') {
            j += 2;
        } else if (p[j] == '[') {
            depth++;
            j++;
            if (j < n && p[j] == '^')
                j++;
            if (j < n && p[j] == ']')
                j++;
        } else if (p[j] == ']') {
            if (--depth == 0)
                return j;
            j++;
        } else {
            j++;
        }
    }
    return n;
}

static bool is_class_op(const char *p, size_t n, size_t j)
{
    return j + 1 < n && (p[j] == '&' || p[j] == '-' || p[j] == '~') && p[j + 1] == p[j];
}

static const char *class_expr(const char *p, size_t n, size_t *i_io, size_t depth, struct xlat *x);

/* One operand of a class: the items from p[*i] up to a set operation or the
 * class's ']', as one PCRE2 atom matching one character: "[items]" when
 * there is no nested class, otherwise a group of alternatives, or "(?!)"
 * for no item at all. Moves *i to the operation or the ']'. */
static const char *class_union(const char *p, size_t n, size_t *i_io, bool leading, size_t depth,
                               struct xlat *x)
{
    size_t i = *i_io;
    struct xlat items = { .out = LK_BUF_INIT }, nested = { .out = LK_BUF_INIT };
    size_t n_nested = 0;
    const char *why = NULL;
    if (leading && i < n && p[i] == ']') { /* a literal, as in "[]a]" */
        copy(&items, p, i, 1);
        i++;
    }
    while (why == NULL && i < n && p[i] != ']' && !is_class_op(p, n, i)) {
        size_t posix = posix_class(p, n, i);
        if (posix > 0) {
            copy(&items, p, i, posix);
            i += posix;
        } else if (p[i] == '[') {
            if (n_nested++ > 0)
                put(&nested, "|", 1, i);
            why = class_expr(p, n, &i, depth + 1, &nested);
        } else if (p[i] == '\\') {
            why = escape(p, n, &i, true, &items);
        } else {
            if (items.out.len == 0 && p[i] != '\0' && strchr("^.:=", p[i]) != NULL)
                put(&items, "\\", 1, i); /* no negation, no POSIX "[.x.]" */
            copy(&items, p, i, 1);
            i++;
        }
    }
    if (why == NULL) {
        if (n_nested == 0 && items.out.len == 0) {
            put(x, "(?!)", 4, *i_io); /* the empty set */
        } else if (n_nested == 0) {
            put(x, "[", 1, *i_io);
            append(x, &items);
            put(x, "]", 1, i);
        } else {
            put(x, "(?:", 3, *i_io);
            if (items.out.len > 0) {
                put(x, "[", 1, *i_io);
                append(x, &items);
                put(x, "]|", 2, i);
            }
            append(x, &nested);
            put(x, ")", 1, i);
        }
    }
    xlat_release(&items);
    xlat_release(&nested);
    *i_io = i;
    return why;
}

/* The class at p[*i] == '[' as one PCRE2 atom matching one character, its
 * ']' included (class_end() found it). Rust's nested classes and set
 * operations (&&, --, ~~: one precedence, left to right, binding looser
 * than the items; a leading '^' negates the whole) have no PCRE2 bracket
 * form and are written with look-aheads over single characters:
 * A&&B is (?=A)B, A--B is (?!B)A, A~~B is (?!B)A|(?!A)B, [^E] (?!E)(?s:.).
 * A class with neither is copied as it is. */
static const char *class_expr(const char *p, size_t n, size_t *i_io, size_t depth, struct xlat *x)
{
    if (depth > CLASS_DEPTH_MAX)
        return "character classes are nested too deeply";
    size_t open = *i_io, i = open + 1;
    bool negated = i < n && p[i] == '^';
    if (negated)
        i++;
    struct xlat acc = { .out = LK_BUF_INIT };
    const char *why = class_union(p, n, &i, true, depth, &acc);
    bool plain = acc.out.len > 0 && acc.out.data[0] == '[';
    while (why == NULL && is_class_op(p, n, i)) {
        char op = p[i];
        size_t at = i;
        i += 2;
        struct xlat rhs = { .out = LK_BUF_INIT }, both = { .out = LK_BUF_INIT };
        why = class_union(p, n, &i, false, depth, &rhs);
        if (why == NULL) {
            put(&both, "(?:(?", 5, at);
            put(&both, op == '&' ? "=" : "!", 1, at);
            append(&both, op == '&' ? &acc : &rhs);
            put(&both, ")", 1, at);
            append(&both, op == '&' ? &rhs : &acc);
            if (op == '~') {
                put(&both, "|(?!", 4, at);
                append(&both, &acc);
                put(&both, ")", 1, at);
                append(&both, &rhs);
            }
            put(&both, ")", 1, at);
        }
        xlat_release(&acc);
        xlat_release(&rhs);
        acc = both;
        plain = false;
        if (acc.out.len > CLASS_OUT_MAX)
            break; /* before a chain of ~~ doubles it again */
    }
    if (why == NULL && acc.out.len > CLASS_OUT_MAX)
        why = "character class set operations are too large";
    if (why == NULL && (i >= n || p[i] != ']'))
        why = "unclosed character class"; /* class_end() read it otherwise */
    if (why == NULL) {
        if (!negated) {
            append(x, &acc);
        } else if (plain) { /* "[items]" becomes "[^items]" */
            put(x, "[^", 2, open);
            append_from(x, &acc, 1);
        } else {
            put(x, "(?:(?!", 6, open);
            append(x, &acc);
            put(x, ")(?s:.))", 8, open);
        }
    }
    xlat_release(&acc);
    *i_io = i + 1; /* past the ']' */
    return why;
}

/* Translates the Rust pattern p[0..n) into PCRE2 syntax in x. Returns NULL,
 * or why the pattern uses syntax the Rust crate rejects or that has no
 * PCRE2 equivalent; plain syntax errors are left to PCRE2. */
static const char *rust_to_pcre2(const char *p, size_t n, struct xlat *x)
{
    size_t i = 0;
    while (i < n) {
        char c = p[i];
        if (c == '\\') {
            const char *why = escape(p, n, &i, false, x);
            if (why)
                return why;
            continue;
        }
        char next = i + 1 < n ? p[i + 1] : '\0';
        if (c == '[') {
            if (class_end(p, n, i) < n) {
                const char *why = class_expr(p, n, &i, 0, x);
                if (why)
                    return why;
                continue;
            }
            /* Not closed: copied for PCRE2 to report, escapes translated;
             * with a nested class PCRE2 would read a closed flat one. */
            size_t open = i;
            while (i < n) {
                if (p[i] == '\\') {
                    const char *why = escape(p, n, &i, true, x);
                    if (why)
                        return why;
                } else if (p[i] == '[' && i > open && posix_class(p, n, i) == 0) {
                    return "unclosed character class";
                } else {
                    copy(x, p, i, 1);
                    i++;
                }
            }
            break;
        }
        if (c == '(' && next == '?') {
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
            size_t after = left >= 1 && g[0] != 'P' && g[0] != '<' ? flag_group(p, n, i, x) : 0;
            if (after == 0) {
                copy(x, p, i, 2);
                after = i + 2;
            }
            i = after;
            continue;
        }
        if (c == '(' && next == '*')
            return "unsupported verb";
        if (c == '{') {
            /* Rust reads every "{" as a counted repetition: "a{", "a{,3}"
             * and "{x}" are errors there, literals in PCRE2. */
            size_t k = i + 1;
            while (k < n && p[k] >= '0' && p[k] <= '9')
                k++;
            if (k == i + 1)
                return "invalid counted repetition";
            if (k < n && p[k] == ',') {
                k++;
                while (k < n && p[k] >= '0' && p[k] <= '9')
                    k++;
            }
            if (k >= n || p[k] != '}')
                return "invalid counted repetition";
            copy(x, p, i, k + 1 - i);
            i = k + 1;
            if (i < n && p[i] == '+')
                return "possessive quantifiers are not supported";
            continue;
        }
        if ((c == '*' || c == '+' || c == '?') && next == '+')
            return "possessive quantifiers are not supported";
        copy(x, p, i, 1);
        i++;
    }
    put(x, "", 0, n);
    x->at[x->out.len] = n;
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
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '\\') {
            i++;
        } else if (c == '[') {
            i = class_end(p, n, i); /* nested classes and all */
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
    struct xlat x = { .out = LK_BUF_INIT };
    const char *why = rust_to_pcre2(src, len, &x);
    if (why) {
        if (err)
            lk_buf_adds(err, why);
        lk_buf_release(&x.out);
        free(x.at);
        return LK_EPARSE;
    }
    int code;
    PCRE2_SIZE off;
    uint32_t opts = PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY | PCRE2_NO_UTF_CHECK;
    /* NO_UTF_CHECK is only safe on valid UTF-8: check the pattern first. */
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)(x.out.data ? x.out.data : ""), x.out.len,
                                   opts & ~PCRE2_NO_UTF_CHECK, &code, &off, NULL);
    if (re == NULL) {
        if (err) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(code, msg, sizeof(msg));
            /* The offset in the pattern as written, not in its translation. */
            size_t at = off <= x.out.len ? x.at[off] : len;
            lk_buf_addf(err, "%s at offset %zu", (const char *)msg, at);
        }
        lk_buf_release(&x.out);
        free(x.at);
        return LK_EPARSE;
    }
    lk_buf_release(&x.out);
    free(x.at);
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

/* Backtracking steps one match may take. The Rust regex crate always answers
 * in linear time; PCRE2 backtracks, and a pattern such as "(.*a){24}" can
 * take exponential steps. Past this limit (well under a millisecond, where
 * PCRE2's default takes tens) a search falls back to the DFA matcher below;
 * a replacement treats the rest of the subject as not matching. */
#define MATCH_LIMIT 100000u

/* The DFA matcher's workspace (ints; single-threaded, as the match data). */
#define DFA_WORKSPACE 8192

static pcre2_match_context *match_context(void)
{
    static pcre2_match_context *ctx;
    if (ctx == NULL) {
        ctx = pcre2_match_context_create(NULL);
        if (ctx == NULL)
            LK_BUG("pcre2_match_context_create");
        pcre2_set_match_limit(ctx, MATCH_LIMIT);
    }
    return ctx;
}

/* Subjects may hold invalid UTF-8 (raw request paths): match them in a mode
 * that tolerates it by checking validity and refusing to match otherwise. */
static int match_at(const struct lk_regex *re, const char *s, size_t len, size_t start,
                    uint32_t flags)
{
    if (!may_match(re, s, len, start))
        return PCRE2_ERROR_NOMATCH;
    return pcre2_match(re->code, (PCRE2_SPTR)s, len, start, flags, re->md, match_context());
}

static bool over_limit(int rc)
{
    return rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT ||
           rc == PCRE2_ERROR_HEAPLIMIT || rc == PCRE2_ERROR_JIT_STACKLIMIT;
}

bool lk_regex_search(const struct lk_regex *re, const char *s, size_t len)
{
    int rc = match_at(re, s, len, 0, 0);
    if (over_limit(rc)) {
        /* The DFA matcher follows every alternative at once (no
         * backtracking): polynomial, and the same yes/no for this dialect,
         * which has no back-references or look-around. */
        static int ws[DFA_WORKSPACE];
        rc = pcre2_dfa_match(re->code, (PCRE2_SPTR)s, len, 0, PCRE2_DFA_SHORTEST, re->md, NULL, ws,
                             DFA_WORKSPACE);
    }
    return rc >= 0;
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
    /* Rust parses the name as a usize first, which takes a leading "+". */
    struct lk_str digits = { name, n };
    if (n > 1 && name[0] == '+') {
        digits.ptr++;
        digits.len--;
    }
    if (lk_str_to_u64(digits, 65535, &num) == 0) {
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
            /* Any text up to "}" names the group; "${}" names none. */
            const char *close = memchr(t + i + 2, '}', tn - i - 2);
            if (close) {
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
