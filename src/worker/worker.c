/*
 * worker.c - `linkup worker`: options, lifecycle and signals (DESIGN §3).
 *
 * Options win over the environment, which wins over the defaults. The token
 * has no default: a worker without one refuses to start (exit 1), because a
 * generated token would have to be read from the log and the token must
 * never be logged. SIGINT/SIGTERM drain the HTTP server (in-flight requests
 * finish, WORKER_DRAIN_MS at most), then everything is freed and the command
 * returns 0.
 */
#include "worker/worker.h"

#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/home.h"
#include "core/alloc.h"
#include "core/err.h"
#include "core/sha256.h"
#include "core/url.h"
#include "net/accept_guard.h"
#include "net/addr.h"
#include "net/heap.h"
#include "net/limits_env.h"
#include "net/log.h"
#include "net/rng_os.h"
#include "proto/hostname.h"

struct worker_opts {
    const char *listen;
    const char *token;
    const char *store;
    const char *tunnel_domain;
    const char *tunnel_prefix;
    const char *tunnel_scheme;
    const char *tunnel_port;
    int tunnel_port_num; /* the value of tunnel_port; 0 when unset */
    const char *peer_url;
    const char *peer_secret;
    const char *session_auth;
    const char *session_auth_scope;
};

struct worker_run {
    struct worker w;
    struct event_base *base;
    struct event *sigint_ev, *sigterm_ev, *cleanup_ev;
    struct event *store_ev; /* another process changed the store */
};

static const char usage_text[] =
    "Run the Linkup worker: the session API and edge proxy\n\n"
    "Usage: linkup worker [OPTIONS]\n\n"
    "Options:\n"
    "      --listen <A:P>          Address to listen on [env: LINKUP_WORKER_LISTEN] "
    "[default: 127.0.0.1:8787]\n"
    "      --token <T>             Token clients must present (required) "
    "[env: LINKUP_WORKER_TOKEN]\n"
    "      --store <STORE>         memory | sqlite:[PATH] | redis://HOST:PORT[/DB] "
    "[env: LINKUP_WORKER_STORE]\n"
    "                              [default: sqlite:$LINKUP_HOME/worker.db]\n"
    "      --tunnel-domain <D>     Domain of tunnel hostnames "
    "[env: LINKUP_WORKER_TUNNEL_DOMAIN] [default: localhost]\n"
    "      --tunnel-prefix <P>     Prefix of tunnel hostnames [default: linkup-tunnel-]\n"
    "      --tunnel-scheme <S>     Scheme of published tunnel URLs: http | https (behind a\n"
    "                              TLS proxy) [env: LINKUP_WORKER_TUNNEL_SCHEME] [default: http]\n"
    "      --tunnel-port <PORT>    Port of published tunnel URLs [env: LINKUP_WORKER_TUNNEL_PORT]\n"
    "                              [default: the listening port]\n"
    "      --peer-url <U>          This worker's address for peer workers, e.g.\n"
    "                              http://10.0.0.5:8787 [env: LINKUP_WORKER_PEER_URL]\n"
    "                              [default: http:// and the listening address]\n"
    "      --peer-secret <S>       Secret shared by peer workers "
    "[env: LINKUP_WORKER_PEER_SECRET]\n"
    "                              [default: derived from the token]\n"
    "      --session-auth <SECRET> Guard sessions with a sign-in (cookie) or the\n"
    "                              linkup-session-auth header; 16+ visible characters\n"
    "                              [env: LINKUP_WORKER_SESSION_AUTH] [default: off]\n"
    "      --session-auth-scope <S>\n"
    "                              all: every request routed to a session | urls: only\n"
    "                              session URLs and tunnel hostnames\n"
    "                              [env: LINKUP_WORKER_SESSION_AUTH_SCOPE] [default: all]\n"
    "  -h, --help                  Print help\n";

uint64_t worker_now_ms(void)
{
    return worker_clock_real(NULL);
}

