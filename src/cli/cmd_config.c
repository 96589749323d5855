/*
 * cmd_config.c - `linkup config check [--json]`: load the config the way every
 * command does (config_load.h) and print a one-screen summary, or the error.
 *
 * Exit codes: 0 valid, 1 invalid or unreadable (message from cli_fail), 2
 * usage. The token is never printed in full (DESIGN §2.13).
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/config_load.h"
#include "core/config.h"

static const char usage[] = "Validate a linkup config file and print a summary\n\n"
                            "Usage: linkup config check [OPTIONS]\n\n"
                            "Options:\n"
                            "  -c, --config <CONFIG>  Path to config file, overriding environment "
                            "variable.\n"
                            "      --json             Print a compact JSON summary\n"
                            "  -h, --help             Print help\n";

static const char config_usage[] =
    "Validate and summarise a linkup config file\n\n"
    "Usage: linkup config <COMMAND>\n\n"
    "Commands:\n"
    "  check  Validate a linkup config file and print a summary\n"
    "  help   Print this message or the help of the given subcommand(s)\n\n"
    "Options:\n"
    "  -h, --help  Print help\n";

static void print_service(const struct lk_config_service *s)
{
    printf("  %-16s remote %s\n", s->name, s->remote);
    printf("  %-16s local  %s\n", "", s->local);
    if (s->directory)
        printf("  %-16s directory %s\n", "", s->directory);
    for (size_t i = 0; i < s->n_rewrites; i++)
        printf("  %-16s rewrite %s -> %s\n", "", lk_regex_source(s->rewrites[i].source),
               s->rewrites[i].target);
    if (s->health) {
        printf("  %-16s health %s", "", s->health->path ? s->health->path : "(service URL)");
        for (size_t i = 0; i < s->health->n_statuses; i++)
            printf("%s%u", i ? ", " : " statuses ", (unsigned)s->health->statuses[i]);
        printf("\n");
    }
}

static void print_domain(const struct lk_config_domain *d)
{
    printf("  %-24s default %s\n", d->domain, d->default_service);
    for (size_t i = 0; i < d->n_routes; i++)
        printf("  %-24s route %s -> %s\n", "", lk_regex_source(d->routes[i].path),
               d->routes[i].service);
}

static void print_summary(const struct lk_config *cfg, const char *path)
{
    struct lk_buf token = LK_BUF_INIT;
    lk_config_mask_secret(cfg->worker_token, &token);
    printf("Config %s is valid\n\n", path);
    printf("Worker  %s (token %s)\n", cfg->worker_url, token.data);
    for (size_t i = 0; i < cfg->n_cache_routes; i++)
        printf("Cache   %s\n", lk_regex_source(cfg->cache_routes[i]));
    printf("\nServices (%zu)\n", cfg->n_services);
    for (size_t i = 0; i < cfg->n_services; i++)
        print_service(&cfg->services[i]);
    printf("\nDomains (%zu)\n", cfg->n_domains);
    for (size_t i = 0; i < cfg->n_domains; i++)
        print_domain(&cfg->domains[i]);
    lk_buf_release(&token);
}

static json_t *routes_json(const struct lk_config_domain *d)
{
    if (!d->has_routes)
        return json_null();
    json_t *routes = json_array();
    for (size_t i = 0; i < d->n_routes; i++)
        json_array_append_new(routes,
                              json_pack("{s:s, s:s}", "path", lk_regex_source(d->routes[i].path),
                                        "service", d->routes[i].service));
    return routes;
}

static int print_json(const struct lk_config *cfg, const char *path)
{
    json_t *services = json_array();
    for (size_t i = 0; i < cfg->n_services; i++) {
        const struct lk_config_service *s = &cfg->services[i];
        json_array_append_new(services, json_pack("{s:s, s:s, s:s}", "name", s->name, "remote",
                                                  s->remote, "local", s->local));
    }
    json_t *domains = json_array();
    for (size_t i = 0; i < cfg->n_domains; i++) {
        const struct lk_config_domain *d = &cfg->domains[i];
        json_array_append_new(domains,
                              json_pack("{s:s, s:s, s:o}", "domain", d->domain, "default_service",
                                        d->default_service, "routes", routes_json(d)));
    }
    json_t *root = json_pack("{s:s, s:s, s:o, s:o}", "config_path", path, "worker_url",
                             cfg->worker_url, "services", services, "domains", domains);
    char *text = root ? json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(root);
    if (text == NULL)
        return cli_fail("cannot encode the config summary as JSON");
    printf("%s\n", text);
    free(text);
    return LK_EXIT_OK;
}

static int config_check(int argc, char **argv, struct cli_ctx *ctx)
{
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            fputs(usage, stdout);
            return LK_EXIT_OK;
        }
        if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else
            return cli_usage_error("config check", "unexpected argument '%s'", argv[i]);
    }
    struct lk_buf err = LK_BUF_INIT;
    struct lk_config *cfg = NULL;
    char *path = NULL;
    int rc;
    if (cli_config_read(ctx, &cfg, &path, &err) != 0) {
        rc = cli_fail("%s", err.data);
    } else if (json) {
        rc = print_json(cfg, path);
    } else {
        print_summary(cfg, path);
        rc = LK_EXIT_OK;
    }
    lk_config_free(cfg);
    free(path);
    lk_buf_release(&err);
    return rc;
}

int cmd_config(int argc, char **argv, struct cli_ctx *ctx)
{
    if (argc < 2) {
        fputs(config_usage, stderr);
        return LK_EXIT_USAGE;
    }
    if (cli_is_help(argv[1])) {
        fputs(config_usage, stdout);
        return LK_EXIT_OK;
    }
    /* clap's `help` subcommand: `linkup config help [check]`. */
    if (strcmp(argv[1], "help") == 0) {
        if (argc > 2 && strcmp(argv[2], "check") != 0)
            return cli_usage_error("config", "unrecognized subcommand '%s'", argv[2]);
        fputs(argc > 2 ? usage : config_usage, stdout);
        return LK_EXIT_OK;
    }
    /* clap's words, as for `linkup bogus` and `linkup --bogus`. */
    if (argv[1][0] == '-')
        return cli_usage_error("config", "unexpected argument '%s'", argv[1]);
    if (strcmp(argv[1], "check") != 0)
        return cli_usage_error("config", "unrecognized subcommand '%s'", argv[1]);
    return config_check(argc - 1, argv + 1, ctx);
}
