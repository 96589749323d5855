/*
 * main.c - entry point of `linkup`: global options and command dispatch.
 *
 * `--config` is accepted before or after the subcommand (DESIGN §2.6); it is
 * removed from argv here so commands see only their own arguments.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/update.h"
#include "core/alloc.h"

/* SPEC §6.1 order first, then our additions. */
static const struct cli_command commands[] = {
    { "start", cmd_start, "Start a new linkup session", 0 },
    { "stop", cmd_stop, "Stop a running linkup session", 0 },
    { "route", cmd_route, "Route session traffic to a local or remote service", 0 },
    { "sessions", cmd_sessions, "Manage sessions", 0 },
    { "status", cmd_status, "View linkup component and service status", 0 },
    { "health", cmd_health, "Output the health of the CLI service", 0 },
    { "local-dns", cmd_local_dns,
      "Speed up your local environment by routing traffic locally when possible", 0 },
    { "update", cmd_update, "Update linkup to the latest released version.", 0 },
    { "uninstall", cmd_uninstall, "Uninstall linkup and cleanup configurations.", 0 },
    { "completion", cmd_completion, "Generate completions for your shell", 0 },
    { "infra", cmd_infra, "Manage linkup infrastructure on Cloudflare", 0 },
    { "config", cmd_config, "Validate and summarise a linkup config file", 0 },
    { "inspect", cmd_inspect, "Show the latest requests the local server answered", 0 },
    { "worker", cmd_worker, "Run the Linkup worker (session API and edge proxy)", 0 },
    { "server", cmd_server, "Run the local server (used by `linkup start`)", 1 },
    { "dns-serve", cmd_dns_serve, "Run only the DNS responder (developer tool)", 1 },
};

static void print_help(FILE *out)
{
    fprintf(out, "Connect remote and local dev/preview environments\n\n"
                 "If you need help running linkup, start here:\n"
                 "https://mentimeter.github.io/linkup\n\n"
                 "Usage: linkup [OPTIONS] <COMMAND>\n\nCommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (!commands[i].hidden)
            fprintf(out, "  %-12s %s\n", commands[i].name, commands[i].help);
    }
    fprintf(out, "  %-12s %s\n", "help",
            "Print this message or the help of the given subcommand(s)");
    fprintf(out, "\nOptions:\n"
                 "  -c, --config <CONFIG>  Path to config file, overriding environment variable.\n"
                 "  -h, --help             Print help\n"
                 "  -V, --version          Print version\n");
}

static const struct cli_command *find_command(const char *name)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(name, commands[i].name) == 0)
            return &commands[i];
    }
    return NULL;
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("linkup: ", stderr);
    if (cmd)
        fprintf(stderr, "%s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fprintf(stderr, "Run 'linkup%s%s --help' for usage.\n", cmd ? " " : "", cmd ? cmd : "");
    return LK_EXIT_USAGE;
}