/* Matches "--name VALUE" and "--name=VALUE"; advances *i past the value.
 * -1 when the value is missing: as for `linkup server` and the CLI's own
 * options (clap, docs/cli.md), a following argument that starts with '-'
 * (other than "-") is the next option, not a value. */
static int take_value(int argc, char **argv, int *i, const char *name, const char **out)
{
    size_t n = strlen(name);
    const char *a = argv[*i];
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *out = a + n + 1;
        return 1;
    }
    if (a[n] != '\0')
        return 0;
    if (*i + 1 >= argc || !cli_is_value(argv[*i + 1]))
        return -1;
    *out = argv[++*i];
    return 1;
}

static int parse_args(int argc, char **argv, struct worker_opts *o)
{
    /* "--session-auth-scope" before "--session-auth": take_value() matches
     * a name only whole, but the order keeps that obvious. value_names are
     * those of usage_text. */
    static const char *const names[] = {
        "--listen",        "--token",       "--store",    "--tunnel-domain", "--tunnel-prefix",
        "--tunnel-scheme", "--tunnel-port", "--peer-url", "--peer-secret",   "--session-auth-scope",
        "--session-auth",
    };
    static const char *const value_names[] = {
        "A:P", "T", "STORE", "D", "P", "S", "PORT", "U", "S", "S", "SECRET",
    };
    const char **slots[] = {
        &o->listen,        &o->token,       &o->store,    &o->tunnel_domain, &o->tunnel_prefix,
        &o->tunnel_scheme, &o->tunnel_port, &o->peer_url, &o->peer_secret,   &o->session_auth_scope,
        &o->session_auth,
    };
    _Static_assert(LK_ARRAY_LEN(names) == LK_ARRAY_LEN(value_names), "a value name per option");
    for (int i = 1; i < argc; i++) {
        int matched = 0;
        for (size_t k = 0; k < LK_ARRAY_LEN(names) && matched == 0; k++) {
            matched = take_value(argc, argv, &i, names[k], slots[k]);
            if (matched < 0)
                return cli_usage_error("worker",
                                       "a value is required for '%s <%s>' but none was supplied",
                                       names[k], value_names[k]);
        }
        if (matched == 0)
            return cli_usage_error("worker", "unexpected argument '%s'", argv[i]);
    }
    return 0;
}

static const char *env_or(const char *value, const char *env)
{
    const char *v = getenv(env);
    return value ? value : (v && v[0] ? v : NULL);
}

/* --session-auth: at least LK_AUTH_SECRET_MIN visible ASCII characters (the
 * header carries it trimmed, and a short one is guessed); the scope all or
 * urls. An empty --session-auth is that usage error too (a script whose
 * secret variable is empty must not start an open worker); an empty
 * LINKUP_WORKER_SESSION_AUTH counts as unset (env_or()). */
static int check_session_auth(struct worker_opts *o)
{
    const char *scope = o->session_auth_scope != NULL ? o->session_auth_scope : "all";
    if (strcmp(scope, "all") != 0 && strcmp(scope, "urls") != 0)
        return cli_usage_error(
            "worker", "invalid value '%s' for '--session-auth-scope': expected all or urls", scope);
    if (o->session_auth == NULL) {
        if (o->session_auth_scope != NULL)
            LK_LOG(WARN, "--session-auth-scope is used only with --session-auth");
        return 0;
    }
    size_t n = strlen(o->session_auth);
    bool visible = true;
    for (size_t i = 0; i < n; i++)
        visible &= o->session_auth[i] > 0x20 && o->session_auth[i] < 0x7f;
    if (n < LK_AUTH_SECRET_MIN || !visible)
        return cli_usage_error("worker",
                               "invalid value for '--session-auth': expected at least %d visible "
                               "ASCII characters, without spaces",
                               LK_AUTH_SECRET_MIN);
    return 0;
}

