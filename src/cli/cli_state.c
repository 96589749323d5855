/*
 * cli_state.c - config and state loading, the upload procedure, env files and
 * session rows shared by the CLI commands.
 */
#include "cli/cli_state.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/config_load.h"
#include "cli/home.h"
#include "cli/http.h"
#include "cli/procs.h"
#include "core/alloc.h"
#include "core/envfile.h"
#include "core/err.h"
#include "proto/http1.h"

#define STATE_MAX_BYTES (16u * 1024u * 1024u)
#define ENV_MAX_BYTES   (16u * 1024u * 1024u)

/* ---- config ---------------------------------------------------------------- */

int cli_config_load(const struct cli_ctx *ctx, struct lk_config **cfg, char **abs_path)
{
    struct lk_buf err = LK_BUF_INIT;
    int rc = 0;
    if (cli_config_read(ctx, cfg, abs_path, &err) != 0)
        rc = cli_fail("%s", err.data);
    lk_buf_release(&err);
    return rc;
}

struct lk_config *cli_config_try(const char *path)
{
    struct lk_buf err = LK_BUF_INIT;
    struct lk_config *cfg = NULL;
    if (path)
        (void)cli_config_load_file(path, &cfg, &err);
    lk_buf_release(&err);
    return cfg;
}

/* ---- state ------------------------------------------------------------------ */

int cli_state_load(struct lk_state **out, struct lk_buf *err)
{
    struct lk_buf path = LK_BUF_INIT, text = LK_BUF_INIT;
    cli_home_file(CLI_STATE_FILE, &path);
    int rc = cli_read_file(path.data, &text, STATE_MAX_BYTES);
    if (rc != 0 && err) {
        lk_buf_adds(err, "Failed to read state file on ");
        lk_config_add_quoted(err, path.data);
    }
    if (rc == 0 && lk_state_parse(text.data, text.len, out, NULL) != 0) {
        rc = LK_EPARSE;
        if (err)
            lk_buf_adds(err, "Failed to parse state file");
    }
    lk_buf_release(&path);
    lk_buf_release(&text);
    return rc;
}

int cli_state_save(const struct lk_state *st)
{
    struct lk_buf path = LK_BUF_INIT, text = LK_BUF_INIT;
    cli_home_file(CLI_STATE_FILE, &path);
    lk_state_emit(st, &text);
    int rc = cli_write_file(path.data, text.data, text.len);
    lk_buf_release(&path);
    lk_buf_release(&text);
    return rc;
}

static void copy_service(struct lk_state_service *sv, const struct lk_config_service *cs)
{
    lk_state_set_str(&sv->name, cs->name);
    lk_state_set_str(&sv->remote, cs->remote);
    lk_state_set_str(&sv->local, cs->local);
    lk_state_set_str(&sv->directory, cs->directory);
    for (size_t j = 0; j < cs->n_rewrites; j++)
        lk_state_add_rewrite(sv, lk_regex_source(cs->rewrites[j].source), cs->rewrites[j].target);
    sv->has_rewrites = cs->has_rewrites;
    if (cs->health) {
        sv->has_health = true;
        lk_state_set_str(&sv->health.path, cs->health->path);
        for (size_t j = 0; j < cs->health->n_statuses; j++)
            lk_state_add_status(sv, cs->health->statuses[j]);
        sv->health.has_statuses = cs->health->has_statuses;
    }
}

struct lk_state *cli_state_from_config(const struct lk_config *cfg, const char *abs_path)
{
    struct lk_state *st = lk_state_new();
    lk_state_set_str(&st->worker_url, cfg->worker_url);
    lk_state_set_str(&st->worker_token, cfg->worker_token);
    lk_state_set_str(&st->config_path, abs_path);
    lk_state_set_str(&st->tunnel, "http://tunnel-not-yet-set/");
    for (size_t i = 0; i < cfg->n_cache_routes; i++)
        lk_state_add_cache_route(st, lk_regex_source(cfg->cache_routes[i]));
    st->has_cache_routes = cfg->has_cache_routes;
    for (size_t i = 0; i < cfg->n_domains; i++) {
        const struct lk_config_domain *cd = &cfg->domains[i];
        struct lk_state_domain *d = lk_state_add_domain(st, cd->domain, cd->default_service);
        for (size_t j = 0; j < cd->n_routes; j++)
            lk_state_add_route(d, lk_regex_source(cd->routes[j].path), cd->routes[j].service);
        d->has_routes = cd->has_routes;
    }
    for (size_t i = 0; i < cfg->n_services; i++)
        copy_service(lk_state_add_service(st), &cfg->services[i]);
    return st;
}

