/*
 * test_regex.c - the Rust regex dialect on PCRE2 (lib/core/regex.h).
 */
#include <stdint.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/regex.h"
#include "harness.h"

static struct lk_regex *compile(const char *src)
{
    struct lk_regex *re = NULL;
    struct lk_buf err = LK_BUF_INIT;
    int rc = lk_regex_compile(src, strlen(src), &re, &err);
    if (rc != 0)
        fprintf(stderr, "  %s: %s\n", src, err.data);
    CHECK_INT_EQ(rc, 0);
    lk_buf_release(&err);
    return re;
}

static void test_search(void)
{
    static const struct {
        const char *re, *subject;
        bool match;
    } cases[] = {
        /* Unanchored search: anywhere in the subject. */
        { "/api/v1/.*", "/api/v1/users", true },
        { "/api/v1/.*", "/prefix/api/v1/x", true },
        { "api", "/v2/api", true },
        { "/api/v1/.*", "/api/v2/users", false },
        { ".*/_next/static/.*", "/a/_next/static/x.js", true },
        /* Anchors only when the pattern has them; $ only at the very end. */
        { "^/api", "/api/x", true },
        { "^/api", "/x/api", false },
        { "x$", "/a/x", true },
        { "x$", "/a/x\n", false },
        { "^/exact$", "/exact", true },
        { "^/exact$", "/exact/more", false },
        { "\\A/a\\z", "/a", true },
        /* . does not match a newline. */
        { "a.b", "a\nb", false },
        { "(?s)a.b", "a\nb", true },
        /* Rust syntax that must work. */
        { "(?:ab)+c", "ababc", true },
        { "(?P<v>\\d+)", "v12", true },
        { "(?<v>\\d+)", "v12", true },
        { "(?i)HELLO", "say hello", true },
        { "\\bword\\b", "a word here", true },
        { "[[:alpha:]]+", "abc", true },
        { "\\p{Greek}", "\xCE\xB1", true },
        { "\\d", "\xD9\xA3", true }, /* Unicode digit, as in Rust */
        { "[\\]a]", "]", true },
        { "[^]a]", "b", true },
        { "a{2}", "aa", true },
        { "", "anything", true },
        /* Rust escapes PCRE2 spells differently, translated on compile. */
        { "/\\p{L}+", "/\xC3\xA9t\xC3\xA9", true },
        { "/\\x{2F}+x", "//x", true },
        { "\\u0041", "A", true },
        { "\\u{41}+", "AA", true },
        { "\\U00000041", "A", true },
        { "\\U{1F600}", "\xF0\x9F\x98\x80", true },
        { "a\\vb", "a\vb", true },  /* \v: the vertical tab only */
        { "a\\vb", "a\nb", false }, /* (a class of line breaks in PCRE2) */
        { "\\<foo\\>", "a foo b", true },
        { "\\<foo\\>", "afoo", false },
        { "\\<foo\\>", "foob", false },
        { "\\b{start}foo\\b{end}", "(foo)", true },
        { "\\b{start}foo", "xfoo", false },
        { "\\b{start-half}x", "-x", true },
        { "x\\b{end-half}", "xy", false },
        { "[\\<]", "<", true },
        /* The Unicode flag: PCRE2 has none, patterns are Unicode-aware. */
        { "(?i-u:A)", "a", true },
        { "(?u)a", "a", true },
        { "(?-u)b", "b", true },
        { "(?iu)B", "b", true },
        { "a{2,}?", "aaa", true },
        /* Nested classes and set operations (&&, --, ~~: left to right,
         * looser than the items; a leading ^ negates the whole class). */
        { "^[[a-z]]$", "q", true },
        { "^[[a-z]]$", "Q", false },
        { "^[a[0-9]]+$", "a1a", true },
        { "^[a-z&&[^b]]$", "a", true },
        { "^[a-z&&[^b]]$", "b", false },
        { "^[a-z&&[^b]]$", "-", false },
        { "^[\\d--5]$", "4", true },
        { "^[\\d--5]$", "5", false },
        { "^[a-c~~b-d]$", "a", true },
        { "^[a-c~~b-d]$", "b", false },
        { "^[a-c~~b-d]$", "d", true },
        { "^[a-c~~b-d]$", "e", false },
        { "^[^a[b]]$", "b", false },
        { "^[^a[b]]$", "c", true },
        { "^[^a[b]]$", "\n", true },
        { "^[^[^a]]$", "a", true },
        { "^[^[^a]]$", "b", false },
        { "^[a-z--[aeiou]]+$", "bcd", true },
        { "^[a-z--[aeiou]]+$", "bad", false },
        { "^[a-z--b&&[a-c]]$", "c", true },
        { "^[a-z--b&&[a-c]]$", "b", false },
        { "^[a-z--b&&[a-c]]$", "d", false },
        { "(?i)^[a-z&&[^b]]$", "B", false },
        { "(?i)^[a-z&&[^b]]$", "C", true },
        { "^[\\w&&\\d]{2}$", "7\xD9\xA3", true },
        { "^[\\w&&\\d]$", "a", false },
        { "^[a-z--b]{3}$", "acd", true },
        { "^[a-z--b]{3}$", "abd", false },
        { "^[[:alpha:]--[a-y]]$", "z", true },
        { "^[[:alpha:]--[a-y]]$", "y", false },
        { "^[^^a]$", "^", false },
        { "^[^^a]$", "b", true },
        { "x[a&&]", "xa", false }, /* the empty set */
        { "^[]a]$", "]", true },
        { "^[^]a]$", "]", false },
        /* Unicode general categories by their long names. */
        { "^\\p{Letter}+$", "\xC3\xA9t\xC3\xA9", true },
        { "^\\p{gc=Lu}$", "A", true },
        { "^\\p{gc=Lu}$", "a", false },
        { "^\\p{General_Category=Uppercase Letter}$", "A", true },
        { "^\\P{uppercase_letter}$", "a", true },
        { "^\\p{Decimal_Number}$", "\xD9\xA3", true },
        { "^\\p{digit}$", "x", false },
        { "^\\P{Assigned}$", "\xCD\xB8", true }, /* U+0378 is unassigned */
        { "^\\p{Assigned}$", "a", true },
        { "^[\\p{L}--a]$", "b", true },
        { "^[\\p{L}--a]$", "a", false },
        { "^\\x41$", "A", true },
    };
    for (size_t i = 0; i < LK_ARRAY_LEN(cases); i++) {
        struct lk_regex *re = compile(cases[i].re);
        if (re == NULL)
            continue;
        bool got = lk_regex_search(re, cases[i].subject, strlen(cases[i].subject));
        if (got != cases[i].match)
            fprintf(stderr, "  %s on %s: got %d\n", cases[i].re, cases[i].subject, got);
        CHECK(got == cases[i].match);
        CHECK_STR_EQ(lk_regex_source(re), cases[i].re);
        lk_regex_free(re);
    }
}

