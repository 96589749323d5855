/*
 * cmd_sessions.c - `linkup sessions create-preview` (SPEC §6.5.6, DESIGN
 * §2.5) and `linkup sessions list [--json]` (DESIGN §2.14).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_state.h"
#include "cli/home.h"
#include "cli/http.h"
#include "core/alloc.h"
#include "proto/http1.h"

static const char sessions_usage[] = "Manage sessions\n\n"
                                     "Usage: linkup sessions <COMMAND>\n\n"
                                     "Commands:\n"
                                     "  create-preview  Create a preview session\n"
                                     "  list            List the sessions of the local server\n"
                                     "  help            Print this message or the help of the "
                                     "given subcommand(s)\n\n"
                                     "Options:\n"
                                     "  -h, --help  Print help\n";

static const char preview_usage[] =
    "Create a preview session\n\n"
    "Usage: linkup sessions create-preview [OPTIONS] [NAME] [SERVICES]...\n\n"
    "Arguments:\n"
    "  [NAME]         Optional name for the preview session\n"
    "  [SERVICES]...  <service>=<url> pairs to override.\n\n"
    "Options:\n"
    "      --print-request    Print the request body instead of sending it.\n"
    "  -c, --config <CONFIG>  Path to config file, overriding environment variable.\n"
    "  -h, --help             Print help\n";

static const char list_usage[] = "List the sessions of the local server\n\n"
                                 "Usage: linkup sessions list [OPTIONS]\n\n"
                                 "Options:\n"
                                 "      --json  Print the sessions as JSON\n"
                                 "  -h, --help  Print help\n";

struct pair {
    char *service;
    char *url; /* normalised */
};

struct preview_args {
    const char *name;
    struct pair *pairs;
    size_t n_pairs;
    bool print_request;
};

static int parse_pair(const char *arg, struct preview_args *a)
{
    const char *eq = strchr(arg, '=');
    if (eq == NULL || eq == arg)
        return cli_usage_error("sessions create-preview",
                               "Service tuple must be of the form <service>=<url>");
    struct lk_buf norm = LK_BUF_INIT;
    const char *why = NULL;
    if (lk_url_normalize(eq + 1, strlen(eq + 1), &norm, &why) != 0) {
        lk_buf_release(&norm);
        return cli_usage_error("sessions create-preview", "Invalid URL '%s': %s", eq + 1,
                               why ? why : "invalid URL");
    }
    a->pairs[a->n_pairs].service = lk_xstrndup(arg, (size_t)(eq - arg));
    a->pairs[a->n_pairs].url = lk_buf_detach(&norm, NULL);
    a->n_pairs++;
    return 0;
}

