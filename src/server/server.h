/*
 * server.h - the local server (`linkup server`, SPEC §5, DESIGN §2-3): its
 * options and the state shared by its files.
 *
 *   options.c        command line, environment and config -> struct local_opts
 *   server.c         the loop: listeners, signals, graceful shutdown
 *   admin.c          the /linkup/... admin API (SPEC §5.2)
 *   proxy.c          everything else: routing and proxying (SPEC §5.3, §5.4)
 *   worker_client.c  non-blocking calls to the worker API
 *   dns_names.c      the "{session}.{domain}" names registry
 *   tunnel.c         the built-in tunnel client and GET /linkup/tunnel
 *
 * One struct local_server per process, owned by local_server_run(); sessions
 * live in an in-memory kv (lost on exit). Loop thread only.
 */
#ifndef LK_SERVER_SERVER_H
#define LK_SERVER_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"
#include "core/rng.h"
#include "core/route.h"
#include "core/store.h"
#include "server/dns_names.h"
#include "server/inspector.h"

struct event;
struct event_base;
struct lk_exchange;
struct lk_http_server;
struct lk_dns_server;
struct lk_certs;
struct ssl_ctx_st;
struct local_worker;
struct local_tunnel;

/* Largest admin JSON body (DESIGN §9; 413 past it). */
#define LOCAL_MAX_JSON_BODY (100u * 1024u * 1024u)
/* How long in-flight requests may run after SIGINT/SIGTERM. */
#define LOCAL_DRAIN_MS 5000u
/* After the drain, how long the tunnel may take to send what is left. */
#define LOCAL_TUNNEL_CLOSE_MS 2000u

/* The value that disables a listener (DESIGN §3). */
#define LOCAL_ADDR_OFF "off"

/* Everything `linkup server` was asked to do. Strings are owned (free()). */
struct local_opts {
    char *http_addr;    /* "A:P" or "off"; default 0.0.0.0:80 */
    char *https_addr;   /* "A:P" or "off" */
    char *dns_addr;     /* "A:P" or "off" */
    char *dns_upstream; /* "A:P", or NULL for the system resolvers */
    char *certs_dir;    /* default $LINKUP_HOME/certs */
    char *worker_url;   /* from --worker-url or the config; NULL: none */
    char *worker_token; /* from --worker-token or the config */
    /* Test hook (LINKUP_TEST_TREAT_PEERS_AS_REMOTE=1): every peer counts as
     * non-loopback, so the admin API answers 403 (DESIGN §2.8). */
    bool peers_remote;
};

/*
 * Parses `linkup server [options]` (argv[0] is "server") with the
 * environment fallbacks of DESIGN §3 and LINKUP_LOG, and loads the config
 * (config_path from the global --config, else LINKUP_CONFIG) unless
 * --worker-url is given. Returns 0 with *o filled (local_opts_release), 1
 * after printing "-h" help (exit 0), or a negative lk_err with the message in
 * err: LK_EINVAL for a usage error (exit 2), LK_EIO / LK_EPARSE for a config
 * that cannot be loaded (exit 1).
 */
int local_opts_parse(int argc, char **argv, const char *config_path, struct local_opts *o,
                     struct lk_buf *err);
void local_opts_release(struct local_opts *o);

/* The path of a request target (absolute-form too: "/" when it names no
 * path), without its query and fragment. Borrowed from t. */
struct lk_str local_target_path(struct lk_str t);

/*
 * The resolv.conf whose first nameserver the DNS responder forwards to when
 * no --dns-upstream is given (DESIGN §2.9: the system's resolvers, never
 * itself): path (NULL: /etc/resolv.conf), except when its first nameserver
 * is systemd-resolved's stub (127.0.0.53 or 127.0.0.54) and the file where
 * systemd-resolved lists its own upstreams exists (LINKUP_SYSTEMD_RESOLV_CONF,
 * default /run/systemd/resolve/resolv.conf): `local-dns install` routes the
 * managed domains from that stub to the responder, so a name forwarded to
 * the stub (a bare managed domain, SPEC §5.6) would come straight back.
 * Returns path, or that file (borrowed, static or from the environment).
 */
const char *local_resolv_conf(const char *path);

