/*
 * cmd_stop.c - `linkup stop` (SPEC §6.5.2, DESIGN §2.12): env files cleared,
 * the local server and cloudflared stopped (each only when its pid file names
 * a process that carries our LINKUP_SERVICE_ID), "Stopped linkup".
 */
#include <stdio.h>

#include "cli/cli.h"
#include "cli/cli_state.h"
#include "cli/cloudflared.h"
#include "cli/home.h"

static const char stop_usage[] = "Stop a running linkup session\n\n"
                                 "Usage: linkup stop [OPTIONS]\n\n"
                                 "Options:\n"
                                 "  -h, --help  Print help\n";

void cli_stop_all(int clear_env)
{
    if (clear_env) {
        struct lk_state *st = NULL;
        struct lk_buf err = LK_BUF_INIT;
        if (cli_state_load(&st, &err) == 0)
            cli_env_clear(st);
        else
            cli_log(LK_LOG_WARN, "Failed to fetch local state: %s", err.data);
        lk_state_free(st);
        lk_buf_release(&err);
    }
    cli_stop_local_server();
    cli_cloudflared_stop();
    printf("Stopped linkup\n");
}

int cmd_stop(int argc, char **argv, struct cli_ctx *ctx)
{
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            fputs(stop_usage, stdout);
            return LK_EXIT_OK;
        }
        return cli_usage_error("stop", "unexpected argument '%s'", argv[i]);
    }
    cli_args_done(ctx);
    int rc = cli_home_ensure();
    if (rc != 0)
        return rc;
    cli_home_lock();
    cli_stop_all(true);
    return LK_EXIT_OK;
}