void cli_random_token(char out[17])
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    size_t i = 0;
    while (i < 16) {
        unsigned char bytes[32];
        if (getrandom(bytes, sizeof(bytes), 0) != (ssize_t)sizeof(bytes))
            continue;
        /* 62 * 4 = 248: reject bytes >= 248 so every character is uniform. */
        for (size_t j = 0; j < sizeof(bytes) && i < 16; j++) {
            if (bytes[j] < 248)
                out[i++] = alphabet[bytes[j] % 62];
        }
    }
    out[16] = '\0';
}

/* ---- upload (SPEC §6.5.13) -------------------------------------------------- */

static int post_upsert(const char *body, struct cli_http_resp *resp)
{
    struct lk_buf url = LK_BUF_INIT;
    cli_local_url("/linkup/sessions/tunneled", &url);
    int rc = cli_http_request("POST", url.data, NULL, body, 30000, resp);
    lk_buf_release(&url);
    return rc;
}

/* SPEC §6.5.13 step 2; the 409 retry (step 3) is Unnamed as well. The
 * original retries without a token, so the new session belonged to
 * `preview_session`: with DESIGN §2.1's real 409 every later Named upload of
 * this state would conflict again and move to yet another name, and anyone
 * could write to the session and be handed its tunnel secret. The retry keeps
 * the state's token, which owns the new name from then on. */
static void upsert_body(const struct lk_state *st, bool unnamed_retry, struct lk_buf *out)
{
    struct lk_state_upsert_opts o = { 0 };
    if (!unnamed_retry && st->session_name[0] != '\0') {
        o.named = true;
        o.desired_name = st->session_name;
        o.token = st->session_token;
    } else {
        o.name_kind = "animal";
        o.token = st->session_token[0] == '\0' ? NULL : st->session_token;
    }
    lk_state_upsert_json(st, &o, out);
}

/* Reads session_name (SPEC §6.5.13 step 4). The tunnel URL is not taken
 * here: only start stores it, and only when the state asks for a tunnel
 * (§6.5.1 step 7, cli_tunnel_start()). */
static int apply_response(struct lk_state *st, const struct lk_buf *body, struct lk_buf *err)
{
    json_t *root = json_loadb(body->data, body->len, 0, NULL);
    const char *name = json_string_value(json_object_get(root, "session_name"));
    if (name == NULL) {
        lk_buf_addf(err, "unexpected response from the local server: %s", body->data);
        json_decref(root);
        return LK_EPARSE;
    }
    lk_state_set_str(&st->session_name, name);
    lk_state_set_str(&st->kind, "tunneled");
    json_decref(root);
    return 0;
}

int cli_upload(struct lk_state *st, struct lk_buf *answer, struct lk_buf *err)
{
    struct lk_buf body = LK_BUF_INIT;
    struct cli_http_resp resp;
    cli_log(LK_LOG_INFO, "Uploading state to server...");
    upsert_body(st, false, &body);
    int rc = post_upsert(body.data, &resp);
    if (rc == 0 && resp.status == 409) {
        cli_http_resp_release(&resp);
        lk_buf_reset(&body);
        upsert_body(st, true, &body);
        rc = post_upsert(body.data, &resp);
    }
    if (rc != 0) {
        lk_buf_addf(err, "failed to reach the local server at %s: %s", cli_local_addr(),
                    resp.error);
    } else if (resp.status < 200 || resp.status > 299) {
        lk_buf_addf(err, "request failed with status %ld %s: %s", resp.status,
                    lk_http1_status_reason((int)resp.status), resp.body.data);
        rc = LK_EIO;
    } else {
        cli_log(LK_LOG_INFO, "Updating local state file...");
        rc = apply_response(st, &resp.body, err);
        if (rc == 0 && answer)
            lk_buf_add(answer, resp.body.data, resp.body.len);
        if (rc == 0 && cli_state_save(st) != 0) {
            lk_buf_addf(err, "Failed to save state file: %s", strerror(errno));
            rc = LK_EIO;
        }
    }
    cli_http_resp_release(&resp);
    lk_buf_release(&body);
    return rc;
}

/* ---- env files (SPEC §6.6) -------------------------------------------------- */

static void service_dir(const struct lk_state *st, const struct lk_state_service *sv,
                        struct lk_buf *out)
{
    const char *slash = strrchr(st->config_path, '/');
    if (sv->directory[0] == '/')
        lk_buf_adds(out, sv->directory);
    else if (slash)
        lk_buf_addf(out, "%.*s/%s", (int)(slash - st->config_path), st->config_path, sv->directory);
    else
        lk_buf_adds(out, sv->directory);
}

