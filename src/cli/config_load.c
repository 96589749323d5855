/*
 * config_load.c - locating and reading the config file (config_load.h).
 *
 * The only file and environment access of config loading lives here; parsing
 * is the pure lk_config_parse. The file is read with a hard cap so that a
 * wrong --config (a device, a huge log) cannot exhaust memory.
 */
#include "cli/config_load.h"

#include <limits.h>
#include <stdlib.h>

#include "cli/home.h"
#include "core/err.h"

int cli_config_locate(const struct cli_ctx *ctx, char **abs_path, struct lk_buf *err)
{
    const char *path = ctx->config_path;
    if (path == NULL)
        path = getenv("LINKUP_CONFIG");
    if (path == NULL) {
        lk_buf_adds(err, "No config argument provided and LINKUP_CONFIG environment variable "
                         "not set");
        return LK_ENOTFOUND;
    }
    char *abs = path[0] ? realpath(path, NULL) : NULL;
    if (abs == NULL) {
        lk_buf_adds(err, "Unable to resolve absolute path for ");
        lk_config_add_quoted(err, path);
        return LK_ENOTFOUND;
    }
    *abs_path = abs;
    return 0;
}

static int read_file(const char *path, struct lk_buf *text, struct lk_buf *err)
{
    int rc = cli_read_file(path, text, LK_CONFIG_MAX_BYTES);
    if (rc != 0) {
        lk_buf_adds(err, "Failed to read config file ");
        lk_config_add_quoted(err, path);
        if (rc == LK_ELIMIT)
            lk_buf_addf(err, ": larger than %u bytes", LK_CONFIG_MAX_BYTES);
    }
    return rc;
}

int cli_config_load_file(const char *path, struct lk_config **out, struct lk_buf *err)
{
    struct lk_buf text = LK_BUF_INIT;
    struct lk_diag diag;
    int rc = read_file(path, &text, err);
    if (rc == 0) {
        rc = lk_config_parse(text.data, text.len, path, out, &diag);
        if (rc != 0)
            lk_config_format_error(path, &diag, err);
    }
    lk_buf_release(&text);
    return rc;
}

int cli_config_read(const struct cli_ctx *ctx, struct lk_config **out, char **abs_path,
                    struct lk_buf *err)
{
    char *abs = NULL;
    int rc = cli_config_locate(ctx, &abs, err);
    if (rc == 0)
        rc = cli_config_load_file(abs, out, err);
    if (rc == 0 && abs_path != NULL) {
        *abs_path = abs;
        abs = NULL; /* ownership moved to the caller */
    }
    free(abs);
    return rc;
}
