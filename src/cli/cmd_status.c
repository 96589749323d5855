/*
 * cmd_status.c - `linkup status [--json] [--session NAME]` (SPEC §6.5.4).
 *
 * Health probes run in parallel (libcurl multi, 2 s timeout) with the extra
 * headers of SPEC §3.7 so the probe is routed like session traffic. The
 * tunnel URL and whether it is connected (tunnel.h) follow the services, as a
 * last "Tunnel:" line or the "tunnel" object of --json.
 */
#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cli_state.h"
#include "cli/home.h"
#include "cli/http.h"
#include "cli/tunnel.h"
#include "core/alloc.h"
#include "core/rng.h"
#include "core/route.h"

static const char status_usage[] = "View linkup component and service status\n\n"
                                   "Usage: linkup status [OPTIONS]\n\n"
                                   "Options:\n"
                                   "      --json            Print the status as JSON\n"
                                   "      --session <NAME>  Session to show (default: current)\n"
                                   "  -h, --help            Print help\n";

struct service_status {
    char *name;
    const char *component_kind; /* "local" or "remote" */
    char *url;
    struct lk_buf probe_url;
    const char *headers[6];
    char *header_mem[5];
    long status; /* probe result */
    const struct lk_config_health *health;
};

static void os_random(void *ctx, void *buf, size_t n)
{
    (void)ctx;
    while (getrandom(buf, n, 0) != (ssize_t)n) {
    }
}

static bool has_local_host(const char *url)
{
    return strstr(url, "localhost") || strstr(url, "127.0.0.1") || strstr(url, "0.0.0.0");
}

static const char *component_kind(const struct lk_config *cfg, const char *name, const char *loc)
{
    const struct lk_config_service *cs = cfg ? lk_config_find_service(cfg, name) : NULL;
    if (cs == NULL)
        return "remote";
    if (strcmp(cs->local, cs->remote) == 0)
        return has_local_host(cs->local) ? "local" : "remote";
    if (strcmp(loc, cs->remote) == 0)
        return "remote";
    return strcmp(loc, cs->local) == 0 ? "local" : "remote";
}

/* True when ref starts with a URI scheme ("http:", RFC 3986 §3.1). */
static bool has_scheme(const char *ref)
{
    if (!isalpha((unsigned char)ref[0]))
        return false;
    const char *p = ref + 1;
    while (isalnum((unsigned char)*p) || *p == '+' || *p == '-' || *p == '.')
        p++;
    return *p == ':';
}

/* Probe URL (SPEC §6.5.4 step 8): the location joined with health.path by
 * RFC 3986 §5.2.2 reference resolution. loc is a normalised absolute URL
 * ("scheme://authority/path[?query]"). An absolute reference replaces it, a
 * network-path one ("//host/p") keeps only the scheme, an absolute path
 * ("/healthz") the authority, an empty one is loc itself, a query-only one
 * ("?x") loc's path, and a relative path replaces loc's last segment. Dot
 * segments are left for libcurl, which removes them before sending. */
static void probe_url(const char *loc, const struct lk_config_health *h, struct lk_buf *out)
{
    const char *ref = h ? h->path : NULL;
    if (ref == NULL || has_scheme(ref)) {
        lk_buf_adds(out, ref ? ref : loc);
        return;
    }
    const char *scheme_end = strstr(loc, "://");
    if (scheme_end == NULL) {
        lk_buf_adds(out, loc);
        return;
    }
    const char *authority = scheme_end + 3;
    const char *path = authority + strcspn(authority, "/?#");
    const char *query = path + strcspn(path, "?#");
    const char *end = query + strcspn(query, "#");
    const char *keep; /* loc is kept up to here, then sep and ref follow */
    const char *sep = "";
    if (ref[0] == '/' && ref[1] == '/') {
        keep = scheme_end + 1;
    } else if (ref[0] == '/') {
        keep = path;
    } else if (ref[0] == '\0' || ref[0] == '#') {
        keep = end;
    } else if (ref[0] == '?') {
        keep = query;
    } else {
        /* merge (§5.2.3): loc's path up to its last '/', or "/" */
        keep = path;
        for (const char *p = path; p < query; p++) {
            if (*p == '/')
                keep = p + 1;
        }
        sep = keep == path ? "/" : "";
    }
    lk_buf_addf(out, "%.*s%s%s", (int)(keep - loc), loc, sep, ref);
}

