/*
 * envfile.c - injecting and clearing the Linkup block of env files.
 *
 * Invariant: the block is recognised only by the exact delimiter line; the
 * bytes around it are never interpreted.
 */
#include "core/envfile.h"

#include <string.h>

static const struct lk_str delim = LK_STR(LK_ENVFILE_DELIM);

bool lk_envfile_has_block(struct lk_str text)
{
    return lk_str_find(text, delim) >= 0;
}

void lk_envfile_inject(struct lk_str target, struct lk_str source, struct lk_buf *out)
{
    if (source.len > 0 && source.ptr[source.len - 1] == '\n')
        source.len--;
    lk_buf_addstr(out, target);
    lk_buf_addch(out, '\n');
    lk_buf_addstr(out, delim);
    lk_buf_addch(out, '\n');
    lk_buf_addstr(out, source);
    lk_buf_addch(out, '\n');
    lk_buf_addstr(out, delim);
    lk_buf_addch(out, '\n');
}

/* Byte offset of the last occurrence of delim in text, or -1. */
static long find_last(struct lk_str text)
{
    long last = -1;
    size_t from = 0;
    for (;;) {
        struct lk_str rest = { text.ptr + from, text.len - from };
        long at = lk_str_find(rest, delim);
        if (at < 0)
            return last;
        last = (long)from + at;
        from = (size_t)last + 1;
    }
}

bool lk_envfile_clear(struct lk_str text, struct lk_buf *out)
{
    long first = lk_str_find(text, delim);
    if (first < 0)
        return false;
    size_t start = (size_t)first;
    size_t end = (size_t)find_last(text) + delim.len; /* exclusive */
    bool cut_lf = start > 0 && text.ptr[start - 1] == '\n';
    if (cut_lf)
        start--;
    if (end < text.len && text.ptr[end] == '\n')
        end++;
    size_t keep_tail = text.len - end;
    /* Join the bytes before and after the block, then normalise the end.
     * SPEC §6.6 removes the line feeds on both sides of the block, which
     * glues a line the user added after it onto the last line before it
     * ("B=2" + "U=1" -> "B=2U=1"); issue 5 keeps the user's lines, so one
     * line feed stays between them. The §8.2.1 vectors are unchanged: each
     * has nothing, or an empty line, after the block. */
    struct lk_buf joined = LK_BUF_INIT;
    lk_buf_add(&joined, text.ptr, start);
    if (cut_lf && start > 0 && text.ptr[start - 1] != '\n' && keep_tail > 0 &&
        text.ptr[end] != '\n')
        lk_buf_addch(&joined, '\n');
    lk_buf_add(&joined, text.ptr + end, keep_tail);
    size_t n = joined.len;
    while (n > 0 && joined.data[n - 1] == '\n')
        n--;
    lk_buf_add(out, joined.data, n);
    lk_buf_addch(out, '\n');
    lk_buf_release(&joined);
    return true;
}

bool lk_envfile_target_name(struct lk_str name, struct lk_str *target)
{
    static const struct lk_str suffix = LK_STR(".linkup");
    if (!lk_str_starts_with(name, LK_STR(".env.")) || !lk_str_ends_with(name, suffix))
        return false;
    /* ".env.linkup" qualifies too; its target is ".env". */
    if (name.len <= suffix.len)
        return false;
    target->ptr = name.ptr;
    target->len = name.len - suffix.len;
    return true;
}
