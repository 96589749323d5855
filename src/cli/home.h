/*
 * home.h - the Linkup directory ($LINKUP_HOME, SPEC §6.2, DESIGN §3) and the
 * files the CLI keeps in it.
 *
 * The directory is $LINKUP_HOME when set, else $HOME/.linkup, else
 * /var/tmp/.linkup. Every command creates it (one level) before it runs.
 * Paths returned here are owned by this module and valid until exit.
 */
#ifndef LK_CLI_HOME_H
#define LK_CLI_HOME_H

#include <stdbool.h>

#include "core/buf.h"

/* File names inside the Linkup directory. */
#define CLI_STATE_FILE       "state"
#define CLI_SERVER_PID_FILE  "localserver-pid"
#define CLI_SERVER_ADDR_FILE "localserver-http"
#define CLI_SERVER_STDOUT    "localserver-stdout"
#define CLI_SERVER_STDERR    "localserver-stderr"

/* The Linkup directory path (borrowed, static). */
const char *cli_home(void);

/* Creates the Linkup directory when missing (one level). On failure prints
 * "Exited with error: Could not create linkup dir at {path}: {e}" and returns
 * LK_EXIT_FAIL; returns 0 on success. Called first by every command. */
int cli_home_ensure(void);

/* Holds an exclusive flock(2) on the Linkup directory until the process
 * exits, so commands that start or stop the local server run one at a time
 * per directory (two `linkup start` at once would otherwise both spawn a
 * server when it listens on an ephemeral port). Logs that it waits when
 * another command holds the lock. The descriptor is close-on-exec, so a
 * spawned server does not keep the lock. A directory that cannot be locked
 * (a file system without flock) is used unlocked. */
void cli_home_lock(void);

/* Appends "{home}/{name}" to out. */
void cli_home_file(const char *name, struct lk_buf *out);

/* Reads the file name of the home into out (replacing its contents, at most
 * max bytes). Returns 0, LK_ENOTFOUND when it does not exist, LK_EIO or
 * LK_ELIMIT. */
int cli_home_read(const char *name, struct lk_buf *out, size_t max);

/* Reads any file into out (as cli_home_read, absolute path). */
int cli_read_file(const char *path, struct lk_buf *out, size_t max);

/* Appends what is left of fd (from its current offset to end of file) to
 * out. Returns 0, LK_EIO (errno kept) or LK_ELIMIT when out would pass max
 * bytes (out then holds what was read before). fd stays open. */
int cli_read_fd(int fd, struct lk_buf *out, size_t max);

/* Writes data[0..len) to path atomically (temp file + rename), mode 0600.
 * Returns 0 or LK_EIO (errno kept). */
int cli_write_file(const char *path, const char *data, size_t len);

/* Rewrites path in place (created 0644 when missing, truncated otherwise, its
 * mode kept), as env files are. Returns 0 or LK_EIO (errno kept). */
int cli_rewrite_file(const char *path, const char *data, size_t len);

/* Appends to path (created 0644 when missing, its mode kept otherwise), as
 * env-file blocks are (SPEC §6.6 step 6). Returns 0 or LK_EIO (errno kept). */
int cli_append_file(const char *path, const char *data, size_t len);

/* True when stdout is a terminal and neither NO_COLOR nor CLICOLOR=0 is set. */
bool cli_use_color(void);

#endif