/* ---- random classes against their sets -------------------------------- */

/* The characters a generated class is tried on, as bits of two words. */
struct cset {
    uint64_t w[2];
};

static bool cset_has(const struct cset *s, unsigned c)
{
    return s->w[c / 64] >> (c % 64) & 1;
}

static void cset_add(struct cset *s, unsigned lo, unsigned hi)
{
    for (unsigned c = lo; c <= hi; c++)
        s->w[c / 64] |= UINT64_C(1) << (c % 64);
}

static uint64_t next_rand(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

static void gen_class(uint64_t *rnd, unsigned depth, struct lk_buf *out, struct cset *set);

/* Items of one operand: literals, ranges, \d, \w and nested classes. */
static void gen_union(uint64_t *rnd, unsigned depth, struct lk_buf *out, struct cset *set)
{
    static const char lits[] = "abcxyz019_.";
    *set = (struct cset){ { 0, 0 } };
    for (unsigned k = 1 + next_rand(rnd) % 3; k > 0; k--) {
        unsigned pick = (unsigned)(next_rand(rnd) % (depth > 0 ? 6 : 5));
        if (pick == 0 || pick == 1) {
            char c = lits[next_rand(rnd) % (sizeof(lits) - 1)];
            lk_buf_addch(out, c);
            cset_add(set, (unsigned char)c, (unsigned char)c);
        } else if (pick == 2) {
            static const char *const ranges[] = { "a-c", "x-z", "0-5", "A-Z" };
            const char *r = ranges[next_rand(rnd) % 4];
            lk_buf_adds(out, r);
            cset_add(set, (unsigned char)r[0], (unsigned char)r[2]);
        } else if (pick == 3) {
            lk_buf_adds(out, "\\d");
            cset_add(set, '0', '9');
        } else if (pick == 4) {
            lk_buf_adds(out, "\\w");
            cset_add(set, '0', '9');
            cset_add(set, 'A', 'Z');
            cset_add(set, 'a', 'z');
            cset_add(set, '_', '_');
        } else {
            struct cset inner;
            gen_class(rnd, depth - 1, out, &inner);
            set->w[0] |= inner.w[0];
            set->w[1] |= inner.w[1];
        }
    }
}

/* A class of one to three operands joined by &&, -- or ~~ (left to right),
 * negated or not, and the set of characters below 128 it matches. */
static void gen_class(uint64_t *rnd, unsigned depth, struct lk_buf *out, struct cset *set)
{
    bool negated = next_rand(rnd) % 3 == 0;
    lk_buf_adds(out, negated ? "[^" : "[");
    gen_union(rnd, depth, out, set);
    for (unsigned k = (unsigned)(next_rand(rnd) % 3); k > 0; k--) {
        static const char *const ops[] = { "&&", "--", "~~" };
        unsigned op = (unsigned)(next_rand(rnd) % 3);
        lk_buf_adds(out, ops[op]);
        struct cset rhs;
        gen_union(rnd, depth, out, &rhs);
        for (int w = 0; w < 2; w++)
            set->w[w] = op == 0   ? set->w[w] & rhs.w[w]
                        : op == 1 ? set->w[w] & ~rhs.w[w]
                                  : set->w[w] ^ rhs.w[w];
    }
    if (negated) {
        set->w[0] = ~set->w[0];
        set->w[1] = ~set->w[1];
    }
    lk_buf_addch(out, ']');
}

/* Nested classes and set operations, as look-aheads in PCRE2, match exactly
 * the characters their sets hold: random classes, every character from
 * "\n" and " " to "~". */
static void test_random_classes(void)
{
    uint64_t rnd = 0x9e3779b97f4a7c15u;
    size_t wrong = 0, tried = 0;
    for (int round = 0; round < 1500; round++) {
        struct lk_buf pat = LK_BUF_INIT;
        struct cset set;
        lk_buf_adds(&pat, "^");
        gen_class(&rnd, 2, &pat, &set);
        lk_buf_adds(&pat, "$");
        struct lk_regex *re = compile(pat.data);
        for (unsigned c = '\n'; re != NULL && c < 0x7f; c = c == '\n' ? ' ' : c + 1) {
            char subject = (char)c;
            bool got = lk_regex_search(re, &subject, 1);
            if (got != cset_has(&set, c) && wrong++ < 5)
                fprintf(stderr, "  %s on 0x%02x: got %d\n", pat.data, c, got);
            tried++;
        }
        lk_regex_free(re);
        lk_buf_release(&pat);
    }
    CHECK_INT_EQ(wrong, 0);
    CHECK(tried > 1500 * 90);
}

/* A pattern on which PCRE2 would backtrack exponentially still gets the
 * right answer (the Rust crate is linear-time): past the backtracking limit
 * the search falls back to the DFA matcher instead of reading "no match". */
static void test_backtracking_bomb(void)
{
    char subject[64];
    memset(subject, 'a', 40);
    subject[40] = '\0';
    struct lk_regex *re = compile("(.*a){24}");
    if (re == NULL)
        return;
    CHECK(lk_regex_search(re, subject, 24));
    CHECK(lk_regex_search(re, subject, 40));
    CHECK(!lk_regex_search(re, subject, 23));
    memcpy(subject, "/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", 40);
    CHECK(!lk_regex_search(re, subject, 40));
    lk_regex_free(re);
    /* Translated word boundaries (look-arounds in PCRE2) work in the DFA too. */
    re = compile("\\<(.*a){24}\\>");
    if (re == NULL)
        return;
    memset(subject, 'a', 40);
    CHECK(lk_regex_search(re, subject, 30));
    CHECK(!lk_regex_search(re, subject, 23));
    subject[0] = '-'; /* the word now starts at 1, with 39 a's */
    CHECK(lk_regex_search(re, subject, 40));
    lk_regex_free(re);
    re = compile("^/(x+x+)+y$");
    if (re == NULL)
        return;
    memset(subject, 'x', 40);
    subject[0] = '/';
    CHECK(!lk_regex_search(re, subject, 40));
    subject[39] = 'y';
    CHECK(lk_regex_search(re, subject, 40));
    lk_regex_free(re);
}

/* Syntax the Rust regex crate rejects is rejected here too. */
static void test_rust_rejections(void)
{
    static const struct {
        const char *re, *why;
    } cases[] = {
        { "(?=x)", "look-around is not supported" },
        { "a(?!x)", "look-around is not supported" },
        { "(?<=x)a", "look-around is not supported" },
        { "(?<!x)a", "look-around is not supported" },
        { "(a)\\1", "back-references are not supported" },
        { "(?P<n>a)(?P=n)", "back-references are not supported" },
        { "(?<n>a)\\k<n>", "back-references are not supported" },
        { "(a)\\g1", "back-references are not supported" },
        { "[\\1]", "back-references are not supported" },
        { "\\0", "back-references are not supported" },
        { "(?>a)", "atomic groups are not supported" },
        { "a++", "possessive quantifiers are not supported" },
        { "a*+", "possessive quantifiers are not supported" },
        { "a{2}+", "possessive quantifiers are not supported" },
        { "a\\Kb", "\\K is not supported" },
        { "a\\Z", "unsupported escape sequence" },
        { "\\Qa.b\\E", "unsupported escape sequence" },
        { "(?R)", "unsupported group syntax" },
        { "(?1)", "unsupported group syntax" },
        { "(?|a)", "unsupported group syntax" },
        { "(?(1)a|b)", "unsupported group syntax" },
        { "(?#comment)", "unsupported group syntax" },
        { "(?'n'a)", "unsupported group syntax" },
        { "(*FAIL)", "unsupported verb" },
        { "(?J)a", "unsupported flag" },
        { "(?n:a)", "unsupported flag" },
        { "\\e", "unsupported escape sequence" },
        { "\\b{word}", "unsupported escape sequence" },
        { "\\u004", "invalid Unicode escape" },
        { "\\u{}", "invalid Unicode escape" },
        { "\\U{123456789}", "invalid Unicode escape" },
        /* Rust reads every "{" as a counted repetition. */
        { "a{", "invalid counted repetition" },
        { "a{,3}", "invalid counted repetition" },
        { "a{x}", "invalid counted repetition" },
        /* Rust's \x takes exactly two hex digits or braces. */
        { "\\x", "invalid hexadecimal escape" },
        { "\\xZ1", "invalid hexadecimal escape" },
        { "[\\x4]", "invalid hexadecimal escape" },
        /* Symmetric differences copy both sides: a chain of them is bounded. */
        { "[a~~b~~c~~d~~e~~f~~g~~h~~i~~j~~k~~l~~m~~n~~o~~p~~q~~r]",
          "character class set operations are too large" },
        /* A class unclosed after its nested classes (PCRE2 judges the rest). */
        { "[a[b]", "unclosed character class" },
        { "[a&&b", "missing terminating ] for character class at offset 5" },
        /* PCRE2's offsets are those of the pattern as written. */
        { "(\\u0041", "missing closing parenthesis at offset 7" },
        /* Plain syntax errors come from PCRE2. */
        { "(", "missing closing parenthesis at offset 1" },
        { "[a", "missing terminating ] for character class at offset 2" },
        { "a{2,1}", "numbers out of order in {} quantifier at offset 5" },
        { "\\", "\\ at end of pattern at offset 1" },
        { "*a", "quantifier does not follow a repeatable item at offset 0" },
        /* A dropped Unicode flag leaves nothing for a quantifier to repeat. */
        { "8(?u)*", "quantifier does not follow a repeatable item at offset 5" },
        { "8(?uuu)*", "quantifier does not follow a repeatable item at offset 7" },
        { "a(?u-)+", "quantifier does not follow a repeatable item at offset 6" },
    };
    for (size_t i = 0; i < LK_ARRAY_LEN(cases); i++) {
        struct lk_regex *re = NULL;
        struct lk_buf err = LK_BUF_INIT;
        int rc = lk_regex_compile(cases[i].re, strlen(cases[i].re), &re, &err);
        CHECK_INT_EQ(rc, LK_EPARSE);
        CHECK(re == NULL);
        CHECK_STR_EQ(err.data, cases[i].why);
        if (rc != LK_EPARSE)
            fprintf(stderr, "  accepted %s\n", cases[i].re);
        lk_regex_free(re);
        lk_buf_release(&err);
    }
    /* Nested classes within the depth bound compile, deeper ones are refused
     * (the translation recurses once per level). */
    char deep[2 * 80 + 1];
    for (size_t depth = 64; depth <= 80; depth += 16) {
        memset(deep, '[', depth);
        deep[depth] = 'a';
        memset(deep + depth + 1, ']', depth);
        struct lk_buf err = LK_BUF_INIT;
        struct lk_regex *nested = NULL;
        int rc = lk_regex_compile(deep, 2 * depth + 1, &nested, &err);
        CHECK_INT_EQ(rc, depth == 64 ? 0 : LK_EPARSE);
        if (depth > 64)
            CHECK_STR_EQ(err.data, "character classes are nested too deeply");
        else
            CHECK(lk_regex_search(nested, "xa", 2));
        lk_regex_free(nested);
        lk_buf_release(&err);
    }
    /* A NULL error buffer is allowed. */
    struct lk_regex *re = NULL;
    CHECK_INT_EQ(lk_regex_compile("(?=x)", 5, &re, NULL), LK_EPARSE);
    CHECK_INT_EQ(lk_regex_compile("(", 1, &re, NULL), LK_EPARSE);
    CHECK(re == NULL);
}

static void test_replace_all(void)
{
    static const struct {
        const char *re, *subject, *tmpl, *want;
        int n;
    } cases[] = {
        /* SPEC §1.4 and §3.5 rewrites. */
        { "/foo/(.*)", "/foo/b/c/", "/bar/$1", "/bar/b/c/", 1 },
        { "/api/v2/(.*)", "/api/v2/user", "/$1", "/user", 1 },
        { "/foo/(.*)", "/other", "/bar/$1", "", 0 }, /* no match: out untouched */
        /* Template syntax. */
        { "(a)(b)", "ab", "${2}${1}", "ba", 1 },
        { "(a)(b)", "ab", "$2$1", "ba", 1 },
        { "(?P<x>a)", "a", "<$x>", "<a>", 1 },
        { "(?P<x>a)", "a", "<${x}>", "<a>", 1 },
        { "(a)", "a", "$$1", "$1", 1 },
        { "(a)", "a", "$1a", "", 1 },     /* group "1a" does not exist */
        { "(a)", "a", "${1}a", "aa", 1 }, /* the fix for the above */
        { "(a)", "a", "[$9]", "[]", 1 },  /* missing group: empty */
        { "(a)", "a", "[$nope]", "[]", 1 },
        { "(a)|(b)", "b", "[$1]", "[]", 1 }, /* unmatched group: empty */
        { "(a)", "a", "$", "$", 1 },
        { "(a)", "a", "${", "${", 1 },
        { "(a)", "a", "[${}]", "[]", 1 },    /* the empty name: no group */
        { "(a)", "a", "[${+1}]", "[a]", 1 }, /* Rust's usize parse takes "+" */
        { "(a)", "a", "[${01}]", "[a]", 1 },
        { "(a)", "a", "[${1 }]", "[]", 1 }, /* not a number: a name */
        { "(a)", "a", "$!", "$!", 1 },
        { "(a)", "a", "$0$0", "aa", 1 },
        /* Every non-overlapping match is replaced. */
        { "o", "foo boo", "0", "f00 b00", 4 },
        { "a*", "baaac", "-", "-b-c-", 3 },
        { "", "ab", "-", "-a-b-", 3 },
        { "x*", "\xC3\xA9", "-", "-\xC3\xA9-", 2 },
    };
    for (size_t i = 0; i < LK_ARRAY_LEN(cases); i++) {
        struct lk_regex *re = compile(cases[i].re);
        if (re == NULL)
            continue;
        struct lk_buf out = LK_BUF_INIT;
        int n = lk_regex_replace_all(re, cases[i].subject, strlen(cases[i].subject), cases[i].tmpl,
                                     strlen(cases[i].tmpl), &out);
        CHECK_MEM_EQ(out.len ? out.data : "", out.len, cases[i].want, strlen(cases[i].want));
        CHECK_INT_EQ(n, cases[i].n);
        lk_buf_release(&out);
        lk_regex_free(re);
    }
}

/* SPEC §8.1.11: `abc: (.+)` on `abc: foo` captures `foo` as group 1. */
static void test_groups(void)
{
    static const char subject[] = "abc: foo";
    struct lk_regex *re = compile("abc: (.+)");
    if (re == NULL)
        return;
    CHECK(lk_regex_search(re, subject, strlen(subject)));
    struct lk_str g;
    CHECK(lk_regex_group(re, subject, 1, &g));
    CHECK_MEM_EQ(g.ptr, g.len, "foo", 3);
    CHECK(lk_regex_group(re, subject, 0, &g));
    CHECK_MEM_EQ(g.ptr, g.len, subject, strlen(subject));
    CHECK(!lk_regex_group(re, subject, 2, &g));
    lk_regex_free(re);
    lk_regex_free(NULL);
}

/* Subjects are raw request paths: invalid UTF-8 never matches, never crashes. */
static void test_invalid_utf8_subject(void)
{
    struct lk_regex *re = compile("a");
    if (re == NULL)
        return;
    CHECK(!lk_regex_search(re,
                           "\xFF"
                           "a",
                           2));
    struct lk_buf out = LK_BUF_INIT;
    CHECK_INT_EQ(lk_regex_replace_all(re,
                                      "\xFF"
                                      "a",
                                      2, "b", 1, &out),
                 0);
    CHECK_INT_EQ(out.len, 0);
    lk_buf_release(&out);
    lk_regex_free(re);
    /* An invalid UTF-8 pattern is a compile error. */
    struct lk_regex *bad = NULL;
    CHECK_INT_EQ(lk_regex_compile("\xFF", 1, &bad, NULL), LK_EPARSE);
}

/* A pattern that starts with literal characters (after "^" or not) rejects
 * subjects without them before PCRE2 runs. Each case is checked against the
 * same pattern behind "(?:)", which matches the same strings but has no such
 * literal, so the shortcut can only ever agree with PCRE2. */
static void test_leading_literal(void)
{
    static const char *const patterns[] = {
        "^/api/v1/", "^/api/v1/.*", "\\A/api", "^/ab?c",   "^/ab*c",       "^/ab+c",
        "^/ab{2}c",  "^/ab{0,1}c",  "^/a|/b",  "^(/a|/b)", "^/a(b|c)",     "^/x|",
        "^/[|]a",    "^/\\|a",      "^/a\\.b", "^/a.b",    "^/\xC3\xA9?x", "^/#a",
        "^/a b",     "^",           "^^/a",    "^$",       "^/a$",         "^/(?i)A",
        "^/a(?m)^",  "^/a]",        "^/a}",    "^/1[km]$", "^/(1[km])$",   "/api/v1/.*",
        "/a|b",      "ab?c",        "ab+",     "a$",       "/x(y|z)",      "b",
        "a\\b",      "/",
    };
    static const char *const subjects[] = {
        "",         "/",    "/a",     "/ac",        "/abc",     "/abbc",
        "/abbbc",   "/b",   "/x",     "/api",       "/api/v1/", "/api/v1/users",
        "/api/v2/", "/a.b", "/axb",   "/\xC3\xA9x", "x/a",      "/#a",
        "/a b",     "/A",   "/a]",    "/a}",        "/1k",      "/1m",
        "/1km",     "|a",   "/|a",    "/a|",        "//a",      "/x/api/v1/y",
        "ac",       "abb",  "xab",    "b",          "a",        "/xz",
        "/x/xy",    "a b",  "\xFF/a",
    };
    for (size_t i = 0; i < LK_ARRAY_LEN(patterns); i++) {
        char plain[64];
        snprintf(plain, sizeof(plain), "(?:)%s", patterns[i]);
        struct lk_regex *re = compile(patterns[i]), *ref = compile(plain);
        for (size_t j = 0; re != NULL && ref != NULL && j < LK_ARRAY_LEN(subjects); j++) {
            size_t n = strlen(subjects[j]);
            bool got = lk_regex_search(re, subjects[j], n);
            bool want = lk_regex_search(ref, subjects[j], n);
            if (got != want)
                fprintf(stderr, "  %s on \"%s\": got %d\n", patterns[i], subjects[j], got);
            CHECK(got == want);
            struct lk_buf a = LK_BUF_INIT, b = LK_BUF_INIT;
            CHECK_INT_EQ(lk_regex_replace_all(re, subjects[j], n, "<$0>", 4, &a),
                         lk_regex_replace_all(ref, subjects[j], n, "<$0>", 4, &b));
            CHECK_MEM_EQ(a.len ? a.data : "", a.len, b.len ? b.data : "", b.len);
            lk_buf_release(&a);
            lk_buf_release(&b);
        }
        lk_regex_free(re);
        lk_regex_free(ref);
    }
    /* The literals themselves. */
    static const struct {
        const char *re, *lit;
        bool anchored;
    } cases[] = {
        { "^/api/v1/", "/api/v1/", true },
        { "\\A/api", "/api", true },
        { "^/ab?c", "/a", true },
        { "^/ab*c", "/a", true },
        { "^/ab+c", "/ab", true },
        { "^/ab{2}c", "/a", true },
        { "^/a\\.b", "/a", true },
        { "^/a.b", "/a", true },
        { "^/\xC3\xA9", "/", true },
        { "^/1[km]$", "/1", true },
        { "^/a|/b", "", true },
        { "^(/a|/b)", "", true },
        { "^/a(b|c)", "/a", true },
        { "^/[|]a", "/", true },
        { "^/\\|a", "/", true },
        { "^/a b", "/a", true },
        { "^", "", true },
        { "/api/v1/.*", "/api/v1/", false },
        { "/a|b", "", false },
        { "(?i)^/api", "", false },
        { ".*/_next/", "", false },
        { "[a]b", "", false },
    };
    for (size_t i = 0; i < LK_ARRAY_LEN(cases); i++) {
        struct lk_regex *re = compile(cases[i].re);
        if (re == NULL)
            continue;
        bool anchored = !cases[i].anchored;
        struct lk_str lit = lk_regex_leading_literal(re, &anchored);
        CHECK_MEM_EQ(lit.len ? lit.ptr : "", lit.len, cases[i].lit, strlen(cases[i].lit));
        CHECK(anchored == cases[i].anchored);
        lk_regex_free(re);
    }
}

int main(void)
{
    RUN(test_search);
    RUN(test_backtracking_bomb);
    RUN(test_random_classes);
    RUN(test_rust_rejections);
    RUN(test_replace_all);
    RUN(test_groups);
    RUN(test_invalid_utf8_subject);
    RUN(test_leading_literal);
    return DONE();
}