/* A domain name for tunnel hostnames (DESIGN §8): they go into the URLs
 * the worker hands out and the Host of requests, so RFC 1123 host labels,
 * without the '_' the local server's DNS names may hold. */
static bool is_domain(const char *s)
{
    return lk_hostname_valid(s, strlen(s), LK_HOSTNAME_HOST);
}

/* A non-empty prefix that a session name completes into the first labels of
 * a hostname ("linkup-tunnel-", "t.x-"). */
static bool is_prefix(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 200)
        return false;
    char name[256];
    snprintf(name, sizeof(name), "%sx", s);
    return is_domain(name);
}

/* Issue 7: workers sharing one Redis forward to each other with no more
 * set-up than the store. Without --peer-secret they authenticate with a
 * secret derived from the worker token, which they share anyway (the token
 * itself never travels on a forwarded request); without --peer-url a worker
 * is reached at the address it listens on, unless that is every address (no
 * one address of it is known to be reachable from the others). */
static void peer_defaults(struct worker *w, const struct worker_opts *o)
{
    if (w->peer_secret == NULL) {
        struct lk_buf seed = LK_BUF_INIT;
        lk_buf_addf(&seed, "linkup peer secret\n%s", o->token);
        lk_sha256_hex(seed.data, seed.len, w->peer_secret_own);
        lk_buf_release(&seed);
        w->peer_secret = w->peer_secret_own;
    }
    if (w->peer_url != NULL)
        return;
    if (strncmp(w->bound, "0.0.0.0:", 8) == 0 || strncmp(w->bound, "[::]:", 5) == 0) {
        LK_LOG(WARN, "peer workers cannot forward to this worker: it listens on every "
                     "address; give its internal address with --peer-url");
        return;
    }
    snprintf(w->peer_url_own, sizeof(w->peer_url_own), "http://%s", w->bound);
    w->peer_url = w->peer_url_own;
}

/* --peer-url: the base URL other workers send forwarded requests to. */
static bool is_http_url(const char *s)
{
    struct lk_url u = { 0 };
    bool ok = lk_url_parse(s, strlen(s), &u, NULL) == 0 && lk_url_is_http(&u) &&
              u.userinfo == NULL && u.query == NULL && u.fragment == NULL;
    lk_url_release(&u);
    return ok;
}

/* Fills the options from the environment and the defaults; default_store is
 * the buffer for the default store spec. */