static void set_headers(struct service_status *s, const char *session)
{
    struct lk_rng rng = { os_random, NULL };
    struct lk_route_extra x;
    lk_route_extra_init(&x);
    lk_route_extra_headers(lk_buf_str(&s->probe_url), NULL, 0, lk_str_c(session), lk_str_c(s->name),
                           &rng, &x);
    size_t k = 0;
    for (size_t i = 0; i < x.n && k < 5; i++, k++) {
        struct lk_buf h = LK_BUF_INIT;
        lk_buf_addf(&h, "%.*s: %.*s", (int)x.items[i].name.len, x.items[i].name.ptr,
                    (int)x.items[i].value.len, x.items[i].value.ptr);
        s->header_mem[k] = lk_buf_detach(&h, NULL);
        s->headers[k] = s->header_mem[k];
    }
    s->headers[k] = NULL;
    lk_route_extra_release(&x);
}

static const char *status_word(const struct service_status *s, bool json)
{
    bool ok;
    if (s->status == 0)
        return json ? "Error" : "error";
    if (s->health && s->health->has_statuses) {
        ok = false;
        for (size_t i = 0; i < s->health->n_statuses; i++)
            ok = ok || s->health->statuses[i] == s->status;
    } else {
        ok = s->status < 500 || s->status > 599;
    }
    if (ok)
        return json ? "Ok" : "ok";
    return json ? "Error" : "error";
}

static int cmp_services(const void *x, const void *y)
{
    const struct service_status *a = x;
    const struct service_status *b = y;
    int d = strcmp(a->component_kind, b->component_kind);
    return d != 0 ? d : strcmp(a->name, b->name);
}

/* Fills services from GET /linkup/sessions/{target}. Returns the count. */
static size_t load_services(const char *target, const struct lk_config *cfg,
                            struct service_status **out)
{
    struct lk_buf url = LK_BUF_INIT;
    struct cli_http_resp resp;
    lk_buf_adds(&url, "/linkup/sessions/");
    lk_buf_adds(&url, target);
    struct lk_buf full = LK_BUF_INIT;
    cli_local_url(url.data, &full);
    size_t n = 0;
    *out = NULL;
    if (cli_http_request("GET", full.data, NULL, NULL, 5000, &resp) == 0 && resp.status == 200) {
        json_t *root = json_loadb(resp.body.data, resp.body.len, 0, NULL);
        json_t *services = json_object_get(root, "services");
        *out = lk_xcalloc(json_array_size(services) + 1, sizeof(**out));
        for (size_t i = 0; i < json_array_size(services); i++) {
            json_t *sv = json_array_get(services, i);
            const char *name = json_string_value(json_object_get(sv, "name"));
            const char *loc = json_string_value(json_object_get(sv, "location"));
            if (name == NULL || loc == NULL)
                continue;
            struct service_status *s = &(*out)[n++];
            s->name = lk_xstrdup(name);
            s->url = lk_xstrdup(loc);
            s->component_kind = component_kind(cfg, name, loc);
            const struct lk_config_service *cs = cfg ? lk_config_find_service(cfg, name) : NULL;
            s->health = cs ? cs->health : NULL;
            probe_url(loc, s->health, &s->probe_url);
            set_headers(s, target);
        }
        json_decref(root);
    }
    cli_http_resp_release(&resp);
    lk_buf_release(&url);
    lk_buf_release(&full);
    qsort(*out, n, sizeof(**out), cmp_services);
    return n;
}

static void probe_all(struct service_status *s, size_t n)
{
    struct cli_probe *p = lk_xcalloc(n + 1, sizeof(*p));
    for (size_t i = 0; i < n; i++) {
        p[i].url = s[i].probe_url.data;
        p[i].headers = s[i].headers;
    }
    cli_http_probe_all(p, n, 2000);
    for (size_t i = 0; i < n; i++)
        s[i].status = p[i].status;
    free(p);
}

/* {"url": ..., "connected": ...} of the tunnel (DESIGN §2.13). */
static json_t *tunnel_json(const struct cli_tunnel_status *t)
{
    return json_pack("{s:o,s:b}", "url", t->url ? json_string(t->url) : json_null(), "connected",
                     t->connected);
}

static void print_json(const char *session, const struct cli_rows *rows,
                       const struct service_status *s, size_t n, const struct cli_tunnel_status *t)
{
    json_t *root = json_object();
    json_object_set_new(root, "session_name", json_string(session));
    json_t *arr = json_array();
    for (size_t i = 0; i < rows->n; i++) {
        json_t *d = json_array();
        for (size_t j = 0; j < rows->rows[i].n_domains; j++)
            json_array_append_new(d, json_string(rows->rows[i].domains[j]));
        json_array_append_new(arr, json_pack("{s:s,s:s,s:o}", "name", rows->rows[i].name, "kind",
                                             rows->rows[i].kind, "domains", d));
    }
    json_object_set_new(root, "sessions", arr);
    arr = json_array();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(arr, json_pack("{s:s,s:s,s:s,s:s,s:i}", "name", s[i].name, "status",
                                             status_word(&s[i], true), "component_kind",
                                             s[i].component_kind, "url", s[i].url, "priority", 2));
    }
    json_object_set_new(root, "services", arr);
    json_object_set_new(root, "tunnel", tunnel_json(t));
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    printf("%s\n", text ? text : "{}");
    free(text);
    json_decref(root);
}