__attribute__((format(printf, 3, 0))) static void log_v(enum lk_log_level level, const char *prefix,
                                                        const char *fmt, va_list ap)
{
    if (!lk_log_enabled(level))
        return;
    fputs(prefix, stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void cli_log(enum lk_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_v(level, "", fmt, ap);
    va_end(ap);
}

int cli_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_v(LK_LOG_ERROR, "Exited with error: ", fmt, ap);
    va_end(ap);
    return LK_EXIT_FAIL;
}

int cli_is_help(const char *arg)
{
    return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0;
}

bool cli_is_value(const char *arg)
{
    return arg[0] != '-' || strcmp(arg, "-") == 0;
}

int cli_missing_value(const char *cmd, const struct cli_opt *opt, const char *suffix)
{
    return cli_usage_error(cmd, "a value is required for '%s <%s>%s' but none was supplied",
                           opt->long_name, opt->value_name, suffix);
}

bool cli_opt_match(const struct cli_opt *opt, const char *arg, const char **attached)
{
    size_t n = strlen(opt->long_name);
    *attached = NULL;
    if (strcmp(arg, opt->long_name) == 0)
        return true;
    if (strncmp(arg, opt->long_name, n) == 0 && arg[n] == '=') {
        *attached = arg + n + 1;
        return true;
    }
    if (opt->short_name == NULL)
        return false;
    n = strlen(opt->short_name);
    if (strncmp(arg, opt->short_name, n) != 0)
        return false;
    /* clap: "-c FILE", "-cFILE" and "-c=FILE" all give FILE. */
    if (arg[n] != '\0')
        *attached = arg[n] == '=' ? arg + n + 1 : arg + n;
    return true;
}

enum cli_opt_result cli_opt_value(const char *cmd, const struct cli_opt *opt, int argc, char **argv,
                                  int *i, const char **value)
{
    const char *v = NULL;
    if (!cli_opt_match(opt, argv[*i], &v))
        return CLI_OPT_NO_MATCH;
    if (v == NULL) {
        if (*i + 1 >= argc || !cli_is_value(argv[*i + 1])) {
            cli_missing_value(cmd, opt, "");
            return CLI_OPT_ERROR;
        }
        v = argv[++*i];
    }
    *value = v;
    return CLI_OPT_TAKEN;
}

int cli_opt_take(const char *cmd, const struct cli_opt *opts, size_t n, int argc, char **argv,
                 int *i, const char **value)
{
    for (size_t k = 0; k < n; k++) {
        enum cli_opt_result r = cli_opt_value(cmd, &opts[k], argc, argv, i, value);
        if (r == CLI_OPT_ERROR)
            return CLI_OPT_FAILED;
        if (r == CLI_OPT_TAKEN)
            return (int)k;
    }
    return -1;
}

/* Removes -c/--config VALUE (every form of cli_opt_value) from argv, before
 * any "--"; returns the new argc, or -1 after a usage error. */
static int take_config(int argc, char **argv, struct cli_ctx *ctx)
{
    static const struct cli_opt config_opt = { "-c", "--config", "CONFIG" };
    int out = 0;
    int passthrough = 0;
    for (int i = 0; i < argc; i++) {
        if (!passthrough && strcmp(argv[i], "--") == 0)
            passthrough = 1;
        if (!passthrough) {
            enum cli_opt_result r =
                cli_opt_value(NULL, &config_opt, argc, argv, &i, &ctx->config_path);
            if (r == CLI_OPT_ERROR)
                return -1;
            if (r == CLI_OPT_TAKEN)
                continue;
        }
        argv[out++] = argv[i];
    }
    argv[out] = NULL;
    return out;
}

/*
 * True when the update notice (SPEC §6.1) may run before this invocation:
 * not for completion, update, uninstall, config, the servers and other
 * background commands, help, or anything with --json in its arguments (its
 * stdout is for machines).
 */
static bool wants_update_notice(const struct cli_command *cmd, int argc, char **argv)
{
    static const char *const quiet[] = { "completion", "update", "uninstall", "config",
                                         "server",     "worker", "dns-serve" };
    if (cmd->hidden)
        return false;
    for (size_t i = 0; i < sizeof(quiet) / sizeof(quiet[0]); i++) {
        if (strcmp(cmd->name, quiet[i]) == 0)
            return false;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0 || cli_is_help(argv[i]))
            return false;
    }
    return true;
}

int main(int argc, char **argv)
{
    struct cli_ctx ctx = { 0 };
    enum lk_log_level level;
    lk_log_level_parse(getenv("LINKUP_LOG"), &level); /* INFO when not understood */
    lk_log_set_level(level);
    argc = take_config(argc - 1, argv + 1, &ctx);
    argv++;
    if (argc < 0)
        return LK_EXIT_USAGE;
    if (argc == 0) {
        print_help(stderr);
        return LK_EXIT_USAGE;
    }
    if (strcmp(argv[0], "help") == 0 && argc > 1 && strcmp(argv[1], "help") != 0 &&
        !cli_is_help(argv[1])) {
        /* `linkup help <command> [<subcommand>]` is `linkup <command> [<subcommand>] --help`
         * (clap). */
        const struct cli_command *cmd = find_command(argv[1]);
        if (cmd == NULL)
            return cli_usage_error(NULL, "unrecognized subcommand '%s'", argv[1]);
        char help_flag[] = "--help";
        char **help_argv = lk_xcalloc((size_t)argc + 1, sizeof(char *));
        for (int i = 1; i < argc; i++)
            help_argv[i - 1] = argv[i];
        help_argv[argc - 1] = help_flag;
        int rc = cmd->fn(argc, help_argv, &ctx);
        free(help_argv);
        return rc;
    }
    if (cli_is_help(argv[0]) || strcmp(argv[0], "help") == 0) {
        print_help(stdout);
        return LK_EXIT_OK;
    }
    if (strcmp(argv[0], "-V") == 0 || strcmp(argv[0], "--version") == 0) {
        printf("linkup %s\n", LK_VERSION);
        return LK_EXIT_OK;
    }
    const struct cli_command *cmd = find_command(argv[0]);
    if (cmd != NULL) {
        ctx.update_notice = wants_update_notice(cmd, argc, argv);
        return cmd->fn(argc, argv, &ctx);
    }
    /* clap's words for both. */
    if (argv[0][0] == '-')
        return cli_usage_error(NULL, "unexpected argument '%s'", argv[0]);
    return cli_usage_error(NULL, "unrecognized subcommand '%s'", argv[0]);
}
