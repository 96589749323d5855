/*
 * cli_state.h - what several CLI commands share: loading the config,
 * loading/saving the state file, building the state from the config, the
 * upload procedure (SPEC §6.5.13), env files (SPEC §6.6) and session rows for
 * the table.
 *
 * Error convention: functions that report to the user return an exit code
 * (0 or LK_EXIT_FAIL) after printing "Exited with error: ..." themselves;
 * the others return 0 or a negative lk_err with a message in *err.
 */
#ifndef LK_CLI_STATE_H
#define LK_CLI_STATE_H

#include <stdbool.h>
#include <sys/types.h>

#include "cli/cli.h"
#include "cli/table.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/state.h"

/* The message `route` and `status` print when the local server is down. */
#define CLI_NOT_RUNNING \
    "Seems like your local Linkup server is not running. Please run 'linkup start' first."

/* Prints CLI_NOT_RUNNING on stdout, yellow on a terminal (SPEC §6.5.3, §6.5.4). */
void cli_print_not_running(void);

/*
 * Locates (--config, then LINKUP_CONFIG), canonicalises, reads and parses the
 * config with the messages of SPEC §1.1 / DESIGN §2.2. On success sets *cfg
 * (lk_config_free) and *abs_path (free) and returns 0; otherwise prints the
 * error and returns LK_EXIT_FAIL.
 */
int cli_config_load(const struct cli_ctx *ctx, struct lk_config **cfg, char **abs_path);

/* Like cli_config_load, silently, from a known path (status, completion).
 * Returns NULL on any failure. */
struct lk_config *cli_config_try(const char *path);

/* Loads $LINKUP_HOME/state. 0, LK_ENOTFOUND (no file), LK_EIO (read error) or
 * LK_EPARSE; the message (SPEC §6.3) is appended to err when non-NULL. */
int cli_state_load(struct lk_state **out, struct lk_buf *err);

/* Saves st to $LINKUP_HOME/state (atomically). 0 or LK_EIO. */
int cli_state_save(const struct lk_state *st);

/* A fresh state from cfg (SPEC §6.5.1 step 2): every service Remote, token
 * "", session_name "", tunnel "http://tunnel-not-yet-set/". */
struct lk_state *cli_state_from_config(const struct lk_config *cfg, const char *abs_path);

/* 16 random [A-Za-z0-9] from getrandom into out[0..16], NUL-terminated. */
void cli_random_token(char out[17]);

/* The upload of SPEC §6.5.13 through the local server; updates and saves st.
 * When answer is non-NULL the local server's answer body (with its
 * tunnel_data, see tunnel.h) is appended to it. Returns 0, or an error with
 * the message in err. */
int cli_upload(struct lk_state *st, struct lk_buf *answer, struct lk_buf *err);

/* Injects the env files of every service with a directory (SPEC §6.6).
 * Returns 0 or LK_EIO with the message in err. */
int cli_env_inject(const struct lk_state *st, struct lk_buf *err);

/* Removes the Linkup block from the .env* files of every service with a
 * directory; failures print "Could not remove env for service {name}: {e}". */
void cli_env_clear(const struct lk_state *st);

/* Session rows for the table: parsed from a SessionsListResponse body.
 * Owns its strings; release with cli_rows_release. */
struct cli_rows {
    struct cli_session_row *rows;
    size_t n;
    char **strings; /* private: every owned string */
    size_t n_strings;
};
/* Parses {"sessions":{name:Session}} into rows sorted as SPEC §6.5.4. */
void cli_rows_from_sessions_json(const char *json, size_t len, struct cli_rows *rows);
/* Appends one row (copies everything); domains are bare domains, turned
 * into top-level URLs. */
void cli_rows_add(struct cli_rows *rows, const char *name, const char *kind,
                  const char *const *domains, size_t n_domains);
void cli_rows_release(struct cli_rows *rows);

/* Prints the table of rows to stdout (marker when current is non-NULL). */
void cli_rows_print(const struct cli_rows *rows, const char *current);

/* Masks a secret for display (DESIGN §2.13). Returns an owned string. */
char *cli_mask(const char *secret);

/* The local server of this Linkup directory: the pid file's process when it
 * carries LINKUP_SERVICE_ID=linkup-local-server, else (pid file gone) a
 * process with that variable that `start` spawned with
 * `--certs-dir $LINKUP_HOME/certs` (SPEC §6.4). 0 when none. */
pid_t cli_local_server_find(void);

/* Stops the local server cli_local_server_find() names, then prints
 * nothing. Returns true when one was running. */
bool cli_stop_local_server(void);

#endif
