/*
 * update_install.h - installing a released binary over the running one
 * (`linkup update`, SPEC §6.5.9, DESIGN §2.15).
 *
 * Blocking; not thread-safe; spawns tar(1) and setcap(8) as needed.
 */
#ifndef LK_CLI_UPDATE_INSTALL_H
#define LK_CLI_UPDATE_INSTALL_H

#include "core/buf.h"
#include "core/release.h"

/*
 * Appends "Cannot update {exe}: its directory {dir} is not writable ({e})" to
 * err and returns LK_EIO when the directory holding exe (absolute) cannot
 * take the temp file of cli_update_install; 0 otherwise.
 */
int cli_update_check_writable(const char *exe, struct lk_buf *err);

/*
 * Downloads rel (borrowed) into a temp file beside exe (absolute path of the
 * binary to replace), showing progress on stderr when it is a terminal,
 * checks its SHA-256, unpacks it when it is a .tar.gz (the first entry whose
 * path contains "linkup"), makes it mode 0755 and renames it over exe.
 * Returns 0, or LK_EIO with the reason appended to err ("SHA-256 mismatch
 * (expected X, got Y)", "HTTP 404 Not Found from URL", "File missing from
 * downloaded compressed archive", ...); on failure exe is untouched and no
 * temp file is left behind.
 */
int cli_update_install(const struct lk_release *rel, const char *exe, struct lk_buf *err);

/*
 * Runs `setcap cap_net_bind_service=+ep exe` (through `sudo -n` when not
 * root). A failure prints a warning with the command to run on stderr.
 */
void cli_update_setcap(const char *exe);

#endif
