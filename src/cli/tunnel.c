/*
 * tunnel.c - classifying tunnel data, waiting for the built-in tunnel and
 * reporting the tunnel state.
 *
 * The local server owns the built-in tunnel; the CLI only reads its state
 * from GET /linkup/tunnel (loopback-only admin endpoint, docs/server.md). The
 * server creates its tunnel client before it answers the upsert, so a 404
 * right after a built-in upsert is final: no client will come.
 */
#include "cli/tunnel.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_state.h"
#include "cli/cloudflared.h"
#include "cli/home.h"
#include "cli/http.h"
#include "cli/procs.h"
#include "core/alloc.h"
#include "core/err.h"
#include "core/str.h"
#include "core/url.h"

#define ENV_COUNT_MAX 600000u

static char *str_field(const json_t *obj, const char *key)
{
    const char *v = json_string_value(json_object_get(obj, key));
    return lk_xstrdup(v ? v : "");
}

int cli_tunnel_data_from_upsert(const char *body, size_t len, struct cli_tunnel_data *td)
{
    json_t *root = json_loadb(body ? body : "", len, 0, NULL);
    json_t *data = json_object_get(root, "tunnel_data");
    td->url = str_field(data, "url");
    td->id = str_field(data, "id");
    td->secret = str_field(data, "secret");
    td->account_id = str_field(data, "account_id");
    /* DESIGN §8: built-in data carry "provider":"linkup" and an empty
     * account_id (the local server opens those, and only those); Cloudflare
     * credentials have a non-empty account_id and go to cloudflared. */
    const char *provider = json_string_value(json_object_get(data, "provider"));
    if (td->account_id[0] != '\0')
        td->kind = CLI_TUNNEL_CLOUDFLARE;
    else if (provider && strcmp(provider, "linkup") == 0)
        td->kind = CLI_TUNNEL_BUILTIN;
    else
        td->kind = CLI_TUNNEL_OTHER;
    int rc = json_is_object(data) ? 0 : LK_EPARSE;
    json_decref(root);
    return rc;
}

void cli_tunnel_data_release(struct cli_tunnel_data *td)
{
    free(td->url);
    free(td->id);
    free(td->secret);
    free(td->account_id);
    td->url = td->id = td->secret = td->account_id = NULL;
}

int cli_tunnel_env_count(const char *name, int def)
{
    const char *v = getenv(name);
    uint64_t n = 0;
    if (v == NULL || lk_str_to_u64(lk_str_trim(lk_str_c(v)), ENV_COUNT_MAX, &n) != 0)
        return def;
    return (int)n;
}

/* The URL normalised (trailing "/"), or a copy as given when it does not
 * parse. Owned. */
static char *normalized(const char *url)
{
    struct lk_buf out = LK_BUF_INIT;
    if (lk_url_normalize(url, strlen(url), &out, NULL) != 0) {
        lk_buf_reset(&out);
        lk_buf_adds(&out, url);
    }
    return lk_buf_detach(&out, NULL);
}

/* One answer of GET /linkup/tunnel. */
struct builtin_probe {
    long status; /* 0 when the local server did not answer */
    bool connected;
    char *url;        /* owned, NULL when absent or empty */
    char *last_error; /* owned, NULL when absent, null or empty */
};

static char *nonempty_field(const json_t *obj, const char *key)
{
    const char *v = json_string_value(json_object_get(obj, key));
    return v && *v ? lk_xstrdup(v) : NULL;
}