/* Runs the server until SIGINT/SIGTERM. Prints one "... listening on A:P"
 * line per listener on stdout. Returns the process exit code: 0 after a
 * clean shutdown, 1 when a listener cannot be set up (message on stderr). */
int local_server_run(const struct local_opts *o);

/* The state of one running server. */
struct local_server {
    struct event_base *base;        /* owned */
    struct lk_http_server *http;    /* owned; NULL once draining began */
    struct lk_dns_server *dns;      /* owned; NULL when --dns off or stopping */
    struct lk_certs *certs;         /* owned; NULL when --https off */
    struct ssl_ctx_st *tls;         /* owned server context; NULL when --https off */
    struct local_worker *worker;    /* owned; NULL without a worker URL */
    struct local_tunnel *tunnels;   /* owned; built-in tunnel clients, one per session,
                                       the latest tunneled upsert first */
    struct local_tunnel *retiring;  /* owned; clients closing once their requests finish */
    struct lk_kv kv;                /* in-memory sessions (SPEC §2.7) */
    struct lk_session_cache *cache; /* parsed sessions, by name */
    struct local_dns_names names;
    struct lk_rng rng;                /* getrandom-backed */
    struct lk_route_slot route;       /* local_proxy_handle()'s reused route result */
    struct local_inspector inspector; /* the last requests (DESIGN §7) */
    bool peers_remote;
    bool stopping;
    bool drained;                               /* the engine drained (shutdown) */
    void (*tunnel_done)(struct local_server *); /* local_tunnel_shutdown()'s */
    struct event *exit_timer;                   /* owned; bounds the tunnel's close */
    size_t max_json_body;                       /* admin JSON bodies; 413 past it */
    struct event *sigint, *sigterm;             /* owned */
};

/* The engine's handler: admin API or proxy. data is the struct local_server. */
void local_on_request(struct lk_exchange *ex, void *data);

/* Handles ex when its path belongs to the admin API (SPEC §5.2); returns
 * false, without touching ex, when it must be proxied instead. */
bool local_admin_handle(struct local_server *ls, struct lk_exchange *ex);

/* Routes and proxies ex (SPEC §5.3, §5.4). Completes ex. */
void local_proxy_handle(struct local_server *ls, struct lk_exchange *ex);

/* ---- the built-in tunnel (tunnel.c, DESIGN §8) ---- */

/* Tunnel clients kept at once, one per tunneled session: a tunneled upsert
 * for one more session closes the least recently upserted one's (it
 * finishes its requests first). */
#define LOCAL_MAX_TUNNELS 16

/* After the worker accepted a tunneled upsert for session (its name as the
 * worker answered it): body[0..len) is the worker's JSON answer. When its
 * tunnel_data are the built-in tunnel's ("provider":"linkup", empty
 * account_id), starts a tunnel client for session to the worker URL, in
 * place of the session's running one unless url and secret are unchanged
 * (the replaced one sends GOAWAY and closes once its requests have
 * finished); other sessions' clients run on. Anything else (Cloudflare
 * credentials: linkup start runs cloudflared) starts nothing. */
void local_tunnel_update(struct local_server *ls, const char *session, const char *body,
                         size_t len);

/* Whether a tunnel client runs or is still closing. */
bool local_tunnel_active(const struct local_server *ls);

/* Stops and frees every tunnel client, running or closing, cutting their
 * streams. */
void local_tunnel_stop(struct local_server *ls);

/* Shutdown: every running tunnel client sends GOAWAY and closes once its
 * streams have finished; once none is left (local_tunnel_active() false),
 * done(ls) follows, from the loop; not when none was active. The engine may
 * be drained meanwhile. */
void local_tunnel_shutdown(struct local_server *ls, void (*done)(struct local_server *ls));

/* Stops session name's tunnel client, if one runs (DELETE). */
void local_tunnel_session_deleted(struct local_server *ls, const char *name);

/* GET /linkup/tunnel[?session=NAME] (docs/server.md): 200 with the state of
 * session's client (NULL: the latest tunneled upsert's), 404 when none
 * runs. Completes ex. */
void local_tunnel_respond_state(struct local_server *ls, struct lk_exchange *ex,
                                const char *session);

/* Completes ex with status and a text/plain body (no charset, SPEC §5.2). */
void local_respond_text(struct lk_exchange *ex, int status, const char *text);

#endif
