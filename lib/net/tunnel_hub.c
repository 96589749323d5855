/*
 * tunnel_hub.c - the worker's side of the built-in tunnel: the endpoint that
 * turns an authenticated GET /linkup/v2/tunnel into a tunnel, and the map of
 * live tunnels by session that the proxy path asks for a connector.
 *
 * The map is a plain list: a worker holds one entry per connected developer,
 * and a lookup is a handful of string compares. It is keyed by tunnel
 * hostname, i.e. by session name compared case-insensitively (ASCII): the
 * proxy path reads the name back from a host, which clients and URL parsers
 * lower-case. So at most one entry exists per hostname. A newer connection
 * for the same session replaces the older one (the local server reconnects
 * before the worker may have noticed the old connection die); a session
 * that differs only in case from the live one ("Big-Cow" vs "big-cow") is
 * refused with 409 while that tunnel is up, since replacing it would make
 * the two local servers take the hostname from each other forever.
 *
 * A local server that shuts down sends GOAWAY: its tunnel leaves the map at
 * once (the session is not connected for new requests, and a restarted
 * local server's new tunnel replaces nothing) but stays on a second list
 * until the requests in flight on it have finished and it closes. A worker
 * that shuts down does the same to every tunnel and sends the GOAWAY itself
 * (lk_tunnel_hub_go_away), so the local servers reconnect at once.
 */
#include <event2/bufferevent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "net/log.h"
#include "net/tunnel.h"
#include "net/tunnel_internal.h"

struct hub_entry {
    struct lk_tunnel_hub *hub;
    struct hub_entry *next;
    char *session; /* owned; exactly as the local server sent it */
    struct lk_tunnel *t;
    bool leaving; /* GOAWAY sent or received: on hub->leaving, not in the map */
};

struct lk_tunnel_hub {
    struct event_base *base;
    struct lk_tunnel_opts opts;
    lk_tunnel_hub_change_cb *on_change;
    void *data;
    struct hub_entry *entries;
    size_t n_entries;
    struct hub_entry *leaving; /* tunnels finishing their streams after GOAWAY */
};

struct lk_tunnel_hub *lk_tunnel_hub_new(struct event_base *base, const struct lk_tunnel_opts *opts,
                                        lk_tunnel_hub_change_cb *on_change, void *data)
{
    struct lk_tunnel_hub *hub = lk_xcalloc(1, sizeof(*hub));
    hub->base = base;
    if (opts != NULL)
        hub->opts = *opts;
    else
        lk_tunnel_opts_init(&hub->opts);
    hub->on_change = on_change;
    hub->data = data;
    return hub;
}

static void entry_free(struct hub_entry *e)
{
    lk_tunnel_free(e->t);
    free(e->session);
    free(e);
}

void lk_tunnel_hub_free(struct lk_tunnel_hub *hub)
{
    if (hub == NULL)
        return;
    for (struct hub_entry **list = &hub->entries; list != NULL;
         list = list == &hub->entries ? &hub->leaving : NULL) {
        while (*list != NULL) {
            struct hub_entry *e = *list;
            *list = e->next;
            entry_free(e);
        }
    }
    free(hub);
}

/* The slot of session's entry: the one of its tunnel hostname (session
 * compared ASCII case-insensitively), or with exact, only an entry of that
 * very name. Points at the terminating NULL when there is none. */
static struct hub_entry **find_slot(struct lk_tunnel_hub *hub, struct lk_str session, bool exact)
{
    struct hub_entry **pp = &hub->entries;
    while (*pp != NULL) {
        struct lk_str name = lk_str_c((*pp)->session);
        if (exact ? lk_str_eq(name, session) : lk_str_ieq(name, session))
            break;
        pp = &(*pp)->next;
    }
    return pp;
}

static void unlink_entry(struct lk_tunnel_hub *hub, struct hub_entry *e)
{
    struct hub_entry **pp = e->leaving ? &hub->leaving : &hub->entries;
    while (*pp != e)
        pp = &(*pp)->next;
    *pp = e->next;
    if (!e->leaving)
        hub->n_entries--;
}

static void on_tunnel_closed(struct lk_tunnel *t, const char *why, void *data)
{
    struct hub_entry *e = data;
    struct lk_tunnel_hub *hub = e->hub;
    (void)t;
    LK_LOG(INFO, "tunnel for session '%s' disconnected: %s", e->session, why);
    unlink_entry(hub, e);
    if (!e->leaving && hub->on_change != NULL)
        hub->on_change(e->session, false, hub->data);
    entry_free(e);
}