/* The local server's tunnel client for session (NULL or "": its latest). */
static void probe_builtin(struct builtin_probe *p, const char *session, long timeout_ms)
{
    struct lk_buf url = LK_BUF_INIT;
    struct cli_http_resp resp;
    memset(p, 0, sizeof(*p));
    cli_local_url("/linkup/tunnel", &url);
    if (session != NULL && session[0] != '\0') {
        lk_buf_adds(&url, "?session=");
        cli_add_query_value(&url, session);
    }
    if (cli_http_request("GET", url.data, NULL, NULL, timeout_ms, &resp) == 0) {
        p->status = resp.status;
        json_t *root =
            resp.status == 200 ? json_loadb(resp.body.data, resp.body.len, 0, NULL) : NULL;
        p->connected = json_is_true(json_object_get(root, "connected"));
        p->url = nonempty_field(root, "url");
        p->last_error = nonempty_field(root, "last_error");
        json_decref(root);
    } else {
        struct lk_buf why = LK_BUF_INIT;
        lk_buf_addf(&why, "the local server did not answer: %s", resp.error);
        p->last_error = lk_buf_detach(&why, NULL);
    }
    cli_http_resp_release(&resp);
    lk_buf_release(&url);
}

static void probe_release(struct builtin_probe *p)
{
    free(p->url);
    free(p->last_error);
    memset(p, 0, sizeof(*p));
}

static int builtin_failed(const char *why)
{
    struct lk_buf log = LK_BUF_INIT;
    cli_home_file(CLI_SERVER_STDERR, &log);
    cli_log(LK_LOG_ERROR, "Failed to start tunnel");
    int rc =
        cli_fail("Failed to start: %s (logs: %s)", why ? why : "tunnel did not connect", log.data);
    lk_buf_release(&log);
    return rc;
}

/* Polls the local server until session's tunnel is connected. */
static int wait_builtin(const char *session)
{
    int retries = cli_tunnel_env_count("LINKUP_TUNNEL_CONNECT_RETRIES", 20);
    int interval = cli_tunnel_env_count("LINKUP_TUNNEL_CONNECT_INTERVAL_MS", 500);
    char *why = NULL;
    for (int retry = 0; retry <= retries; retry++) {
        if (retry > 0) {
            cli_log(LK_LOG_INFO, "Waiting for tunnel... retry #%d", retry);
            cli_procs_sleep_ms(interval);
        }
        struct builtin_probe p;
        probe_builtin(&p, session, 1000);
        bool done = p.status == 200 && p.connected;
        bool absent = p.status == 404;
        free(why);
        why = absent ? lk_xstrdup("the local server runs no tunnel client") : p.last_error;
        if (!absent)
            p.last_error = NULL;
        probe_release(&p);
        if (done) {
            free(why);
            /* The line SPEC §7 step 8 logs once the tunnel is up. */
            cli_log(LK_LOG_INFO, "Started!");
            return 0;
        }
        if (absent)
            break;
    }
    int rc = builtin_failed(why);
    free(why);
    return rc;
}

int cli_tunnel_start(struct lk_state *st, const struct cli_tunnel_data *td)
{
    int rc = 0;
    if (td->kind == CLI_TUNNEL_BUILTIN)
        rc = wait_builtin(st->session_name);
    else if (td->kind == CLI_TUNNEL_CLOUDFLARE)
        rc = cli_cloudflared_start(td);
    if (rc != 0)
        return rc;
    if (td->url[0] != '\0') {
        char *url = normalized(td->url);
        lk_state_set_str(&st->tunnel, url);
        free(url);
    }
    if (cli_state_save(st) != 0)
        return cli_fail("Failed to save state file: %s", strerror(errno));
    return 0;
}

void cli_tunnel_status_get(const struct lk_state *st, struct cli_tunnel_status *out)
{
    struct builtin_probe p;
    memset(out, 0, sizeof(*out));
    out->source = "none";
    probe_builtin(&p, st != NULL ? st->session_name : NULL, 1000);
    if (p.status == 200) {
        out->source = "linkup";
        out->connected = p.connected;
        out->last_error = p.last_error;
        p.last_error = NULL;
        if (p.url)
            out->url = normalized(p.url);
    } else if (cli_cloudflared_find() > 0) {
        out->source = "cloudflared";
        out->connected = true;
    }
    if (out->url == NULL && st && st->tunnel)
        out->url = lk_xstrdup(st->tunnel);
    probe_release(&p);
}

void cli_tunnel_status_release(struct cli_tunnel_status *s)
{
    free(s->url);
    free(s->last_error);
    s->url = s->last_error = NULL;
}