static int resolve_opts(struct worker_opts *o, struct lk_buf *default_store)
{
    o->listen = env_or(o->listen, "LINKUP_WORKER_LISTEN");
    o->token = env_or(o->token, "LINKUP_WORKER_TOKEN");
    o->store = env_or(o->store, "LINKUP_WORKER_STORE");
    o->tunnel_domain = env_or(o->tunnel_domain, "LINKUP_WORKER_TUNNEL_DOMAIN");
    o->tunnel_scheme = env_or(o->tunnel_scheme, "LINKUP_WORKER_TUNNEL_SCHEME");
    o->tunnel_port = env_or(o->tunnel_port, "LINKUP_WORKER_TUNNEL_PORT");
    o->peer_secret = env_or(o->peer_secret, "LINKUP_WORKER_PEER_SECRET");
    o->peer_url = env_or(o->peer_url, "LINKUP_WORKER_PEER_URL");
    if (o->peer_url != NULL && o->peer_url[0] == '\0')
        o->peer_url = NULL;
    if (o->peer_secret != NULL && o->peer_secret[0] == '\0')
        o->peer_secret = NULL;
    o->session_auth = env_or(o->session_auth, "LINKUP_WORKER_SESSION_AUTH");
    o->session_auth_scope = env_or(o->session_auth_scope, "LINKUP_WORKER_SESSION_AUTH_SCOPE");
    if (check_session_auth(o) != 0)
        return LK_EXIT_USAGE;
    if (o->listen == NULL)
        o->listen = "127.0.0.1:8787";
    /* A malformed address is a usage error, as for `linkup server` (exit 2,
     * the option named); a well-formed one that cannot bind is exit 1. */
    struct sockaddr_storage ss;
    socklen_t ss_len = 0;
    if (lk_addr_parse(o->listen, &ss, &ss_len) != 0)
        return cli_usage_error(
            "worker", "invalid value '%s' for '--listen <A:P>': expected ADDR:PORT", o->listen);
    if (o->tunnel_domain == NULL)
        o->tunnel_domain = "localhost";
    if (o->tunnel_prefix == NULL)
        o->tunnel_prefix = "linkup-tunnel-";
    if (o->tunnel_scheme == NULL)
        o->tunnel_scheme = "http";
    /* Tunnel hostnames are {prefix}{session}.{domain} (DESIGN §3): both must
     * make a hostname, and an empty prefix would take every {name}.{domain}
     * for a tunnel host. */
    if (!is_domain(o->tunnel_domain))
        return cli_usage_error("worker",
                               "invalid value '%s' for '--tunnel-domain': expected a domain name "
                               "(labels of letters, digits and '-' joined by dots)",
                               o->tunnel_domain);
    if (!is_prefix(o->tunnel_prefix))
        return cli_usage_error(
            "worker",
            "invalid value '%s' for '--tunnel-prefix': expected letters, digits, "
            "'-' and '.' that begin a hostname",
            o->tunnel_prefix);
    if (strcmp(o->tunnel_scheme, "http") != 0 && strcmp(o->tunnel_scheme, "https") != 0)
        return cli_usage_error("worker",
                               "invalid value '%s' for '--tunnel-scheme': expected http or https",
                               o->tunnel_scheme);
    if (o->peer_url != NULL && !is_http_url(o->peer_url))
        return cli_usage_error("worker",
                               "invalid value '%s' for '--peer-url': expected "
                               "http(s)://HOST[:PORT][/PATH]",
                               o->peer_url);
    uint64_t port = 0;
    if (o->tunnel_port != NULL &&
        (lk_str_to_u64(lk_str_c(o->tunnel_port), 65535, &port) != 0 || port == 0))
        return cli_usage_error("worker",
                               "invalid value '%s' for '--tunnel-port': expected 1 to 65535",
                               o->tunnel_port);
    o->tunnel_port_num = (int)port;
    if (o->token == NULL || o->token[0] == '\0')
        return cli_fail("the worker needs a token: pass --token or set LINKUP_WORKER_TOKEN");
    /* Issue 3 calls the default "the `sqlite:` file": a bare `sqlite:` is it. */
    if (o->store == NULL || strcmp(o->store, "sqlite:") == 0) {
        if (cli_home_ensure() != 0)
            return LK_EXIT_FAIL;
        lk_buf_addf(default_store, "sqlite:%s/worker.db", cli_home());
        o->store = default_store->data;
    }
    return 0;
}

/* Deletes tunnel records unused for 7 days (live tunnels are refreshed
 * first) and purges expired sessions. */
static void run_cleanup(struct worker *w)
{
    struct lk_buf err = LK_BUF_INIT;
    worker_relay_touch(w);
    if (worker_tunnel_cleanup(&w->store->tunnels, worker_now_ms(), NULL, &err) != 0)
        LK_LOG(ERROR, "cleanup: %s", err.data);
    lk_buf_reset(&err);
    if (worker_store_purge(w->store, &err) != 0)
        LK_LOG(ERROR, "cleanup: %s", err.data);
    lk_buf_release(&err);
}

static void on_cleanup_timer(evutil_socket_t fd, short what, void *data)
{
    (void)fd;
    (void)what;
    run_cleanup(data);
}

static void on_drained(void *data)
{
    struct worker_run *run = data;
    /* The tunnels last through the drain, so that requests in flight through
     * them finish (they use no engine: the hub's tunnels are free of srv). */
    worker_relay_stop(&run->w);
    event_base_loopexit(run->base, NULL);
}

