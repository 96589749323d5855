/*
 * server.c - the local server's loop (server.h): listeners, signals and the
 * graceful shutdown that frees everything (so LSan has nothing to report).
 *
 * Listeners (DESIGN §3): HTTP, HTTPS (same router; certificates minted by
 * lib/net/certs for names at or under a managed domain, DESIGN §2.10; the
 * CA is parsed and the SSL_CTX built on the first TLS connection) and
 * the DNS responder (lib/net/dns_server, zones from the names registry,
 * DESIGN §2.9); their "... listening on A:P" lines are printed together once
 * all of them are bound.
 *
 * Shutdown order on SIGINT/SIGTERM: worker calls in flight are failed (their
 * exchanges get a 500 while the engine can still send it), the DNS
 * responder is closed, the tunnel sends GOAWAY (the worker routes nothing
 * new to it), then the HTTP engine drains (in-flight requests, tunnelled
 * ones too, get LOCAL_DRAIN_MS). The loop exits once the engine has freed
 * itself and the tunnel has closed (LOCAL_TUNNEL_CLOSE_MS more at most). The
 * TLS context and the certificates are freed only after that.
 */
#include "server/server.h"

#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "core/err.h"
#include "net/accept_guard.h"
#include "net/addr.h"
#include "net/certs.h"
#include "net/dns_server.h"
#include "net/heap.h"
#include "net/http_server.h"
#include "net/limits_env.h"
#include "net/log.h"
#include "net/rng_os.h"
#include "server/worker_client.h"

void local_respond_text(struct lk_exchange *ex, int status, const char *text)
{
    const struct lk_http_header ct = { LK_STR("Content-Type"), LK_STR("text/plain") };
    lk_exchange_respond(ex, status, &ct, 1, text, strlen(text));
}

/* RFC 9112 §3.2 and RFC 9110 §9.3.6: an HTTP/1.1 request without Host is a
 * 400; CONNECT, which would ask this reverse proxy to open a raw tunnel, is
 * a 405 with Allow. Returns true when ex was answered. */
static bool reject_unproxyable(struct lk_exchange *ex)
{
    struct lk_str host;
    if (lk_str_eq(lk_exchange_method(ex), LK_STR("CONNECT"))) {
        const char *text = "CONNECT is not supported by this server";
        const struct lk_http_header h[] = { { LK_STR("Allow"), LK_STR(LK_HTTP_PROXY_ALLOW) },
                                            { LK_STR("Content-Type"), LK_STR("text/plain") } };
        lk_exchange_respond(ex, 405, h, 2, text, strlen(text));
        return true;
    }
    if (lk_exchange_minor_version(ex) >= 1 && !lk_exchange_header(ex, LK_STR("host"), &host)) {
        local_respond_text(ex, 400, "missing Host header field");
        return true;
    }
    return false;
}

void local_on_request(struct lk_exchange *ex, void *data)
{
    struct local_server *ls = data;
    if (reject_unproxyable(ex))
        return;
    if (!local_admin_handle(ls, ex))
        local_proxy_handle(ls, ex);
}

/* Both ends of the shutdown are done: the engine has drained and every
 * tunnel client is gone, closed or stopped LOCAL_TUNNEL_CLOSE_MS after the
 * drain. */
static void maybe_exit(struct local_server *ls)
{
    if (!ls->drained || local_tunnel_active(ls))
        return;
    event_base_loopexit(ls->base, NULL);
}

static void on_exit_timer(evutil_socket_t fd, short what, void *arg)
{
    struct local_server *ls = arg;
    (void)fd;
    (void)what;
    LK_LOG(WARN, "the tunnel did not close in time; closing it now");
    local_tunnel_stop(ls);
    maybe_exit(ls);
}