/* Takes e out of the map: new requests no longer go to its tunnel, those
 * in flight finish, and on_tunnel_closed frees it. */
static void leave(struct lk_tunnel_hub *hub, struct hub_entry *e, const char *why)
{
    LK_LOG(INFO, "tunnel for session '%s' going away: %s (%zu stream(s) open)", e->session, why,
           lk_tunnel_n_streams(e->t));
    unlink_entry(hub, e);
    e->leaving = true;
    e->next = hub->leaving;
    hub->leaving = e;
    if (hub->on_change != NULL)
        hub->on_change(e->session, false, hub->data);
}

/* The local server closes the tunnel (its GOAWAY): it stops, the session
 * was deleted, or a client with other tunnel data replaced this one. */
static void on_tunnel_goaway(struct lk_tunnel *t, void *data)
{
    struct hub_entry *e = data;
    (void)t;
    if (!e->leaving)
        leave(e->hub, e, "the local server closes it");
}

void lk_tunnel_hub_go_away(struct lk_tunnel_hub *hub)
{
    while (hub->entries != NULL) {
        struct hub_entry *e = hub->entries;
        leave(hub, e, "the worker is shutting down");
        lk_tunnel_go_away(e->t);
    }
}

void lk_tunnel_hub_accept(struct lk_tunnel_hub *hub, const char *session, struct bufferevent *bev)
{
    struct hub_entry **slot = find_slot(hub, lk_str_c(session), false);
    if (*slot != NULL) {
        struct hub_entry *old = *slot;
        if (strcmp(old->session, session) == 0)
            LK_LOG(INFO, "tunnel for session '%s' replaced by a new connection", session);
        else
            LK_LOG(INFO, "tunnel for session '%s' replaced by one for session '%s'", old->session,
                   session);
        unlink_entry(hub, old);
        if (hub->on_change != NULL)
            hub->on_change(old->session, false, hub->data);
        entry_free(old);
    }
    struct hub_entry *e = lk_xcalloc(1, sizeof(*e));
    e->hub = hub;
    e->session = lk_xstrdup(session);
    char label[96];
    snprintf(label, sizeof(label), "'%s'", session);
    e->t = lk_tunnel_new(hub->base, bev, true, &hub->opts, label, NULL, on_tunnel_closed, e);
    lk_tunnel_set_goaway_cb(e->t, on_tunnel_goaway);
    e->next = hub->entries;
    hub->entries = e;
    hub->n_entries++;
    LK_LOG(INFO, "tunnel for session '%s' connected", session);
    if (hub->on_change != NULL)
        hub->on_change(session, true, hub->data);
}

struct lk_tunnel *lk_tunnel_hub_find(struct lk_tunnel_hub *hub, struct lk_str session)
{
    struct hub_entry *e = *find_slot(hub, session, false);
    return e != NULL ? e->t : NULL;
}

/* The connector of lk_tunnel_hub_target(): lives as long as the exchange. */
struct tunnel_dial {
    struct lk_tunnel_hub *hub;
    struct lk_str session;
};

static int tunnel_dial(void *dial, struct bufferevent **out, char *errtext, size_t errtext_len)
{
    const struct tunnel_dial *d = dial;
    struct lk_tunnel *t = lk_tunnel_hub_find(d->hub, d->session);
    /* A tunnel found can still be dead in this loop turn, its close to come. */
    int rc = t != NULL ? lk_tunnel_connect(t, out, errtext, errtext_len) : LK_ECLOSED;
    if (rc == LK_ECLOSED) {
        *out = NULL;
        snprintf(errtext, errtext_len, "tunnel for session '%.*s' is not connected",
                 (int)d->session.len, d->session.ptr);
    }
    return rc;
}

void lk_tunnel_hub_target(struct lk_tunnel_hub *hub, struct lk_exchange *ex,
                          const struct lk_tunnel *t, struct lk_str session,
                          struct lk_proxy_req *spec)
{
    struct tunnel_dial *d = lk_exchange_alloc(ex, sizeof(*d));
    d->hub = hub;
    d->session.ptr = lk_exchange_strndup(ex, session.ptr, session.len);
    d->session.len = session.len;
    spec->connect = tunnel_dial;
    spec->connect_data = d;
    spec->connect_pool_key = lk_tunnel_pool_key(t);
}