static int parse_preview(int argc, char **argv, struct preview_args *a, bool *help)
{
    a->pairs = lk_xcalloc((size_t)argc + 1, sizeof(*a->pairs));
    bool first = true;
    bool positional = false; /* after "--", every argument is (clap) */
    for (int i = 1; i < argc; i++) {
        if (!positional && strcmp(argv[i], "--") == 0) {
            positional = true;
            continue;
        }
        if (!positional && cli_is_help(argv[i])) {
            *help = true;
            return 0;
        }
        if (!positional && strcmp(argv[i], "--print-request") == 0) {
            a->print_request = true;
            continue;
        }
        if (!positional && argv[i][0] == '-')
            return cli_usage_error("sessions create-preview", "unexpected argument '%s'", argv[i]);
        /* DESIGN §2.5: a first positional with '=' is a pair, not a name. */
        if (first && strchr(argv[i], '=') == NULL) {
            a->name = argv[i];
            first = false;
            continue;
        }
        first = false;
        int rc = parse_pair(argv[i], a);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static const char *override_location(void *ctx, const struct lk_state_service *sv)
{
    const struct preview_args *a = ctx;
    for (size_t i = 0; i < a->n_pairs; i++) {
        if (strcmp(a->pairs[i].service, sv->name) == 0)
            return a->pairs[i].url;
    }
    return NULL;
}

static int send_preview(const struct lk_state *st, const char *body, struct lk_buf *name)
{
    struct lk_buf url = LK_BUF_INIT, auth = LK_BUF_INIT;
    size_t len = strlen(st->worker_url);
    lk_buf_addf(&url, "%.*s/linkup/v2/sessions/preview",
                (int)(len && st->worker_url[len - 1] == '/' ? len - 1 : len), st->worker_url);
    lk_buf_addf(&auth, "Authorization: Bearer %s", st->worker_token);
    const char *headers[] = { auth.data, "x-linkup-version: " LK_VERSION, NULL };
    struct cli_http_resp resp;
    int rc;
    if (cli_http_request("POST", url.data, headers, body, 30000, &resp) != 0) {
        rc = cli_fail("Failed to reach the worker at %s: %s", url.data, resp.error);
    } else if (resp.status < 200 || resp.status > 299) {
        rc = cli_fail("request failed with status %ld %s: %s", resp.status,
                      lk_http1_status_reason((int)resp.status), resp.body.data);
    } else {
        json_t *root = json_loadb(resp.body.data, resp.body.len, 0, NULL);
        const char *n = json_string_value(json_object_get(root, "session_name"));
        rc = n ? 0 : cli_fail("unexpected response from the worker: %s", resp.body.data);
        if (n)
            lk_buf_adds(name, n);
        json_decref(root);
    }
    cli_http_resp_release(&resp);
    lk_buf_release(&url);
    lk_buf_release(&auth);
    return rc;
}

static void print_preview(const struct lk_config *cfg, const char *name)
{
    struct cli_rows rows = { 0 };
    const char **domains = lk_xcalloc(cfg->n_domains + 1, sizeof(char *));
    for (size_t i = 0; i < cfg->n_domains; i++)
        domains[i] = cfg->domains[i].domain;
    cli_rows_add(&rows, name, "preview", domains, cfg->n_domains);
    cli_rows_print(&rows, NULL);
    free(domains);
    cli_rows_release(&rows);
}

static int run_preview(const struct preview_args *a, struct cli_ctx *ctx)
{
    struct lk_config *cfg = NULL;
    char *abs_path = NULL;
    int rc = cli_config_load(ctx, &cfg, &abs_path);
    if (rc != 0)
        return rc;
    struct lk_state *st = cli_state_from_config(cfg, abs_path);
    struct lk_state_upsert_opts o = { .override = override_location,
                                      .override_ctx = (void *)(uintptr_t)a };
    if (a->name) {
        o.named = true;
        o.desired_name = a->name;
        o.token = "preview_session";
    } else {
        o.name_kind = "six_char";
    }
    struct lk_buf body = LK_BUF_INIT, name = LK_BUF_INIT;
    lk_state_upsert_json(st, &o, &body);
    if (a->print_request) {
        printf("%s\n", body.data);
    } else {
        rc = send_preview(st, body.data, &name);
        if (rc == 0)
            print_preview(cfg, name.data);
    }
    lk_buf_release(&body);
    lk_buf_release(&name);
    lk_state_free(st);
    lk_config_free(cfg);
    free(abs_path);
    return rc;
}

static int create_preview(int argc, char **argv, struct cli_ctx *ctx)
{
    struct preview_args a = { 0 };
    bool help = false;
    int rc = parse_preview(argc, argv, &a, &help);
    if (rc == 0 && help)
        fputs(preview_usage, stdout);
    else if (rc == 0) {
        cli_args_done(ctx);
        rc = run_preview(&a, ctx);
    }
    for (size_t i = 0; i < a.n_pairs; i++) {
        free(a.pairs[i].service);
        free(a.pairs[i].url);
    }
    free(a.pairs);
    return rc;
}

static void print_rows_json(const struct cli_rows *rows)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < rows->n; i++) {
        json_t *d = json_array();
        for (size_t j = 0; j < rows->rows[i].n_domains; j++)
            json_array_append_new(d, json_string(rows->rows[i].domains[j]));
        json_array_append_new(arr, json_pack("{s:s,s:s,s:o}", "name", rows->rows[i].name, "kind",
                                             rows->rows[i].kind, "domains", d));
    }
    char *text = json_dumps(arr, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    printf("%s\n", text ? text : "[]");
    free(text);
    json_decref(arr);
}

static int list_sessions(int argc, char **argv, struct cli_ctx *ctx)
{
    bool as_json = false;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            fputs(list_usage, stdout);
            return LK_EXIT_OK;
        }
        if (strcmp(argv[i], "--json") != 0)
            return cli_usage_error("sessions list", "unexpected argument '%s'", argv[i]);
        as_json = true;
    }
    cli_args_done(ctx);
    struct lk_buf url = LK_BUF_INIT;
    struct cli_http_resp resp;
    cli_local_url("/linkup/sessions", &url);
    int rc = LK_EXIT_OK;
    if (cli_http_request("GET", url.data, NULL, NULL, 5000, &resp) != 0) {
        cli_print_not_running();
    } else if (resp.status != 200) {
        rc = cli_fail("request failed with status %ld %s: %s", resp.status,
                      lk_http1_status_reason((int)resp.status), resp.body.data);
    } else {
        struct cli_rows rows = { 0 };
        cli_rows_from_sessions_json(resp.body.data, resp.body.len, &rows);
        if (as_json)
            print_rows_json(&rows);
        else
            cli_rows_print(&rows, NULL);
        cli_rows_release(&rows);
    }
    cli_http_resp_release(&resp);
    lk_buf_release(&url);
    return rc;
}

int cmd_sessions(int argc, char **argv, struct cli_ctx *ctx)
{
    if (argc < 2) {
        fputs(sessions_usage, stderr);
        return LK_EXIT_USAGE;
    }
    if (cli_is_help(argv[1])) {
        fputs(sessions_usage, stdout);
        return LK_EXIT_OK;
    }
    /* clap's `help` subcommand: `linkup sessions help [create-preview|list]`. */
    if (strcmp(argv[1], "help") == 0) {
        const char *text = sessions_usage;
        if (argc > 2 && strcmp(argv[2], "create-preview") == 0)
            text = preview_usage;
        else if (argc > 2 && (strcmp(argv[2], "list") == 0 || strcmp(argv[2], "ls") == 0))
            text = list_usage;
        else if (argc > 2)
            return cli_usage_error("sessions", "unrecognized subcommand '%s'", argv[2]);
        fputs(text, stdout);
        return LK_EXIT_OK;
    }
    int rc = cli_home_ensure();
    if (rc != 0)
        return rc;
    if (strcmp(argv[1], "create-preview") == 0)
        return create_preview(argc - 1, argv + 1, ctx);
    if (strcmp(argv[1], "list") == 0 || strcmp(argv[1], "ls") == 0)
        return list_sessions(argc - 1, argv + 1, ctx);
    return cli_usage_error("sessions", "unrecognized subcommand '%s'", argv[1]);
}