static void on_drained(void *data)
{
    struct local_server *ls = data;
    ls->drained = true;
    if (local_tunnel_active(ls)) {
        /* The responses' last bytes may still be leaving through the tunnel. */
        struct timeval tv = { LOCAL_TUNNEL_CLOSE_MS / 1000, (LOCAL_TUNNEL_CLOSE_MS % 1000) * 1000 };
        ls->exit_timer = evtimer_new(ls->base, on_exit_timer, ls);
        evtimer_add(ls->exit_timer, &tv);
    }
    maybe_exit(ls);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct local_server *ls = arg;
    (void)what;
    if (ls->stopping)
        return;
    ls->stopping = true;
    printf("Received %s signal\nShutdown signal received, stopping all servers\n",
           sig == SIGINT ? "SIGINT" : "SIGTERM");
    fflush(stdout);
    if (ls->worker)
        local_worker_cancel_all(ls->worker, "the local server is shutting down");
    lk_dns_server_free(ls->dns);
    ls->dns = NULL;
    /* GOAWAY: the worker sends no new request through the tunnel, and those
     * in flight finish with the engine's drain. */
    local_tunnel_shutdown(ls, maybe_exit);
    event_del(ls->sigint);
    event_del(ls->sigterm);
    struct lk_http_server *http = ls->http;
    ls->http = NULL;
    if (http)
        lk_http_server_drain(http, LOCAL_DRAIN_MS, on_drained, ls);
    else
        on_drained(ls);
}

/* The listener's fatal error, one line (`linkup start` quotes the last line
 * of this log). A port below 1024 refused with EACCES/EPERM gets the fix:
 * root or the capability install.sh and `linkup update` set (issue 10). */
static void report_listen_error(const char *what, const char *addr, int err)
{
    struct sockaddr_storage ss;
    socklen_t ss_len = 0;
    bool privileged = (err == EACCES || err == EPERM) && lk_addr_parse(addr, &ss, &ss_len) == 0 &&
                      lk_addr_port((struct sockaddr *)&ss) < 1024;
    fprintf(stderr, "Exited with error: Failed to listen for %s on %s%s%s%s\n", what, addr,
            err ? ": " : "", err ? strerror(err) : "",
            privileged ? ". Ports below 1024 need root or the capability: run "
                         "sudo setcap cap_net_bind_service=+ep \"$(which linkup)\""
                       : "");
}

static int start_http(struct local_server *ls, const struct local_opts *o, struct lk_buf *ready)
{
    struct lk_http_server_opts hopts;
    lk_http_server_opts_init(&hopts);
    ls->max_json_body = LOCAL_MAX_JSON_BODY;
    lk_limits_from_env(&hopts, &ls->max_json_body); /* DESIGN §9: all configurable */
    hopts.on_access = local_inspector_record;       /* DESIGN §7 */
    hopts.access_data = &ls->inspector;
    if (lk_http_server_new(ls->base, &hopts, local_on_request, ls, &ls->http) != 0) {
        fprintf(stderr, "Exited with error: cannot set up the HTTP server\n");
        return LK_EIO;
    }
    if (strcmp(o->http_addr, LOCAL_ADDR_OFF) == 0)
        return 0;
    char bound[64];
    errno = 0;
    if (lk_http_server_listen(ls->http, o->http_addr, NULL, bound, sizeof(bound)) != 0) {
        report_listen_error("HTTP", o->http_addr, errno);
        return LK_EIO;
    }
    lk_buf_addf(ready, "HTTP listening on %s\n", bound);
    return 0;
}

static int start_worker(struct local_server *ls, const struct local_opts *o)
{
    struct lk_buf err = LK_BUF_INIT;
    int rc = 0;
    if (o->worker_url)
        rc = local_worker_new(ls->base, o->worker_url, o->worker_token, &ls->worker, &err);
    if (rc != 0)
        fprintf(stderr, "Exited with error: %s\n", err.data);
    lk_buf_release(&err);
    return rc;
}

