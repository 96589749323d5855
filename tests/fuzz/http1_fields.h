/*
 * http1_fields.h - a second reading of the field lines of a head that
 * lk_http1_parse_request() or lk_http1_parse_response() accepted, for the
 * fuzz targets: every line after the start line up to the empty one, ended
 * by LF with an optional CR before it, is one field; its name is the text
 * before the first ':' and its value the rest without leading and trailing
 * SP and HTAB. The parser must have found exactly those slices, in order.
 */
#ifndef LK_FUZZ_HTTP1_FIELDS_H
#define LK_FUZZ_HTTP1_FIELDS_H

#include <stddef.h>
#include <string.h>

#include "core/err.h"
#include "core/str.h"
#include "proto/http1.h"

/* [p, eol) of the line at p (eol before the CR of a CRLF); *next is the
 * start of the following line. The head was accepted, so the LF is there. */
static const char *fields_line_end(const char *p, const char *end, const char **next)
{
    const char *lf = memchr(p, '\n', (size_t)(end - p));
    LK_ASSERT(lf != NULL);
    *next = lf + 1;
    return lf > p && lf[-1] == '\r' ? lf - 1 : lf;
}

/* head: the accepted head, its leading empty lines (requests) skipped. */
static void check_fields(const char *head, const char *end, const struct lk_http_header *h,
                         size_t n)
{
    const char *p = head;
    fields_line_end(p, end, &p); /* the request or status line */
    size_t i = 0;
    for (;;) {
        const char *next = NULL;
        const char *eol = fields_line_end(p, end, &next);
        if (eol == p) {
            p = next;
            break;
        }
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        LK_ASSERT(colon != NULL && i < n);
        const char *v = colon + 1, *ve = eol;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        LK_ASSERT(h[i].name.ptr == p && h[i].name.len == (size_t)(colon - p));
        LK_ASSERT(h[i].value.len == (size_t)(ve - v));
        LK_ASSERT(h[i].value.len == 0 || h[i].value.ptr == v);
        i++;
        p = next;
    }
    LK_ASSERT(i == n && p == end);
}

#endif
