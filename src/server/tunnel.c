/*
 * tunnel.c - the local server's end of the built-in tunnel (DESIGN §8,
 * issue 7; docs/internals/tunnel.md): one lk_tunnel_client per tunneled
 * session (at most LOCAL_MAX_TUNNELS, the latest kept), started when a
 * tunneled upsert the server forwarded returns built-in tunnel data, and the
 * GET /linkup/tunnel state for the CLI (docs/server.md).
 */
#include "net/tunnel.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/session.h"
#include "net/http_server.h"
#include "net/log.h"
#include "server/server.h"
#include "server/worker_client.h"

struct local_tunnel {
    struct lk_tunnel_client *client; /* owned */
    char *session, *url, *secret;    /* owned */
    struct local_server *ls;
    struct local_tunnel *next; /* on ls->tunnels or ls->retiring */
};

static void tunnel_free(struct local_tunnel *t)
{
    if (t == NULL)
        return;
    lk_tunnel_client_free(t->client);
    if (t->secret != NULL)
        OPENSSL_cleanse(t->secret, strlen(t->secret));
    free(t->secret);
    free(t->session);
    free(t->url);
    free(t);
}

static void unlink_from(struct local_tunnel **list, struct local_tunnel *t)
{
    struct local_tunnel **pp = list;
    while (*pp != t)
        pp = &(*pp)->next;
    *pp = t->next;
    t->next = NULL;
}

static void push_front(struct local_tunnel **list, struct local_tunnel *t)
{
    t->next = *list;
    *list = t;
}

static void free_list(struct local_tunnel **list)
{
    while (*list != NULL) {
        struct local_tunnel *t = *list;
        *list = t->next;
        tunnel_free(t);
    }
}

/* The running client for session, or NULL. */
static struct local_tunnel *find(const struct local_server *ls, const char *session)
{
    struct local_tunnel *t = ls->tunnels;
    while (t != NULL && strcmp(t->session, session) != 0)
        t = t->next;
    return t;
}

bool local_tunnel_active(const struct local_server *ls)
{
    return ls->tunnels != NULL || ls->retiring != NULL;
}

void local_tunnel_stop(struct local_server *ls)
{
    free_list(&ls->tunnels);
    free_list(&ls->retiring);
}

static void on_retired(struct lk_tunnel_client *c, void *data)
{
    struct local_tunnel *t = data;
    struct local_server *ls = t->ls;
    (void)c;
    unlink_from(&ls->retiring, t);
    tunnel_free(t);
    if (ls->stopping && !local_tunnel_active(ls) && ls->tunnel_done != NULL)
        ls->tunnel_done(ls);
}

/* Takes t out of service: its tunnel sends GOAWAY and lives on until the
 * requests in it have finished. */
static void retire(struct local_server *ls, struct local_tunnel *t)
{
    unlink_from(&ls->tunnels, t);
    push_front(&ls->retiring, t);
    lk_tunnel_client_shutdown(t->client, on_retired, t);
}

void local_tunnel_shutdown(struct local_server *ls, void (*done)(struct local_server *ls))
{
    ls->tunnel_done = done;
    while (ls->tunnels != NULL)
        retire(ls, ls->tunnels);
}

/* The session is gone: its tunnel closes as a stopping server's does
 * (GOAWAY: the worker routes no new request to it at once), after the
 * requests already in it have finished. */
void local_tunnel_session_deleted(struct local_server *ls, const char *name)
{
    /* While shutting down every tunnel is closing anyway (on_retired). */
    struct local_tunnel *t = ls->stopping ? NULL : find(ls, name);
    if (t == NULL)
        return;
    LK_LOG(INFO, "tunnel for session '%s' stopped", t->session);
    retire(ls, t);
}

static void on_state(struct lk_tunnel_client *c, bool connected, const char *why, void *data)
{
    const struct local_tunnel *t = data;
    (void)c;
    if (connected)
        LK_LOG(INFO, "tunnel for session '%s' is connected (%s)", t->session, t->url);
    else
        LK_LOG(DEBUG, "tunnel for session '%s' is not connected: %s", t->session, why);
}

/* The string member key of obj, or "" when absent or not a string. */
static const char *member(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : "";
}

/* Moves t to the head of ls->tunnels: what GET /linkup/tunnel reports
 * without a session. */
static void to_front(struct local_server *ls, struct local_tunnel *t)
{
    unlink_from(&ls->tunnels, t);
    push_front(&ls->tunnels, t);
}

static bool same_tunnel(const struct local_tunnel *t, const char *url, const char *secret)
{
    return strcmp(t->url, url) == 0 && strcmp(t->secret, secret) == 0;
}

