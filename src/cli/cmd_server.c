/*
 * cmd_server.c - `linkup server` (hidden, SPEC §6.5.12, DESIGN §3): parses
 * the options and runs the local server in the foreground until
 * SIGINT/SIGTERM. Exit codes: 0 after a clean shutdown, 1 when the config or
 * a listener fails, 2 for a usage error.
 */
#include <stdio.h>

#include "cli/cli.h"
#include "core/buf.h"
#include "core/err.h"
#include "server/server.h"

int cmd_server(int argc, char **argv, struct cli_ctx *ctx)
{
    struct local_opts opts;
    struct lk_buf err = LK_BUF_INIT;
    int rc = local_opts_parse(argc, argv, ctx->config_path, &opts, &err);
    int exit_code;
    if (rc == 1)
        exit_code = LK_EXIT_OK;
    else if (rc == LK_EINVAL)
        exit_code = cli_usage_error("server", "%s", err.data);
    else if (rc != 0)
        exit_code = cli_fail("%s", err.data);
    else
        exit_code = local_server_run(&opts);
    local_opts_release(&opts);
    lk_buf_release(&err);
    return exit_code;
}