static void on_signal(evutil_socket_t sig, short what, void *data)
{
    struct worker_run *run = data;
    (void)what;
    LK_LOG(INFO, "received %s, draining", sig == SIGINT ? "SIGINT" : "SIGTERM");
    /* A second signal gets the default action (immediate exit). */
    event_del(run->sigint_ev);
    event_del(run->sigterm_ev);
    event_del(run->cleanup_ev);
    worker_cache_cancel_all(run->w.responses);
    worker_relay_go_away(&run->w);
    if (run->w.srv != NULL) {
        struct lk_http_server *srv = run->w.srv;
        run->w.srv = NULL;
        lk_http_server_drain(srv, WORKER_DRAIN_MS, on_drained, run);
    }
}

static int listen_port(const char *bound)
{
    const char *colon = strrchr(bound, ':');
    uint64_t port = 0;
    if (colon == NULL || lk_str_to_u64(lk_str_c(colon + 1), 65535, &port) != 0)
        return 0;
    return (int)port;
}

/* Another process changed the store (worker_store_change_fd()): the
 * session cache's stamp moves here instead of a read() per lookup. */
static void on_store_changed(evutil_socket_t fd, short what, void *arg)
{
    struct worker_run *run = arg;
    (void)fd;
    (void)what;
    if (!worker_store_changed(run->w.store)) {
        event_free(run->store_ev); /* the watch ended; lookups read from now on */
        run->store_ev = NULL;
    }
}

/* Opens the store, the server and the listener. */
static int start(struct worker_run *run, const struct worker_opts *o)
{
    struct worker *w = &run->w;
    struct lk_buf err = LK_BUF_INIT;
    struct lk_http_server_opts so;
    lk_route_slot_init(&w->route);
    int rc = worker_store_open(o->store, NULL, NULL, &w->store, &err);
    if (rc != 0) {
        rc = cli_fail("cannot open the worker store: %s", err.data);
        goto out;
    }
    w->base = run->base;
    int change_fd = worker_store_change_fd(w->store);
    if (change_fd >= 0) {
        run->store_ev =
            event_new(run->base, change_fd, EV_READ | EV_PERSIST, on_store_changed, run);
        /* From the first call on, lookups stop polling it. */
        if (run->store_ev != NULL &&
            (event_add(run->store_ev, NULL) != 0 || !worker_store_changed(w->store))) {
            event_free(run->store_ev);
            run->store_ev = NULL;
        }
    }
    w->cache = lk_session_cache_new(WORKER_SESSION_CACHE_ENTRIES, 0);
    w->rng = lk_rng_os(); /* ChaCha20 seeded once: no syscall per traceparent */
    /* The core's SHA-256, not EVP: the first EVP fetch activates OpenSSL's
     * default provider, ~2 MiB of resident pages a plain worker never needs. */
    LK_ASSERT(sizeof(w->token_digest) == LK_SHA256_LEN);
    lk_sha256(o->token, strlen(o->token), w->token_digest);
    lk_http_server_opts_init(&so);
    w->max_json_body = WORKER_MAX_JSON_BODY;
    lk_limits_from_env(&so, &w->max_json_body);
    /* Cache fetches wait for the upstream as long as the engine does. */
    w->responses = worker_cache_new(run->base, WORKER_CACHE_MAX_BYTES, &so);
    errno = 0;
    if (lk_http_server_new(run->base, &so, worker_handle, w, &w->srv) != 0 ||
        lk_http_server_listen(w->srv, o->listen, NULL, w->bound, sizeof(w->bound)) != 0) {
        int e = errno;
        rc = cli_fail("cannot listen on %s%s%s", o->listen, e ? ": " : "", e ? strerror(e) : "");
        goto out;
    }
    w->tunnel = (struct worker_tunnel_cfg){ o->tunnel_prefix, o->tunnel_domain, o->tunnel_scheme,
                                            o->tunnel_port_num ? o->tunnel_port_num
                                                               : listen_port(w->bound) };
    w->peer_url = o->peer_url;
    w->peer_secret = o->peer_secret;
    if (worker_store_is_shared(w->store))
        peer_defaults(w, o);
    if (o->session_auth != NULL) {
        w->auth_on = true;
        w->auth_urls_only =
            o->session_auth_scope != NULL && strcmp(o->session_auth_scope, "urls") == 0;
        lk_auth_key_init(&w->auth_key, lk_str_c(o->session_auth));
    }
    worker_relay_start(w, run->base);
    if ((o->peer_url != NULL || o->peer_secret != NULL) && !worker_store_is_shared(w->store))
        LK_LOG(WARN, "--peer-url and --peer-secret are used only with a redis store");
    rc = 0;
out:
    lk_buf_release(&err);
    return rc;
}