/* Starts a client for (session, url, secret), in place of old, the
 * session's running one (other tunnel data: a new secret, another worker),
 * if any. */
static void start(struct local_server *ls, struct local_tunnel *old, const char *session,
                  const char *url, const char *secret)
{
    struct local_tunnel *t = lk_xcalloc(1, sizeof(*t));
    struct lk_tunnel_client_opts o;
    t->session = lk_xstrdup(session);
    t->url = lk_xstrdup(url);
    t->secret = lk_xstrdup(secret);
    t->ls = ls;
    lk_tunnel_client_opts_init(&o);
    o.worker_url = local_worker_url(ls->worker);
    o.session = session;
    o.secret = secret;
    o.on_state = on_state;
    o.data = t;
    if (old != NULL) {
        LK_LOG(INFO, "tunnel for session '%s' replaced: it closes once its requests have finished",
               session);
        retire(ls, old);
    }
    if (lk_tunnel_client_start(ls->http, &o, &t->client) != 0) {
        LK_LOG(ERROR, "tunnel for session '%s': cannot start a client for the worker URL %s",
               session, o.worker_url);
        tunnel_free(t);
        return;
    }
    LK_LOG(INFO, "tunnel for session '%s': connecting to %s", session, o.worker_url);
    push_front(&ls->tunnels, t);
    /* The oldest past LOCAL_MAX_TUNNELS goes, gracefully. */
    size_t n = 0;
    for (struct local_tunnel *i = ls->tunnels, *next; i != NULL; i = next) {
        next = i->next;
        if (++n > LOCAL_MAX_TUNNELS) {
            LK_LOG(INFO, "tunnel for session '%s' closing: more than %d tunnels", i->session,
                   LOCAL_MAX_TUNNELS);
            retire(ls, i);
        }
    }
}

void local_tunnel_update(struct local_server *ls, const char *session, const char *body, size_t len)
{
    json_t *root = NULL;
    struct lk_buf why = LK_BUF_INIT;
    if (ls->http == NULL || ls->worker == NULL || ls->stopping ||
        lk_json_load(body, len, &root, &why) != 0) {
        lk_buf_release(&why);
        return;
    }
    const json_t *td = json_object_get(root, "tunnel_data");
    struct local_tunnel *cur = find(ls, session);
    const char *url = member(td, "url");
    const char *secret = member(td, "secret");
    bool builtin =
        strcmp(member(td, "provider"), "linkup") == 0 && member(td, "account_id")[0] == '\0';
    if (!builtin)
        LK_LOG(DEBUG, "session '%s': tunnel data are not the built-in tunnel's", session);
    else if (secret[0] == '\0' || url[0] == '\0')
        LK_LOG(WARN, "session '%s': built-in tunnel data without url or secret", session);
    else if (cur == NULL || !same_tunnel(cur, url, secret))
        start(ls, cur, session, url, secret);
    else
        to_front(ls, cur); /* the latest tunneled upsert */
    json_decref(root);
    lk_buf_release(&why);
}

void local_tunnel_respond_state(struct local_server *ls, struct lk_exchange *ex,
                                const char *session)
{
    static const struct lk_http_header ct = { LK_STR("Content-Type"), LK_STR("application/json") };
    static const char none[] = "{\"provider\":null,\"session_name\":null,\"url\":null,"
                               "\"connected\":false,\"last_error\":null}";
    const struct local_tunnel *t = session != NULL ? find(ls, session) : ls->tunnels;
    struct lk_buf out = LK_BUF_INIT;
    if (t == NULL) {
        lk_exchange_respond(ex, 404, &ct, 1, none, sizeof(none) - 1);
        return;
    }
    bool connected = lk_tunnel_client_is_connected(t->client);
    const char *err = lk_tunnel_client_last_error(t->client);
    lk_buf_adds(&out, "{\"provider\":\"linkup\",\"session_name\":");
    lk_json_add_string(&out, t->session, strlen(t->session));
    lk_buf_adds(&out, ",\"url\":");
    lk_json_add_string(&out, t->url, strlen(t->url));
    lk_buf_addf(&out, ",\"connected\":%s,\"last_error\":", connected ? "true" : "false");
    if (connected || err == NULL || err[0] == '\0')
        lk_buf_adds(&out, "null");
    else
        lk_json_add_string(&out, err, strlen(err));
    lk_buf_addch(&out, '}');
    lk_exchange_respond(ex, 200, &ct, 1, out.data, out.len);
    lk_buf_release(&out);
}
