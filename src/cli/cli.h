/*
 * cli.h - the command table of the `linkup` binary (git's commands[]).
 *
 * main.c parses the global options (-c/--config anywhere before "--",
 * -h/--help, -V/--version), then calls the command's function with argv[0] =
 * the command name. Exit codes: 0 ok, 1 failure, 2 usage error.
 */
#ifndef LK_CLI_H
#define LK_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "net/log.h"

#define LK_EXIT_OK    0
#define LK_EXIT_FAIL  1
#define LK_EXIT_USAGE 2

struct cli_ctx {
    const char *config_path; /* from -c/--config, or NULL; borrowed from argv */
    bool update_notice;      /* the update notice is due once the arguments parse */
};

/* Called by a command once its arguments parsed, before it does anything:
 * prints the update notice (SPEC §6.1) when ctx->update_notice, once. A usage
 * error therefore never comes after a notice, as with the original's clap,
 * which rejects the arguments before anything runs. */
void cli_args_done(struct cli_ctx *ctx);

typedef int cli_cmd_fn(int argc, char **argv, struct cli_ctx *ctx);

struct cli_command {
    const char *name;
    cli_cmd_fn *fn;
    const char *help; /* one line, shown by `linkup --help` */
    int hidden;
};

/* Prints "linkup: <msg>" on stderr and returns LK_EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints "Exited with error: <msg>" on stderr (an ERROR line: cli_log) and
 * returns LK_EXIT_FAIL. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The CLI's progress and warning lines (SPEC §6.1 "Logging"): printed on
 * stderr, followed by a newline, when lk_log_enabled(level); main() sets the
 * level from env LINKUP_LOG (lk_log_level_parse(): env_logger's syntax,
 * default info; a value it does not understand keeps info). */
void cli_log(enum lk_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* True when arg is -h or --help. */
int cli_is_help(const char *arg);

/* An option that takes a value, as --help shows it: "--session <NAME>" is
 * { NULL, "--session", "NAME" }, "-e, --email <EMAIL>" { "-e", "--email",
 * "EMAIL" }. Strings are static. */
struct cli_opt {
    const char *short_name; /* "-e", or NULL */
    const char *long_name;  /* "--email" */
    const char *value_name; /* "EMAIL" */
};

enum cli_opt_result {
    CLI_OPT_NO_MATCH = 0, /* argv[*i] is some other argument */
    CLI_OPT_TAKEN,        /* *value set */
    CLI_OPT_ERROR,        /* usage error printed: return LK_EXIT_USAGE */
};

/*
 * The shared option parser: takes the value of argv[*i] when it is opt, the
 * way clap does: "--long VALUE", "--long=VALUE", "-s VALUE", "-sVALUE" and
 * "-s=VALUE". *value is borrowed from argv; *i moves past a separate value.
 * A value is missing at the end of argv or when the next argument looks like
 * an option (starts with '-' and is not "-" itself): then the usage error
 * "a value is required for '--long <VALUE>' but none was supplied" is printed
 * for cmd (NULL: top level) and CLI_OPT_ERROR returned.
 */
enum cli_opt_result cli_opt_value(const char *cmd, const struct cli_opt *opt, int argc, char **argv,
                                  int *i, const char **value);
/* Takes argv[*i] when it is one of opts[0..n) (cli_opt_value on each):
 * returns that option's index with *value set, -1 when argv[*i] is none of
 * them, or CLI_OPT_FAILED after the usage error was printed for cmd. */
#define CLI_OPT_FAILED (-2)
int cli_opt_take(const char *cmd, const struct cli_opt *opts, size_t n, int argc, char **argv,
                 int *i, const char **value);
/* True when arg is opt, in any of cli_opt_value's forms; *attached is then
 * the value attached to arg (borrowed), or NULL when a separate one should
 * follow. */
bool cli_opt_match(const struct cli_opt *opt, const char *arg, const char **attached);
/* Prints the usage error "a value is required for '--long <VALUE>' but none
 * was supplied" for cmd and returns LK_EXIT_USAGE. suffix follows the value
 * name ("..." for an option taking several values, else ""). */
int cli_missing_value(const char *cmd, const struct cli_opt *opt, const char *suffix);
/* True when arg can be an option's separate value (not an option itself). */
bool cli_is_value(const char *arg);

/* Commands (one cmd_<name>.c each). */
int cmd_config(int argc, char **argv, struct cli_ctx *ctx);
int cmd_worker(int argc, char **argv, struct cli_ctx *ctx);
int cmd_dns_serve(int argc, char **argv, struct cli_ctx *ctx);
int cmd_local_dns(int argc, char **argv, struct cli_ctx *ctx);
/* `linkup local-dns uninstall` with the --root and platform the install
 * recorded in its manifest (SPEC §6.5.10 step 3): its exit code, or -1 when
 * no manifest says local DNS is installed. */
int cli_local_dns_uninstall_recorded(struct cli_ctx *ctx);
/* Calls add for each domain that Linkup's systemd-resolved drop-in routes to
 * the DNS responder (its Domains=~D entries): the drop-in local-dns install
 * recorded in its manifest, else /etc/systemd/resolved.conf.d/linkup.conf.
 * Nothing when there is none. */
void cli_local_dns_resolved_domains(void (*add)(const char *domain, void *data), void *data);
int cmd_server(int argc, char **argv, struct cli_ctx *ctx);
int cmd_start(int argc, char **argv, struct cli_ctx *ctx);
int cmd_stop(int argc, char **argv, struct cli_ctx *ctx);
int cmd_route(int argc, char **argv, struct cli_ctx *ctx);
int cmd_sessions(int argc, char **argv, struct cli_ctx *ctx);
int cmd_status(int argc, char **argv, struct cli_ctx *ctx);
int cmd_health(int argc, char **argv, struct cli_ctx *ctx);
int cmd_uninstall(int argc, char **argv, struct cli_ctx *ctx);
int cmd_completion(int argc, char **argv, struct cli_ctx *ctx);
int cmd_update(int argc, char **argv, struct cli_ctx *ctx);
int cmd_infra(int argc, char **argv, struct cli_ctx *ctx);
int cmd_inspect(int argc, char **argv, struct cli_ctx *ctx);
/* Stops Linkup (cmd_stop.c): clears env files when clear_env, stops the
 * local server and cloudflared when their pid files name ours, prints
 * "Stopped linkup". */
void cli_stop_all(int clear_env);

#endif
