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
#include "core/alloc.h"
#include "core/buf.h"

#define INFRA_USAGE_HEAD                                                                 \
    "Usage: linkup infra --email <EMAIL> --api-key <API_KEY> --account-id <ACCOUNT_ID> " \
    "--zone-ids <ZONE_IDS>... "

static const char infra_usage[] =
    "Manage linkup infrastructure on Cloudflare\n\n" INFRA_USAGE_HEAD "<COMMAND>\n\n"
    "Commands:\n"
    "  deploy   Deploy linkup to Cloudflare\n"
    "  destroy  Destroy linkup resources from Cloudflare\n"
    "  help     Print this message or the help of the given subcommand(s)\n\n"
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

/* The options taking one value, in struct infra_args' order; then -z. */
static const struct cli_opt value_opts[] = {
    { "-e", "--email", "EMAIL" },
    { "-k", "--api-key", "API_KEY" },
    { "-a", "--account-id", "ACCOUNT_ID" },
};
static const struct cli_opt zones_opt = { "-z", "--zone-ids", "ZONE_IDS" };

static bool is_command(const char *arg)
{
    return strcmp(arg, "deploy") == 0 || strcmp(arg, "destroy") == 0;
}

/* -z/--zone-ids: an attached first id ("-zID", "--zone-ids=ID"), then the
 * ids up to the next option or the subcommand (SPEC §11.6). Returns 0 when
 * argv[*i] is another argument, 1 when it took the ids, -1 after a usage
 * error. */
static int take_zones(int argc, char **argv, int *i, struct infra_args *a)
{
    const char *attached = NULL;
    if (!cli_opt_match(&zones_opt, argv[*i], &attached))
        return 0;
    int n = attached != NULL;
    while (*i + 1 < argc && cli_is_value(argv[*i + 1]) && !is_command(argv[*i + 1])) {
        n++;
        ++*i;
    }
    if (n == 0) {
        cli_missing_value("infra", &zones_opt, "...");
        return -1;
    }
    a->n_zones += n;
    return 1;
}

static int take_option(int argc, char **argv, int *i, struct infra_args *a)
{
    const char **slots[] = { &a->email, &a->api_key, &a->account_id };
    const char *v = NULL;
    int k = cli_opt_take("infra", value_opts, LK_ARRAY_LEN(value_opts), argc, argv, i, &v);
    if (k == CLI_OPT_FAILED)
        return -1;
    if (k < 0)
        return take_zones(argc, argv, i, a);
    *slots[k] = v;
    return 1;
}

/* clap's list: one line per required option that was not given. */
static int missing_options(const struct infra_args *a)
{
    const struct {
        bool missing;
        const struct cli_opt *opt;
        const char *suffix;
    } req[] = {
        { a->email == NULL, &value_opts[0], "" },
        { a->api_key == NULL, &value_opts[1], "" },
        { a->account_id == NULL, &value_opts[2], "" },
        { a->n_zones == 0, &zones_opt, "..." },
    };
    struct lk_buf msg = LK_BUF_INIT;
    lk_buf_adds(&msg, "the following required arguments were not provided:");
    bool any = false;
    for (size_t k = 0; k < LK_ARRAY_LEN(req); k++) {
        if (!req[k].missing)
            continue;
        lk_buf_addf(&msg, "\n  %s <%s>%s", req[k].opt->long_name, req[k].opt->value_name,
                    req[k].suffix);
        any = true;
    }
    int rc = any ? cli_usage_error("infra", "%s", msg.data) : 0;
    lk_buf_release(&msg);
    return rc;
}

static int parse(int argc, char **argv, struct infra_args *a)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        /* The options belong to `infra`, before the subcommand, which
         * takes none of its own (SPEC §6.5.11). */
        if (a->command != NULL)
            return cli_usage_error("infra", "unexpected argument '%s'", arg);
        int took = take_option(argc, argv, &i, a);
        if (took < 0)
            return LK_EXIT_USAGE;
        if (took > 0)
            continue;
        if (a->command == NULL && is_command(arg))
            a->command = arg;
        else
            return cli_usage_error("infra", "unexpected argument '%s'", arg);
    }
    int rc = missing_options(a);
    if (rc != 0)
        return rc;
    if (a->command == NULL)
        return cli_usage_error("infra", "a subcommand is required: deploy or destroy");
    return 0;
}

/* The help of `linkup infra`, or of its subcommand sub ("deploy",
 * "destroy"; NULL: infra itself): clap's usage names the parent's required
 * options before the subcommand. */
static void print_usage(const char *sub)
{
    if (sub == NULL) {
        fputs(infra_usage, stdout);
        return;
    }
    printf("%s\n\n" INFRA_USAGE_HEAD "%s\n\nOptions:\n  -h, --help  Print help\n",
           strcmp(sub, "deploy") == 0 ? "Deploy linkup to Cloudflare"
                                      : "Destroy linkup resources from Cloudflare",
           sub);
}

int cmd_infra(int argc, char **argv, struct cli_ctx *ctx)
{
    const char *sub = NULL;
    for (int i = 1; i < argc; i++) {
        if (sub == NULL && is_command(argv[i]))
            sub = argv[i];
        if (cli_is_help(argv[i])) {
            print_usage(sub);
            return LK_EXIT_OK;
        }
    }
    /* clap's `help` subcommand: `linkup infra help [deploy|destroy]`. */
    if (argc > 1 && strcmp(argv[1], "help") == 0) {
        if (argc > 2 && !is_command(argv[2]))
            return cli_usage_error("infra", "unrecognized subcommand '%s'", argv[2]);
        print_usage(argc > 2 ? argv[2] : NULL);
        return LK_EXIT_OK;
    }
    struct infra_args a = { 0 };
    int rc = parse(argc, argv, &a);
    if (rc == 0) {
        cli_args_done(ctx);
        rc = cli_home_ensure();
    }
    if (rc != 0)
        return rc;
    return cli_fail("'linkup infra %s' is not available in this build: Linkup's worker is "
                    "self-hosted with 'linkup worker' (docs/worker.md)",
                    a.command);
}