bool lk_tunnel_hub_is_connected(struct lk_tunnel_hub *hub, struct lk_str session)
{
    return lk_tunnel_hub_find(hub, session) != NULL;
}

void lk_tunnel_hub_close(struct lk_tunnel_hub *hub, struct lk_str session)
{
    struct hub_entry *e = *find_slot(hub, session, true);
    if (e != NULL)
        lk_tunnel_kill(e->t, "closed by the worker");
}

size_t lk_tunnel_hub_n_tunnels(const struct lk_tunnel_hub *hub)
{
    return hub->n_entries;
}

/* ---- the endpoint -------------------------------------------------------- */

static void respond_text(struct lk_exchange *ex, int status, const char *text)
{
    static const struct lk_http_header ct = { LK_STR("Content-Type"),
                                              LK_STR("text/plain; charset=utf-8") };
    lk_exchange_respond(ex, status, &ct, 1, text, strlen(text));
}

/* "Bearer <secret>" (scheme case-insensitive, RFC 9110 §11.1). */
static bool bearer(const struct lk_exchange *ex, struct lk_str *secret)
{
    struct lk_str v;
    if (!lk_exchange_header(ex, LK_STR("authorization"), &v) || v.len < 7 ||
        !lk_str_ieq((struct lk_str){ v.ptr, 7 }, LK_STR("bearer ")))
        return false;
    *secret = lk_str_trim((struct lk_str){ v.ptr + 7, v.len - 7 });
    return secret->len > 0;
}

void lk_tunnel_hub_handle(struct lk_tunnel_hub *hub, struct lk_exchange *ex,
                          lk_tunnel_auth_cb *auth, void *data)
{
    struct lk_str upgrade, session, secret;
    /* RFC 9110 §7.8: the Upgrade field of an HTTP/1.0 request is ignored
     * (as for WebSockets, lk_ws_is_upgrade_request()). */
    if (lk_exchange_minor_version(ex) < 1 || !lk_exchange_header(ex, LK_STR("upgrade"), &upgrade) ||
        !lk_str_has_token(upgrade, LK_STR(LK_TUNNEL_UPGRADE))) {
        respond_text(ex, 400, "Expected Upgrade: " LK_TUNNEL_UPGRADE);
        return;
    }
    if (!lk_exchange_header(ex, LK_STR(LK_TUNNEL_SESSION_HEADER), &session) || session.len == 0 ||
        memchr(session.ptr, '\0', session.len) != NULL) {
        respond_text(ex, 400, "Missing " LK_TUNNEL_SESSION_HEADER " header");
        return;
    }
    char *name = lk_exchange_strndup(ex, session.ptr, session.len);
    enum lk_tunnel_auth verdict =
        bearer(ex, &secret) ? auth(name, secret.ptr, secret.len, data) : LK_TUNNEL_AUTH_DENIED;
    if (verdict == LK_TUNNEL_AUTH_UNAVAILABLE) {
        LK_LOG(WARN, "tunnel for session '%s' from %s not accepted: its secret cannot be checked",
               name, lk_exchange_peer(ex));
        respond_text(ex, 503, "Tunnel secret cannot be checked now");
        return;
    }
    if (verdict != LK_TUNNEL_AUTH_OK) {
        LK_LOG(WARN, "tunnel for session '%s' rejected from %s: invalid tunnel secret", name,
               lk_exchange_peer(ex));
        respond_text(ex, 401, "Invalid tunnel secret");
        return;
    }
    const struct hub_entry *holder = *find_slot(hub, lk_str_c(name), false);
    if (holder != NULL && strcmp(holder->session, name) != 0) {
        LK_LOG(WARN, "tunnel for session '%s' refused: its hostname is held by session '%s'", name,
               holder->session);
        respond_text(ex, 409, "Tunnel hostname in use by another session");
        return;
    }
    static const struct lk_http_header up = { LK_STR("Upgrade"), LK_STR(LK_TUNNEL_UPGRADE) };
    char *copy = lk_xstrdup(name); /* the exchange's arena goes with the upgrade */
    struct bufferevent *bev = NULL;
    int rc = lk_exchange_upgrade(ex, &up, 1, &bev);
    if (rc == 0)
        lk_tunnel_hub_accept(hub, copy, bev);
    else if (rc == LK_EINVAL) /* a body: the exchange is still ours */
        respond_text(ex, 400, "A tunnel request has no body");
    else
        LK_LOG(INFO, "tunnel for session '%s': client gone before the upgrade", copy);
    free(copy);
}