static int inject_one(const char *dir, const char *name, const struct lk_state_service *sv,
                      struct lk_buf *err)
{
    struct lk_str target_name;
    if (!lk_envfile_target_name(lk_str_c(name), &target_name))
        return 1;
    struct lk_buf src = LK_BUF_INIT, dst = LK_BUF_INIT, target = LK_BUF_INIT, out = LK_BUF_INIT;
    struct lk_buf path = LK_BUF_INIT;
    lk_buf_addf(&path, "%s/%s", dir, name);
    lk_buf_addf(&target, "%s/%.*s", dir, (int)target_name.len, target_name.ptr);
    /* SPEC §6.6 steps 4 and 6: a target that can be read is skipped when it
     * holds a block; the block is appended, so a target that cannot be read
     * (missing, write-only, a directory) is the append's to report. */
    int rc = 0;
    if (cli_read_file(target.data, &dst, ENV_MAX_BYTES) == 0 &&
        lk_envfile_has_block(lk_buf_str(&dst)))
        goto out;
    rc = cli_read_file(path.data, &src, ENV_MAX_BYTES);
    if (rc != 0) {
        lk_buf_addf(err, "Failed to read service '%s' dev env file ", sv->directory);
        lk_config_add_quoted(err, path.data);
        goto out;
    }
    lk_envfile_inject(lk_str_c(""), lk_buf_str(&src), &out);
    rc = cli_append_file(target.data, out.data, out.len);
    if (rc != 0)
        lk_buf_addf(err, "Failed to write env file %s: %s", target.data, strerror(errno));
out:
    lk_buf_release(&src);
    lk_buf_release(&dst);
    lk_buf_release(&target);
    lk_buf_release(&out);
    lk_buf_release(&path);
    return rc;
}

static int inject_service(const struct lk_state *st, const struct lk_state_service *sv,
                          struct lk_buf *err)
{
    struct lk_buf dir = LK_BUF_INIT;
    service_dir(st, sv, &dir);
    DIR *d = opendir(dir.data);
    int rc = 0, found = 0;
    if (d == NULL) {
        lk_buf_adds(err, "Failed to read service directory ");
        lk_config_add_quoted(err, dir.data);
        lk_buf_release(&dir);
        return LK_EIO;
    }
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        int one = inject_one(dir.data, e->d_name, sv, err);
        if (one == 0)
            found++;
        else if (one < 0)
            rc = one;
    }
    closedir(d);
    if (rc == 0 && found == 0) {
        lk_buf_adds(err, "No dev env files found on ");
        lk_config_add_quoted(err, sv->directory);
        rc = LK_ENOTFOUND;
    }
    lk_buf_release(&dir);
    return rc;
}

