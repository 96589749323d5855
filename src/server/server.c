/*
 * server.c - the local server's loop (server.h): listeners, signals and the
 * graceful shutdown that frees everything (so LSan has nothing to report).
 *
 * Shutdown order on SIGINT/SIGTERM: worker calls in flight are failed (their
 * exchanges get a 500 while the engine can still send it), the DNS
 * responder is closed, then the HTTP engine drains (in-flight requests get
 * LOCAL_DRAIN_MS) and, once it has freed itself, the loop exits.
 */
#include "server/server.h"

#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "core/alloc.h"
#include "core/err.h"
#include "net/http_server.h"
#include "net/log.h"
#include "server/worker_client.h"

static void fill_random(void *ctx, void *buf, size_t n)
{
    char *p = buf;
    (void)ctx;
    while (n > 0) {
        ssize_t got = getrandom(p, n, 0);
        if (got == -1 && errno == EINTR)
            continue;
        if (got == -1)
            LK_BUG("getrandom failed");
        p += got;
        n -= (size_t)got;
    }
}

void local_respond_text(struct lk_exchange *ex, int status, const char *text)
{
    const struct lk_http_header ct = { LK_STR("Content-Type"), LK_STR("text/plain") };
    lk_exchange_respond(ex, status, &ct, 1, text, strlen(text));
}

void local_on_request(struct lk_exchange *ex, void *data)
{
    struct local_server *ls = data;
    if (!local_admin_handle(ls, ex))
        local_proxy_handle(ls, ex);
}

static void on_drained(void *data)
{
    struct local_server *ls = data;
    event_base_loopexit(ls->base, NULL);
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
    event_del(ls->sigint);
    event_del(ls->sigterm);
    struct lk_http_server *http = ls->http;
    ls->http = NULL;
    if (http)
        lk_http_server_drain(http, LOCAL_DRAIN_MS, on_drained, ls);
    else
        event_base_loopexit(ls->base, NULL);
}

static int start_http(struct local_server *ls, const struct local_opts *o)
{
    struct lk_http_server_opts hopts;
    lk_http_server_opts_init(&hopts);
    if (lk_http_server_new(ls->base, &hopts, local_on_request, ls, &ls->http) != 0) {
        fprintf(stderr, "Exited with error: cannot set up the HTTP server\n");
        return LK_EIO;
    }
    if (strcmp(o->http_addr, LOCAL_ADDR_OFF) == 0)
        return 0;
    char bound[64];
    errno = 0;
    if (lk_http_server_listen(ls->http, o->http_addr, NULL, bound, sizeof(bound)) != 0) {
        fprintf(stderr, "Exited with error: Failed to listen for HTTP on %s%s%s\n", o->http_addr,
                errno ? ": " : "", errno ? strerror(errno) : "");
        return LK_EIO;
    }
    printf("HTTP listening on %s\n", bound);
    fflush(stdout);
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

static void server_release(struct local_server *ls)
{
    lk_http_server_free(ls->http);
    local_worker_free(ls->worker);
    if (ls->sigint)
        event_free(ls->sigint);
    if (ls->sigterm)
        event_free(ls->sigterm);
    lk_session_cache_free(ls->cache);
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
    ls.base = event_base_new();
    if (!ls.base) {
        fprintf(stderr, "Exited with error: cannot create the event loop\n");
        return 1;
    }
    ls.rng = (struct lk_rng){ fill_random, NULL };
    ls.peers_remote = o->peers_remote;
    lk_kv_memory_init(&ls.kv);
    ls.cache = lk_session_cache_new(0);
    local_dns_names_init(&ls.names);
    ls.sigint = evsignal_new(ls.base, SIGINT, on_signal, &ls);
    ls.sigterm = evsignal_new(ls.base, SIGTERM, on_signal, &ls);
    /* Signals are watched before the first "listening" line, so a parent
     * that stops us right after reading it still gets a clean exit. */
    event_add(ls.sigint, NULL);
    event_add(ls.sigterm, NULL);
    int rc = start_worker(&ls, o);
    if (rc == 0)
        rc = start_http(&ls, o);
    if (rc == 0)
        event_base_dispatch(ls.base);
    server_release(&ls);
    return rc == 0 ? 0 : 1;
}
