/*
 * cmd_config.c - `linkup config check`: validate a config and summarise it.
 * (Placeholder until the config module lands.)
 */
#include <string.h>

#include "cli/cli.h"

int cmd_config(int argc, char **argv, struct cli_ctx *ctx)
{
    (void)ctx;
    if (argc < 2 || cli_is_help(argv[1])) {
        printf("Usage: linkup config check [--config <CONFIG>]\n");
        return argc < 2 ? LK_EXIT_USAGE : LK_EXIT_OK;
    }
    if (strcmp(argv[1], "check") != 0)
        return cli_usage_error("config", "unknown subcommand '%s'", argv[1]);
    return cli_fail("config check is not implemented yet");
}
