/*
 * cmd_infra.c - `linkup infra -e EMAIL -k API_KEY -a ACCOUNT_ID -z ZONE_ID...
 * <deploy|destroy>` (SPEC §6.5.11).
 *
 * Deploying the worker to Cloudflare is optional for a C implementation
 * (SPEC §6.5.11) and on our roadmap (DESIGN §7); the worker is self-hosted
 * with `linkup worker` instead. The command keeps the original's interface -
 * help text, required options, usage errors with exit 2, `-z` collecting ids
 * up to the subcommand (SPEC §11.6) - and then fails with a clear message
 * rather than touching any Cloudflare account.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/home.h"

static const char infra_usage[] =
    "Manage linkup infrastructure on Cloudflare\n\n"
    "Usage: linkup infra --email <EMAIL> --api-key <API_KEY> --account-id <ACCOUNT_ID> "
    "--zone-ids <ZONE_IDS>... <COMMAND>\n\n"
    "Commands:\n"
    "  deploy   Deploy linkup to Cloudflare\n"
    "  destroy  Destroy linkup resources from Cloudflare\n\n"
    "Options:\n"
    "  -e, --email <EMAIL>            Cloudflare user email\n"
    "  -k, --api-key <API_KEY>        Cloudflare user global API Key\n"
    "  -a, --account-id <ACCOUNT_ID>  Cloudflare account ID\n"
    "  -z, --zone-ids <ZONE_IDS>...   Cloudflare zone IDs\n"
    "  -h, --help                     Print help\n";

struct infra_args {
    const char *email, *api_key, *account_id, *command;
    int n_zones;
};

static bool is_opt(const char *arg, const char *s, const char *l)
{
    return strcmp(arg, s) == 0 || strcmp(arg, l) == 0;
}

static bool is_command(const char *arg)
{
    return strcmp(arg, "deploy") == 0 || strcmp(arg, "destroy") == 0;
}

/* One option with its value at argv[*i]; returns 0, or the usage error. */
static int take_value(int argc, char **argv, int *i, const char **out)
{
    if (*i + 1 >= argc || argv[*i + 1][0] == '-')
        return cli_usage_error("infra", "a value is required for '%s' but none was supplied",
                               argv[*i]);
    *out = argv[++*i];
    return 0;
}

static int parse(int argc, char **argv, struct infra_args *a)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        int rc = 0;
        if (is_opt(arg, "-e", "--email")) {
            rc = take_value(argc, argv, &i, &a->email);
        } else if (is_opt(arg, "-k", "--api-key")) {
            rc = take_value(argc, argv, &i, &a->api_key);
        } else if (is_opt(arg, "-a", "--account-id")) {
            rc = take_value(argc, argv, &i, &a->account_id);
        } else if (is_opt(arg, "-z", "--zone-ids")) {
            /* Zone ids run up to the next option or the subcommand (SPEC §11.6). */
            while (i + 1 < argc && argv[i + 1][0] != '-' && !is_command(argv[i + 1])) {
                a->n_zones++;
                i++;
            }
            if (a->n_zones == 0)
                rc = cli_usage_error("infra", "a value is required for '%s' but none was supplied",
                                     arg);
        } else if (a->command == NULL && is_command(arg)) {
            a->command = arg;
        } else {
            rc = cli_usage_error("infra", "unexpected argument '%s'", arg);
        }
        if (rc != 0)
            return rc;
    }
    if (a->email == NULL || a->api_key == NULL || a->account_id == NULL || a->n_zones == 0)
        return cli_usage_error("infra", "the following required arguments were not provided: "
                                        "--email <EMAIL> --api-key <API_KEY> --account-id "
                                        "<ACCOUNT_ID> --zone-ids <ZONE_IDS>...");
    if (a->command == NULL)
        return cli_usage_error("infra", "a subcommand is required: deploy or destroy");
    return 0;
}

int cmd_infra(int argc, char **argv, struct cli_ctx *ctx)
{
    (void)ctx;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            fputs(infra_usage, stdout);
            return LK_EXIT_OK;
        }
    }
    struct infra_args a = { 0 };
    int rc = parse(argc, argv, &a);
    if (rc == 0)
        rc = cli_home_ensure();
    if (rc != 0)
        return rc;
    return cli_fail("'linkup infra %s' is not available in this build: Linkup's worker is "
                    "self-hosted with 'linkup worker' (docs/worker.md)",
                    a.command);
}
