/*
 * cmd_route.c - `linkup route <local|remote> [SERVICE_NAMES]... [-a|--all]`
 * (SPEC §6.5.3).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_state.h"
#include "cli/home.h"
#include "cli/http.h"
#include "core/alloc.h"

static const char route_usage[] =
    "Route session traffic to a local or remote service\n\n"
    "Usage: linkup route [OPTIONS] <TARGET> [SERVICE_NAMES]...\n\n"
    "Arguments:\n"
    "  <TARGET>            [possible values: local, remote]\n"
    "  [SERVICE_NAMES]...  Names of the services to route\n\n"
    "Options:\n"
    "  -a, --all   Route all services. Cannot be used with SERVICE_NAMES.\n"
    "  -h, --help  Print help\n";

struct route_args {
    enum lk_state_target target;
    bool all;
    char **names;
    size_t n_names;
};

static int parse_args(int argc, char **argv, struct route_args *a, bool *help)
{
    const char *target = NULL;
    bool positional = false; /* after "--", every argument is (clap) */
    a->names = lk_xcalloc((size_t)argc, sizeof(char *));
    for (int i = 1; i < argc; i++) {
        if (!positional && strcmp(argv[i], "--") == 0) {
            positional = true;
            continue;
        }
        if (!positional && cli_is_help(argv[i])) {
            *help = true;
            return 0;
        }
        if (!positional && (strcmp(argv[i], "-a") == 0 || strcmp(argv[i], "--all") == 0))
            a->all = true;
        else if (!positional && argv[i][0] == '-')
            return cli_usage_error("route", "unexpected argument '%s'", argv[i]);
        else if (target == NULL)
            target = argv[i];
        else
            a->names[a->n_names++] = argv[i];
    }
    /* clap's list: one line per missing argument. */
    if (target == NULL)
        return cli_usage_error("route",
                               "the following required arguments were not provided:\n"
                               "  <TARGET>%s",
                               a->all ? "" : "\n  <SERVICE_NAMES>...");
    if (strcmp(target, "local") != 0 && strcmp(target, "remote") != 0)
        return cli_usage_error(
            "route", "invalid value '%s' for '<TARGET>' [possible values: local, remote]", target);
    a->target = strcmp(target, "local") == 0 ? LK_TARGET_LOCAL : LK_TARGET_REMOTE;
    if (a->all && a->n_names > 0)
        return cli_usage_error("route",
                               "the argument '--all' cannot be used with '[SERVICE_NAMES]...'");
    if (!a->all && a->n_names == 0)
        return cli_usage_error("route", "the following required arguments were not provided:\n"
                                        "  <SERVICE_NAMES>...");
    return 0;
}

static int cmp_names(const void *x, const void *y)
{
    const struct lk_state_service *const *a = x;
    const struct lk_state_service *const *b = y;
    return strcmp((*a)->name, (*b)->name);
}

static void print_changes(const struct lk_state *st, struct lk_state_service **changed, size_t n)
{
    size_t width = 0;
    for (size_t i = 0; i < n; i++) {
        if (strlen(changed[i]->name) > width)
            width = strlen(changed[i]->name);
    }
    qsort(changed, n, sizeof(*changed), cmp_names);
    printf("\nSession: %s\n", st->session_name);
    for (size_t i = 0; i < n; i++)
        printf("  %-*s  ->  %s\n", (int)width, changed[i]->name, lk_state_service_url(changed[i]));
}

/* Applies the routing; returns the changed services (owned array) or NULL
 * after reporting an unknown name. */
static struct lk_state_service **apply(struct lk_state *st, const struct route_args *a, size_t *n)
{
    struct lk_state_service **changed =
        lk_xcalloc(st->n_services + a->n_names + 1, sizeof(*changed));
    *n = 0;
    if (a->all) {
        for (size_t i = 0; i < st->n_services; i++)
            changed[(*n)++] = &st->services[i];
    }
    for (size_t i = 0; i < a->n_names; i++) {
        struct lk_state_service *sv = lk_state_find_service(st, lk_str_c(a->names[i]));
        if (sv == NULL) {
            cli_fail("Service '%s' does not exist", a->names[i]);
            free(changed);
            return NULL;
        }
        bool dup = false;
        for (size_t j = 0; j < *n; j++)
            dup = dup || changed[j] == sv;
        if (!dup)
            changed[(*n)++] = sv;
    }
    for (size_t i = 0; i < *n; i++)
        changed[i]->current = a->target;
    return changed;
}

static int run_route(const struct route_args *a)
{
    struct lk_state *st = NULL;
    struct lk_buf err = LK_BUF_INIT;
    int rc = LK_EXIT_FAIL;
    if (cli_state_load(&st, &err) != 0) {
        rc = cli_fail("%s", err.data);
        goto out;
    }
    size_t n = 0;
    struct lk_state_service **changed = apply(st, a, &n);
    if (changed == NULL)
        goto out;
    if (cli_upload(st, NULL, &err) != 0) {
        rc = cli_fail("%s", err.data);
    } else {
        print_changes(st, changed, n);
        rc = LK_EXIT_OK;
    }
    free(changed);
out:
    lk_state_free(st);
    lk_buf_release(&err);
    return rc;
}

int cmd_route(int argc, char **argv, struct cli_ctx *ctx)
{
    struct route_args a = { 0 };
    bool help = false;
    int rc = parse_args(argc, argv, &a, &help);
    if (rc == 0 && help)
        fputs(route_usage, stdout);
    if (rc == 0 && !help) {
        cli_args_done(ctx);
        rc = cli_home_ensure();
    }
    if (rc == 0 && !help) {
        if (!cli_local_check(2000))
            cli_print_not_running();
        else
            rc = run_route(&a);
    }
    free(a.names);
    return rc;
}