int cli_env_inject(const struct lk_state *st, struct lk_buf *err)
{
    for (size_t i = 0; i < st->n_services; i++) {
        if (st->services[i].directory == NULL)
            continue;
        int rc = inject_service(st, &st->services[i], err);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int clear_file(const char *path)
{
    struct lk_buf text = LK_BUF_INIT, out = LK_BUF_INIT;
    int rc = cli_read_file(path, &text, ENV_MAX_BYTES);
    if (rc == 0 && lk_envfile_clear(lk_buf_str(&text), &out))
        rc = cli_rewrite_file(path, out.data, out.len);
    lk_buf_release(&text);
    lk_buf_release(&out);
    return rc;
}

void cli_env_clear(const struct lk_state *st)
{
    for (size_t i = 0; i < st->n_services; i++) {
        const struct lk_state_service *sv = &st->services[i];
        if (sv->directory == NULL)
            continue;
        struct lk_buf dir = LK_BUF_INIT;
        service_dir(st, sv, &dir);
        DIR *d = opendir(dir.data);
        if (d == NULL) {
            /* SPEC §6.5.2: on stdout, and the same words as start's (§6.6). */
            struct lk_buf msg = LK_BUF_INIT;
            lk_buf_adds(&msg, "Failed to read service directory ");
            lk_config_add_quoted(&msg, dir.data);
            printf("Could not remove env for service %s: %s\n", sv->name, msg.data);
            lk_buf_release(&msg);
        }
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL) {
            if (strncmp(e->d_name, ".env", 4) != 0)
                continue;
            struct lk_buf path = LK_BUF_INIT;
            lk_buf_addf(&path, "%s/%s", dir.data, e->d_name);
            if (clear_file(path.data) != 0)
                printf("Could not remove env for service %s: %s: %s\n", sv->name, path.data,
                       strerror(errno));
            lk_buf_release(&path);
        }
        if (d)
            closedir(d);
        lk_buf_release(&dir);
    }
}

/* ---- session rows ------------------------------------------------------------ */

static char *keep(struct cli_rows *rows, char *s)
{
    rows->strings = lk_xrealloc(rows->strings, (rows->n_strings + 1) * sizeof(char *));
    rows->strings[rows->n_strings++] = s;
    return s;
}

void cli_rows_add(struct cli_rows *rows, const char *name, const char *kind,
                  const char *const *domains, size_t n_domains)
{
    char **urls = lk_xcalloc(n_domains ? n_domains : 1, sizeof(char *));
    size_t n = cli_table_domain_urls(name, domains, n_domains, urls);
    for (size_t i = 0; i < n; i++)
        keep(rows, urls[i]);
    keep(rows, (char *)urls);
    rows->rows = lk_xrealloc(rows->rows, (rows->n + 1) * sizeof(*rows->rows));
    rows->rows[rows->n++] =
        (struct cli_session_row){ keep(rows, lk_xstrdup(name)), keep(rows, lk_xstrdup(kind)),
                                  (const char *const *)urls, n };
}

void cli_rows_from_sessions_json(const char *json, size_t len, struct cli_rows *rows)
{
    json_t *root = json_loadb(json, len, 0, NULL);
    json_t *sessions = json_object_get(root, "sessions");
    const char *name;
    json_t *s;
    json_object_foreach(sessions, name, s)
    {
        const char *kind = json_string_value(json_object_get(s, "kind"));
        json_t *domains = json_object_get(s, "domains");
        size_t n = json_array_size(domains);
        const char **names = lk_xcalloc(n ? n : 1, sizeof(char *));
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            const char *d =
                json_string_value(json_object_get(json_array_get(domains, i), "domain"));
            if (d)
                names[k++] = d;
        }
        cli_rows_add(rows, name, kind ? kind : "tunneled", names, k);
        free(names);
    }
    cli_table_sort(rows->rows, rows->n);
    json_decref(root);
}

void cli_rows_release(struct cli_rows *rows)
{
    for (size_t i = 0; i < rows->n_strings; i++)
        free(rows->strings[i]);
    free(rows->strings);
    free(rows->rows);
    memset(rows, 0, sizeof(*rows));
}

void cli_rows_print(const struct cli_rows *rows, const char *current)
{
    struct lk_buf out = LK_BUF_INIT;
    cli_table_render(rows->rows, rows->n, current, cli_use_color(), &out);
    fwrite(out.data ? out.data : "", 1, out.len, stdout);
    lk_buf_release(&out);
}

char *cli_mask(const char *secret)
{
    struct lk_buf out = LK_BUF_INIT;
    lk_config_mask_secret(secret ? secret : "", &out);
    return lk_buf_detach(&out, NULL);
}

pid_t cli_local_server_find(void)
{
    struct lk_buf path = LK_BUF_INIT;
    struct lk_buf certs = LK_BUF_INIT;
    cli_home_file(CLI_SERVER_PID_FILE, &path);
    /* The certs dir of its command line (cmd_start.c, SPEC §6.4) keeps
     * another Linkup directory's server out. */
    cli_home_file("certs", &certs);
    pid_t pid = cli_procs_find_or_scan(path.data, CLI_LOCAL_SERVER_ID, "--certs-dir", certs.data);
    lk_buf_release(&certs);
    lk_buf_release(&path);
    return pid;
}

bool cli_stop_local_server(void)
{
    struct lk_buf pid_path = LK_BUF_INIT;
    cli_home_file(CLI_SERVER_PID_FILE, &pid_path);
    pid_t pid = cli_local_server_find();
    /* Its drain (5 s at most) and then its tunnel's close (2 s more at
     * most, docs/internals/tunnel.md "Graceful close") before SIGKILL. */
    if (pid > 0)
        cli_procs_stop(pid, 8000);
    /* A pid file that names no server of ours is stale: drop it. So is the
     * address start recorded: nothing of ours listens there now, and the
     * port may go to another Linkup directory's server (docs/cli.md). */
    unlink(pid_path.data);
    lk_buf_reset(&pid_path);
    cli_home_file(CLI_SERVER_ADDR_FILE, &pid_path);
    unlink(pid_path.data);
    cli_local_addr_reset();
    lk_buf_release(&pid_path);
    return pid > 0;
}

void cli_print_not_running(void)
{
    if (cli_use_color())
        printf("\033[33m%s\033[0m\n", CLI_NOT_RUNNING);
    else
        printf("%s\n", CLI_NOT_RUNNING);
}