static void add_events(struct worker_run *run)
{
    struct timeval tv = { WORKER_CLEANUP_INTERVAL_MS / 1000, 0 };
    run->sigint_ev = evsignal_new(run->base, SIGINT, on_signal, run);
    run->sigterm_ev = evsignal_new(run->base, SIGTERM, on_signal, run);
    run->cleanup_ev = event_new(run->base, -1, EV_PERSIST, on_cleanup_timer, &run->w);
    event_add(run->sigint_ev, NULL);
    event_add(run->sigterm_ev, NULL);
    event_add(run->cleanup_ev, &tv);
}

static void teardown(struct worker_run *run)
{
    if (run->sigint_ev)
        event_free(run->sigint_ev);
    if (run->sigterm_ev)
        event_free(run->sigterm_ev);
    if (run->cleanup_ev)
        event_free(run->cleanup_ev);
    if (run->store_ev)
        event_free(run->store_ev); /* before the store closes its descriptor */
    worker_relay_stop(&run->w);
    worker_api_cancel(&run->w);
    lk_http_server_free(run->w.srv);
    worker_cache_free(run->w.responses);
    lk_session_cache_free(run->w.cache);
    lk_route_slot_release(&run->w.route);
    worker_store_free(run->w.store);
    if (run->base)
        event_base_free(run->base);
}

int cmd_worker(int argc, char **argv, struct cli_ctx *ctx)
{
    struct worker_opts o = { 0 };
    struct worker_run run;
    struct lk_buf default_store = LK_BUF_INIT;
    enum lk_log_level level;
    (void)ctx;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            fputs(usage_text, stdout);
            return LK_EXIT_OK;
        }
    }
    int rc = parse_args(argc, argv, &o);
    if (rc == 0)
        rc = resolve_opts(&o, &default_store);
    if (rc != 0) {
        lk_buf_release(&default_store);
        return rc;
    }
    if (lk_log_level_parse(getenv("LINKUP_LOG"), &level) != 0)
        LK_LOG(WARN,
               "ignoring LINKUP_LOG=%s: expected a level (off, error, warn, info, debug, "
               "trace) or linkup=LEVEL",
               getenv("LINKUP_LOG"));
    lk_log_set_level(level);
    signal(SIGPIPE, SIG_IGN);
    lk_nofile_raise(); /* accept_guard.h */
    lk_heap_tune();    /* docs/performance.md finding 13 */
    memset(&run, 0, sizeof(run));
    run.base = event_base_new();
    if (run.base == NULL)
        LK_BUG("event_base_new failed");
    rc = start(&run, &o);
    if (rc == 0) {
        /* The signal events are in place before the listening line: a
         * SIGTERM sent as soon as it is read drains and exits 0. */
        add_events(&run);
        printf("Worker listening on %s\n", run.w.bound);
        fflush(stdout);
        run_cleanup(&run.w);
        event_base_dispatch(run.base);
        lk_net_loop_settle(run.base);
        LK_LOG(INFO, "worker stopped");
    }
    teardown(&run);
    lk_buf_release(&default_store);
    return rc;
}
