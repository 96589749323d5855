/*
 * regex.h - the Rust-regex dialect of Linkup configs on PCRE2 (SPEC §1.3).
 *
 * Patterns are compiled once (JIT when available) and matched as an
 * unanchored search. A pattern that starts with literal characters (after
 * "^" or not, as route patterns mostly do) rejects subjects without them
 * before PCRE2 runs. Syntax the Rust `regex` crate rejects is rejected here
 * too, so a config valid for us is valid for the original: look-around,
 * back-references, atomic groups, possessive quantifiers, recursion,
 * conditionals, \K, callouts, \Z, \e, \Q..\E, octal escapes, flags other
 * than imsUux, a "{" that starts no counted repetition, a \x without two
 * hex digits or braces. Rust syntax PCRE2 lacks is translated: \u / \U
 * escapes, \v (the vertical tab), \< \> \b{start} \b{end} (word
 * boundaries), the u flag (patterns are always Unicode-aware), general
 * categories by long name (\p{Letter}, \p{gc=Lu}, \P{Assigned}), and nested
 * classes and class set operations ([a-z&&[^aeiou]], --, ~~), written with
 * single-character look-aheads. `$` matches only at the very end
 * (PCRE2_DOLLAR_ENDONLY) and `.` does not match "\n", as in Rust.
 *
 * Matching keeps per-pattern match data inside the object: single-threaded use
 * only (one event loop per process, STYLE §3.7).
 */
#ifndef LK_CORE_REGEX_H
#define LK_CORE_REGEX_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"

struct lk_regex;

/* Compiles src[0..len). On success *out is owned by the caller (lk_regex_free)
 * and 0 is returned. On failure returns LK_EPARSE and appends a one-line
 * reason to err (when non-NULL), e.g. "look-around is not supported". */
int lk_regex_compile(const char *src, size_t len, struct lk_regex **out, struct lk_buf *err);

void lk_regex_free(struct lk_regex *re);

/* The pattern text exactly as given (borrowed, NUL-terminated). */
const char *lk_regex_source(const struct lk_regex *re);

/* Unanchored search: true when the pattern matches anywhere in s[0..len). */
bool lk_regex_search(const struct lk_regex *re, const char *s, size_t len);

/* Rust Regex::replace_all: every non-overlapping match in s is replaced by the
 * expanded template: $N / ${N} (group number), $name / ${name} (named group),
 * $$ (a literal $). After `$` the longest run of [A-Za-z0-9_] is the group
 * name, so "$1a" names group "1a". Unknown or unmatched groups expand to "".
 * As in Rust, an empty match right where the previous match ended is not
 * replaced ("a*" on "baaac" with "-" gives "-b-c-").
 * Returns the number of replacements (>= 0). The result is appended to out
 * only when there was one: with none, the result is s itself and out is left
 * as it was (a rewrite that does not apply costs no copy). */
int lk_regex_replace_all(const struct lk_regex *re, const char *s, size_t len, const char *tmpl,
                         size_t tlen, struct lk_buf *out);

/* Capture group i of the last successful lk_regex_search/replace on re as
 * (ptr,len) into the subject; returns false when unset. For tests. */
bool lk_regex_group(const struct lk_regex *re, const char *subject, unsigned i, struct lk_str *out);

/* The literal bytes every match starts with ("/api/" for "/api/v[0-9]"), and
 * in *anchored whether that is at the subject's start ("^/api/v[0-9]"); empty
 * when the pattern has none. Subjects without them are rejected before PCRE2
 * runs. For tests. */
struct lk_str lk_regex_leading_literal(const struct lk_regex *re, bool *anchored);

#endif
