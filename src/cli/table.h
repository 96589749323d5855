/*
 * table.h - the sessions table of SPEC §6.7, byte-exact.
 *
 * Used by `start`, `status`, `sessions create-preview` and `sessions list`.
 * Widths are computed in bytes, as the original does. Styling (bold header,
 * bold current row) is only added when the caller asks for it (stdout is a
 * terminal and NO_COLOR is unset); without it the output is plain text.
 */
#ifndef LK_CLI_TABLE_H
#define LK_CLI_TABLE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"

/* One session of the table. All pointers are borrowed. */
struct cli_session_row {
    const char *name;
    const char *kind;           /* "tunneled" or "preview" */
    const char *const *domains; /* domain URLs, "https://{name}.{domain}" */
    size_t n_domains;
};

/*
 * Appends the table for rows[0..n) to out. current: the name of the current
 * session when the marker column is used (`status`), or NULL for no marker.
 * bold: add ANSI bold. Nothing is appended when n == 0.
 */
void cli_table_render(const struct cli_session_row *rows, size_t n, const char *current, bool bold,
                      struct lk_buf *out);

/*
 * Appends "https://{name}.{domain}" for each top-level domain of
 * domains[0..n) (SPEC §6.5.4: a domain is dropped when it ends with another,
 * different domain of the list, a plain string suffix test) to urls, an
 * array with room for n owned strings (free each with free()). Returns how
 * many were written.
 */
size_t cli_table_domain_urls(const char *name, const char *const *domains, size_t n, char **urls);

/* Sorts rows in place: kind "tunneled" before "preview" (others last), then
 * by name (byte order). */
void cli_table_sort(struct cli_session_row *rows, size_t n);

#endif
