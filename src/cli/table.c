/*
 * table.c - box-drawing sessions table (SPEC §6.7).
 *
 * Invariant: every line of a table has the same number of columns of bytes
 * before styling; ANSI sequences are added around cell text, never counted.
 */
#include "cli/table.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

#define BOLD  "\x1b[1m"
#define RESET "\x1b[0m"

struct widths {
    size_t name, kind, domains;
};

static void border(struct lk_buf *out, const struct widths *w, const char *l, const char *m,
                   const char *r)
{
    const size_t cols[3] = { w->name, w->kind, w->domains };
    lk_buf_adds(out, l);
    for (size_t c = 0; c < 3; c++) {
        for (size_t i = 0; i < cols[c] + 2; i++)
            lk_buf_adds(out, "─");
        lk_buf_adds(out, c < 2 ? m : r);
    }
    lk_buf_addch(out, '\n');
}

static void cell(struct lk_buf *out, const char *prefix, const char *text, size_t width, bool bold)
{
    size_t len = strlen(prefix) + strlen(text);
    lk_buf_adds(out, "│ ");
    if (bold)
        lk_buf_adds(out, BOLD);
    lk_buf_adds(out, prefix);
    lk_buf_adds(out, text);
    if (bold)
        lk_buf_adds(out, RESET);
    for (size_t i = len; i < width; i++)
        lk_buf_addch(out, ' ');
    lk_buf_addch(out, ' ');
}

static void row(struct lk_buf *out, const struct widths *w, const char *name_prefix,
                const char *name, bool name_bold, const char *kind, bool kind_bold,
                const char *domain, bool domain_bold)
{
    cell(out, name_prefix, name, w->name, name_bold);
    cell(out, "", kind, w->kind, kind_bold);
    cell(out, "", domain, w->domains, domain_bold);
    lk_buf_adds(out, "│\n");
}

static struct widths measure(const struct cli_session_row *rows, size_t n, size_t m)
{
    struct widths w = { strlen("SESSION NAME") + m, 4, 7 };
    for (size_t i = 0; i < n; i++) {
        if (strlen(rows[i].name) + m > w.name)
            w.name = strlen(rows[i].name) + m;
        if (strlen(rows[i].kind) > w.kind)
            w.kind = strlen(rows[i].kind);
        for (size_t j = 0; j < rows[i].n_domains; j++) {
            if (strlen(rows[i].domains[j]) > w.domains)
                w.domains = strlen(rows[i].domains[j]);
        }
    }
    return w;
}

static void session_lines(struct lk_buf *out, const struct widths *w,
                          const struct cli_session_row *r, const char *current, bool bold)
{
    bool is_current = current && strcmp(current, r->name) == 0;
    const char *prefix = current == NULL ? "" : is_current ? "> " : "  ";
    for (size_t j = 0; j < r->n_domains; j++) {
        if (j == 0)
            row(out, w, prefix, r->name, bold && is_current, r->kind, false, r->domains[j], false);
        else
            row(out, w, "", "", false, "", false, r->domains[j], false);
    }
}

void cli_table_render(const struct cli_session_row *rows, size_t n, const char *current, bool bold,
                      struct lk_buf *out)
{
    if (n == 0)
        return;
    struct widths w = measure(rows, n, current ? 2 : 0);
    border(out, &w, "┌", "┬", "┐");
    row(out, &w, current ? "  " : "", "SESSION NAME", bold, "TYPE", bold, "DOMAINS", bold);
    border(out, &w, "├", "┼", "┤");
    bool first = true;
    for (size_t i = 0; i < n; i++) {
        if (rows[i].n_domains == 0)
            continue;
        if (!first)
            border(out, &w, "├", "┼", "┤");
        first = false;
        session_lines(out, &w, &rows[i], current, bold);
    }
    border(out, &w, "└", "┴", "┘");
}

size_t cli_table_domain_urls(const char *name, const char *const *domains, size_t n, char **urls)
{
    size_t out = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(domains[i]);
        bool top = true;
        for (size_t j = 0; j < n && top; j++) {
            size_t lj = strlen(domains[j]);
            if (strcmp(domains[i], domains[j]) != 0 && lj <= len &&
                memcmp(domains[i] + len - lj, domains[j], lj) == 0)
                top = false;
        }
        if (!top)
            continue;
        struct lk_buf b = LK_BUF_INIT;
        lk_buf_addf(&b, "https://%s.%s", name, domains[i]);
        urls[out++] = lk_buf_detach(&b, NULL);
    }
    return out;
}

static int kind_rank(const char *kind)
{
    if (strcmp(kind, "tunneled") == 0)
        return 0;
    return strcmp(kind, "preview") == 0 ? 1 : 2;
}

static int cmp_rows(const void *a, const void *b)
{
    const struct cli_session_row *x = a;
    const struct cli_session_row *y = b;
    int d = kind_rank(x->kind) - kind_rank(y->kind);
    return d != 0 ? d : strcmp(x->name, y->name);
}

void cli_table_sort(struct cli_session_row *rows, size_t n)
{
    if (n > 1)
        qsort(rows, n, sizeof(*rows), cmp_rows);
}
