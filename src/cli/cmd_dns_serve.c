/*
 * cmd_dns_serve.c - hidden developer command `linkup dns-serve`: runs only
 * the DNS responder (lib/net/dns_server) with a fixed set of names, so the
 * responder can be tested end to end without the local server.
 *
 *   linkup dns-serve [--dns A:P] [--name NAME]... [--domain D]...
 *                    [--dns-upstream A:P|off] [--resolv-conf FILE]
 *
 * Managed domains default to the parent of each name (tiny-cow.example.com
 * manages example.com). Prints `DNS listening on A:P` once bound and runs
 * until SIGINT or SIGTERM, then frees everything and exits 0.
 */
#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/alloc.h"
#include "core/err.h"
#include "net/dns_server.h"
#include "server/server.h"

#define MAX_NAMES 64

struct serve_args {
    const char *listen;
    const char *upstream;
    const char *resolv_conf;
    const char *names[MAX_NAMES];
    size_t n_names;
    const char *domains[MAX_NAMES];
    size_t n_domains;
};

static void provide_zones(struct lk_dns_zones *zones, void *data)
{
    const struct serve_args *a = data;
    zones->names = a->names;
    zones->n_names = a->n_names;
    zones->domains = a->domains;
    zones->n_domains = a->n_domains;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    fprintf(stderr, "Received %s signal\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    event_base_loopbreak(arg);
}

static int add_to(const char **list, size_t *n, const char *v)
{
    if (*n >= MAX_NAMES)
        return -1;
    list[(*n)++] = v;
    return 0;
}

enum serve_opt {
    SERVE_DNS = 0,
    SERVE_UPSTREAM,
    SERVE_RESOLV_CONF,
    SERVE_NAME,
    SERVE_DOMAIN,
    SERVE_N_OPTS,
};

static const struct cli_opt serve_opts[SERVE_N_OPTS] = {
    [SERVE_DNS] = { NULL, "--dns", "A:P" },
    [SERVE_UPSTREAM] = { NULL, "--dns-upstream", "A:P" },
    [SERVE_RESOLV_CONF] = { NULL, "--resolv-conf", "FILE" },
    [SERVE_NAME] = { NULL, "--name", "NAME" },
    [SERVE_DOMAIN] = { NULL, "--domain", "D" },
};

static int apply_option(enum serve_opt k, const char *v, struct serve_args *a)
{
    int rc = 0;
    switch (k) {
    case SERVE_DNS:
        a->listen = v;
        break;
    case SERVE_UPSTREAM:
        a->upstream = v;
        break;
    case SERVE_RESOLV_CONF:
        a->resolv_conf = v;
        break;
    case SERVE_NAME:
        rc = add_to(a->names, &a->n_names, v);
        break;
    case SERVE_DOMAIN:
        rc = add_to(a->domains, &a->n_domains, v);
        break;
    case SERVE_N_OPTS:
        LK_BUG("no such dns-serve option");
    }
    if (rc != 0)
        return cli_usage_error("dns-serve", "too many names (at most %d)", MAX_NAMES);
    return 0;
}

/* One option at argv[*i]: 0, or the usage error's exit code. */
static int take_option(int argc, char **argv, int *i, struct serve_args *a)
{
    const char *v = NULL;
    int k = cli_opt_take("dns-serve", serve_opts, SERVE_N_OPTS, argc, argv, i, &v);
    if (k == CLI_OPT_FAILED)
        return LK_EXIT_USAGE;
    if (k < 0)
        return cli_usage_error("dns-serve", "unexpected argument '%s'", argv[*i]);
    return apply_option((enum serve_opt)k, v, a);
}

static int parse_args(int argc, char **argv, struct serve_args *a)
{
    for (int i = 1; i < argc; i++) {
        int rc = take_option(argc, argv, &i, a);
        if (rc != 0)
            return rc;
    }
    if (a->n_domains == 0) {
        for (size_t i = 0; i < a->n_names; i++) {
            const char *dot = strchr(a->names[i], '.');
            add_to(a->domains, &a->n_domains, dot ? dot + 1 : a->names[i]);
        }
    }
    return 0;
}

static int serve(struct serve_args *a)
{
    struct event_base *base = event_base_new();
    struct lk_dns_server *server = NULL;
    /* --dns-upstream off: no forwarding, as for `linkup server`. */
    bool off = a->upstream != NULL && strcmp(a->upstream, "off") == 0;
    struct lk_dns_server_opts opts = { .listen = a->listen,
                                       .upstream = off ? NULL : a->upstream,
                                       .resolv_conf =
                                           off ? "/dev/null" : local_resolv_conf(a->resolv_conf),
                                       .zones_cb = provide_zones,
                                       .zones_data = a };
    int rc = lk_dns_server_new(base, &opts, &server);
    if (rc != 0) {
        event_base_free(base);
        return cli_fail("Failed to start DNS server on %s: %s", a->listen,
                        rc == LK_EINVAL ? "invalid address" : strerror(errno));
    }
    struct event *sigint = evsignal_new(base, SIGINT, on_signal, base);
    struct event *sigterm = evsignal_new(base, SIGTERM, on_signal, base);
    event_add(sigint, NULL);
    event_add(sigterm, NULL);
    char addr[64], up[64];
    fprintf(stderr, "dns-serve: upstream %s\n",
            lk_dns_server_upstream(server, up, sizeof(up))[0] ? up : "(none)");
    printf("DNS listening on %s\n", lk_dns_server_addr(server, addr, sizeof(addr)));
    fflush(stdout);
    event_base_dispatch(base);
    lk_dns_server_free(server);
    event_free(sigint);
    event_free(sigterm);
    event_base_free(base);
    return LK_EXIT_OK;
}

static const char dns_serve_usage[] =
    "Run only the DNS responder, with a fixed set of names (a developer's tool)\n\n"
    "Usage: linkup dns-serve [OPTIONS]\n\n"
    "Options:\n"
    "      --dns <A:P>             Address to listen on, UDP and TCP [default: 127.0.0.1:8053]\n"
    "      --name <NAME>           A name answered with 127.0.0.1 / ::1 (repeatable)\n"
    "      --domain <D>            A managed domain (repeatable) [default: the parent of\n"
    "                              each --name]\n"
    "      --dns-upstream <A:P>    Resolver for other names, or off [default: the system's]\n"
    "      --resolv-conf <FILE>    Where the system's resolvers are read [default: "
    "/etc/resolv.conf]\n"
    "  -h, --help                  Print help\n";

int cmd_dns_serve(int argc, char **argv, struct cli_ctx *ctx)
{
    struct serve_args a = { .listen = "127.0.0.1:8053" };
    (void)ctx;
    if (argc > 1 && cli_is_help(argv[1])) {
        fputs(dns_serve_usage, stdout);
        return LK_EXIT_OK;
    }
    int rc = parse_args(argc, argv, &a);
    if (rc != 0)
        return rc;
    return serve(&a);
}
