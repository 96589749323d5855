/*
 * config_load.h - finding, reading and parsing the config file (SPEC §1.1).
 *
 * Every command that needs the config calls cli_config_read(). The path comes
 * from -c/--config (struct cli_ctx, stripped from argv by main.c) or else from
 * the LINKUP_CONFIG environment variable, and is canonicalised with realpath.
 * The file is read whole (at most LK_CONFIG_MAX_BYTES) and handed to the pure
 * parser lk_config_parse (lib/core/config.h).
 *
 * Errors are returned as the complete user message, without the
 * "Exited with error: " prefix that cli_fail() adds:
 *   No config argument provided and LINKUP_CONFIG environment variable not set
 *   Unable to resolve absolute path for "linkup.yaml"
 *   Failed to read config file "/abs/linkup.yaml"
 *   Failed to read config file "/abs/linkup.yaml": larger than 10485760 bytes
 *   Failed to deserialize config file "/abs/linkup.yaml": line 12, column 5: unknown service "web"
 * Paths are quoted in Rust debug form (lk_config_add_quoted).
 *
 * Reads the environment: call from the main thread. No global state.
 */
#ifndef LK_CLI_CONFIG_LOAD_H
#define LK_CLI_CONFIG_LOAD_H

#include "cli/cli.h"
#include "core/buf.h"
#include "core/config.h"

/* Finds the config path: ctx->config_path when set, else $LINKUP_CONFIG (an
 * empty value counts as set, and then fails to resolve), canonicalised.
 * On success stores an owned absolute path in *abs_path (free()) and returns
 * 0. On failure appends the message to err and returns LK_ENOTFOUND. */
int cli_config_locate(const struct cli_ctx *ctx, char **abs_path, struct lk_buf *err);

/* Reads and parses the config file at path (used verbatim in messages, so
 * pass the canonical path). On success stores a new config in *out (owned by
 * the caller, lk_config_free) and returns 0. On failure appends the message to
 * err and returns LK_ENOTFOUND (missing), LK_EIO (unreadable), LK_ELIMIT (too large) or the
 * parser's error (LK_EPARSE, LK_ELIMIT). Used directly by `status`, which takes the path from the
 * state file. */
int cli_config_load_file(const char *path, struct lk_config **out, struct lk_buf *err);

/* cli_config_locate then cli_config_load_file. On success *out is owned by the
 * caller and, when abs_path is non-NULL, *abs_path receives the owned
 * canonical path (free()). On failure nothing is stored, err holds the
 * message and a negative lk_err is returned. */
int cli_config_read(const struct cli_ctx *ctx, struct lk_config **out, char **abs_path,
                    struct lk_buf *err);

#endif