/* DESIGN §2.10: a certificate only for names at or under a managed domain. */
static bool is_managed(const char *name, void *data)
{
    struct local_server *ls = data;
    struct lk_dns_zones zones;
    local_dns_names_zones(&ls->names, &zones);
    for (size_t i = 0; i < zones.n_domains; i++) {
        if (lk_dns_name_at_or_under(name, zones.domains[i]))
            return true;
    }
    return false;
}

/* mkdir -p of the directories above dir (mode 0700, existing ones kept), so
 * a fresh LINKUP_HOME does not stop the certs directory from being created
 * (DESIGN §2.10). Errors surface in lk_certs_open_lazy(). */
static void make_parents(const char *dir)
{
    char *path = lk_xstrdup(dir);
    for (char *p = strchr(path + 1, '/'); p != NULL; p = strchr(p + 1, '/')) {
        *p = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST)
            LK_LOG(DEBUG, "cannot create %s: %s", path, strerror(errno));
        *p = '/';
    }
    free(path);
}

/* The HTTPS listener's SSL_CTX, built on its first connection (finding 10 of
 * docs/performance.md: an idle server never initialises OpenSSL when the CA
 * is already on disk). A CA that does not parse fails that connection and
 * every later one with this log line; lk_certs_load() keeps its result, so
 * the files are read once per run. */
static struct ssl_ctx_st *https_ctx(void *data)
{
    struct local_server *ls = data;
    if (ls->tls == NULL)
        ls->tls = lk_certs_new_server_ctx(ls->certs, is_managed, ls);
    if (ls->tls == NULL) {
        const char *why = lk_certs_error(ls->certs);
        LK_LOG(ERROR,
               "HTTPS connection refused: Failed to load certificates from \"%s\": %s "
               "(fix or remove both CA files, then restart)",
               lk_certs_dir(ls->certs), why[0] ? why : "cannot set up TLS");
    }
    return ls->tls;
}

/* Start-up opens the certs directory and creates a missing CA (DESIGN
 * §2.10), but parses nothing when the directory holds only the CA:
 * https_ctx() does on the first connection. Certificate files of SPEC §5.5
 * (wildcard_.{D} pairs) are loaded here, so a bad pair is reported on stderr
 * at start-up ("Error loading cert/key for {domain}: ..."), as SPEC §5.5 has
 * it; a CA that does not parse is still reported per TLS connection. What a
 * stat can tell (a CA file unreadable, empty or not a regular file) still
 * stops the server here. */
static int start_https(struct local_server *ls, const struct local_opts *o, struct lk_buf *ready)
{
    if (strcmp(o->https_addr, LOCAL_ADDR_OFF) == 0)
        return 0;
    make_parents(o->certs_dir);
    char why[256];
    if (lk_certs_open_lazy(o->certs_dir, &ls->certs, NULL, why, sizeof(why)) != 0) {
        /* SPEC §5.1: "Failed to load certificates from {dir:?} into SNI: {error}". */
        fprintf(stderr, "Exited with error: Failed to load certificates from \"%s\" into SNI: %s\n",
                o->certs_dir, why);
        return LK_EIO;
    }
    if (lk_certs_has_files(ls->certs))
        ls->tls = lk_certs_new_server_ctx(ls->certs, is_managed, ls);
    char bound[64];
    errno = 0;
    if (lk_http_server_listen_lazy_tls(ls->http, o->https_addr, https_ctx, ls, bound,
                                       sizeof(bound)) != 0) {
        report_listen_error("HTTPS", o->https_addr, errno);
        return LK_EIO;
    }
    lk_buf_addf(ready, "HTTPS listening on %s\n", bound);
    return 0;
}

static void dns_zones(struct lk_dns_zones *zones, void *data)
{
    struct local_server *ls = data;
    local_dns_names_zones(&ls->names, zones);
}

