/*
 * envfile.h - the Linkup block in `.env*` files (SPEC §6.6), on byte strings.
 *
 * `linkup start` copies each `.env.X.linkup` source into its target `.env.X`
 * between two delimiter lines; `linkup stop` removes that block again and
 * leaves every other byte of the file as the user left it (apart from the
 * trailing newlines, which are normalised to exactly one). The functions here
 * only transform bytes; reading and writing the files is the caller's job.
 *
 * All offsets are byte offsets (SPEC §11.18). Pure: no I/O, no allocation
 * other than growing the caller's struct lk_buf.
 */
#ifndef LK_CORE_ENVFILE_H
#define LK_CORE_ENVFILE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"
#include "core/str.h"

/* The 44-byte delimiter line, without its newline. */
#define LK_ENVFILE_DELIM "##### Linkup environment - DO NOT EDIT #####"

/* True when text contains the delimiter anywhere (injection is then skipped). */
bool lk_envfile_has_block(struct lk_str text);

/*
 * Appends to out the target text followed by the Linkup block holding source:
 * target + "\n" DELIM "\n" + source (one trailing "\n" removed) + "\n" DELIM "\n".
 * The caller checks lk_envfile_has_block(target) first; this function does not.
 * out must have no cap (or enough room). target and source are borrowed.
 */
void lk_envfile_inject(struct lk_str target, struct lk_str source, struct lk_buf *out);

/*
 * Removes the Linkup block from text, SPEC §6.6 "Removal": from the first
 * delimiter (with the newline before it) to the end of the last delimiter
 * (with the newline after it), then all trailing newlines are replaced by
 * exactly one. Returns false (and leaves out untouched) when text holds no
 * delimiter: the file must then not be rewritten. Otherwise appends the new
 * contents to out and returns true. text is borrowed.
 */
bool lk_envfile_clear(struct lk_str text, struct lk_buf *out);

/*
 * The target name of a source name: "X.linkup" -> "X" (only the final
 * ".linkup" is removed). Returns true and sets *target (a slice of name) when
 * name starts with ".env." and ends with ".linkup", false otherwise.
 */
bool lk_envfile_target_name(struct lk_str name, struct lk_str *target);

#endif