static void print_line(const struct service_status *s, const char *status)
{
    printf("%-22s %-16s %-8s %s\n", s->name, s->component_kind, status, s->url);
}

static void print_tunnel(const struct cli_tunnel_status *t)
{
    if (t->connected || t->last_error == NULL)
        printf("\nTunnel: %s (%s)\n", t->url ? t->url : "none",
               t->connected ? "connected" : "not connected");
    else
        printf("\nTunnel: %s (not connected: %s)\n", t->url ? t->url : "none", t->last_error);
}

static void print_text(const char *session, const struct cli_rows *rows, struct service_status *s,
                       size_t n)
{
    cli_rows_print(rows, session);
    printf("\n%-22s %-16s %-8s %s\n", "SERVICE NAME", "COMPONENT KIND", "STATUS", "LOCATION");
    /* On a terminal the lines first say "loading" and are rewritten in place. */
    bool live = isatty(STDOUT_FILENO) == 1;
    if (live) {
        for (size_t i = 0; i < n; i++)
            print_line(&s[i], "loading");
        fflush(stdout);
    }
    probe_all(s, n);
    if (live && n > 0)
        printf("\x1b[%zuA", n);
    for (size_t i = 0; i < n; i++) {
        if (live)
            printf("\r\x1b[2K");
        print_line(&s[i], status_word(&s[i], false));
    }
}

struct status_args {
    bool json;
    const char *session;
};

static int run_status(const struct status_args *a)
{
    struct lk_state *st = NULL;
    if (cli_state_load(&st, NULL) != 0)
        return cli_fail("Failed to load local state");
    const char *target = a->session ? a->session : st->session_name;
    struct cli_rows rows = { 0 };
    struct lk_buf url = LK_BUF_INIT;
    struct cli_http_resp resp;
    cli_local_url("/linkup/sessions", &url);
    if (cli_http_request("GET", url.data, NULL, NULL, 5000, &resp) == 0 && resp.status == 200)
        cli_rows_from_sessions_json(resp.body.data, resp.body.len, &rows);
    cli_http_resp_release(&resp);
    lk_buf_release(&url);
    int rc = LK_EXIT_OK;
    bool found = false;
    for (size_t i = 0; i < rows.n; i++)
        found = found || strcmp(rows.rows[i].name, target) == 0;
    if (a->session && !found) {
        rc = cli_fail("Session '%s' not found on local server", a->session);
    } else {
        struct lk_config *cfg = cli_config_try(st->config_path);
        struct service_status *s = NULL;
        size_t n = load_services(target, cfg, &s);
        struct cli_tunnel_status t;
        cli_tunnel_status_get(st, &t);
        if (a->json) {
            probe_all(s, n);
            print_json(target, &rows, s, n, &t);
        } else {
            print_text(target, &rows, s, n);
            print_tunnel(&t);
        }
        cli_tunnel_status_release(&t);
        for (size_t i = 0; i < n; i++) {
            free(s[i].name);
            free(s[i].url);
            lk_buf_release(&s[i].probe_url);
            for (size_t k = 0; k < 5; k++)
                free(s[i].header_mem[k]);
        }
        free(s);
        lk_config_free(cfg);
    }
    cli_rows_release(&rows);
    lk_state_free(st);
    return rc;
}

int cmd_status(int argc, char **argv, struct cli_ctx *ctx)
{
    static const struct cli_opt session_opt = { NULL, "--session", "NAME" };
    struct status_args a = { 0 };
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            fputs(status_usage, stdout);
            return LK_EXIT_OK;
        }
        if (strcmp(argv[i], "--json") == 0) {
            a.json = true;
            continue;
        }
        enum cli_opt_result r = cli_opt_value("status", &session_opt, argc, argv, &i, &a.session);
        if (r == CLI_OPT_ERROR)
            return LK_EXIT_USAGE;
        if (r == CLI_OPT_NO_MATCH)
            return cli_usage_error("status", "unexpected argument '%s'", argv[i]);
    }
    cli_args_done(ctx);
    int rc = cli_home_ensure();
    if (rc != 0)
        return rc;
    if (!cli_local_check(2000)) {
        cli_print_not_running();
        return LK_EXIT_OK;
    }
    return run_status(&a);
}