static int start_dns(struct local_server *ls, const struct local_opts *o, struct lk_buf *ready)
{
    if (strcmp(o->dns_addr, LOCAL_ADDR_OFF) == 0)
        return 0;
    /* --dns-upstream off: no forwarding at all (names outside the managed
     * domains get SERVFAIL), as with a resolv.conf without nameservers. */
    bool no_forwarding = o->dns_upstream != NULL && strcmp(o->dns_upstream, LOCAL_ADDR_OFF) == 0;
    struct lk_dns_server_opts dopts = {
        .listen = o->dns_addr,
        .upstream = no_forwarding ? NULL : o->dns_upstream,
        .resolv_conf = no_forwarding ? "/dev/null" : local_resolv_conf(NULL),
        .zones_cb = dns_zones,
        .zones_data = ls,
    };
    errno = 0;
    if (lk_dns_server_new(ls->base, &dopts, &ls->dns) != 0) {
        fprintf(stderr, "Exited with error: Failed to listen for DNS on %s%s%s\n", o->dns_addr,
                errno ? ": " : "", errno ? strerror(errno) : "");
        return LK_EIO;
    }
    char bound[64];
    lk_buf_addf(ready, "DNS listening on %s\n", lk_dns_server_addr(ls->dns, bound, sizeof(bound)));
    return 0;
}

static void server_release(struct local_server *ls)
{
    local_tunnel_stop(ls);
    lk_dns_server_free(ls->dns);
    lk_http_server_free(ls->http);
    if (ls->tls)
        SSL_CTX_free(ls->tls);
    lk_certs_free(ls->certs);
    local_worker_free(ls->worker);
    if (ls->exit_timer)
        event_free(ls->exit_timer);
    if (ls->sigint)
        event_free(ls->sigint);
    if (ls->sigterm)
        event_free(ls->sigterm);
    lk_session_cache_free(ls->cache);
    lk_route_slot_release(&ls->route);
    local_inspector_release(&ls->inspector);
    lk_kv_free(&ls->kv);
    local_dns_names_release(&ls->names);
    if (ls->base)
        event_base_free(ls->base);
}

int local_server_run(const struct local_opts *o)
{
    struct local_server ls;
    memset(&ls, 0, sizeof(ls));
    signal(SIGPIPE, SIG_IGN);
    lk_nofile_raise(); /* accept_guard.h */
    lk_heap_tune();    /* docs/performance.md finding 13 */
    ls.base = event_base_new();
    if (!ls.base) {
        fprintf(stderr, "Exited with error: cannot create the event loop\n");
        return 1;
    }
    ls.rng = lk_rng_os(); /* ChaCha20 seeded once: no syscall per traceparent */
    ls.peers_remote = o->peers_remote;
    lk_kv_memory_init(&ls.kv);
    ls.cache = lk_session_cache_new(0, 0);
    lk_route_slot_init(&ls.route);
    local_inspector_init(&ls.inspector);
    local_dns_names_init(&ls.names);
    ls.sigint = evsignal_new(ls.base, SIGINT, on_signal, &ls);
    ls.sigterm = evsignal_new(ls.base, SIGTERM, on_signal, &ls);
    /* Signals are watched before the first "listening" line, so a parent
     * that stops us right after reading it still gets a clean exit. */
    event_add(ls.sigint, NULL);
    event_add(ls.sigterm, NULL);
    /* The "... listening on A:P" lines are printed once every listener is
     * bound (DESIGN §3), so a parent never reads one from a server that then
     * fails to start. */
    struct lk_buf ready = LK_BUF_INIT;
    int rc = start_worker(&ls, o);
    if (rc == 0)
        rc = start_http(&ls, o, &ready);
    if (rc == 0)
        rc = start_https(&ls, o, &ready);
    if (rc == 0)
        rc = start_dns(&ls, o, &ready);
    if (rc == 0 && ready.len > 0) {
        fputs(ready.data, stdout);
        fflush(stdout);
    }
    lk_buf_release(&ready);
    if (rc == 0) {
        event_base_dispatch(ls.base);
        lk_net_loop_settle(ls.base);
    }
    server_release(&ls);
    return rc == 0 ? 0 : 1;
}
